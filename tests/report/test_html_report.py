"""Snakemake's HTML report of a tiny toy run of the workflow (rules/report.smk),
its contents and how it looks in a browser (headless Chromium, where installed:
Debian's `chromium` package)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import snakemake
from PIL import Image
from reportdata import PNG

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow, pytest.mark.workflow]


def report_variable(page: str, name: str):
    match = re.search(rf"^\s*var {name} = ([{{\"].*);\s*$", page, re.M)
    assert match, name
    return json.loads(match.group(1))


def decoded(entry: dict) -> bytes:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """(working directory, report.html) of a tiny toy run's figures and report."""
    work = tmp_path_factory.mktemp("report") / "run"
    config = ["dataset={toy: {train_tracks: 3, test_tracks: 1, duration: 3.0, seed: 5}}",
              "loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
              "training={epochs: 2, batch_size: 4, workers: 0}"]
    proc = snakemake(work, "plots", config=config)
    assert proc.returncode == 0, proc.stderr
    report = work / "report.html"
    proc = snakemake(work, "--report", str(report), "plots", config=config)
    assert proc.returncode == 0, proc.stderr
    return work, report


def test_html_report_of_a_tiny_toy_run(tiny_report):
    work, report = tiny_report
    page = report.read_text()
    results = report_variable(page, "results")
    categories = report_variable(page, "categories")
    assert sorted(categories) == ["1. Evaluation", "2. Training", "3. Masks", "4. Embeddings", "5. Audio examples"]
    (slug,) = [p.stem for p in (work / "results" / "scores" / "baseline").glob("*.json")]
    plots = "results/plots"
    expected = ([f"{plots}/summary.html", "results/summary.md", f"{plots}/scores/track_medians.csv",
                 f"{plots}/scores/sdr_boxplots.svg", f"{plots}/scores/sdr_heatmap.svg", f"{plots}/learning_curves.svg"]
                + [f"{plots}/{kind}/{exp}.{ext}" for kind, ext in [("training", "svg"), ("masks", "png")]
                   for exp in ["baseline", "centroids", "dpcl"]]
                + [f"{plots}/embeddings/{exp}.png" for exp in ["centroids", "dpcl"]]
                + [f"{plots}/audio/{slug}/{system}.html" for system in
                   ["reference", "baseline", "centroids", "dpcl", "oracle_mix", "oracle_irm1", "oracle_irm2",
                    "oracle_ibm", "oracle_mwf"]])
    assert sorted(results) == sorted(expected)
    # the summary table, inside the page that the report embeds
    assert "<td>oracle_irm1</td>" in decoded(results[f"{plots}/summary.html"]).decode()
    assert "| oracle_irm1 |" in decoded(results["results/summary.md"]).decode()
    assert "## Share of the oracle's improvement" in decoded(results["results/summary.md"]).decode()
    # every experiment's learning curves, on one page, from the real trainings' metrics
    curves = results[f"{plots}/learning_curves.svg"]
    assert "Learning curves of every experiment" in curves["caption"]
    assert "baseline, centroids, dpcl" in curves["caption"]
    assert all(f">{exp}<" in decoded(curves).decode() for exp in ["baseline", "centroids", "dpcl"])
    # captions, rendered with the job's wildcards and the config
    assert "Training curves of experiment <strong>dpcl</strong>" in results[f"{plots}/training/dpcl.svg"]["caption"]
    assert "deep_clustering" in results[f"{plots}/embeddings/dpcl.png"]["caption"]
    assert results[f"{plots}/masks/centroids.png"]["labels"] == {"experiment": "centroids"}
    assert decoded(results[f"{plots}/masks/centroids.png"]).startswith(PNG)
    assert "musicsep: music source separation on MUSDB18" in report_variable(page, "workflow_desc")
    # audio players: small enough for a data URL that Chrome shows in its frame
    for system in ["reference", "oracle_mwf"]:
        entry = results[f"{plots}/audio/{slug}/{system}.html"]
        assert entry["mime_type"] == "text/html" and len(entry["data_uri"]) < 2_000_000
        assert decoded(entry).decode().count("<audio controls") == 6
    assert (work / "results" / "plots" / "audio" / slug / "oracle_mwf" / "vocals.wav").exists()
    assert os.path.getsize(report) < 40_000_000


