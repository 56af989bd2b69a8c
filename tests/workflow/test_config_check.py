"""One check of the configuration, made by the workflow at parse time and by
`musicsep check-config` alike: the same verdict and the same line, naming the
config file and the key, for each bad config; config files layered as
Snakemake layers them."""

import copy
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, snakemake

from musicsep import MusicsepError
from musicsep.workflow.check import Source, check_files, origin
from musicsep.workflow.config import layer

pytestmark = pytest.mark.workflow

SCHEMA = ROOT / "config" / "schema.yaml"
DEFAULT = ROOT / "config" / "config.yaml"


def check_config(cwd, *files):
    return subprocess.run([sys.executable, "-m", "musicsep", "check-config", *map(str, files),
                           "--schema", str(SCHEMA)], capture_output=True, text=True, cwd=cwd, check=False)


def dry_run(workdir, *files, config=()):
    return snakemake(workdir, "-n", configfiles=files, config=config, cores=1)


@pytest.mark.parametrize("over", [
    {"a": {"b": 1}},                                   # a mapping merges key by key
    {"a": {"c": {"d": [9]}}, "l": [3]},               # lists replace, deep keys merge
    {"a": None, "s": {"x": 1}},                        # null replaces a mapping; a mapping replaces a number
    {"s": {}, "a": {}},                                # an empty mapping changes nothing
    {"l": {"k": 1}, "n": {"m": {}}},                   # a mapping replaces a list; new keys are added
])
def test_layer_is_snakemakes_update_config(over):
    from snakemake.utils import update_config

    base = {"a": {"b": 0, "c": {"d": [1, 2], "e": 5}}, "l": [1, 2], "s": 3}
    expected = copy.deepcopy(base)
    update_config(expected, copy.deepcopy(over))
    snapshot = copy.deepcopy((base, over))
    assert layer([base, over]) == expected
    assert (base, over) == snapshot, "layer changed its inputs"
    assert layer([{}, base, over, {}]) == expected


def test_origin_is_the_last_layer_that_sets_the_key():
    sources = [Source("a.yaml", {"data": {"mono": True}, "training": {"lr": 1}}),
               Source("b.yaml", {"training": {"lr": 2}, "experiments": {"x": {"model": "m"}}}),
               Source("--config", {"training": {"epochs": 3}})]
    assert origin(("training", "lr"), sources) == "b.yaml"
    assert origin(("data", "mono"), sources) == "a.yaml"
    assert origin(("training", "epochs"), sources) == "--config"
    assert origin(("experiments", "x", "loss"), sources) == "b.yaml"     # the block it belongs to
    assert origin(("features", "hop"), sources) == "a.yaml + b.yaml + --config"


BAD = [
    ("model_args typo", "experiments:\n  baseline:\n    model: blstm_mask\n    model_args: {hiden: 3}\n",
     "bad.yaml: experiments.baseline.model_args.hiden: unknown argument of blstm_mask (known: "),
    ("STFT in model_args", "experiments:\n  baseline:\n    model: blstm_mask\n    model_args: {n_fft: 4096}\n",
     "bad.yaml: experiments.baseline.model_args.n_fft: set by the workflow for every experiment (`features.n_fft`"),
    ("missing dataset", "dataset:\n  path: missing/musdb18.zip\n",
     "bad.yaml: dataset.path: missing/musdb18.zip: dataset path does not exist"),
    ("unknown key", "loader:\n  excerpt_secs: 2\n",
     "bad.yaml: unknown config key loader.excerpt_secs (allowed in loader: "),
    ("wrong type", "training:\n  lr: fast\n",
     "bad.yaml: config key training.lr: 'fast' is not of type 'number'"),
    ("not a mapping", "- training\n",
     "bad.yaml: a config file must be a mapping of keys to values at its top level (found list)"),
]


@pytest.mark.parametrize("name, text, line", BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_gets_the_same_line_from_check_config_and_the_workflow(tmp_path, name, text, line):
    (tmp_path / "bad.yaml").write_text(text)
    proc = check_config(tmp_path, tmp_path / "bad.yaml")
    assert proc.returncode == 1 and proc.stdout == ""
    [error] = proc.stderr.splitlines()
    assert error.startswith("error: " + line), proc.stderr
    if name == "not a mapping":      # Snakemake refuses it itself, before the workflow runs
        return
    run = dry_run(tmp_path, tmp_path / "bad.yaml")
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == error.removeprefix("error: "), run.stderr
    assert "common.smk" not in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"], "a bad config left files behind"


def test_each_layer_is_named_by_the_keys_it_sets(tmp_path):
    """The loss in one file, the model it does not fit in the file below."""
    (tmp_path / "mine.yaml").write_text("experiments:\n  dpcl:\n    loss: l1\n")
    (tmp_path / "more.yaml").write_text("training:\n  lr: 0\n")
    files = (DEFAULT, tmp_path / "mine.yaml", tmp_path / "more.yaml")
    proc = check_config(tmp_path, *files)
    assert proc.returncode == 1
    lines = ["more.yaml: config key training.lr: 0 is less than or equal to the minimum of 0",
             "mine.yaml: experiments.dpcl.loss: 'l1' does not fit model deep_clustering (use dc)"]
    assert proc.stderr.splitlines() == ["error: " + line for line in lines[:1]], proc.stderr
    run = dry_run(tmp_path, *files)
    assert run.returncode == 1 and run.stderr.splitlines()[-1] == lines[0]
    (tmp_path / "more.yaml").write_text("training:\n  lr: 0.1\n")
    proc = check_config(tmp_path, *files)
    assert proc.returncode == 1 and proc.stderr.splitlines() == ["error: " + lines[1]], proc.stderr
    run = dry_run(tmp_path, *files, config=["loader={sampel: 1}"])
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1].startswith("--config: unknown config key loader.sampel"), run.stderr
    run = dry_run(tmp_path, *files)
    assert run.returncode == 1 and run.stderr.splitlines()[-1] == lines[1]


