"""Run folders and specs: a setting added later, at its neutral value, keeps
the runs and models of an older version current."""

import json
from pathlib import Path

import yaml

from musicsep.train.runs import prepare_run_dir
from musicsep.workflow.config import layer
from musicsep.workflow.plan import experiment_specs, load_config

ROOT = Path(__file__).resolve().parents[2]


def _specs(tmp_path, weight_decay):
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return experiment_specs(load_config(layer([default, {"training": {"weight_decay": weight_decay}}]), ROOT))


def test_weight_decay_zero_is_left_out_of_the_spec_and_keeps_an_older_run(tmp_path):
    spec = _specs(tmp_path, 0)["baseline"]
    assert "weight_decay" not in spec["training"]
    older = json.loads(json.dumps(spec))            # a run folder of the version before weight_decay
    run = tmp_path / "baseline"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps(older))
    (run / "latest.pt").write_bytes(b"checkpoint")
    prepare_run_dir(run, spec)
    assert (run / "latest.pt").read_bytes() == b"checkpoint"


def test_a_weight_decay_is_in_the_spec_and_starts_afresh(tmp_path):
    spec = _specs(tmp_path, 1e-5)["baseline"]
    assert spec["training"]["weight_decay"] == 1e-5
    run = tmp_path / "baseline"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps(_specs(tmp_path, 0)["baseline"]))
    prepare_run_dir(run, spec)
    assert json.loads((run / "spec.json").read_text())["training"]["weight_decay"] == 1e-5
    assert list(tmp_path.glob("baseline.*")), "the older run was not moved aside"
