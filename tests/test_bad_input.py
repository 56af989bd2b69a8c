"""Bad input, as a suite: every subcommand of ``python -m musicsep`` given
bad input (missing, empty, truncated or wrong-kind files, wrong-version or
incomplete shards, outputs where they cannot be written, bad numbers, unknown
names) answers with one ``error:`` line naming the file, option or key, exit
status 1, no traceback, and nothing new or half-written on disk; so does the
workflow given a bad config (a Snakemake dry run: :data:`WORKFLOW`).

Each case is a row of :data:`CASES`: an id, a function that writes the
case's own bad input under the test's folder and returns the command's
arguments, and what the error line must name. Inputs the cases share (a
shard, model files, statistics, a track table, estimates, a MUSDB folder) are
made once per module and must come through unchanged too. The check and the
writers of bad files are in tests/badinput.py."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import soundfile
from badinput import (
    edited,
    folder,
    museval_json,
    musicsep,
    run_bad,
    scores_csv,
    text,
    truncated,
)
from conftest import ROOT, TOY_CONFIG, snakemake_command, snakemake_env
from reportdata import sources_with_a_loud_middle

from musicsep import TARGETS
from musicsep.data.musdb import slugify
from musicsep.data.tracks import tracks_from_shards
from musicsep.spectral.features import compute_stats

SR = 16000
SCHEMA = ROOT / "config" / "schema.yaml"


# --------------------------------------------------------------------------- shared inputs


class Inputs(NamedTuple):
    root: Path
    shard: Path           # a test shard at 16 kHz, stereo, 6 s
    train_shard: Path     # the same as a training track
    models: dict          # base: blstm_mask, cc: conditional_centroids, dc: deep_clustering (16 kHz)
    stats: Path           # of train_shard, n_fft 512, hop 128
    tracks: Path          # tracks.tsv of both shards
    estimates: Path       # {target}.wav of the test shard's track
    musdb: Path           # a MUSDB18 folder of real stems
    spec: dict            # an experiment spec that fits stats and shards
    full: Path | None     # a full file system (None where none can be mounted)


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A tmpfs of 64 KiB, filled up; None where this process cannot mount one (not root)."""
    mount = tmp_path_factory.mktemp("full-disk")
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    ).returncode != 0:
        yield None
        return
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while os.write(fd, bytes(4096)):
                pass
        os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shard_and_models, make_shard, real_musdb, full_disk) -> Inputs:
    root = tmp_path_factory.mktemp("bad-input-shared")
    shard, models = shard_and_models
    shard = Path(shutil.copy(shard, root / "track.h5"))
    sources = sources_with_a_loud_middle()
    train_shard = make_shard(root / "shards" / f"{slugify('Train - Track')}.h5", sources, sample_rate=SR,
                             name="Train - Track", split="train")
    stats = root / "stats.h5"
    compute_stats([train_shard], stats, n_fft=512, hop=128)
    tracks = root / "tracks.tsv"
    tracks_from_shards([shard, train_shard], tracks)
    estimates = root / "estimates" / "sys" / "track"
    estimates.mkdir(parents=True)
    mix = sources.sum(0)
    for target, audio in zip(TARGETS, [sources[3], sources[0], sources[1], sources[2], mix - sources[3]]):
        soundfile.write(estimates / f"{target}.wav", audio.T, SR, subtype="FLOAT")
    from musicsep.workflow.plan import experiment_specs, load_config

    config = load_config({
        "data": {"sample_rate": SR}, "features": {"n_fft": 512, "hop": 128, "n_mels": 24},
        "loader": {"samples_per_epoch": 4, "excerpt_seconds": 0.5, "valid_excerpts_per_track": 1},
        "training": {"epochs": 1, "batch_size": 2, "workers": 0},
        "experiments": {"x": {"model": "blstm_mask", "model_args": {"hidden": 8, "layers": 1}}}}, ROOT)
    return Inputs(root, shard, train_shard, models, stats, tracks, estimates, real_musdb,
                  experiment_specs(config)["x"], full_disk)


