"""The report's score tables and figures (musicsep.report.scores, `musicsep
plots scores`) on museval-like frame scores."""

from __future__ import annotations

import math
import re

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
    """museval-like frame scores: 4 systems (the mixture one), 3 tracks, 5
    targets, 4 metrics, 5 frames; one NaN frame, and one track whose vocals
    are all NaN."""
    rng = np.random.default_rng(seed)
    rows = []
    for system, base in [("baseline", 3.0), ("dpcl", 1.0), ("oracle_irm1", 10.0), ("oracle_mix", -3.0)]:
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
    assert system_order(["oracle_irm1", "oracle_mix", "baseline", "IRM1", "TAK1", "MIX"]) == \
        ["TAK1", "baseline", "MIX", "oracle_mix", "IRM1", "oracle_irm1"]      # the mixture before the oracles


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
    assert "<td>oracle_irm1</td>" in page and "<code>oracle_mix</code>" in page        # named once, in the text
    assert "<td>mixture</td>" in page and "<h2>Share of the oracle's improvement</h2>" in page
    assert '<th style="text-align:right">vocals</th>' in page

    medians = pd.read_csv(out / "medians.csv")
    assert list(medians.columns) == ["system", "track", "target", "SDR", "SIR", "ISR", "SAR"]
    assert len(medians) == 4 * 3 * 5
    b_vocals = medians[(medians["track"] == "B - Two") & (medians["target"] == "vocals")]
    assert b_vocals["SDR"].isna().all()
    # the median over tracks of the per-track medians is the summary's number
    expected = median_scores(table).xs("SDR", level="metric")
    got = track_medians(table).groupby(["system", "target"])["SDR"].median()
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)

    for name in ("box.svg", "heat.svg"):
        text = (out / name).read_text()
        assert_svg(out / name)
        for word in ["baseline", "oracle_irm1", "accompaniment", ">mixture<"]:
            assert word in text, (name, word)
        assert "oracle_mix" not in text, name                         # the mixture by its readable name
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



def plot_scores_of(tmp_path, scores: pd.DataFrame, **outputs: str) -> dict:
    """`musicsep plots scores` on ``scores`` (and its summary.md): each output
    option (table, medians, box, heatmap) to the file named; returns the paths."""
    scores.to_csv(tmp_path / "scores.csv", index=False, na_rep="NaN")
    (tmp_path / "summary.md").write_text(summary_markdown(scores))
    paths = {name: tmp_path / "plots" / file for name, file in outputs.items()}
    args = [arg for name, path in paths.items() for arg in (f"--{name}", str(path))]
    assert main(["plots", "scores", str(tmp_path / "scores.csv"), "--summary", str(tmp_path / "summary.md"),
                 *args]) == 0
    return {"summary": tmp_path / "summary.md", **paths}


def test_numbers_that_round_to_zero_are_written_0(tmp_path):
    """No ``-0.00`` in the summary tables (summary.md and its page in the
    report), the per-track medians or the heat map's cells."""
    from musicsep.report.common import fixed

    assert [fixed(v) for v in (-0.004, -1e-12, 0.0, -0.0, -0.006, 1.234, math.nan)] == \
        ["0.00", "0.00", "0.00", "0.00", "-0.01", "1.23", "nan"]
    assert fixed(-0.04, 1) == "0.0" and fixed(-12.06, 1) == "-12.1"
    table = score_table()
    table.loc[table["system"] == "dpcl", "score"] = -0.00001         # every median of dpcl rounds to 0
    paths = plot_scores_of(tmp_path, table, table="summary.html", medians="medians.csv", heatmap="heat.svg")
    summary, page = paths["summary"].read_text(), paths["table"].read_text()
    assert "| dpcl | 3 | 0.00 | 0.00 |" in summary and "<td>dpcl</td><td style=\"text-align:right\">3</td><td style=\"text-align:right\">0.00</td>" in page
    assert "-0.00" not in summary and "-0.00" not in page
    medians = paths["medians"].read_text()
    assert "dpcl,A - One,bass,0.0000,0.0000" in medians and "-0.0000" not in medians
    cells = re.findall(r"font-size: 8px[^>]*>([^<]*)</text>", paths["heatmap"].read_text())   # the cells' values
    assert cells.count("0.0") == 3 * 5 and "-0.0" not in cells


@pytest.mark.parametrize("systems, tracks", [(7, 3), (7, 50), (30, 5)])
def test_the_sdr_figures_stay_within_10_inches(tmp_path, systems, tracks):
    """The report shows a figure at its natural size and shrinks a wider one,
    text and all: the box plots and heat map wrap their panels onto rows so
    that they stay within 10 inches (``MAX_WIDTH``, 960 CSS pixels) for the
    workflow's 7 systems and for 30, and their text keeps 8 points or more."""
    rng = np.random.default_rng(1)
    names = [f"system{k}" for k in range(systems - 4)] + ["oracle_irm1", "oracle_irm2", "oracle_ibm", "oracle_mwf"]
    rows = [(s, f"Artist {t} - A title of a length like MUSDB's {t}", target, "SDR", 0, rng.normal(4, 3))
            for s in names for t in range(tracks) for target in TARGETS]
    table = pd.DataFrame(rows, columns=["system", "track", "target", "metric", "frame", "score"])
    paths = plot_scores_of(tmp_path, table, box="box.svg", heatmap="heat.svg")
    for name in ("box", "heatmap"):
        root = assert_svg(paths[name])
        width = float(root.get("width").removesuffix("pt")) / 72
        assert 4 < width <= 10.25, (name, width)            # bbox_inches="tight" adds a margin to the 10
        sizes = [float(s) for s in re.findall(r"font-size: ([\d.]+)px", paths[name].read_text())]
        assert sizes and min(sizes) >= 8, (name, sorted(set(sizes)))
