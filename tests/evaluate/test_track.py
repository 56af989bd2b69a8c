"""Evaluation per track: museval's BSS Eval v4 (musicsep.evaluate.track),
and `musicsep evaluate` on a shard. museval is slow (its 512-tap distortion
filters cost seconds per track whatever the length), so the signals are short,
mostly mono 8 kHz, and each evaluation is computed once per module."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import museval
import numpy as np
import pandas as pd
import pytest
import simplejson
import soundfile
from museval.aggregate import EvalStore, json2df

from musicsep import SOURCES, TARGETS, MusicsepError
from musicsep.evaluate.aggregate import aggregate, median_scores
from musicsep.evaluate.track import accompaniment, evaluate_shard, evaluate_track, read_shard_references

RATE = 8000

SECONDS = 4

GAINS = {"drums": 1.0, "bass": 0.5, "other": 0.7, "vocals": 1.2}


def make_sources(seed=0, channels=1, seconds=SECONDS, rate=RATE):
    rng = np.random.default_rng(seed)
    n = seconds * rate
    return {s: GAINS[s] * rng.standard_normal((n, channels)) for s in SOURCES}


def with_accompaniment(sources):
    return {**sources, "accompaniment": accompaniment(sources)}


def musdb_track(name, references, rate=RATE):
    """What museval's eval_mus_track reads of a musdb track."""
    return SimpleNamespace(name=name, rate=rate, subset="test", targets=OrderedDict(
        (t, SimpleNamespace(audio=references[t])) for t in TARGETS if t in references))


def frames(path):
    """{target: {metric: array over frames}} of a museval JSON file."""
    content = simplejson.loads(Path(path).read_text(), allow_nan=True)
    return {t["name"]: {m: np.array([float(f["metrics"][m]) for f in t["frames"]])
                        for m in ("SDR", "SIR", "ISR", "SAR")} for t in content["targets"]}


def energy_db(num, den, rate=RATE):
    """Per 1 s frame, 10 log10 of the energy ratio."""
    k = len(num) // rate
    e = lambda x: (x[: k * rate] ** 2).reshape(k, -1).sum(axis=1)
    return 10 * np.log10(e(num) / e(den))


@pytest.fixture(scope="module")
def refs():
    return with_accompaniment(make_sources())


@pytest.fixture(scope="module")
def mixture_run(refs, tmp_path_factory):
    """Every target estimated by the mixture (plus a little noise, so that
    the scores are not degenerate), ours and museval's eval_mus_track."""
    mix = sum(refs[s] for s in SOURCES)
    noise = np.random.default_rng(1).standard_normal(mix.shape) * 0.01
    estimates = {t: mix + noise for t in TARGETS}
    out = tmp_path_factory.mktemp("mix") / "exp" / "Artist - Title.json"
    result = evaluate_track(refs, estimates, RATE, "Artist - Title", out)
    store = museval.eval_mus_track(musdb_track("Artist - Title", refs), estimates)
    return SimpleNamespace(out=out, result=result, store=store, mix=mix)


def test_true_sources_score_very_high(refs, tmp_path):
    noise = np.random.default_rng(2)
    estimates = {t: a + 1e-4 * noise.standard_normal(a.shape) for t, a in refs.items()}
    result = evaluate_track(refs, estimates, RATE, "t", tmp_path / "t.json")
    assert result["targets"] == ["drums", "bass", "other", "vocals", "accompaniment"]
    assert result["frames"] == SECONDS and result["warnings"] == []
    scores = frames(tmp_path / "t.json")
    for target in TARGETS:
        assert (scores[target]["SDR"] > 60).all(), target
        assert result["scores"][target]["SDR"] > 60


def test_exact_copies_are_infinite_sdr_stored_as_nan(refs, tmp_path, caplog):
    """museval's own rule: SDR +inf (no distortion at all) is written as NaN."""
    pair = {t: refs[t] for t in ("vocals", "accompaniment")}
    with caplog.at_level(logging.WARNING, logger="musicsep"):
        result = evaluate_track(pair, pair, RATE, "t", tmp_path / "t.json")
    assert result["nan_frames"] == {"vocals": SECONDS, "accompaniment": SECONDS}
    assert (frames(tmp_path / "t.json")["vocals"]["ISR"] > 60).all()
    assert "estimate 'vocals' equals its reference in 4 of 4 frames" in caplog.text


