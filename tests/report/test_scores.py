"""The report's score tables and figures (musicsep.report.scores, `musicsep
plots scores`) on museval-like frame scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from reportdata import assert_svg

from musicsep import TARGETS
from musicsep.cli import main
from musicsep.evaluate.aggregate import median_scores, summary_markdown
from musicsep.report.common import system_order
from musicsep.report.scores import track_medians

pytestmark = pytest.mark.usefixtures("one_thread")


def score_table(seed: int = 0) -> pd.DataFrame:
    """museval-like frame scores: 3 systems, 3 tracks, 5 targets, 4 metrics,
    5 frames; one NaN frame, and one track whose vocals are all NaN."""
    rng = np.random.default_rng(seed)
    rows = []
    for system, base in [("baseline", 3.0), ("dpcl", 1.0), ("oracle_irm1", 10.0)]:
        for track in ["A - One", "B - Two", "C <Three>"]:
            for target in TARGETS:
                for metric in ["SDR", "SIR", "ISR", "SAR"]:
                    for frame in range(5):
                        score = base + rng.normal()
                        if (track == "B - Two" and target == "vocals") or (frame == 2 and system == "dpcl"):
                            score = math.nan
                        rows.append((system, track, target, metric, frame, score))
    return pd.DataFrame(rows, columns=["system", "track", "target", "metric", "frame", "score"])


def test_system_order_puts_oracles_last():
    assert system_order(["oracle_mwf", "dpcl", "oracle_irm1", "baseline", "dpcl"]) == \
        ["baseline", "dpcl", "oracle_irm1", "oracle_mwf"]


def test_scores_tables_and_figures(tmp_path):
    table = score_table()
    table.to_csv(tmp_path / "scores.csv", index=False, na_rep="NaN")
    (tmp_path / "summary.md").write_text(summary_markdown(table))
    out = tmp_path / "plots"
    assert main(["plots", "scores", str(tmp_path / "scores.csv"), "--summary", str(tmp_path / "summary.md"),
                 "--table", str(out / "summary.html"), "--medians", str(out / "medians.csv"),
                 "--box", str(out / "box.svg"), "--heatmap", str(out / "heat.svg")]) == 0

    page = (out / "summary.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>SDR</h2>" in page
    assert "<td>oracle_irm1</td>" in page and "<code>oracle_irm1</code>" in page
    assert '<th style="text-align:right">vocals</th>' in page

    medians = pd.read_csv(out / "medians.csv")
    assert list(medians.columns) == ["system", "track", "target", "SDR", "SIR", "ISR", "SAR"]
    assert len(medians) == 3 * 3 * 5
    b_vocals = medians[(medians["track"] == "B - Two") & (medians["target"] == "vocals")]
    assert b_vocals["SDR"].isna().all()
    # the median over tracks of the per-track medians is the summary's number
    expected = median_scores(table).xs("SDR", level="metric")
    got = track_medians(table).groupby(["system", "target"])["SDR"].median()
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)

    for name in ("box.svg", "heat.svg"):
        text = (out / name).read_text()
        assert_svg(out / name)
        for word in ["baseline", "oracle_irm1", "accompaniment"]:
            assert word in text, (name, word)
    assert "C &lt;Three&gt;" in (out / "heat.svg").read_text()     # track names, escaped


def test_scores_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["plots", "scores", str(tmp_path / "bad.csv"), "--box", str(tmp_path / "b.svg")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path}/bad.csv: not a score table (no column(s) metric, score, system, target, track)"
    score_table().to_csv(tmp_path / "s.csv", index=False)
    assert main(["plots", "scores", str(tmp_path / "s.csv"), "--table", str(tmp_path / "t.html")]) == 1
    assert "--summary" in capsys.readouterr().err
    assert not (tmp_path / "b.svg").exists() and not (tmp_path / "t.html").exists()