def estimates_with(i: Inputs, t: Path, target: str, write: Callable[[Path], None]) -> Path:
    """A copy of the shared estimates with ``target``.wav made by ``write``."""
    out = shutil.copytree(i.estimates, t / "est")
    (out / f"{target}.wav").unlink()
    write(out / f"{target}.wav")
    return out


def spec_json(i: Inputs, **changes) -> str:
    spec = json.loads(json.dumps(i.spec))
    for key, value in changes.items():
        block, _, name = key.rpartition("__")
        (spec[block] if block else spec)[name] = value
    return json.dumps(spec)


def train_args(i: Inputs, t: Path, spec: str, **paths) -> list:
    p = {"tracks": i.tracks, "stats": i.stats, "run_dir": t / "run", "out": t / "model.pt", **paths}
    return ["train", "--spec", spec, "--tracks", p["tracks"], "--shards", i.train_shard, i.shard,
            "--stats", p["stats"], "--run-dir", p["run_dir"], "--out", p["out"]]


# --------------------------------------------------------------------------- the cases


class Case(NamedTuple):
    id: str
    args: Callable[[Inputs, Path], list]    # writes the case's bad input under its folder t, returns the arguments
    names: str                              # what the error line names, formatted with t and i (the inputs)


def on_full_disk(i: Inputs) -> Path:
    if i.full is None:
        pytest.skip("no full file system: mounting a tmpfs needs root")
    return i.full


