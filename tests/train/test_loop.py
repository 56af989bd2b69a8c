"""Training end to end on CPU: resume after SIGTERM, gloo processes against one
process, NaN handling, the self-describing model file, and BSS Eval SDR
validation (its epochs, its values, best.pt chosen by it, across a resume)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import ROOT, command_line, descendants, process_table, running, wait_until_gone

from musicsep import SOURCES, TARGETS, MusicsepError
from musicsep.data.musdb import scan
from musicsep.data.shard import Shard, write_shard
from musicsep.data.tracks import tracks_from_shards
from musicsep.models.checkpoint import load_model
from musicsep.separate.separator import Separator
from musicsep.spectral.features import compute_stats
from musicsep.toy.musdb import make_toy_musdb
from musicsep.train import STOPPED_EXIT, Stopped, loop
from musicsep.train.loop import train
from musicsep.train.validation import track_sdr
from musicsep.workflow.plan import experiment_specs, load_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Shards of a 3-track toy at 16 kHz, its track table and statistics."""
    root = tmp_path_factory.mktemp("traindata")
    dataset, tracks = scan(make_toy_musdb(root / "toy.zip", seed=3, train=3, test=0, duration=3.0))
    shards = []
    for track in tracks:
        shards.append(root / "shards" / f"{track.slug}.h5")
        write_shard(dataset, track.member, track.split, shards[-1], sample_rate=16000, slug=track.slug)
    tracks_from_shards(shards, root / "tracks.tsv")
    compute_stats([s for s, t in zip(shards, tracks) if t.split == "train"], root / "stats.h5", n_fft=512, hop=128)
    return {"root": root, "tracks": tracks, "shards": shards}


def spec(model="blstm_mask", **training):
    config = load_config({
        "data": {"sample_rate": 16000},
        "features": {"n_fft": 512, "hop": 128, "n_mels": 24},
        "loader": {"samples_per_epoch": 8, "excerpt_seconds": 0.5, "valid_excerpts_per_track": 2},
        "training": {"epochs": 3, "batch_size": 4, "workers": 0, "deterministic": True, **training},
        "experiments": {"x": {"model": model, "model_args": {"hidden": 8, "layers": 2, "dropout": 0.2}}},
    }, ROOT)
    return experiment_specs(config)["x"]


def split(data, name):
    return [str(s) for s, t in zip(data["shards"], data["tracks"]) if t.split == name]


