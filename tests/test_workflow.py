"""The Snakemake workflow itself: lint, dry runs, and real runs of the data
rules (each in its own working directory)."""

import re
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest
from conftest import ROOT, make_real_musdb

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args, config=(), timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "toy.yaml"),
           "--cores", "2", *args]
    if config:
        cmd += ["--config", *config]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict:
    table = output[output.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


def test_dry_run_of_the_default_lists_every_track(tmp_path, env_path):
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


def test_dag_and_rulegraph_before_anything_ran(tmp_path, env_path):
    dag = snakemake(tmp_path, "--dag")
    assert dag.returncode == 0, dag.stderr
    assert dag.stdout.count("label = \"shard") == 11
    rulegraph = snakemake(tmp_path, "--rulegraph")
    assert rulegraph.returncode == 0 and "digraph" in rulegraph.stdout
    for rule in ["toy_musdb", "shard", "tracks", "stats", "data_summary", "train"]:
        assert rule in rulegraph.stdout


def test_unknown_config_key_is_named(tmp_path, env_path):
    proc = snakemake(tmp_path, "-n", config=["data={sampel_rate: 1}"])
    assert proc.returncode != 0
    assert "unknown config key data.sampel_rate" in proc.stdout + proc.stderr


def test_missing_dataset_is_named(tmp_path, env_path):
    proc = snakemake(tmp_path, "-n", config=[f"dataset={{path: {tmp_path}/musdb18.zip}}"])
    assert proc.returncode != 0
    assert f"{tmp_path}/musdb18.zip: dataset path does not exist" in proc.stdout + proc.stderr


def check_outputs(results: Path, n_tracks: int) -> pd.DataFrame:
    shards = sorted((results / "data" / "shards").glob("*.h5"))
    assert len(shards) == n_tracks
    table = pd.read_csv(results / "data" / "tracks.tsv", sep="\t", keep_default_na=False)
    assert sorted(table["slug"] + ".h5") == [p.name for p in shards]
    assert (results / "data" / "summary.md").read_text().startswith("# Data summary")
    for rule in ["tracks", "stats", "summary"]:
        assert (results / "logs" / "data" / f"{rule}.log").exists()
    assert len(list((results / "logs" / "data" / "shard").glob("*.log"))) == n_tracks
    assert not list(results.rglob("*.tmp"))
    return table


DATA = "results/data/summary.md"


def test_real_run_on_a_two_track_toy(tmp_path, env_path):
    toy = ["dataset={toy: {train_tracks: 1, test_tracks: 1, duration: 3.0, seed: 5}}"]
    proc = snakemake(tmp_path, DATA, config=toy)
    assert proc.returncode == 0, proc.stderr
    results = tmp_path / "results"
    table = check_outputs(results, 2)
    assert sorted(table["split"]) == ["test", "train"]
    assert (results / "toy" / "musdb18-toy.zip").exists()
    with h5py.File(results / "data" / "stats.h5") as h5:
        assert h5["mean"].shape == (1025,)
        assert list(h5.attrs["tracks"]) == table.loc[table["split"] == "train", "name"].tolist()
    again = snakemake(tmp_path, DATA, config=toy)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_real_run_on_real_musdb_audio(tmp_path, env_path, example_stem):
    dataset = make_real_musdb(tmp_path / "musdb 18", example_stem, {
        "train": ["Actions - One Minute Smile", "Juliet's Rescue - Heartbeats",
                  "James Elder & Mark M Thompson - The English Actor"],
        "test": ["The Easton Ellises (Baumi) - SDRNR", "M.E.R.C. Music - Knockout"]})
    proc = snakemake(tmp_path, "out/data/summary.md", config=[f"dataset={{path: '{dataset}'}}", "results=out"])
    assert proc.returncode == 0, proc.stderr
    table = check_outputs(tmp_path / "out", 5).set_index("name")
    assert table.loc["Actions - One Minute Smile", "split"] == "valid"     # official validation track
    assert table.loc["Juliet's Rescue - Heartbeats", "split"] == "train"
    assert table.loc["M.E.R.C. Music - Knockout", "split"] == "test"
    assert (table["duration"] - 6.084).abs().max() < 0.01
    with h5py.File(tmp_path / "out" / "data" / "stats.h5") as h5:
        assert sorted(h5.attrs["tracks"]) == ["James Elder & Mark M Thompson - The English Actor",
                                              "Juliet's Rescue - Heartbeats"]


def test_end_to_end_on_a_tiny_toy(tmp_path, env_path):
    """Dataset to summary: shards, three trained models, oracles, museval per
    (system, track), the aggregate tables."""
    from musicsep.models.checkpoint import load_model

    config = ["dataset={toy: {train_tracks: 3, test_tracks: 1, duration: 3.0, seed: 5}}",
              "loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
              "training={epochs: 2, batch_size: 4, workers: 0}"]
    proc = snakemake(tmp_path, config=config)
    assert proc.returncode == 0, proc.stderr
    for exp, name in [("baseline", "blstm_mask"), ("centroids", "conditional_centroids"), ("dpcl", "deep_clustering")]:
        model, state = load_model(tmp_path / "results" / "models" / exp / "model.pt")
        assert model.name == name and state["spec"]["name"] == exp
        lines = (tmp_path / "results" / "models" / exp / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 2
        assert (tmp_path / "results" / "runs" / exp / "latest.pt").exists()
        assert list((tmp_path / "results" / "runs" / exp / "tensorboard").glob("events.out.tfevents.*"))
    results = tmp_path / "results"
    systems = ["baseline", "centroids", "dpcl", "oracle_irm1", "oracle_irm2", "oracle_ibm", "oracle_mwf"]
    (slug,) = [p.stem for p in (results / "scores" / "baseline").glob("*.json")]
    for system in systems:
        assert (results / "scores" / system / f"{slug}.json").exists()
        assert sorted(p.name for p in (results / "estimates" / system / slug).iterdir()) == \
            sorted(f"{t}.wav" for t in ["vocals", "drums", "bass", "other", "accompaniment"])
    scores = pd.read_csv(results / "scores.csv")
    assert set(scores["system"]) == set(systems)
    summary = (results / "summary.md").read_text()
    assert "| oracle_irm1 |" in summary and "fraction of oracle_irm1" in summary
    # a changed experiment block retrains that experiment only
    again = snakemake(tmp_path, "-n", config=config + ["experiments={dpcl: {model_args: {dim: 8}}}"])
    assert again.returncode == 0 and job_counts(again.stdout)["train"] == 1
    assert job_counts(again.stdout)["evaluate"] == 1 and "oracle" not in job_counts(again.stdout)


def test_bad_model_args_are_named(tmp_path, env_path):
    proc = snakemake(tmp_path, "-n", config=["experiments={baseline: {model_args: {hiden: 3}}}"])
    assert proc.returncode != 0
    assert "experiments.baseline.model_args.hiden: unknown argument of blstm_mask" in proc.stdout + proc.stderr
    proc = snakemake(tmp_path, "-n", config=["experiments={dpcl: {loss: l1}}"])
    assert "experiments.dpcl.loss: 'l1' does not fit model deep_clustering" in proc.stdout + proc.stderr