A_STEM = "train/Actions - One Minute Smile.stem.mp4"
CASES = [Case(*c) for c in [
    # make-toy-musdb
    ("toy-out-under-a-file", lambda i, t: ["make-toy-musdb", text(t / "afile") / "toy.zip", "--train", 1,
                                           "--test", 0, "--duration", 1], "{t}/afile"),
    ("toy-out-exists", lambda i, t: ["make-toy-musdb", text(t / "toy.zip"), "--train", 1, "--test", 0,
                                     "--duration", 1], "{t}/toy.zip"),
    ("toy-negative-duration", lambda i, t: ["make-toy-musdb", t / "toy.zip", "--duration", -1], "--duration -1"),
    ("toy-no-tracks", lambda i, t: ["make-toy-musdb", t / "toy.zip", "--train", 0, "--test", 0], "train 0, test 0"),
    # index
    ("index-missing-dataset", lambda i, t: ["index", t / "musdb18.zip"], "{t}/musdb18.zip"),
    ("index-empty-zip", lambda i, t: ["index", text(t / "musdb18.zip", "")], "{t}/musdb18.zip"),
    ("index-text-as-zip", lambda i, t: ["index", text(t / "musdb18.zip")], "{t}/musdb18.zip"),
    ("index-empty-folder", lambda i, t: ["index", folder(t / "musdb18")], "{t}/musdb18"),
    ("index-out-under-a-file", lambda i, t: ["index", i.musdb, "--out", text(t / "afile") / "tracks.tsv"],
     "{t}/afile"),
    ("index-out-in-proc", lambda i, t: ["index", i.musdb, "--out", Path("/proc/musicsep-tracks.tsv")],
     "/proc/musicsep-tracks.tsv"),
    ("index-valid-fraction-above-half", lambda i, t: ["index", i.musdb, "--valid-fraction", 2], "--valid-fraction"),
    # shard
    ("shard-unknown-member", lambda i, t: ["shard", i.musdb, "train/Nobody - Nothing.stem.mp4",
                                           "--out", t / "x.h5", "--split", "train"], "Nobody - Nothing"),
    ("shard-truncated-stem", lambda i, t: ["shard", truncated_musdb(i, t), "test/Cut - Short.stem.mp4",
                                           "--out", t / "shards" / "x.h5", "--split", "test"], "Cut - Short"),
    ("shard-text-as-stem", lambda i, t: ["shard", text_musdb(t), "test/Text - Only.stem.mp4",
                                         "--out", t / "x.h5", "--split", "test"], "Text - Only"),
    ("shard-out-is-a-folder", lambda i, t: ["shard", i.musdb, A_STEM, "--out", folder(t / "x.h5"),
                                            "--split", "train"], "{t}/x.h5"),
    ("shard-out-under-a-file", lambda i, t: ["shard", i.musdb, A_STEM, "--out", text(t / "afile") / "x.h5",
                                             "--split", "train"], "{t}/afile"),
    ("shard-negative-chunk", lambda i, t: ["shard", i.musdb, A_STEM, "--out", t / "x.h5", "--split", "train",
                                           "--chunk-seconds", -1], "--chunk-seconds -1"),
    ("shard-zero-rate", lambda i, t: ["shard", i.musdb, A_STEM, "--out", t / "x.h5", "--split", "train",
                                      "--sample-rate", 0], "--sample-rate 0"),
    # tracks
    ("tracks-missing-shard", lambda i, t: ["tracks", i.shard, t / "gone.h5", "--out", t / "tracks.tsv"],
     "{t}/gone.h5"),
    ("tracks-folder-as-shard", lambda i, t: ["tracks", folder(t / "dir.h5"), "--out", t / "tracks.tsv"],
     "{t}/dir.h5"),
    ("tracks-empty-shard", lambda i, t: ["tracks", text(t / "empty.h5", ""), "--out", t / "tracks.tsv"],
     "{t}/empty.h5"),
    ("tracks-truncated-shard", lambda i, t: ["tracks", truncated(i.shard, t / "cut.h5"), "--out", t / "tracks.tsv"],
     "{t}/cut.h5"),
    ("tracks-old-format-shard", lambda i, t: ["tracks", edited(i.shard, t / "old.h5", lambda h5: h5.attrs.__delitem__(
        "format_version")), "--out", t / "tracks.tsv"], "{t}/old.h5"),
    ("tracks-shard-without-audio", lambda i, t: ["tracks", edited(i.shard, t / "noaudio.h5", lambda h5: h5.__delitem__(
        "audio")), "--out", t / "tracks.tsv"], "{t}/noaudio.h5"),
    ("tracks-out-is-a-folder", lambda i, t: ["tracks", i.shard, "--out", folder(t / "tracks.tsv")], "{t}/tracks.tsv"),
    ("tracks-out-on-a-full-disk", lambda i, t: ["tracks", i.shard, "--out", on_full_disk(i) / "tracks.tsv"],
     "{i.full}/tracks.tsv"),
    # stats
    ("stats-text-as-shard", lambda i, t: ["stats", text(t / "a.h5"), "--out", t / "stats.h5"], "{t}/a.h5"),
    ("stats-newer-format-shard", lambda i, t: ["stats", edited(i.shard, t / "new.h5", lambda h5: h5.attrs.__setitem__(
        "format_version", 99)), "--out", t / "stats.h5"], "{t}/new.h5"),
    ("stats-zero-hop", lambda i, t: ["stats", i.shard, "--out", t / "stats.h5", "--hop", 0], "--hop 0"),
    ("stats-out-on-a-full-disk", lambda i, t: ["stats", i.train_shard, "--out", on_full_disk(i) / "stats.h5",
                                               "--n-fft", 512, "--hop", 128], "{i.full}/stats.h5"),
    # summary
    ("summary-missing-tracks", lambda i, t: ["summary", "--tracks", t / "tracks.tsv", "--stats", i.stats,
                                             "--out", t / "summary.md"], "{t}/tracks.tsv"),
    ("summary-empty-tracks", lambda i, t: ["summary", "--tracks", text(t / "tracks.tsv", ""), "--stats", i.stats,
                                           "--out", t / "summary.md"], "{t}/tracks.tsv"),
    ("summary-text-as-stats", lambda i, t: ["summary", "--tracks", i.tracks, "--stats", text(t / "stats.h5"),
                                            "--out", t / "summary.md"], "{t}/stats.h5"),
    ("summary-stats-without-mean", lambda i, t: ["summary", "--tracks", i.tracks, "--stats", edited(
        i.stats, t / "stats.h5", lambda h5: h5.__delitem__("mean")), "--out", t / "summary.md"], "{t}/stats.h5"),
    # train
    ("train-unknown-model", lambda i, t: train_args(i, t, spec_json(i, model="no_such_model")), "no_such_model"),
    ("train-spec-missing-keys", lambda i, t: train_args(i, t, json.dumps({"name": "x"})), "--spec"),
    ("train-zero-batch", lambda i, t: train_args(i, t, spec_json(i, training__batch_size=0)),
     "training.batch_size 0"),
    ("train-missing-tracks", lambda i, t: train_args(i, t, spec_json(i), tracks=t / "tracks.tsv"), "{t}/tracks.tsv"),
    ("train-stats-of-another-fft", lambda i, t: train_args(i, t, spec_json(i), stats=other_stats(i, t)),
     "{t}/stats.h5"),
    ("train-run-dir-is-a-file", lambda i, t: train_args(i, t, spec_json(i), run_dir=text(t / "run")), "{t}/run"),
    ("train-augment-gain-reversed", lambda i, t: train_args(i, t, spec_json(i, loader__augment={"gain": [2, 1]})),
     "loader.augment.gain: [2, 1]: the low gain 2 is above the high gain 1"),
    # separate
    ("separate-text-as-audio", lambda i, t: ["separate", text(t / "song.wav"), "--model", i.models["base"],
                                             "--out", t / "out"], "{t}/song.wav"),
    ("separate-truncated-wav-header", lambda i, t: ["separate", truncated(i.estimates / "vocals.wav", t / "song.wav",
                                                                          keep=0.0001),
                                                    "--model", i.models["base"], "--out", t / "out"], "{t}/song.wav"),
    ("separate-text-as-model", lambda i, t: ["separate", i.estimates / "vocals.wav", "--model", text(t / "model.pt"),
                                             "--out", t / "out"], "{t}/model.pt"),
    ("separate-out-is-a-file", lambda i, t: ["separate", i.estimates / "vocals.wav", "--model", i.models["base"],
                                             "--out", text(t / "out")], "{t}/out"),
    ("separate-zero-batch", lambda i, t: ["separate", i.estimates / "vocals.wav", "--model", i.models["base"],
                                          "--out", t / "out", "--batch-chunks", 0], "batch_chunks"),
    ("separate-oracle-old-shard", lambda i, t: ["separate", "--shard", edited(i.shard, t / "old.h5", lambda h5:
                                                h5.attrs.__setitem__("format_version", 1)),
                                                "--oracle", "irm1", "--out", t / "out"], "{t}/old.h5"),
    # evaluate
    ("evaluate-missing-estimates", lambda i, t: ["evaluate", "--shard", i.shard, "--estimates", t / "est",
                                                 "--out", t / "scores.json"], "{t}/est"),
    ("evaluate-text-as-estimate", lambda i, t: ["evaluate", "--shard", i.shard, "--estimates", estimates_with(
        i, t, "vocals", text), "--out", t / "scores.json"], "{t}/est/vocals.wav"),
    ("evaluate-three-channel-estimate", lambda i, t: ["evaluate", "--shard", i.shard, "--estimates", estimates_with(
        i, t, "bass", lambda p: soundfile.write(p, np.zeros((6 * SR, 3), np.float32), SR)),
        "--out", t / "scores.json"], "{t}/est/bass.wav"),
    ("evaluate-estimate-at-another-rate", lambda i, t: ["evaluate", "--shard", i.shard, "--estimates", estimates_with(
        i, t, "drums", lambda p: soundfile.write(p, np.zeros((6 * 8000, 2), np.float32), 8000)),
        "--out", t / "scores.json"], "{t}/est/drums.wav"),
    ("evaluate-shard-without-rate", lambda i, t: ["evaluate", "--shard", edited(i.shard, t / "norate.h5", lambda h5:
                                                  h5.attrs.__delitem__("sample_rate")),
                                                  "--estimates", i.estimates, "--out", t / "scores.json"],
     "{t}/norate.h5"),
    ("evaluate-out-under-a-file", lambda i, t: ["evaluate", "--shard", i.shard, "--estimates", i.estimates,
                                                "--out", text(t / "afile") / "scores.json"], "{t}/afile"),
    ("evaluate-zero-threads", lambda i, t: ["evaluate", "--shard", i.shard, "--estimates", i.estimates,
                                            "--out", t / "scores.json", "--threads", 0], "--threads 0"),
    # aggregate
    ("aggregate-missing-path", lambda i, t: ["aggregate", t / "scores", "--out", t / "scores.csv"], "{t}/scores"),
    ("aggregate-empty-json", lambda i, t: ["aggregate", text(t / "sys" / "track.json", ""), "--out", t / "scores.csv"],
     "{t}/sys/track.json"),
    ("aggregate-json-not-museval", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json", {"a": 1}),
                                                 "--out", t / "scores.csv"], "{t}/sys/track.json"),
    ("aggregate-summary-under-a-file", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json"),
                                                     "--out", t / "scores.csv", "--summary",
                                                     text(t / "afile") / "summary.md"], "{t}/afile"),
    ("aggregate-medians-under-a-file", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json"),
                                                     "--out", t / "new" / "scores.csv", "--summary",
                                                     t / "new" / "summary.md", "--medians",
                                                     text(t / "afile") / "medians.csv"], "{t}/afile"),
    ("aggregate-missing-track-table", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json"),
                                                    "--out", t / "scores.csv", "--tracks", t / "tracks.tsv"],
     "{t}/tracks.tsv"),
    ("aggregate-unknown-published-name", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json"),
                                                       "--out", t / "scores.csv", "--published", "umx2"],
     "umx2: no such file or folder, nor a built-in published result (known: umx)"),
    ("aggregate-unreadable-published-table", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json"),
                                                           "--out", t / "scores.csv", "--published", "umx",
                                                           text(t / "sisec18_mus.pandas")],
     "{t}/sisec18_mus.pandas: not a readable SiSEC 2018 score table"),
    ("aggregate-published-table-without-columns", lambda i, t: ["aggregate", museval_json(t / "sys" / "track.json"),
                                                                "--out", t / "scores.csv", "--published",
                                                                text(t / "sisec.csv", "method,track\na,b\n")],
     "{t}/sisec.csv: not a SiSEC 2018 score table (no column(s) target, metric, score"),
    # plots
    ("plots-scores-missing", lambda i, t: ["plots", "scores", t / "scores.csv", "--box", t / "box.svg"],
     "{t}/scores.csv"),
    ("plots-scores-wrong-columns", lambda i, t: ["plots", "scores", text(t / "scores.csv", "a,b\n1,2\n"),
                                                 "--box", t / "box.svg"], "{t}/scores.csv"),
    ("plots-scores-heatmap-is-a-folder", lambda i, t: ["plots", "scores", scores_csv(t), "--box", t / "box.svg",
                                                       "--heatmap", folder(t / "heat.svg")], "{t}/heat.svg"),
    ("plots-training-empty-metrics", lambda i, t: ["plots", "training", text(t / "metrics.jsonl", ""),
                                                   "--out", t / "curves.svg"], "{t}/metrics.jsonl"),
    ("plots-training-bad-line", lambda i, t: ["plots", "training", text(t / "metrics.jsonl", '{"epoch": 1}\n{'),
                                              "--out", t / "curves.svg"], "{t}/metrics.jsonl, line 2"),
    ("plots-learning-curves-names-for-other-files", lambda i, t: [
        "plots", "learning-curves", text(t / "a" / "metrics.jsonl", '{"epoch": 1, "step": 2, "valid_loss": 0.5}\n'),
        text(t / "b" / "metrics.jsonl", '{"epoch": 1, "step": 2, "valid_loss": 0.5}\n'), "--names", "a",
        "--out", t / "curves.svg"], "--names: 1 name(s) for 2 metrics file(s)"),
    ("plots-learning-curves-bad-line", lambda i, t: ["plots", "learning-curves", text(t / "a" / "metrics.jsonl"),
                                                     "--out", t / "curves.svg"], "{t}/a/metrics.jsonl, line 1"),
    ("plots-masks-shard-at-another-rate", lambda i, t: ["plots", "masks", "--model", i.models["base"], "--shard",
                                                        edited(i.shard, t / "rate.h5", lambda h5: h5.attrs.__setitem__(
                                                            "sample_rate", 8000)), "--out", t / "masks.png"],
     "{t}/rate.h5"),
    ("plots-masks-negative-seconds", lambda i, t: ["plots", "masks", "--model", i.models["base"], "--shard", i.shard,
                                                   "--out", t / "masks.png", "--seconds", -1], "--seconds -1"),
    ("plots-embeddings-of-a-mask-model", lambda i, t: ["plots", "embeddings", "--model", i.models["base"],
                                                       "--shard", i.shard, "--out", t / "emb.png"],
     "{i.models[base]}"),
    ("plots-audio-missing-estimates", lambda i, t: ["plots", "audio", "--shard", i.shard, "--estimates", t / "est",
                                                    "--out-dir", t / "clips", "--page", t / "page.html"], "{t}/est"),
    ("plots-audio-out-dir-is-a-file", lambda i, t: ["plots", "audio", "--shard", i.shard, "--out-dir",
                                                    text(t / "clips"), "--page", t / "page.html"], "{t}/clips"),
    ("plots-audio-page-under-a-file", lambda i, t: ["plots", "audio", "--shard", i.shard, "--out-dir", t / "clips",
                                                    "--page", text(t / "afile") / "page.html"], "{t}/afile"),
    # submit
    ("submit-negative-gpu", lambda i, t: ["submit", "--executor", "local", "--gpu", -1, "--", "index", i.musdb],
     "resource gpu"),
    ("submit-bad-slurm-extra", lambda i, t: ["submit", "--executor", "local", "--slurm-extra", "qos", "--",
                                             "index", i.musdb], "slurm_extra"),
    ("submit-log-dir-under-a-file", lambda i, t: ["submit", "--executor", "local", "--log-dir",
                                                  text(t / "afile") / "logs", "--", "index", i.musdb], "{t}/afile"),
    # check-config (a file under the working directory is named relative to it)
    ("check-config-missing-file", lambda i, t: ["check-config", t / "mine.yaml", "--schema", SCHEMA],
     "mine.yaml: file not found"),
    ("check-config-unknown-model", lambda i, t: ["check-config", text(t / "mine.yaml", "experiments:\n  x:\n    "
                                                                      "model: no_such_model\n"), "--schema", SCHEMA],
     "mine.yaml: experiments.x.model"),
    ("check-config-augment-gain-reversed", lambda i, t: ["check-config", text(t / "mine.yaml", "loader:\n  augment:\n"
                                                                                 "    gain: [1.5, 0.5]\n"),
                                                         "--schema", SCHEMA],
     "mine.yaml: config key loader.augment.gain: [1.5, 0.5]: the low gain 1.5 is above the high gain 0.5"),
    ("check-config-augment-dropout-one", lambda i, t: ["check-config", text(t / "mine.yaml", "loader:\n  augment: "
                                                                               "{source_dropout: 1}\n"),
                                                       "--schema", SCHEMA],
     "mine.yaml: config key loader.augment.source_dropout: 1 is greater than or equal to the maximum of 1"),
    ("check-config-folder-as-file", lambda i, t: ["check-config", folder(t / "mine.yaml"), "--schema", SCHEMA],
     "mine.yaml: cannot be read"),
    ("check-config-missing-schema", lambda i, t: ["check-config", ROOT / "config" / "toy.yaml", "--schema",
                                                  t / "schema.yaml"], "schema.yaml"),
]]


