"""Aggregation over tracks and systems (musicsep.evaluate.aggregate) against
museval's own EvalStore, on score files written by museval's TrackStore and
in the published SiSEC 2018 form."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simplejson
from museval.aggregate import EvalStore, TrackStore, json2df

from musicsep import MusicsepError
from musicsep.cli import main
from musicsep.evaluate.aggregate import COLUMNS, MEDIAN_COLUMNS, aggregate, load_scores, median_scores
from musicsep.evaluate.track import METRICS


def write_scores(path, seed, targets=("vocals", "drums", "bass", "other", "accompaniment"), nframes=7,
                 nan=(), all_nan=()):
    """A museval JSON written by museval's TrackStore, random scores."""
    rng = np.random.default_rng(seed)
    store = TrackStore(track_name=path.stem, win=1.0, hop=1.0)
    for target in targets:
        values = {m: (rng.standard_normal(nframes) * 3 + 5) for m in ("SDR", "SIR", "ISR", "SAR")}
        for m in values:
            values[m][list(nan)] = np.nan
            if target in all_nan:
                values[m][:] = np.nan
        store.add_target(target, {m: v.tolist() for m, v in values.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(store.json)


def published_file(path, seed, nframes=6):
    """A file as the SiSEC 2018 submissions are written (key order, floats, NaN)."""
    rng = np.random.default_rng(seed)
    targets = []
    for target in ("vocals", "accompaniment", "drums", "bass", "other"):
        fr = []
        for i in range(nframes):
            metrics = {m: round(float(rng.standard_normal() * 2 + 9), 5) for m in ("SIR", "SAR", "SDR", "ISR")}
            if i == 0:
                metrics = {m: math.nan for m in metrics}
            fr.append({"duration": 1.0, "metrics": metrics, "time": float(i)})
        targets.append({"frames": fr, "name": target})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"targets": targets}))


@pytest.fixture()
def score_tree(tmp_path):
    root = tmp_path / "scores"
    for i, track in enumerate(["a_b", "c_d", "e_f", "g_h"]):
        write_scores(root / "unet" / f"{track}.json", seed=i, nan=[0, 3] if i == 1 else [])
        write_scores(root / "oracle_irm1" / f"{track}.json", seed=10 + i,
                     all_nan=("vocals",) if i == 2 else ())
    # museval's own layout: <method>/test/<track>.json
    for i, track in enumerate(["a_b", "c_d", "e_f"]):
        write_scores(tmp_path / "museval_out" / "test" / f"{track}.json", seed=20 + i, nframes=5)
    return tmp_path


def evalstore(folder: Path) -> pd.Series:
    store = EvalStore()
    for path in sorted(folder.rglob("*.json")):
        store.add_track(json2df(simplejson.loads(path.read_text(), allow_nan=True), path.stem))
    return store.agg_frames_tracks_scores()


def test_aggregate_equals_museval_evalstore(score_tree):
    tmp = score_tree
    table = aggregate([tmp / "scores", tmp / "museval_out"], tmp / "out" / "scores.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["system"]) == {"unet", "oracle_irm1", "museval_out"}
    assert table["score"].isna().sum() > 0
    ours = median_scores(table)
    for exp, folder in [("unet", tmp / "scores" / "unet"), ("oracle_irm1", tmp / "scores" / "oracle_irm1"),
                        ("museval_out", tmp / "museval_out")]:
        expected = evalstore(folder)
        got = ours.loc[exp]
        assert got.index.equals(expected.index)
        np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())  # exactly, NaN == NaN
    # the CSV holds the same frames
    back = pd.read_csv(tmp / "out" / "scores.csv")
    assert list(back.columns) == COLUMNS and len(back) == len(table)
    pd.testing.assert_series_equal(median_scores(back), ours)
    # one file given directly: its folder names the experiment
    single = load_scores([tmp / "scores" / "unet" / "a_b.json"])
    assert set(single["system"]) == {"unet"} and set(single["track"]) == {"a_b"}
    assert set(single["frame"]) == set(range(7))
    assert set(load_scores([tmp / "museval_out"], system_from="root")["system"]) == {"museval_out"}
    assert set(load_scores([tmp / "scores" / "unet"], system_from=lambda p: "x")["system"]) == {"x"}