def test_mixture_as_estimate_scores_the_energy_ratio(mixture_run, refs):
    scores = frames(mixture_run.out)
    for target in SOURCES:  # evaluated together: SDR = 10 log10(E_target / E_others)
        expected = energy_db(refs[target], mixture_run.mix - refs[target])
        np.testing.assert_allclose(scores[target]["SDR"], expected, atol=0.5)
    # vocals/accompaniment are their own pair, as in eval_mus_track
    expected = energy_db(refs["accompaniment"], refs["vocals"])
    np.testing.assert_allclose(scores["accompaniment"]["SDR"], expected, atol=0.5)
    assert scores["vocals"]["SDR"].mean() == pytest.approx(-scores["accompaniment"]["SDR"].mean(), abs=1.0)
    assert -12 < scores["bass"]["SDR"].mean() < -9


def test_json_is_museval_s_own(mixture_run):
    """Byte for byte what eval_mus_track writes, and it loads in EvalStore."""
    text = mixture_run.out.read_text()
    assert text == mixture_run.store.json
    store = EvalStore()
    store.add_track(json2df(simplejson.loads(text, allow_nan=True), "Artist - Title"))
    agg = store.agg_frames_tracks_scores()
    for target, metrics in mixture_run.result["scores"].items():
        for metric, value in metrics.items():
            assert agg[(target, metric)] == pytest.approx(value, abs=1e-9)
    assert set(store.df["target"]) == set(TARGETS)


@pytest.mark.parametrize("engine", ["bsseval", "museval"])
@pytest.mark.parametrize("extra", [-5, 700])
def test_estimates_of_another_length_are_cut_or_padded_as_museval_does(refs, tmp_path, caplog, engine, extra):
    noise = np.random.default_rng(8)
    estimates = {t: np.concatenate([a, np.ones((700, 1))])[:len(a) + extra] + 0.3 * noise.standard_normal((len(a) + extra, 1))
                 for t, a in refs.items()}
    with caplog.at_level(logging.WARNING, logger="musicsep"):
        evaluate_track(refs, estimates, RATE, "t", tmp_path / "t.json", engine=engine)
    what = "zero-padded" if extra < 0 else "cut"
    assert f"estimate 'bass' has {32000 + extra} samples, its reference 32000: {what}" in caplog.text
    museval.eval_mus_track(musdb_track("t", refs), estimates, output_dir=str(tmp_path / "museval"))
    assert (tmp_path / "t.json").read_text() == (tmp_path / "museval" / "test" / "t.json").read_text()