def truncated_musdb(i: Inputs, t: Path) -> Path:
    (t / "musdb" / "test").mkdir(parents=True)
    truncated(next(i.musdb.glob("test/*.stem.mp4")), t / "musdb" / "test" / "Cut - Short.stem.mp4")
    return t / "musdb"


def text_musdb(t: Path) -> Path:
    text(t / "musdb" / "test" / "Text - Only.stem.mp4")
    return t / "musdb"


def other_stats(i: Inputs, t: Path) -> Path:
    compute_stats([i.train_shard], t / "stats.h5", n_fft=256, hop=64)
    return t / "stats.h5"


assert len({c.id for c in CASES}) == len(CASES), "case ids repeat"


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input(bad: Case, inputs: Inputs, tmp_path):
    args = bad.args(inputs, tmp_path)
    watched = (tmp_path, inputs.root, inputs.musdb, inputs.models["base"].parents[1], *filter(None, [inputs.full]))
    run_bad(musicsep(*args), tmp_path, bad.names.format(t=tmp_path, i=inputs), watched)


# --------------------------------------------------------------------------- a dataset laid out as stems


def stems_db(t: Path, files: dict[str, tuple[float, int]] | None = None, track: str = "train/Song") -> Path:
    """A stems dataset under t/db: one track folder of WAVs (name -> (seconds, rate)), and, for a track
    under train/, t/db/test/Other."""
    for name, (seconds, rate) in (files or {"vocals.wav": (0.5, 8000), "bass.wav": (0.5, 8000)}).items():
        path = t / "db" / track / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.zeros((int(seconds * rate), 2), np.float32), rate)
    if track.startswith("train/") and not (t / "db" / "test" / "Other").exists():
        stems_db(t, {"vocals.wav": (0.5, 8000), "bass.wav": (0.5, 8000)}, "test/Other")
    return t / "db"


