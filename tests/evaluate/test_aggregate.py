"""Aggregation over tracks and systems (musicsep.evaluate.aggregate) against
museval's own EvalStore, on score files written by museval's TrackStore and
in the published SiSEC 2018 forms (JSON folders, MethodStore's score table,
built-in medians); the share of the oracle's improvement."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simplejson
from museval.aggregate import EvalStore, MethodStore, TrackStore, json2df

from musicsep import SOURCES, MusicsepError
from musicsep.cli import main
from musicsep.evaluate.aggregate import COLUMNS, MEDIAN_COLUMNS, aggregate, load_scores, median_scores
from musicsep.evaluate.published import BUILTIN, read_sisec_table
from musicsep.evaluate.track import METRICS


def write_scores(path, seed, targets=("vocals", "drums", "bass", "other", "accompaniment"), nframes=7,
                 nan=(), all_nan=(), mean=5.0):
    """A museval JSON written by museval's TrackStore, random scores."""
    rng = np.random.default_rng(seed)
    store = TrackStore(track_name=path.stem, win=1.0, hop=1.0)
    for target in targets:
        values = {m: (rng.standard_normal(nframes) * 3 + mean) for m in ("SDR", "SIR", "ISR", "SAR")}
        for m in values:
            values[m][list(nan)] = np.nan
            if target in all_nan:
                values[m][:] = np.nan
        store.add_target(target, {m: v.tolist() for m, v in values.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(store.json)


def published_file(path, seed, nframes=6, mean=9.0):
    """A file as the SiSEC 2018 submissions are written (key order, floats, NaN)."""
    rng = np.random.default_rng(seed)
    targets = []
    for target in ("vocals", "accompaniment", "drums", "bass", "other"):
        fr = []
        for i in range(nframes):
            metrics = {m: round(float(rng.standard_normal() * 2 + mean), 5) for m in ("SIR", "SAR", "SDR", "ISR")}
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


def sdr_medians(folder: Path) -> dict[str, float]:
    """target -> median SDR of a folder of museval JSON files, by museval's EvalStore."""
    return evalstore(folder).xs("SDR", level="metric").to_dict()


def shares(system: dict, mixture: dict, irm1: dict) -> dict[str, float]:
    """The share of the oracle's improvement, computed here from museval's medians."""
    out = {t: (system[t] - mixture[t]) / (irm1[t] - mixture[t]) for t in system}
    out["sources"] = float(np.median([out[s] for s in SOURCES]))
    return out


def table_rows(summary: str, heading: str) -> dict[str, list[str]]:
    """The first table under ``heading``: its first column -> the other cells."""
    lines = summary.splitlines()
    start = lines.index(heading) + 1
    while not lines[start].startswith("|"):
        start += 1
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first, *cells = [c.strip() for c in line.strip("|").split("|")]
        rows[first] = cells
    return rows


def test_summary_share_of_the_oracles_improvement_with_published(score_tree):
    """Ours against our mixture and IRM1, the published against SiSEC's MIX and IRM1:
    the summary's shares (2 decimals) and medians.csv's (full precision) are those of
    museval's own medians; published rows are marked and their sources listed."""
    tmp = score_tree
    for i, track in enumerate(["a_b", "c_d", "e_f", "g_h"]):
        write_scores(tmp / "scores" / "oracle_mix" / f"{track}.json", seed=60 + i, mean=-2.0)
    for i, track in enumerate(["AM Contra - Heart Peripheral", "BKS - Too Much"]):
        for k, (method, mean) in enumerate([("IRM1", 9.0), ("TAK1", 5.0), ("MIX", 0.0)]):
            published_file(tmp / "sisec" / "submissions" / method / "test" / f"{track}.json", seed=30 + 10 * k + i,
                           mean=mean)
    table = aggregate([tmp / "scores"], tmp / "scores.csv", tmp / "summary.md",
                      published=[tmp / "sisec" / "submissions"], medians_csv=tmp / "medians.csv")
    assert set(table["system"]) == {"unet", "oracle_irm1", "oracle_mix", "IRM1", "TAK1", "MIX"}
    assert set(table.loc[table["system"] == "TAK1", "track"]) == {"AM Contra - Heart Peripheral",
                                                                     "BKS - Too Much"}
    ours = median_scores(table)
    np.testing.assert_array_equal(ours.loc["TAK1"].to_numpy(),
                                  evalstore(tmp / "sisec" / "submissions" / "TAK1").to_numpy())
    summary = (tmp / "summary.md").read_text()
    for heading in ("## SDR", "## SIR", "## SAR", "## ISR", "## Share of the oracle's improvement", "### unet",
                    "## Published results", "## Silent frames"):
        assert heading in summary
    assert "fraction of" not in summary
    assert "| TAK1 (published) | 2 |" in summary and "| mixture | 4 |" in summary    # oracle_mix shown as mixture
    assert "| oracle_irm1 | " in summary and "e_f (vocals)" in summary
    # the order: models, the mixture, the oracles; then the published, in the same order
    assert list(table_rows(summary, "## SDR")) == ["unet", "mixture", "oracle_irm1", "TAK1 (published)",
                                                    "MIX (published)", "IRM1 (published)"]
    sisec = tmp / "sisec" / "submissions"
    expected = {
        "unet": shares(*(sdr_medians(tmp / "scores" / s) for s in ("unet", "oracle_mix", "oracle_irm1"))),
        "TAK1": shares(*(sdr_medians(sisec / s) for s in ("TAK1", "MIX", "IRM1"))),
    }
    targets = ["vocals", "drums", "bass", "other", "accompaniment", "sources"]
    rows = table_rows(summary, "## Share of the oracle's improvement")
    assert rows["mixture"] == ["0.00"] * 6 and rows["oracle_irm1"] == ["1.00"] * 6
    assert rows["MIX (published)"] == ["0.00"] * 6 and rows["IRM1 (published)"] == ["1.00"] * 6
    for name, label in [("unet", "unet"), ("TAK1", "TAK1 (published)")]:
        assert rows[label] == [f"{expected[name][t]:.2f}" for t in targets], name
        assert 0 < expected[name]["vocals"] < 1
    # the model's own table: its SDR, the mixture's, IRM1's and the share per target
    model = table_rows(summary, "### unet")
    mix_sdr, irm1_sdr = sdr_medians(tmp / "scores" / "oracle_mix"), sdr_medians(tmp / "scores" / "oracle_irm1")
    assert model["vocals"] == [f"{v:.2f}" for v in (ours[("unet", "vocals", "SDR")], mix_sdr["vocals"],
                                                     irm1_sdr["vocals"], expected["unet"]["vocals"])]
    assert model["4 sources (median)"][-1] == f"{expected['unet']['sources']:.2f}"
    assert model["4 sources (median)"][1] == f"{np.median([mix_sdr[s] for s in SOURCES]):.2f}"
    assert f"- **TAK1 (published)**: museval JSON files in {sisec}" in summary
    # medians.csv: the shares at full precision, the published marked by their source
    medians = pd.read_csv(tmp / "medians.csv", keep_default_na=False, na_values=["NaN"])
    assert list(medians.columns) == MEDIAN_COLUMNS
    share = medians[medians["metric"] == "share"].set_index(["system", "target"])["median"]
    for name in expected:
        assert [share[(name, t)] for t in targets] == pytest.approx([expected[name][t] for t in targets],
                                                                    rel=1e-12, abs=1e-12)
    sources = medians.groupby("system")["source"].first()
    assert sources["unet"] == sources["oracle_mix"] == "" and sources["TAK1"] == f"museval JSON files in {sisec}"


def test_without_the_mixture_the_share_is_explained_not_guessed(score_tree):
    aggregate([score_tree / "scores"], score_tree / "scores.csv", score_tree / "summary.md",
              medians_csv=score_tree / "medians.csv")
    summary = (score_tree / "summary.md").read_text()
    assert "Needs the mixture (oracle `mix`, `oracle_mix`) and IRM1 (oracle `irm1`)" in summary
    assert "### unet" not in summary and "published" not in summary
    assert "share" not in set(pd.read_csv(score_tree / "medians.csv")["metric"])


def test_builtin_published_medians_beside_ours(score_tree):
    """``--published umx``: Open-Unmix's published SDR medians, marked and sourced, in no
    frame table; its share blank without published anchors, against SiSEC's MIX and IRM1
    with them (here from a score table in museval's MethodStore format)."""
    tmp = score_tree
    assert main(["aggregate", str(tmp / "scores"), "--out", str(tmp / "scores.csv"), "--summary",
                 str(tmp / "summary.md"), "--medians", str(tmp / "medians.csv"), "--published", "umx"]) == 0
    summary = (tmp / "summary.md").read_text()
    assert "| UMX (published) | 50 | 6.32 | 5.73 | 5.23 | 4.02 | – |" in summary    # vocals .. accompaniment
    assert "UMX (published)" not in table_rows(summary, "## SIR")                 # SDR alone was published
    assert "- **UMX (published)**: Open-Unmix (UMX), MUSDB18 test set" in summary and "JOSS" not in summary
    assert "Journal of Open Source Software 4(41), 1667, 2019" in summary
    assert "UMX" not in set(pd.read_csv(tmp / "scores.csv")["system"])
    medians = pd.read_csv(tmp / "medians.csv", keep_default_na=False, na_values=["NaN"])
    umx = medians[medians["system"] == "UMX"]
    assert dict(zip(umx["target"], umx["median"])) == {"vocals": 6.32, "drums": 5.73, "bass": 5.23, "other": 4.02}
    assert set(umx["source"]) == {BUILTIN["umx"].source}
    # the published anchors: MIX and IRM1 in SiSEC 2018's score table
    store = MethodStore()
    for method, mean in [("MIX", 0.0), ("IRM1", 9.0)]:
        folder = tmp / "sisec" / method
        for i, track in enumerate(["AM Contra - Heart Peripheral", "BKS - Too Much"]):
            published_file(folder / "test" / f"{track}.json", seed=70 + i, mean=mean)
        store.add_eval_dir(folder)
    store.save(tmp / "sisec18_mus.pandas")
    aggregate([tmp / "scores"], tmp / "scores.csv", tmp / "summary.md", published=["UMX", tmp / "sisec18_mus.pandas"])
    summary = (tmp / "summary.md").read_text()
    expected = store.agg_frames_tracks_scores()
    mix, irm1 = (expected[(m, s, "SDR")] for m in ("MIX", "IRM1") for s in ["vocals"])
    share = table_rows(summary, "## Share of the oracle's improvement")["UMX (published)"]
    assert share[0] == f"{(6.32 - mix) / (irm1 - mix):.2f}" and share[4] == "–"       # vocals; no accompaniment
    assert f"- **MIX (published)**: SiSEC 2018 score table {tmp / 'sisec18_mus.pandas'}" in summary


def test_sisec_score_table_in_methodstore_format(score_tree, tmp_path):
    """The table museval's MethodStore.add_sisec18() reads (a pandas pickle, or the same
    columns as CSV): the medians are MethodStore's own, the frames numbered by time."""
    store = MethodStore()
    for method, seed in [("TAK1", 80), ("JY3", 90)]:
        folder = tmp_path / "sisec" / method
        for i, track in enumerate(["AM Contra - Heart Peripheral", "BKS - Too Much", "Zeno - Signs"]):
            published_file(folder / "test" / f"{track}.json", seed=seed + i, nframes=5 + i)
        store.add_eval_dir(folder)
    assert list(store.df.columns) == ["time", "target", "metric", "score", "track", "method"]
    store.save(tmp_path / "sisec18_mus.pandas")
    shuffled = store.df.sample(frac=1.0, random_state=0)
    shuffled.to_csv(tmp_path / "sisec18_mus.csv", index=False)
    expected = store.agg_frames_tracks_scores()
    for path in (tmp_path / "sisec18_mus.pandas", tmp_path / "sisec18_mus.csv"):
        frames = read_sisec_table(path)
        assert list(frames.columns) == COLUMNS and len(frames) == len(store.df)
        got = median_scores(frames)
        got.index.names = expected.index.names
        pd.testing.assert_series_equal(got, expected, check_names=False)
        per_track = frames.groupby(["system", "track", "target", "metric"])["frame"]
        assert (per_track.min() == 0).all() and (per_track.max() + 1 == per_track.count()).all()
        # frame k is the k-th window in time (the CSV's rows are shuffled)
        times = store.df.set_index(["method", "track", "target", "metric", "time"])["score"].sort_index()
        one = frames[(frames["system"] == "JY3") & (frames["track"] == "Zeno - Signs") & (frames["target"] == "bass")
                     & (frames["metric"] == "SAR")].sort_values("frame")
        np.testing.assert_array_equal(one["score"].to_numpy(),
                                      times.loc[("JY3", "Zeno - Signs", "bass", "SAR")].to_numpy())
    table = aggregate([score_tree / "scores"], tmp_path / "scores.csv", tmp_path / "summary.md",
                      published=[tmp_path / "sisec18_mus.pandas"])
    assert {"TAK1", "JY3"} <= set(table["system"])
    summary = (tmp_path / "summary.md").read_text()
    assert "| JY3 (published) | 3 |" in summary
    # a published system given twice, and a published name that is ours
    with pytest.raises(MusicsepError, match=r"published system (TAK1|JY3) given twice \(museval JSON files in "
                                            r".*/sisec; SiSEC 2018 score table .*/sisec18_mus.pandas"):
        aggregate([score_tree / "scores"], tmp_path / "x.csv",
                  published=[tmp_path / "sisec18_mus.pandas", tmp_path / "sisec"])
    with pytest.raises(MusicsepError, match="TAK1 both ours and published"):
        aggregate([tmp_path / "sisec" / "TAK1"], tmp_path / "x.csv", published=[tmp_path / "sisec18_mus.pandas"])
    assert not (tmp_path / "x.csv").exists()


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
