"""Training curves (musicsep.report.training, `musicsep plots training`) from
a metrics.jsonl, and every experiment's learning curves on one page (`musicsep
plots learning-curves`)."""

from __future__ import annotations

import json

import pytest
from reportdata import assert_svg

from musicsep.cli import main
from musicsep.report.common import MAX_WIDTH
from musicsep.report.training import plot_learning_curves, read_metrics, wall_seconds

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


def metrics_file(path, epochs: int, sdr_every: int = 0, elapsed: bool = True, start_loss: float = 1.0):
    """A metrics.jsonl as training writes it: one record per epoch, 10 steps and 60 s an epoch
    (elapsed_seconds a little more: checkpoints); SDR every ``sdr_every`` epochs."""
    records = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "step": 10 * epoch, "valid_loss": start_loss / epoch, "lr": 1e-3,
                  "seconds": 60.0, "train_loss": start_loss / epoch + 0.1}
        if elapsed:
            record["elapsed_seconds"] = 61.5 * epoch
        if sdr_every and epoch % sdr_every == 0:
            record |= {"sdr": 1.0 + epoch, **{f"sdr/{t}": 1.0 + epoch for t in ("vocals", "drums", "bass", "other")}}
        records.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_wall_time_is_elapsed_seconds_else_the_epochs_seconds_summed(tmp_path):
    new = read_metrics(metrics_file(tmp_path / "new" / "metrics.jsonl", 3))
    old = read_metrics(metrics_file(tmp_path / "old" / "metrics.jsonl", 3, elapsed=False))
    assert wall_seconds(new).tolist() == [61.5, 123.0, 184.5]
    assert wall_seconds(old).tolist() == [60.0, 120.0, 180.0]
    assert wall_seconds(old.drop(columns="seconds")) is None


def test_learning_curves_of_every_experiment_on_one_page(tmp_path, capsys):
    paths = [metrics_file(tmp_path / "baseline" / "metrics.jsonl", 6, sdr_every=2),
             metrics_file(tmp_path / "dpcl" / "metrics.jsonl", 4, sdr_every=1, start_loss=300.0),
             metrics_file(tmp_path / "old" / "metrics.jsonl", 3, elapsed=False)]
    out = tmp_path / "plots" / "learning_curves.svg"
    assert main(["plots", "learning-curves", *map(str, paths), "--names", "baseline", "dpcl", "centroids",
                 "--out", str(out)]) == 0
    root = assert_svg(out)
    width = float(root.get("width").removesuffix("pt")) / 72
    assert 4 < width <= MAX_WIDTH + 0.25, width                  # within the report's width (plus the tight margin)
    text = out.read_text()
    for words in ["Learning curves of 3 experiments", "against the training step", "against wall time",
                  "validation loss", "validation SDR (dB, mean of 4 sources)", "training step",
                  "wall time (minutes): training and validation", ">baseline<", ">dpcl<", ">centroids<"]:
        assert words in text, words
    assert "no validation SDR recorded" not in text and "no wall time recorded" not in text
    frames = plot_learning_curves(paths[:1], tmp_path / "one.svg")     # named after its folder
    assert list(frames) == ["baseline"] and frames["baseline"]["sdr"].notna().sum() == 3
    text = (tmp_path / "one.svg").read_text()
    assert "Learning curves of 1 experiment<" in text and ">baseline<" in text and "wall time (minutes)" in text
    plot_learning_curves(paths[2:], tmp_path / "no_sdr.svg")
    assert "no validation SDR recorded" in (tmp_path / "no_sdr.svg").read_text()
    # one name per file, each once
    assert main(["plots", "learning-curves", *map(str, paths), "--names", "a", "b", "--out",
                 str(tmp_path / "x.svg")]) == 1
    assert capsys.readouterr().err.strip() == "error: --names: 2 name(s) for 3 metrics file(s)"
    assert main(["plots", "learning-curves", *map(str, paths[:2]), "--names", "a", "a", "--out",
                 str(tmp_path / "x.svg")]) == 1
    assert capsys.readouterr().err.strip() == "error: --names: a given twice (name each experiment once)"
    assert not (tmp_path / "x.svg").exists()