def test_wrong_estimates_are_refused(refs, tmp_path):
    out = tmp_path / "t.json"
    stereo = {t: np.repeat(a, 2, axis=1) if t == "other" else a for t, a in refs.items()}
    with pytest.raises(MusicsepError, match="estimate 'other' has 2 channel.*its reference 1"):
        evaluate_track(refs, stereo, RATE, "t", out)
    turned = {t: np.repeat(a, 2, axis=1) for t, a in refs.items()}
    flipped = {**turned, "drums": turned["drums"].T}
    with pytest.raises(MusicsepError, match=r"not \(channels, samples\)"):
        evaluate_track(turned, flipped, RATE, "t", out)
    no_ref = {t: refs[t] for t in ("drums", "bass")}
    with pytest.raises(MusicsepError, match="no reference for target.*'vocals'"):
        evaluate_track(no_ref, {t: refs[t] for t in ("drums", "bass", "vocals")}, RATE, "t", out)
    with pytest.raises(MusicsepError, match="missing estimate for target.*'vocals'"):
        evaluate_track(refs, {t: refs[t] for t in ("drums", "bass")}, RATE, "t", out,
                       targets=["drums", "bass", "vocals"])
    with pytest.raises(MusicsepError, match="unknown target.*'piano'"):
        evaluate_track(refs, {"piano": refs["drums"], "bass": refs["bass"]}, RATE, "t", out)
    with pytest.raises(MusicsepError, match="at least two"):
        evaluate_track(refs, {"vocals": refs["vocals"]}, RATE, "t", out)
    with pytest.raises(MusicsepError, match="unknown evaluation engine 'fast'"):
        evaluate_track(refs, refs, RATE, "t", out, engine="fast")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_silent_reference_gives_nan_frames(tmp_path, caplog):
    sources = make_sources(seed=3)
    sources["vocals"][: RATE + 10] = 0  # the first frame of vocals is silent
    refs = with_accompaniment(sources)
    noise = np.random.default_rng(4)
    estimates = {t: refs[t] + 0.1 * noise.standard_normal(refs[t].shape) for t in ("vocals", "accompaniment")}
    with caplog.at_level(logging.WARNING, logger="musicsep"):
        result = evaluate_track(refs, estimates, RATE, "partly silent", tmp_path / "exp" / "a.json")
    assert "reference 'vocals' is silent: museval's SDR is NaN for its frames (1 of 4" in caplog.text
    assert result["silent"] == {"reference 'vocals'": 1}
    assert result["nan_frames"] == {"vocals": 1, "accompaniment": 1}  # the whole pair's frame
    scores = frames(tmp_path / "exp" / "a.json")
    assert np.isnan(scores["vocals"]["SDR"][0]) and np.isfinite(scores["vocals"]["SDR"][1:]).all()
    assert result["scores"]["vocals"]["SDR"] == pytest.approx(np.median(scores["vocals"]["SDR"][1:]))

    # vocals with sound only in the unscored tail after the last whole window:
    # not silent over the whole track, yet every frame NaN
    tail = np.random.default_rng(5)
    sources = {s: np.concatenate([a, tail.standard_normal((100, 1))]) for s, a in sources.items()}
    sources["vocals"][: SECONDS * RATE] = 0
    refs = with_accompaniment(sources)
    estimates = {t: refs[t] + 0.1 for t in ("vocals", "accompaniment")}
    result = evaluate_track(refs, estimates, RATE, "nearly instrumental", tmp_path / "exp" / "b.json")
    assert result["nan_frames"] == {"vocals": SECONDS, "accompaniment": SECONDS}

    # silent over the whole track: both engines refuse to score it (museval
    # raises); its group's frames are NaN, with a warning, and the run goes on
    sources["vocals"][:] = 0
    refs = with_accompaniment(sources)
    caplog.clear()
    for engine in ("bsseval", "museval"):
        with caplog.at_level(logging.WARNING, logger="musicsep"):
            result = evaluate_track(refs, estimates, RATE, "instrumental", tmp_path / engine / "c.json",
                                    engine=engine)
        assert result["nan_frames"] == {"vocals": SECONDS, "accompaniment": SECONDS}
    assert "reference 'vocals' silent over the whole track: BSS Eval cannot score vocals, accompaniment" \
        in caplog.text
    EvalStore().add_track(json2df(simplejson.loads((tmp_path / "exp" / "b.json").read_text(), allow_nan=True), "b"))

    table = aggregate([tmp_path / "exp"], tmp_path / "scores.csv", tmp_path / "summary.md")
    summary = (tmp_path / "summary.md").read_text()
    assert "10 of 16 frames (target × window) are NaN" in summary
    assert "ignored as museval ignores them" in summary and "b (accompaniment), b (vocals)" in summary
    # b is all NaN for vocals and drops out of the median over tracks
    assert median_scores(table)[("exp", "vocals", "SDR")] == pytest.approx(
        np.nanmedian(frames(tmp_path / "exp" / "a.json")["vocals"]["SDR"]))


# --- command line --------------------------------------------------------------------


def run(*args):
    return subprocess.run([sys.executable, "-m", "musicsep", *args], capture_output=True, text=True)