def test_every_problem_has_its_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("data:\n  sampel_rate: 1\n  mono: 3\n")
    proc = check_config(tmp_path, tmp_path / "bad.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: bad.yaml: config key data.mono: 3 is not of type 'boolean'",
        ("error: bad.yaml: unknown config key data.sampel_rate (allowed in data: chunk_seconds, mono, "
         "sample_rate, silence_db, valid)")]


def test_yaml_syntax_errors_name_file_and_line(tmp_path):
    text = "loader:\n  seed: [1, 2\ntraining: {}\n"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(text)
    line = ("config/config.yaml: line 3, column 9: not valid YAML (while parsing a flow sequence from "
            "line 2, column 9: expected ',' or ']', but got ':')")
    proc = check_config(tmp_path)
    assert proc.returncode == 1 and proc.stderr.splitlines() == ["error: " + line]
    # the workflow's own config file (of the working directory), which Snakemake reads first
    for files in [(), (ROOT / "config" / "toy.yaml",)]:
        run = dry_run(tmp_path, *files)
        assert run.returncode == 1 and run.stderr.splitlines()[-1] == line, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_the_layered_toy_config_is_valid():
    proc = check_config(ROOT, "config/config.yaml", "config/toy.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("config/config.yaml + config/toy.yaml: valid (11 tracks; "
                           "experiments baseline, centroids, dpcl)\n")
    _, checked = check_files([DEFAULT, ROOT / "config" / "toy.yaml"], SCHEMA)
    assert checked.specs["baseline"]["model_args"]["hidden"] == 48          # toy.yaml's
    assert checked.specs["baseline"]["training"]["lr"] == 1e-3
    assert checked.config["training"]["plateau_factor"] == 0.5               # config.yaml's


def test_the_workflows_config_file_comes_first_as_under_snakemake(tmp_path):
    """Run where config/config.yaml exists, Snakemake reads it under any
    --configfile: an experiment block that changes one argument keeps its
    model, and a new experiment joins the others."""
    (tmp_path / "config").mkdir()
    shutil.copy(DEFAULT, tmp_path / "config" / "config.yaml")
    (tmp_path / "mine.yaml").write_text("experiments:\n  baseline:\n    model_args: {hidden: 8}\n"
                                        "  small:\n    model: blstm_mask\n")
    proc = check_config(tmp_path, "mine.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("config/config.yaml + mine.yaml: valid (11 tracks; "
                           "experiments baseline, centroids, dpcl, small)\n")
    run = dry_run(tmp_path, tmp_path / "mine.yaml")
    assert run.returncode == 0, run.stderr
    for exp in ["baseline", "centroids", "dpcl", "small"]:
        assert f"results/models/{exp}/model.pt" in run.stdout
    # the same file alone, where there is no config/config.yaml: no model for baseline
    shutil.rmtree(tmp_path / "config")
    line = "mine.yaml: config key experiments.baseline: 'model' is a required property"
    proc = check_config(tmp_path, "mine.yaml")
    assert proc.returncode == 1 and proc.stderr.splitlines() == ["error: " + line], proc.stderr
    run = dry_run(tmp_path, tmp_path / "mine.yaml")
    assert run.returncode == 1 and run.stderr.splitlines()[-1] == line, run.stderr


def test_check_files_raises_one_line_per_problem(tmp_path):
    (tmp_path / "a.yaml").write_text("features: {hop: 0}\n")
    with pytest.raises(MusicsepError) as info:
        check_files([tmp_path / "a.yaml", tmp_path / "missing.yaml"], SCHEMA)
    assert str(info.value) == f"{tmp_path}/missing.yaml: file not found"
    with pytest.raises(MusicsepError) as info:
        check_files([tmp_path / "a.yaml"], SCHEMA)
    assert str(info.value) == f"{tmp_path}/a.yaml: config key features.hop: 0 is less than the minimum of 1"
