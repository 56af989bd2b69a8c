"""The workflow at parse time: lint, dry runs of the toy (every track's jobs
known before anything runs), the job graph, and config errors named."""

import pytest
from conftest import ROOT, job_counts, snakemake

pytestmark = pytest.mark.workflow


def test_lint_is_clean():
    """Snakemake's linter finds nothing: it exits 1 and lists "Lints for" a
    file or rule when it does."""
    proc = snakemake(ROOT, "--lint", configfiles=(), cores=None, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stderr


def test_dry_run_of_the_default_lists_every_track(tmp_path):
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["toy_musdb"] == 1 and counts["shard"] == 11
    assert counts["stats"] == counts["tracks"] == counts["data_summary"] == 1
    assert counts["train"] == 3
    for exp in ["baseline", "centroids", "dpcl"]:
        assert f"results/models/{exp}/model.pt" in proc.stdout
    from musicsep.data.musdb import slugify
    from musicsep.toy.musdb import toy_names
    for name in toy_names(2019, 11):
        assert f"shards/{slugify(name)}.h5" in proc.stdout
    assert not (tmp_path / "results").exists(), "a dry run wrote results"


def test_dag_and_rulegraph_before_anything_ran(tmp_path):
    dag = snakemake(tmp_path, "--dag")
    assert dag.returncode == 0, dag.stderr
    assert dag.stdout.count("label = \"shard") == 11
    rulegraph = snakemake(tmp_path, "--rulegraph")
    assert rulegraph.returncode == 0 and "digraph" in rulegraph.stdout
    for rule in ["toy_musdb", "shard", "tracks", "stats", "data_summary", "train"]:
        assert rule in rulegraph.stdout


def test_unknown_config_key_is_named(tmp_path):
    proc = snakemake(tmp_path, "-n", config=["data={sampel_rate: 1}"])
    assert proc.returncode != 0
    assert "unknown config key data.sampel_rate" in proc.stdout + proc.stderr


def test_missing_dataset_is_named(tmp_path):
    proc = snakemake(tmp_path, "-n", config=[f"dataset={{path: {tmp_path}/musdb18.zip}}"])
    assert proc.returncode != 0
    assert f"{tmp_path}/musdb18.zip: dataset path does not exist" in proc.stdout + proc.stderr


def test_bad_model_args_are_named(tmp_path):
    proc = snakemake(tmp_path, "-n", config=["experiments={baseline: {model_args: {hiden: 3}}}"])
    assert proc.returncode != 0
    assert "experiments.baseline.model_args.hiden: unknown argument of blstm_mask" in proc.stdout + proc.stderr
    proc = snakemake(tmp_path, "-n", config=["experiments={dpcl: {loss: l1}}"])
    assert "experiments.dpcl.loss: 'l1' does not fit model deep_clustering" in proc.stdout + proc.stderr