def run(data, tmp: Path, the_spec: dict, processes=None, valid=None):
    train(the_spec, split(data, "train"), valid or split(data, "valid"), data["root"] / "stats.h5", tmp / "run",
          tmp / "model.pt", tmp / "metrics.jsonl", processes=processes)
    return torch.load(tmp / "run" / "latest.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["blstm_mask", "conditional_centroids", "deep_clustering"])
def test_model_file_describes_itself(data, tmp_path, model):
    run(data, tmp_path, spec(model, epochs=2))
    loaded, state = load_model(tmp_path / "model.pt")
    assert loaded.name == model and state["spec"]["model"] == model
    assert state["version"] and "git_commit" in state
    assert loaded.features.n_mels == 24 and loaded.features.sample_rate == 16000
    with h5py.File(data["root"] / "stats.h5") as h5:       # whitening statistics travel with the model
        np.testing.assert_allclose(loaded.features.mean.numpy(), h5["mean"][:])
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[0]["excerpt_seconds"] == pytest.approx(0.1)        # the curriculum's first epoch
    assert metrics[1]["excerpt_seconds"] == pytest.approx(0.5)
    fast = "valid_si_sdr_fast_not_bss_eval"                # the fast validation metric, labelled as not BSS Eval
    for m in metrics:
        per_source = {k.removeprefix(f"{fast}_") for k in m if k.startswith(f"{fast}_")}
        assert per_source and per_source <= set(SOURCES)
        assert np.isfinite([m[fast], *(m[f"{fast}_{s}"] for s in per_source)]).all()
        assert m[fast] == pytest.approx(np.mean([m[f"{fast}_{s}"] for s in per_source]))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert {"valid/loss", f"valid/{fast.removeprefix('valid_')}"} <= set(events.Tags()["scalars"])
    if model == "deep_clustering":
        assert loaded.class_centroids.abs().sum() > 0
    mix = torch.rand(1, 257, 20)
    assert loaded.masks(mix).shape == (1, 4, 257, 20)


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_same_weights(data, tmp_path):
    the_spec = spec(epochs=6)
    reference = run(data, tmp_path / "straight", the_spec)

    work = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "musicsep", "train", "--spec", json.dumps(the_spec),
           "--tracks", str(data["root"] / "tracks.tsv"), "--shards", *map(str, data["shards"]),
           "--stats", str(data["root"] / "stats.h5"), "--run-dir", str(work / "run"), "--out", str(work / "model.pt")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (work / "run" / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == STOPPED_EXIT, err
    assert "stopped by a signal" in err and "rerun to resume" in err
    stopped = torch.load(work / "run" / "latest.pt", weights_only=True)
    assert stopped["state"]["step"] < reference["state"]["step"]
    assert not (work / "model.pt").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming x from" in resumed.stderr
    final = torch.load(work / "run" / "latest.pt", weights_only=True)
    assert final["state"]["step"] == reference["state"]["step"]
    for key, value in reference["weights"].items():
        assert torch.equal(value, final["weights"][key]), key


def test_a_resumed_epoch_reports_the_whole_epochs_training_loss(data, tmp_path, monkeypatch):
    """SIGTERM in the middle of epoch 2, then a resume: each epoch's train_loss
    (and each part of the loss) is the uninterrupted run's, not the mean of the
    batches after the resume; the epoch's seconds, and the run's elapsed_seconds,
    go on from the stop."""
    the_spec = spec(epochs=2)                  # 2 batches per epoch
    reference = run(data, tmp_path / "straight", the_spec)
    assert reference["state"]["step"] == 4
    optimizer_step, steps = loop.optimizer_step, []

    def step_then_signal(*args):
        steps.append(optimizer_step(*args))
        if len(steps) == 3:                     # epoch 2's first batch done: the signal SLURM would send
            signal.raise_signal(signal.SIGTERM)
        return steps[-1]

    monkeypatch.setattr(loop, "optimizer_step", step_then_signal)
    with pytest.raises(Stopped, match="stopped by a signal at epoch 2, step 3"):
        run(data, tmp_path / "stopped", the_spec)
    stopped = torch.load(tmp_path / "stopped" / "run" / "latest.pt", weights_only=True)["state"]
    assert (stopped["epoch"], stopped["batch"], stopped["train_batches"]) == (1, 1, 1)
    assert set(stopped["train_sums"]) >= {"loss"} and stopped["train_seconds"] > 0
    monkeypatch.setattr(loop, "optimizer_step", optimizer_step)
    final = run(data, tmp_path / "stopped", the_spec)

    straight, resumed = metrics_of(tmp_path / "straight"), metrics_of(tmp_path / "stopped")
    assert [m["epoch"] for m in resumed] == [m["epoch"] for m in straight] == [1, 2]
    for a, b in zip(straight, resumed):
        train_keys = sorted(k for k in a if k.startswith("train_"))
        assert "train_loss" in train_keys and train_keys == sorted(k for k in b if k.startswith("train_"))
        assert [b[k] for k in train_keys] == pytest.approx([a[k] for k in train_keys], rel=1e-12)
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-12)
    assert resumed[1]["seconds"] >= stopped["train_seconds"]
    # the run's clock: on from the stop, never back to 0 (the learning curves' wall time)
    assert resumed[0]["seconds"] <= resumed[0]["elapsed_seconds"] < stopped["elapsed_seconds"]
    assert stopped["elapsed_seconds"] <= resumed[1]["elapsed_seconds"]
    assert resumed[1]["elapsed_seconds"] - resumed[0]["elapsed_seconds"] >= resumed[1]["seconds"] - 1e-3
    assert final["state"]["elapsed_seconds"] == pytest.approx(resumed[1]["elapsed_seconds"], abs=1e-3)
    assert final["state"]["train_batches"] == 0 and final["state"]["train_sums"] == {}
    for key, value in reference["weights"].items():
        assert torch.equal(value, final["weights"][key]), key


@pytest.mark.slow
def test_ctrl_c_stops_every_training_process(data, tmp_path):
    """SIGINT to the launcher alone (not to its group, as a terminal would): the
    training processes it spawned save latest.pt and end with it, rather than
    training on while it waits for them."""
    the_spec = spec(epochs=100000)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "musicsep", "train", "--spec", json.dumps(the_spec),
           "--tracks", str(data["root"] / "tracks.tsv"), "--shards", *map(str, data["shards"]),
           "--stats", str(data["root"] / "stats.h5"), "--run-dir", str(run_dir), "--out", str(tmp_path / "model.pt"),
           "--processes", "2"]
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(cmd, stderr=log)
    below = {}
    try:
        while not (run_dir / "metrics.jsonl").exists() and proc.poll() is None:   # both are training
            time.sleep(0.01)
        assert proc.poll() is None, (tmp_path / "log").read_text()
        table = process_table()
        below = {pid: table[pid][2] for pid in descendants(proc.pid, table)}
        assert len([pid for pid in below if table[pid][0] == proc.pid]) >= 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=300) == 128 + signal.SIGINT, (tmp_path / "log").read_text()
        left = wait_until_gone(below)
        assert left == [], [command_line(pid) for pid in left]
        log = (tmp_path / "log").read_text()
        assert log.count("stopped by a signal") == 2 and log.rstrip().endswith("interrupted"), log
        assert torch.load(run_dir / "latest.pt", weights_only=True)["state"]["step"] > 0
        assert not (tmp_path / "model.pt").exists()
    finally:                                   # nothing left training if the test fails
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in running(below):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_gloo_processes_match_one(data, audible, tmp_path):
    the_spec = spec(epochs=2, sdr_every=1)
    the_spec["model_args"]["dropout"] = 0.0          # dropout masks differ between ranks
    valid = audible + split(data, "valid")           # SDR: a track per rank (the toy's with silent seconds)
    one = run(data, tmp_path / "one", the_spec, valid=valid)
    before = {key: os.environ.get(key) for key in ("MASTER_ADDR", "MASTER_PORT")}
    two = run(data, tmp_path / "two", the_spec, processes=2, valid=valid)
    # the rendezvous was for the spawned processes: jobs started later (srun's tasks) refuse a MASTER_ADDR
    assert {key: os.environ.get(key) for key in before} == before
    assert two["state"]["step"] == one["state"]["step"]
    for key, value in one["weights"].items():
        torch.testing.assert_close(two["weights"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(metrics_of(tmp_path / "one"), metrics_of(tmp_path / "two")):
        scores = {k: v for k, v in a.items() if k.startswith("sdr")}
        assert len(scores) == 1 + len(TARGETS) and scores.keys() == {k for k in b if k.startswith("sdr")}
        np.testing.assert_allclose([b[k] for k in scores], list(scores.values()), atol=1e-3)


def test_nan_loss_stops_and_keeps_the_run(data, tmp_path, make_shard):
    the_spec = spec(epochs=1)
    run(data, tmp_path, the_spec)
    kept = sorted(p.name for p in (tmp_path / "run").iterdir())
    poisoned = []
    for path in split(data, "train"):                 # the same tracks, now decoded to NaN
        with Shard(path) as shard:
            nan, attrs = np.full(shard.audio.shape, np.nan, np.float32), shard.attrs
        poisoned.append(make_shard(tmp_path / Path(path).name, nan[1:], mixture=nan[0],
                                   sample_rate=attrs["sample_rate"], name=attrs["name"], slug=attrs["slug"],
                                   split=attrs["split"]))
    the_spec["training"]["epochs"] = 2               # the same run, continued for one more epoch
    with pytest.raises(MusicsepError, match=r"non-finite loss \(nan\) at epoch 2, step 3; .* is kept"):
        train(the_spec, poisoned, split(data, "valid"), data["root"] / "stats.h5", tmp_path / "run",
              tmp_path / "model2.pt")
    assert set(kept) <= {p.name for p in (tmp_path / "run").iterdir()}
    assert (tmp_path / "run" / "latest.pt").exists() and (tmp_path / "run" / "best.pt").exists()


@pytest.mark.slow
def test_changed_spec_moves_the_old_run_aside(data, tmp_path):
    run(data, tmp_path, spec(epochs=1))
    changed = spec(epochs=1, lr=1e-3)
    run(data, tmp_path, changed)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert len(aside) == 1 and (aside[0] / "latest.pt").exists()
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["training"]["lr"] == 1e-3


def metrics_of(tmp: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def audible(data, make_shard) -> list[str]:
    """The validation track with a little noise in every source: the toy's sources are silent
    (digital zeros) in some seconds, frames that BSS Eval leaves NaN; here it scores every frame."""
    with Shard(split(data, "valid")[0]) as shard:
        sources, attrs = shard.sources(), shard.attrs
    sources = sources + 1e-3 * np.random.default_rng(0).standard_normal(sources.shape, dtype=np.float32)
    return [str(make_shard(data["root"] / "audible.h5", sources, sample_rate=attrs["sample_rate"],
                           slug="audible", split="valid"))]


def test_sdr_validation_at_its_epochs(data, audible, tmp_path):
    """BSS Eval SDR of the whole validation track every sdr_every epochs, and only then;
    the values are the model file's separation of it, scored again here."""
    run(data, tmp_path, spec(epochs=3, sdr_every=2, select_by="sdr"), valid=audible)
    metrics = metrics_of(tmp_path)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert [sorted(k for k in m if k.startswith("sdr")) for m in metrics] == \
        [[], ["sdr"] + sorted(f"sdr/{t}" for t in TARGETS), []]
    scores = metrics[1]
    assert scores["sdr"] == pytest.approx(np.mean([scores[f"sdr/{s}"] for s in SOURCES]))
    assert "valid_loss" in scores                                         # the same record as the validation
    model, state = load_model(tmp_path / "model.pt")                     # best.pt: the one epoch with SDR
    assert state["epoch"] == 2 and state["valid_loss"] == scores["valid_loss"]
    expected = track_sdr(audible[0], Separator(model))                   # one track: its medians are the medians
    np.testing.assert_allclose([scores[f"sdr/{t}"] for t in TARGETS], expected, rtol=1e-9)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert {"valid/sdr", "valid/sdr/vocals"} <= set(events.Tags()["scalars"])


def test_track_sdr_scores_the_separation_in_groups(audible):
    """Estimates at half the true sources: every target's SDR is 20 log10(2) in every frame;
    a source silent over the whole track blanks its groups (museval refuses to score them)."""
    with Shard(audible[0]) as shard:
        sources = dict(zip(SOURCES, shard.sources()))
    sources["accompaniment"] = sources["drums"] + sources["bass"] + sources["other"]

    class Half:
        def separate(self, mixture):
            return {t: 0.5 * sources[t] for t in TARGETS}

    np.testing.assert_allclose(track_sdr(audible[0], Half()), 20 * np.log10(2), rtol=1e-6)
    sources["bass"] = np.zeros_like(sources["bass"])                    # drums, bass, other blanked
    scores = dict(zip(TARGETS, track_sdr(audible[0], Half())))
    assert np.isnan([scores["drums"], scores["bass"], scores["other"]]).all()
    np.testing.assert_allclose([scores["vocals"], scores["accompaniment"]], 20 * np.log10(2), rtol=1e-6)


def test_select_by_sdr_keeps_the_best_epoch_across_a_resume(data, tmp_path, monkeypatch):
    """best.pt is the epoch of the highest logged SDR, not of the lowest loss, and a
    resumed run keeps the best SDR so far (a later, worse epoch does not replace it)."""
    sequence = iter([2.0, 3.0, 1.0, 0.0])                # the best at epoch 2, then worse
    monkeypatch.setattr(loop, "validate_sdr", lambda *args: {"sdr": next(sequence)})
    run(data, tmp_path, spec(epochs=2, sdr_every=1, select_by="sdr"))
    run(data, tmp_path, spec(epochs=4, sdr_every=1, select_by="sdr"))    # more epochs: the run continues
    metrics = metrics_of(tmp_path)
    sdr, loss = [m["sdr"] for m in metrics], [m["valid_loss"] for m in metrics]
    assert sdr == [2.0, 3.0, 1.0, 0.0]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["state"]
    assert best["epoch"] == int(np.argmax(sdr)) + 1 != int(np.argmin(loss)) + 1
    assert torch.load(tmp_path / "run" / "latest.pt", weights_only=True)["state"]["best_sdr"] == 3.0
    assert load_model(tmp_path / "model.pt")[1]["epoch"] == 2