def layout(**block) -> str:
    return json.dumps({"sources": ["vocals", "bass"], **block})


def stems_shard(t: Path, db: Path, block: str) -> list:
    return ["shard", db, "train/Song", "--layout", block, "--out", t / "shards" / "x.h5", "--split", "train"]


STEMS = [Case(*c) for c in [
    ("stems-rate-mismatch", lambda t: stems_shard(t, stems_db(t, {"bass.wav": (0.5, 8000), "vocals.wav": (0.5, 16000)}),
                                                 layout()), "{t}/db/train/Song/vocals.wav"),
    ("stems-length-mismatch", lambda t: stems_shard(t, stems_db(t, {"bass.wav": (0.25, 8000), "vocals.wav": (0.5, 8000)}),
                                                   layout()), "{t}/db/train/Song/bass.wav"),
    ("stems-pattern-matches-nothing", lambda t: ["index", stems_db(t), "--layout", layout(
        stems={"vocals.wav": "vocals", "bass.wav": "bass", "nope/*": "bass"})], "dataset.stems.nope/*"),
    ("stems-two-patterns-claim-a-file", lambda t: ["index", stems_db(t), "--layout", layout(
        stems={"vocals*": "vocals", "*.wav": "bass"})], "{t}/db/test/Other/vocals.wav"),
    ("stems-duplicate-sources", lambda t: ["index", stems_db(t), "--layout", json.dumps(
        {"sources": ["vocals", "bass", "vocals"]})], "dataset.sources: 'vocals' is listed twice"),
    ("stems-track-without-stems", lambda t: ["index", stems_db(t) if text(t / "db" / "train" / "Empty" / "data.json")
                                             else None, "--layout", layout()], "{t}/db/train/Empty"),
    ("stems-unmapped-file", lambda t: ["index", stems_db(t, {"vocals.wav": (0.5, 8000), "click.wav": (0.5, 8000)}),
                                       "--layout", layout()], "{t}/db/train/Song/click.wav"),
    ("stems-unknown-split-in-csv", lambda t: ["index", stems_db(t, track="Song"), "--layout", layout(
        splits={"from": "csv", "csv": str(text(t / "splits.csv", "track,split\nSong,dev\n"))})],
     "{t}/splits.csv, line 2: unknown split 'dev'"),
    ("stems-catch-all-not-a-source", lambda t: ["index", stems_db(t), "--layout", layout(unmapped="rest")],
     "dataset.unmapped: 'rest' is neither"),
    ("stems-unknown-track", lambda t: ["shard", stems_db(t), "train/Nobody", "--layout", layout(), "--out",
                                       t / "x.h5", "--split", "train"], "{t}/db/train/Nobody: no such track folder"),
    ("stems-layout-file-missing", lambda t: ["index", stems_db(t), "--layout", t / "layout.yaml"], "{t}/layout.yaml"),
]]