# --------------------------------------------------------------------------- in a browser

CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
WINDOW = (1280, 900)
"""A laptop's browser window, in CSS pixels."""

# After the page has loaded, the report app shows the figures one after the
# other as their "view" buttons do (ButtonViewManager.handleImg in Snakemake's
# report), and writes each one's natural and displayed size into the page.
SHOW = """<script>
window.addEventListener("load", () => {
  const paths = %s, sizes = {};
  const show = (k) => {
    if (k === paths.length) {
      const out = document.createElement("pre");
      out.id = "measured";
      out.textContent = JSON.stringify(sizes);
      document.body.appendChild(out);
      return;
    }
    const uri = results[paths[k]].data_uri;
    app.setView({content: "img", contentPath: uri, resultPath: paths[k]});
    setTimeout(() => {
      const img = Array.from(document.querySelectorAll("img")).find(i => i.src === uri);
      const box = img ? img.getBoundingClientRect() : {};
      sizes[paths[k]] = {natural: img ? img.naturalWidth : null, shown: box.width, left: box.left,
                         right: box.right, window: document.documentElement.clientWidth};
      show(k + 1);
    }, 500);
  };
  setTimeout(() => show(0), 1000);
});
</script>"""


def showing(page: str, paths: list[str], out: Path) -> Path:
    """``out``: the report ``page`` that shows the figures ``paths`` (:data:`SHOW`)."""
    end = page.rindex("</body>")
    out.write_text(page[:end] + SHOW % json.dumps(paths) + page[end:])
    return out


def in_chromium(page, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` in a :data:`WINDOW`, with time for the
    page's scripts (virtual time: it runs as fast as it can)."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=30000", *args,
                           page.as_uri()], capture_output=True, text=True, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the report with (Debian: apt-get install chromium)")
def test_the_report_in_a_browser(tiny_report, tmp_path):
    """Each figure as the report shows it, in a 1280-pixel-wide window:
    drawn (the screenshot is not blank), and at its natural size, whole,
    beside the menu: a figure wider than the pane would be shrunk, its text
    with it (the SDR figures were 17 and 19 inches wide, 1650 and 1850
    pixels), or cut off."""
    _, report = tiny_report
    page = report.read_text()
    results = report_variable(page, "results")
    figures = [p for p in results if p.endswith((".svg", ".png"))]
    scores = ["results/plots/scores/sdr_boxplots.svg", "results/plots/scores/sdr_heatmap.svg"]
    assert set(scores) <= set(figures) and len(figures) == 11
    dom = in_chromium(showing(page, figures, tmp_path / "all.html"), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout)
    assert found, "the report did not show the figures"
    sizes = json.loads(found.group(1).replace("&quot;", '"'))
    assert sorted(sizes) == sorted(figures)
    for path, size in sizes.items():
        assert size["natural"], (path, size)
        assert size["natural"] <= 1000, (path, size)     # MAX_WIDTH: 10 inches (960 CSS pixels in an SVG)
        assert size["shown"] >= 0.98 * size["natural"], (path, size)  # not shrunk
        assert size["left"] >= 0 and size["right"] <= size["window"], (path, size)   # not cut off
    for path in scores:
        shot = tmp_path / f"{Path(path).stem}.png"
        proc = in_chromium(showing(page, [path], tmp_path / f"{Path(path).stem}.html"), f"--screenshot={shot}")
        assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
        pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
        assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
        figure = pixels[:, int(sizes[path]["left"]):int(sizes[path]["right"])]
        inked = (np.abs(figure - 255).sum(axis=2) > 60).mean()
        assert 0.02 < inked < 0.9, (path, inked)                   # drawn: neither blank nor a solid block
        assert len(np.unique(figure.reshape(-1, 3), axis=0)) > 50, path