def test_cli_evaluate_and_aggregate(tmp_path, make_shard):
    sources = {s: (0.1 * a).astype(np.float32) for s, a in make_sources(seed=5, channels=2, seconds=3).items()}
    make_shard(tmp_path / "track.h5", np.stack([sources[s].T for s in SOURCES]), sample_rate=RATE)
    est = tmp_path / "est"
    est.mkdir()
    refs = with_accompaniment({s: a.astype(np.float64) for s, a in sources.items()})
    noise = np.random.default_rng(6)
    for target in ("vocals", "accompaniment"):
        soundfile.write(est / f"{target}.wav", refs[target] + 0.01 * noise.standard_normal(refs[target].shape),
                        RATE, subtype="FLOAT")
    out = tmp_path / "scores" / "unet" / "artist_title.json"
    proc = run("evaluate", "--shard", str(tmp_path / "track.h5"), "--estimates", str(est), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    scores = frames(out)
    assert list(scores) == ["vocals", "accompaniment"]
    assert all(np.isfinite(scores[t]["SDR"]).all() and (scores[t]["SDR"] > 10).all() for t in scores)

    (tmp_path / "tracks.tsv").write_text("slug\tname\tsplit\nartist_title\tArtist - Title\ttest\n")
    proc = run("aggregate", str(tmp_path / "scores"), "--out", str(tmp_path / "scores.csv"),
               "--summary", str(tmp_path / "summary.md"), "--tracks", str(tmp_path / "tracks.tsv"))
    assert proc.returncode == 0, proc.stderr
    assert "| unet | 1 |" in proc.stdout and (tmp_path / "summary.md").exists()
    back = pd.read_csv(tmp_path / "scores.csv")
    assert set(back["track"]) == {"Artist - Title"} and set(back["target"]) == {"vocals", "accompaniment"}
    assert set(back["system"]) == {"unet"} and len(back) == 2 * 3 * 4


def test_cli_evaluate_wrong_rate_is_one_error_line(tmp_path, make_shard):
    sources = make_sources(seed=7, seconds=2)
    make_shard(tmp_path / "track.h5", np.stack([sources[s].T for s in SOURCES]), sample_rate=RATE)
    est = tmp_path / "est"
    est.mkdir()
    for target in ("vocals", "accompaniment"):
        soundfile.write(est / f"{target}.wav", np.zeros((2 * 16000, 1)), 16000)
    proc = run("evaluate", "--shard", str(tmp_path / "track.h5"), "--estimates", str(est),
               "--out", str(tmp_path / "t.json"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {est}/vocals.wav: sample rate 16000 Hz, the references' 8000 Hz"
    assert not (tmp_path / "t.json").exists()
    # another length is padded, as museval pads it, with a warning naming the file and both lengths
    soundfile.write(est / "vocals.wav", np.ones((2 * RATE - 3, 1)), RATE)
    soundfile.write(est / "accompaniment.wav", np.ones((2 * RATE, 1)), RATE)
    proc = run("evaluate", "--shard", str(tmp_path / "track.h5"), "--estimates", str(est),
               "--out", str(tmp_path / "t.json"))
    assert proc.returncode == 0, proc.stderr
    assert f"estimate 'vocals' ({est}/vocals.wav) has 15997 samples, its reference 16000: zero-padded" in proc.stderr
    assert f"estimate 'vocals' ({est}/vocals.wav) has 15997 samples, its reference 16000" in proc.stderr


@pytest.mark.slow
def test_irm1_on_a_toy_track_scores_clearly_above_the_mixture(tmp_path):
    """The oracle upper bound on real toy audio, through shard, oracle and museval."""
    import soundfile

    from musicsep.data.musdb import scan
    from musicsep.data.shard import write_shard
    from musicsep.separate.oracles import oracle_shard
    from musicsep.toy.musdb import make_toy_musdb

    dataset, (track,) = scan(make_toy_musdb(tmp_path / "toy.zip", seed=8, train=0, test=1, duration=4.0),
                             subsets=["test"])
    shard = tmp_path / "t.h5"
    write_shard(dataset, track.member, "test", shard, sample_rate=16000)
    oracle_shard(shard, "irm1", tmp_path / "irm1", progress=False)
    mixture_dir = tmp_path / "mixture"
    mixture_dir.mkdir()
    references, rate, _ = read_shard_references(shard)
    mix = sum(references[s] for s in ("vocals", "drums", "bass", "other"))
    for target in references:
        soundfile.write(mixture_dir / f"{target}.wav", mix.astype(np.float32), rate, subtype="FLOAT")
    irm1 = evaluate_shard(shard, tmp_path / "irm1", tmp_path / "irm1.json")
    mixture = evaluate_shard(shard, mixture_dir, tmp_path / "mixture.json")
    for target in ("drums", "bass", "other", "accompaniment"):
        assert irm1["scores"][target]["SDR"] > mixture["scores"][target]["SDR"] + 5, target
