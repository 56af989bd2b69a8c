"""The report's figures, tables and audio pages (musicsep.report, `musicsep
plots`) on small synthetic inputs, and Snakemake's HTML report of a tiny toy
run of the workflow."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from conftest import ROOT

from musicsep import SOURCES, STREAMS, TARGETS, MusicsepError
from musicsep.cli import main
from musicsep.evaluate.aggregate import median_scores, summary_markdown
from musicsep.models.registry import build_model
from musicsep.report.common import system_order
from musicsep.report.embeddings import embedding_points, pca_2d, plot_embeddings
from musicsep.report.excerpt import choose_start, read_excerpt
from musicsep.report.markdown import markdown_html
from musicsep.report.masks import plot_masks
from musicsep.report.scores import track_medians
from musicsep.report.training import read_metrics

SR = 16000
TINY = dict(hidden=8, layers=1, n_mels=32, n_fft=512, hop=128, sample_rate=SR)
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_svg(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root


# --------------------------------------------------------------------------- evaluation


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


def test_markdown_html():
    page = markdown_html("# Title\n\nSome `code` & <b>text</b>\nwrapped.\n\n- one\n- two\n\n"
                         "| a | b |\n|---|---:|\n| x | 1.00 |\n")
    assert "<h1>Title</h1>" in page
    assert "<p>Some <code>code</code> &amp; &lt;b&gt;text&lt;/b&gt; wrapped.</p>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert '<tr><td>x</td><td style="text-align:right">1.00</td></tr>' in page


# --------------------------------------------------------------------------- training


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


# --------------------------------------------------------------------------- excerpts, masks, embeddings


def sources_with_a_loud_middle(seconds: float = 6.0, rate: int = SR, seed: int = 0) -> np.ndarray:
    """Four stereo sources ``(4, 2, samples)``: tones and noise, all four
    sounding together only in [3, 5) s (bass and vocals are silent before)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    gate = ((t >= 3) & (t < 5)).astype(np.float32)
    drums = 0.3 * rng.standard_normal(len(t)) * np.exp(-30 * ((4 * t) % 1))
    bass = 0.5 * np.sin(2 * np.pi * 70 * t) * gate
    other = 0.2 * np.sin(2 * np.pi * 440 * t) * (t < 5)
    vocals = sum(0.2 / h * np.sin(2 * np.pi * 220 * h * t) for h in range(1, 6)) * gate
    mono = np.stack([drums, bass, other, vocals])
    return np.stack([mono * 0.5, mono * 0.4], axis=1).astype(np.float32)


def write_shard(path: Path, sources: np.ndarray, rate: int = SR, name: str = "Artist - Title") -> Path:
    with h5py.File(path, "w") as h5:
        h5["audio"] = np.concatenate([sources.sum(0, keepdims=True), sources]).astype(np.float32)
        h5.attrs.update({"sample_rate": rate, "name": name, "slug": "artist_title", "streams": list(STREAMS)})
    return path


def test_the_excerpt_is_where_all_sources_play(tmp_path):
    shard = write_shard(tmp_path / "t.h5", sources_with_a_loud_middle())
    with h5py.File(shard) as h5:
        assert choose_start(h5["audio"], SR, 2 * SR) == 3 * SR
        assert choose_start(h5["audio"], SR, 10 * SR) == 0
    excerpt = read_excerpt(shard, 2.0)
    assert excerpt.start == 3 * SR and excerpt.audio.shape == (5, 2, 2 * SR) and excerpt.name == "Artist - Title"
    np.testing.assert_array_equal(excerpt.sources.sum(0), excerpt.mixture)
    assert excerpt.describe() == "Artist - Title, 3.0–5.0 s"
    assert read_excerpt(shard, 2.0, start=5.5).start == 4 * SR          # kept inside the track
    assert read_excerpt(shard, 60.0).audio.shape[-1] == 6 * SR          # shorter track: all of it
    with pytest.raises(MusicsepError, match="not a readable shard"):
        read_excerpt(tmp_path / "missing.h5")