def test_summary_with_published_and_irm1(score_tree):
    tmp = score_tree
    for i, track in enumerate(["AM Contra - Heart Peripheral", "BKS - Too Much"]):
        published_file(tmp / "sisec" / "submissions" / "IRM1" / "test" / f"{track}.json", seed=30 + i)
        published_file(tmp / "sisec" / "submissions" / "TAK1" / "test" / f"{track}.json", seed=40 + i)
    table = aggregate([tmp / "scores"], tmp / "scores.csv", tmp / "summary.md",
                      published=[tmp / "sisec" / "submissions"])
    assert set(table["system"]) == {"unet", "oracle_irm1", "IRM1", "TAK1"}
    assert set(table.loc[table["system"] == "TAK1", "track"]) == {"AM Contra - Heart Peripheral",
                                                                     "BKS - Too Much"}
    ours = median_scores(table)
    np.testing.assert_array_equal(ours.loc["TAK1"].to_numpy(),
                                  evalstore(tmp / "sisec" / "submissions" / "TAK1").to_numpy())
    summary = (tmp / "summary.md").read_text()
    for heading in ("## SDR", "## SIR", "## SAR", "## ISR", "## SDR as a fraction of oracle_irm1's",
                    "## Silent frames"):
        assert heading in summary
    assert "| TAK1 (published) | 2 |" in summary
    fraction = ours[("unet", "vocals", "SDR")] / ours[("oracle_irm1", "vocals", "SDR")]
    row = next(line for line in summary.splitlines()[summary.splitlines().index(
        "## SDR as a fraction of oracle_irm1's"):] if line.startswith("| unet |"))
    assert row.split("|")[2].strip() == f"{fraction:.2f}"
    assert "| oracle_irm1 | " in summary and "e_f (vocals)" in summary
    # names clash between ours and the published ones
    with pytest.raises(MusicsepError, match="TAK1"):
        aggregate([tmp / "sisec" / "submissions" / "TAK1"], tmp / "x.csv",
                  published=[tmp / "sisec" / "submissions"])


def nanmedian(values) -> float:
    values = np.asarray(values, dtype=float)
    return math.nan if np.isnan(values).all() else float(np.nanmedian(values))


def test_medians_csv_is_the_summary_at_full_precision(score_tree):
    tmp = score_tree
    write_scores(tmp / "scores" / "mute" / "a_b.json", seed=50, all_nan=("vocals",))
    assert main(["aggregate", str(tmp / "scores"), "--out", str(tmp / "scores.csv"),           # as the rule calls it
                 "--summary", str(tmp / "summary.md"), "--medians", str(tmp / "medians.csv")]) == 0
    with open(tmp / "medians.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == MEDIAN_COLUMNS
    got = {(r["system"], r["target"], r["metric"]): float(r["median"]) for r in rows}    # float(): exact parse
    # independently, from the JSON frames: NaN-skipping median over frames, then over tracks
    per_track = {}
    for path in sorted((tmp / "scores").rglob("*.json")):
        for target in json.loads(path.read_text())["targets"]:
            for metric in METRICS:
                frames = [math.nan if f["metrics"][metric] is None else f["metrics"][metric] for f in target["frames"]]
                per_track.setdefault((path.parent.name, target["name"], metric), []).append(nanmedian(frames))
    expected = {key: nanmedian(values) for key, values in per_track.items()}
    assert got.keys() == expected.keys()
    keys = sorted(expected)
    np.testing.assert_array_equal([got[k] for k in keys], [expected[k] for k in keys])    # exactly, NaN == NaN
    assert not math.isnan(got[("oracle_irm1", "vocals", "SDR")])       # one track all NaN: left out
    assert math.isnan(got[("mute", "vocals", "SDR")])                      # every track: NaN, written as NaN
    assert any(v != round(v, 2) for v in got.values() if not math.isnan(v))   # more than the summary's digits
    # the summary's cells are these numbers rounded
    lines = (tmp / "summary.md").read_text().splitlines()
    for metric in METRICS:
        start = lines.index(f"## {metric}") + 2
        targets = [c.strip() for c in lines[start].strip("|").split("|")][2:]
        for line in lines[start + 2:lines.index("", start)]:
            system, _, *cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells == [format(got[(system, t, metric)], ".2f") if not math.isnan(got[(system, t, metric)])
                             else "–" for t in targets], (metric, system)


def test_aggregate_errors(tmp_path):
    with pytest.raises(MusicsepError, match="no such file or folder"):
        aggregate([tmp_path / "missing"], tmp_path / "x.csv")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "t.json").write_text("{\"scores\": []}")
    with pytest.raises(MusicsepError, match="t.json: not a museval score file"):
        aggregate([tmp_path / "bad"], tmp_path / "x.csv")
    write_scores(tmp_path / "dup" / "e" / "test" / "t.json", 1)
    write_scores(tmp_path / "dup" / "e" / "train" / "t.json", 2)
    with pytest.raises(MusicsepError, match="track 't' of system 'e' is also scored"):
        aggregate([tmp_path / "dup"], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