@pytest.mark.parametrize("bad", STEMS, ids=[c.id for c in STEMS])
def test_bad_stems_dataset(bad: Case, tmp_path):
    """A dataset of stems, bad in one way: the dataset is written first, then watched."""
    args = bad.args(tmp_path)
    run_bad(musicsep(*args), tmp_path, bad.names.format(t=tmp_path), (tmp_path,))


SIX = "[vocals, drums, bass, guitar, piano, other]"

WORKFLOW = [    # id, the config file layered over the toy's (and files it names), what the last line names
    ("workflow-unknown-key", lambda t: text(t / "bad.yaml", "training:\n  epochz: 3\n"),
     "bad.yaml: unknown config key training.epochz"),
    ("workflow-missing-dataset", lambda t: text(t / "bad.yaml", f"dataset:\n  path: {t}/musdb18.zip\n"),
     "bad.yaml: dataset.path: {t}/musdb18.zip: dataset path does not exist"),
    ("workflow-text-as-dataset", lambda t: text(t / "bad.yaml", f"dataset:\n  path: {text(t / 'musdb18.zip')}\n"),
     "bad.yaml: dataset.path: {t}/musdb18.zip: neither a folder nor a zip file"),
    ("workflow-empty-dataset-folder", lambda t: text(t / "bad.yaml", f"dataset:\n  path: {folder(t / 'musdb')}\n"),
     "bad.yaml: dataset.path: {t}/musdb: not a MUSDB18 layout"),
    ("workflow-yaml-syntax-error", lambda t: text(t / "config" / "config.yaml", "training:\n  lr: [1, 2\nloader: {}\n"),
     "config/config.yaml: line 3, column 7: not valid YAML"),
    ("workflow-yaml-syntax-error-in-configfile", lambda t: text(t / "bad.yaml", "training:\n  lr: [1, 2\n"),
     "bad.yaml"),
    ("workflow-model-args-typo", lambda t: text(t / "bad.yaml", "experiments:\n  dpcl:\n    model_args: {dimm: 3}\n"),
     "bad.yaml: experiments.dpcl.model_args.dimm: unknown argument of deep_clustering"),
    ("workflow-duplicate-sources", lambda t: text(t / "bad.yaml", "dataset:\n  sources: [bass, bass]\n"),
     "bad.yaml: config key dataset.sources: ['bass', 'bass'] has non-unique elements"),
    ("workflow-other-sources-of-musdb", lambda t: text(t / "bad.yaml", f"dataset:\n  sources: {SIX}\n"),
     "bad.yaml: dataset.sources: vocals, drums, bass, guitar, piano, other: the toy of dataset.toy.format stems"),
]


SNAKEMAKE_READS = pytest.mark.xfail(strict=True, reason="Snakemake reads a --configfile itself, before the "
                                   "workflow: 'Config file is not valid JSON or YAML', without the file's name")


@pytest.mark.workflow
@pytest.mark.parametrize("make, names", [pytest.param(*w[1:], id=w[0], marks=[SNAKEMAKE_READS] * w[0].endswith(
    "in-configfile")) for w in WORKFLOW])
def test_bad_config_stops_the_workflow(make, names, tmp_path):
    """A dry run of the toy under the bad config file: Snakemake stops at
    parse time with the config check's line, and writes nothing (not even
    its .snakemake folder)."""
    config = make(tmp_path)     # a layer over the toy's, or the working directory's config/config.yaml
    layers = (*TOY_CONFIG, config) if config.parent == tmp_path else TOY_CONFIG
    command = snakemake_command(tmp_path, "-n", configfiles=layers, cores=1)
    run_bad(command, tmp_path, names.format(t=tmp_path), (tmp_path,), prefix="", env=snakemake_env())
