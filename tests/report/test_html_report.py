"""Snakemake's HTML report of a tiny toy run of the workflow (rules/report.smk)."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from conftest import snakemake
from reportdata import PNG

pytestmark = pytest.mark.usefixtures("one_thread")


def report_variable(page: str, name: str):
    match = re.search(rf"^\s*var {name} = ([{{\"].*);\s*$", page, re.M)
    assert match, name
    return json.loads(match.group(1))


def decoded(entry: dict) -> bytes:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


@pytest.mark.slow
@pytest.mark.workflow
def test_html_report_of_a_tiny_toy_run(tmp_path):
    work = tmp_path / "run"
    config = ["dataset={toy: {train_tracks: 3, test_tracks: 1, duration: 3.0, seed: 5}}",
              "loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
              "training={epochs: 2, batch_size: 4, workers: 0}"]
    proc = snakemake(work, "plots", config=config)
    assert proc.returncode == 0, proc.stderr
    report = work / "report.html"
    proc = snakemake(work, "--report", str(report), "plots", config=config)
    assert proc.returncode == 0, proc.stderr
    page = report.read_text()
    results = report_variable(page, "results")
    categories = report_variable(page, "categories")
    assert sorted(categories) == ["1. Evaluation", "2. Training", "3. Masks", "4. Embeddings", "5. Audio examples"]
    (slug,) = [p.stem for p in (work / "results" / "scores" / "baseline").glob("*.json")]
    plots = "results/plots"
    expected = ([f"{plots}/summary.html", "results/summary.md", f"{plots}/scores/track_medians.csv",
                 f"{plots}/scores/sdr_boxplots.svg", f"{plots}/scores/sdr_heatmap.svg"]
                + [f"{plots}/{kind}/{exp}.{ext}" for kind, ext in [("training", "svg"), ("masks", "png")]
                   for exp in ["baseline", "centroids", "dpcl"]]
                + [f"{plots}/embeddings/{exp}.png" for exp in ["centroids", "dpcl"]]
                + [f"{plots}/audio/{slug}/{system}.html" for system in
                   ["reference", "baseline", "centroids", "dpcl", "oracle_irm1", "oracle_irm2", "oracle_ibm",
                    "oracle_mwf"]])
    assert sorted(results) == sorted(expected)
    # the summary table, inside the page that the report embeds
    assert "<td>oracle_irm1</td>" in decoded(results[f"{plots}/summary.html"]).decode()
    assert "| oracle_irm1 |" in decoded(results["results/summary.md"]).decode()
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
