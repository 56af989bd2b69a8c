"""Experiment grids (`musicsep.workflow.grid`): one experiment per point,
named by its values, checked like any experiment, trained as one by the
workflow (a dry run shows each point's jobs)."""

import subprocess
import sys

import pytest
from conftest import ROOT, job_counts, snakemake

from musicsep import MusicsepError
from musicsep.workflow.check import check_files
from musicsep.workflow.config import ConfigError
from musicsep.workflow.grid import expand_grids

SCHEMA = ROOT / "config" / "schema.yaml"
TOY = [ROOT / "config" / "config.yaml", ROOT / "config" / "toy.yaml"]
GRID = ("experiments:\n  small:\n    model: blstm_mask\n    model_args: {hidden: 8, layers: 1}\n"
        "    grid: {model_args.hidden: [8, 16], training.lr: [2.0e-4, 1.0e-3]}\n")


def test_a_grid_is_one_experiment_per_point_named_by_its_values():
    config = {"training": {"lr": 1}, "experiments": {
        "plain": {"model": "m"},
        "g": {"model": "m", "model_args": {"hidden": 1, "dim": 3},
              "grid": {"model_args.hidden": [300, 600], "training.lr": [2e-4, 1e-3], "loss": ["l1"]}}}}
    out = expand_grids(config)
    assert list(out["experiments"]) == ["plain", "g_hidden300_lr0p0002_lossl1", "g_hidden300_lr0p001_lossl1",
                                        "g_hidden600_lr0p0002_lossl1", "g_hidden600_lr0p001_lossl1"]
    point = out["experiments"]["g_hidden600_lr0p001_lossl1"]
    assert point == {"model": "m", "model_args": {"hidden": 600, "dim": 3}, "training": {"lr": 1e-3}, "loss": "l1"}
    assert config["experiments"]["g"]["model_args"]["hidden"] == 1 and "grid" in config["experiments"]["g"]
    assert out["training"] == {"lr": 1} and expand_grids({"experiments": {"a": {}}}) == {"experiments": {"a": {}}}


def test_keys_sharing_a_last_part_are_named_whole_and_values_made_name_safe():
    out = expand_grids({"experiments": {"g": {"model": "m", "grid": {
        "model_args.dropout": [0.5], "training.dropout": [True], "model_args.covariance": ["tied diag"]}}}})
    assert list(out["experiments"]) == ["g_model_args-dropout0p5_training-dropouttrue_covariancetied-diag"]


@pytest.mark.parametrize("grid, key, says", [
    ({"model_args.hidden": []}, "experiments.g.grid.model_args.hidden", "a non-empty list of values"),
    ({"model_args.hidden": 3}, "experiments.g.grid.model_args.hidden", "a non-empty list of values"),
    ({"loader.seed": [1]}, "experiments.g.grid.loader.seed", "a grid varies model, loss"),
    ({"model_args.hidden": [1.5, "1.5"]}, "experiments.g.grid.model_args.hidden", "values repeat"),
    ([1], "experiments.g.grid", "a mapping of keys to lists of values"),
])
def test_a_bad_grid_names_its_key(grid, key, says):
    with pytest.raises(ConfigError) as err:
        expand_grids({"experiments": {"g": {"model": "m", "grid": grid}}})
    [(path, message)] = err.value.problems
    assert message.startswith(f"{key}: {says}"), message
    assert ".".join(map(str, path)) == key


def test_a_point_may_not_take_another_experiments_name():
    with pytest.raises(ConfigError, match="experiments.g.grid: its point g_hidden1 has the name of another"):
        expand_grids({"experiments": {"g_hidden1": {"model": "m"}, "g": {"model": "m", "grid": {
            "model_args.hidden": [1]}}}})


def test_each_point_is_checked_as_an_experiment(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    _, checked = check_files([*TOY, tmp_path / "grid.yaml"], SCHEMA)
    small = {name: spec for name, spec in checked.specs.items() if name.startswith("small")}
    assert sorted(small) == ["small_hidden16_lr0p0002", "small_hidden16_lr0p001",
                             "small_hidden8_lr0p0002", "small_hidden8_lr0p001"]
    assert small["small_hidden16_lr0p001"]["model_args"] == {"hidden": 16, "layers": 1}
    assert small["small_hidden16_lr0p001"]["training"]["lr"] == 1e-3
    assert small["small_hidden8_lr0p0002"]["training"]["epochs"] == checked.config["training"]["epochs"]
    (tmp_path / "grid.yaml").write_text(GRID.replace("model_args.hidden", "model_args.hiden"))
    with pytest.raises(MusicsepError, match=r"grid.yaml: experiments.small_hiden8_lr0p0002.model_args.hiden: "
                                            "unknown argument of blstm_mask"):
        check_files([*TOY, tmp_path / "grid.yaml"], SCHEMA)


@pytest.mark.workflow
def test_the_workflow_trains_every_point_and_check_config_lists_them(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    proc = subprocess.run([sys.executable, "-m", "musicsep", "check-config", *map(str, TOY),
                           str(tmp_path / "grid.yaml"), "--schema", str(SCHEMA)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "small_hidden8_lr0p0002, small_hidden8_lr0p001, small_hidden16_lr0p0002" in proc.stdout
    run = snakemake(tmp_path, "-n", configfiles=[*TOY, tmp_path / "grid.yaml"], cores=1)
    assert run.returncode == 0, run.stderr
    assert job_counts(run.stdout)["train"] == 3 + 4              # toy.yaml's three, the grid's four
    for point in ("small_hidden8_lr0p0002", "small_hidden8_lr0p001", "small_hidden16_lr0p0002",
                  "small_hidden16_lr0p001"):
        assert f"models/{point}/model.pt" in run.stdout, point