def test_pca_2d():
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((500, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(rng.standard_normal((6, 2)))[0].T                # (2, 6), orthonormal rows
    points = plane @ basis + 0.01 * rng.standard_normal((500, 6)) + 5.0
    projected, components, mean, ratio = pca_2d(points)
    assert projected.shape == (500, 2) and components.shape == (2, 6)
    np.testing.assert_allclose(np.abs(components @ basis.T), np.eye(2), atol=1e-2)
    assert ratio[0] > 0.85 and ratio.sum() > 0.999
    np.testing.assert_allclose(projected @ components + mean, points, atol=0.05)
    again = pca_2d(points[::-1])[1]
    np.testing.assert_allclose(again, components, atol=1e-9)                # signs fixed
    with pytest.raises(MusicsepError):
        pca_2d(points[:1])


def save_tiny(path: Path, name: str, **kw) -> Path:
    torch.manual_seed(0)
    model = build_model(name, **TINY, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict(),
                "spec": {"name": path.parent.name}}, path)
    return path


@pytest.fixture(scope="module")
def shard_and_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shard = write_shard(root / "track.h5", sources_with_a_loud_middle())
    models = {"base": save_tiny(root / "base" / "model.pt", "blstm_mask"),
              "cc": save_tiny(root / "cc" / "model.pt", "conditional_centroids", dim=5),
              "dc": save_tiny(root / "dc" / "model.pt", "deep_clustering", dim=6)}
    return shard, models


def test_masks_figure(tmp_path, shard_and_models):
    shard, models = shard_and_models
    for exp, path in models.items():
        out = tmp_path / f"{exp}.png"
        assert main(["plots", "masks", "--model", str(path), "--shard", str(shard), "--seconds", "2",
                     "--out", str(out)]) == 0
        assert out.read_bytes().startswith(PNG)
    excerpt = plot_masks(models["base"], shard, tmp_path / "x.svg", seconds=1.5, start=0.5, name="named")
    assert excerpt.start == SR // 2 and "named: masks on Artist - Title, 0.5–2.0 s" in (tmp_path / "x.svg").read_text()


def test_embedding_points_and_figure(tmp_path, shard_and_models):
    from musicsep.models.checkpoint import load_model

    shard, models = shard_and_models
    excerpt = read_excerpt(shard, 2.0)
    frames = 1 + 2 * SR // TINY["hop"]
    for exp, dim in [("cc", 5), ("dc", 6)]:
        model, _ = load_model(models[exp])
        found = embedding_points(model, excerpt)
        n = len(found["embeddings"])
        assert found["embeddings"].shape == (n, dim) and 0 < n < frames * TINY["n_mels"]   # silent bins left out
        assert found["true"].shape == found["assigned"].shape == (n,)
        assert set(np.unique(found["true"])) <= set(range(len(SOURCES)))
        assert found["centroids"].shape == (len(SOURCES), dim)
        out = tmp_path / f"{exp}.png"
        assert main(["plots", "embeddings", "--model", str(models[exp]), "--shard", str(shard),
                     "--seconds", "2", "--points", "500", "--out", str(out)]) == 0
        assert out.read_bytes().startswith(PNG)
        info = plot_embeddings(models[exp], shard, tmp_path / "e.png", seconds=2.0, points=100)
        assert info["points"] == n and info["shown"] == 100 and 0 <= info["agreement"] <= 1
    with pytest.raises(MusicsepError, match="has no embeddings"):
        plot_embeddings(models["base"], shard, tmp_path / "b.png", seconds=2.0)


# --------------------------------------------------------------------------- audio


def test_audio_pages_and_clips(tmp_path, shard_and_models):
    shard, _ = shard_and_models
    sources = sources_with_a_loud_middle()
    estimates = tmp_path / "estimates" / "mysystem" / "artist_title"
    estimates.mkdir(parents=True)
    for k, target in enumerate(["drums", "bass", "other", "vocals"]):
        soundfile.write(estimates / f"{target}.wav", 0.5 * sources[k].T, SR, subtype="FLOAT")
    soundfile.write(estimates / "accompaniment.wav", 0.5 * sources[:3].sum(0).T, SR, subtype="FLOAT")

    ref_dir, sys_dir = tmp_path / "audio" / "reference", tmp_path / "audio" / "mysystem"
    assert main(["plots", "audio", "--shard", str(shard), "--out-dir", str(ref_dir),
                 "--page", str(tmp_path / "audio" / "reference.html"), "--seconds", "2"]) == 0
    assert main(["plots", "audio", "--shard", str(shard), "--estimates", str(estimates), "--out-dir", str(sys_dir),
                 "--page", str(tmp_path / "audio" / "mysystem.html"), "--seconds", "2"]) == 0
    assert sorted(p.name for p in ref_dir.iterdir()) == sorted(f"{t}.wav" for t in ["mixture", *TARGETS])
    assert sorted(p.name for p in sys_dir.iterdir()) == sorted(f"{t}.wav" for t in TARGETS)
    excerpt = read_excerpt(shard, 2.0)
    mixture, rate = soundfile.read(ref_dir / "mixture.wav", dtype="float32", always_2d=True)
    assert rate == SR and mixture.shape == (2 * SR, 2)
    np.testing.assert_allclose(mixture.T, excerpt.mixture, atol=1 / 2 ** 15)
    vocals, _ = soundfile.read(sys_dir / "vocals.wav", dtype="float32", always_2d=True)
    np.testing.assert_allclose(vocals.T, 0.5 * excerpt.sources[SOURCES.index("vocals")], atol=1 / 2 ** 15)

    for name, heading in [("reference", "Reference: the mixture and the true sources"),
                          ("mysystem", "mysystem: estimates")]:
        page = (tmp_path / "audio" / f"{name}.html").read_text()
        assert f"<h2>{heading}</h2>" in page and "Artist - Title, 3.0–5.0 s" in page
        players = re.findall(r'<audio controls preload="none" src="data:audio/(mpeg|wav);base64,([^"]+)"', page)
        assert len(players) == 6                                           # the mixture and five targets
        data = base64.b64decode(players[0][1])
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        assert rate == SR and abs(len(audio) - 2 * SR) < SR // 10

    soundfile.write(estimates / "vocals.wav", sources[3].T, 8000)
    assert main(["plots", "audio", "--shard", str(shard), "--estimates", str(estimates), "--out-dir",
                 str(tmp_path / "x"), "--page", str(tmp_path / "x.html")]) == 1


# --------------------------------------------------------------------------- the workflow's HTML report


def report_snakefile(tmp_path: Path) -> Path:
    """The workflow's Snakefile when it includes rules/report.smk; until then
    a copy that does, beside links to the checkout's folders."""
    text = (ROOT / "Snakefile").read_text()
    if re.search(r'^include:\s*"rules/report\.smk"', text, re.M):
        return ROOT / "Snakefile"
    folder = tmp_path / "workflow"
    folder.mkdir()
    for name in ["config", "rules", "src", "envs", "report"]:
        (folder / name).symlink_to(ROOT / name)
    text = text.replace('include: "rules/evaluate.smk"\n', 'include: "rules/evaluate.smk"\ninclude: "rules/report.smk"\n')
    assert "rules/report.smk" in text
    (folder / "Snakefile").write_text(text)
    return folder / "Snakefile"


def snakemake(snakefile: Path, workdir: Path, *args, config=(), timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
           "--configfile", str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "toy.yaml"),
           "--cores", "2", *args]
    if config:
        cmd += ["--config", *config]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def report_variable(page: str, name: str):
    match = re.search(rf"^\s*var {name} = ([{{\"].*);\s*$", page, re.M)
    assert match, name
    return json.loads(match.group(1))


def decoded(entry: dict) -> bytes:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


@pytest.mark.workflow
def test_html_report_of_a_tiny_toy_run(tmp_path, env_path):
    snakefile = report_snakefile(tmp_path)
    work = tmp_path / "run"
    config = ["dataset={toy: {train_tracks: 3, test_tracks: 1, duration: 3.0, seed: 5}}",
              "loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
              "training={epochs: 2, batch_size: 4, workers: 0}"]
    proc = snakemake(snakefile, work, "plots", config=config)
    assert proc.returncode == 0, proc.stderr
    report = work / "report.html"
    proc = snakemake(snakefile, work, "--report", str(report), "plots", config=config)
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
