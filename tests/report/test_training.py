"""Training curves (musicsep.report.training, `musicsep plots training`) from
a metrics.jsonl."""

from __future__ import annotations

import json

import pytest
from reportdata import assert_svg

from musicsep.cli import main
from musicsep.report.training import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_curves(tmp_path, capsys):
    records = [{"epoch": 1, "valid_loss": 0.5, "lr": 1e-3, "train_loss": 0.9, "train_l1": 0.5, "train_dc": 0.4},
               {"epoch": 2, "valid_loss": 0.7, "lr": 1e-3, "train_loss": 0.8, "train_l1": 0.45, "train_dc": 0.35},
               {"epoch": 2, "valid_loss": 0.4, "lr": 1e-3, "train_loss": 0.7, "train_l1": 0.4, "train_dc": 0.3},
               {"epoch": 3, "valid_loss": 0.45, "lr": 5e-4, "train_loss": 0.6, "train_l1": 0.35, "train_dc": 0.25}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    frame = read_metrics(metrics)
    assert frame.index.tolist() == [1, 2, 3] and frame.loc[2, "valid_loss"] == 0.4   # a repeated epoch: the last
    assert main(["plots", "training", str(metrics), "--name", "centroids", "--out", str(tmp_path / "t.svg")]) == 0
    text = (tmp_path / "t.svg").read_text()
    assert_svg(tmp_path / "t.svg")
    assert "centroids: training curves" in text and "best 0.4 (epoch 2)" in text and "train (dc)" in text

    metrics.write_text('{"epoch": 1, "valid_loss": 0.5}\nnot json\n')
    assert main(["plots", "training", str(metrics), "--out", str(tmp_path / "u.svg")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {metrics}, line 2: not JSON")
