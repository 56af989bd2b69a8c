import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile
import stempeg

from musicsep import SOURCES, STREAMS, MusicsepError
from musicsep.data import SHARD_FORMAT
from musicsep.data.audio import write_stem_mp4
from musicsep.data.musdb import Dataset
from musicsep.data.shard import Shard, read_attrs, write_shard
from musicsep.io import atomic_path

JULIET = "train/Juliet's Rescue - Heartbeats.stem.mp4"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_round_trip_equals_musdbs_decode(real_musdb, tmp_path, example_stem):
    """A stem file's shard holds what musdb reads of it (stempeg's 16-bit
    decode, as musdb calls it), bit for bit, and nothing else at the source
    rate in stereo."""
    out = tmp_path / "shards" / "juliet.h5"
    attrs = write_shard(Dataset.open(real_musdb), JULIET, "train", out, slug="juliet")
    reference, rate = stempeg.read_stems(str(example_stem), ffmpeg_format="s16le")     # (5, samples, 2)
    with h5py.File(out) as h5:
        assert list(h5) == ["audio"]
        audio = h5["audio"]
        assert audio.shape == (5, 2, reference.shape[1])
        assert audio.chunks == (1, 2, 44100)
        np.testing.assert_array_equal(audio[:], reference.transpose(0, 2, 1))
        assert h5.attrs["format_version"] == attrs["format_version"] == SHARD_FORMAT
    with Shard(out) as shard:
        assert shard.reference_rate == 44100 and shard.reference_shape == (2, reference.shape[1])
        np.testing.assert_array_equal(shard.references(), shard.sources())
    saved = read_attrs(out)
    assert saved["name"] == "Juliet's Rescue - Heartbeats"
    assert saved["split"] == "train" and saved["subset"] == "train" and saved["slug"] == "juliet"
    assert saved["streams"] == list(STREAMS) and saved["sample_rate"] == rate == 44100
    import hashlib
    assert saved["source_checksum"] == "sha256:" + hashlib.sha256(example_stem.read_bytes()).hexdigest()
    assert saved["musicsep_version"] and saved["silent"] == []
    assert attrs["samples"] == reference.shape[1]
    assert leftovers(out.parent) == ["juliet.h5"]


def test_zip_resample_and_mono(real_musdb, tmp_path):
    archive = tmp_path / "musdb18.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in real_musdb.rglob("*.mp4"):
            zf.write(path, path.relative_to(real_musdb).as_posix())
    full = write_shard(Dataset.open(real_musdb), JULIET, "train", tmp_path / "a.h5")
    small = write_shard(Dataset.open(archive), JULIET, "valid", tmp_path / "b.h5", sample_rate=22050, mono=True)
    assert small["channels"] == 1 and small["sample_rate"] == 22050 and small["source_sample_rate"] == 44100
    assert small["source_checksum"] == full["source_checksum"]
    assert abs(small["samples"] - full["samples"] / 2) <= 2
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert b["audio"].shape[:2] == (5, 1)
        # the downmix of the resampled audio keeps the signal's level
        rms_a = np.sqrt(np.mean(a["audio"][0].mean(axis=0) ** 2))
        rms_b = np.sqrt(np.mean(b["audio"][0, 0] ** 2))
        assert rms_b == pytest.approx(rms_a, rel=0.05)
        # the references stay at the source rate in stereo: the full-rate shard's sources
        assert b["references"].chunks == (1, 2, 44100)
        np.testing.assert_array_equal(b["references"][:], a["audio"][1:])
    with Shard(tmp_path / "b.h5") as shard:
        assert (shard.sample_rate, shard.channels, shard.reference_rate) == (22050, 1, 44100)
        assert shard.reference_shape == (2, full["samples"])
        np.testing.assert_array_equal(shard.references(100, 200), shard.references()[:, :, 100:200])


def test_old_newer_and_broken_formats_are_refused(tmp_path, make_shard):
    """A shard of format 1 (no version recorded: float-decoded audio) is
    refused, saying why and what to do; so is one of a newer format, and
    references that are not the four sources."""
    path = make_shard(tmp_path / "t.h5", np.zeros((len(SOURCES), 2, 100), np.float32))
    with h5py.File(path, "r+") as h5:
        del h5.attrs["format_version"]
    with pytest.raises(MusicsepError) as info:
        Shard(path)
    for part in (str(path), "format 1 (none recorded)", f"this musicsep's {SHARD_FORMAT}",
                 "not as musdb's 16-bit decode", "delete it", "Snakemake rebuild it"):
        assert part in str(info.value), str(info.value)
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = SHARD_FORMAT + 1
    with pytest.raises(MusicsepError, match=f"{path}: a shard of format {SHARD_FORMAT + 1}, newer"):
        read_attrs(path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = "two"
    with pytest.raises(MusicsepError, match=f"{path}: not a musicsep shard .format version 'two'"):
        Shard(path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = SHARD_FORMAT
        h5.create_dataset("references", data=np.zeros((3, 2, 100), np.float32))
    with pytest.raises(MusicsepError, match=f"{path}: not a musicsep shard .its references are not 4 sources"):
        Shard(path)


def test_shards_from_arrays_have_the_format_of_decoded_ones(real_musdb, tmp_path, make_shard):
    """The tests' shards (conftest's make_shard) and a decoded track's come
    from the same writer: one dataset, of the same shape, type, chunks and
    attributes."""
    decoded = tmp_path / "decoded.h5"
    write_shard(Dataset.open(real_musdb), JULIET, "train", decoded)
    with Shard(decoded) as shard:
        audio = shard.audio[:]
    made = make_shard(tmp_path / "made.h5", audio[1:], mixture=audio[0], name=shard.name, split="train")
    with h5py.File(decoded) as a, h5py.File(made) as b:
        assert list(a) == list(b) == ["audio"]
        for prop in ("shape", "dtype", "chunks", "maxshape", "compression"):
            assert getattr(a["audio"], prop) == getattr(b["audio"], prop), prop
        np.testing.assert_array_equal(a["audio"][:], b["audio"][:])
        assert sorted(a.attrs) == sorted(b.attrs)
    want, got = read_attrs(decoded), read_attrs(made)
    for key in ("name", "subset", "split", "sample_rate", "streams", "channels", "samples", "duration", "source",
                "silent", "musicsep_version"):
        assert got[key] == want[key], key
    np.testing.assert_allclose(got["rms_db"], want["rms_db"], atol=0.011)


# ---------------------------------------------------------------- bad input --

def hq_track(root: Path, name="Artist & Co - Song (Live)", seconds=1.0, rate=44100, override=None,
             subtype="FLOAT"):
    folder = root / "train" / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    stems = rng.uniform(-0.2, 0.2, (4, int(seconds * rate), 2)).astype(np.float32)
    audio = {"mixture": stems.sum(0), **dict(zip(STREAMS[1:], stems))}
    for stream, data in audio.items():
        data, sr, kind = (override or {}).get(stream, (data, rate, subtype))
        if data is not None:
            soundfile.write(folder / f"{stream}.wav", data, sr, subtype=kind)
    return root, f"train/{name}"


def expect_error(dataset, member, out, *patterns):
    with pytest.raises(MusicsepError) as info:
        write_shard(Dataset.open(dataset), member, "train", out)
    for pattern in patterns:
        assert pattern in str(info.value), str(info.value)
    assert not out.exists()
    assert leftovers(out.parent) == [], "a partial shard was left behind"
    return str(info.value)


def test_hq_round_trip(tmp_path):
    root, member = hq_track(tmp_path / "hq")
    out = tmp_path / "out" / "t.h5"
    write_shard(Dataset.open(root), member, "train", out)
    with h5py.File(out) as h5:
        reference, _ = soundfile.read(root / member / "vocals.wav", dtype="float32")
        np.testing.assert_array_equal(h5["audio"][4], reference.T)


@pytest.mark.parametrize("subtype", ["PCM_24", "PCM_16"])
def test_hq_pcm_values_are_kept(tmp_path, subtype):
    """WAVs keep their PCM values, 24 bits too (not rounded to 16): in
    ``audio`` at the source rate, in the references of a 22050 Hz mono shard."""
    root, member = hq_track(tmp_path / "hq", subtype=subtype)
    wavs = {s: soundfile.read(root / member / f"{s}.wav", always_2d=True)[0].T for s in STREAMS}   # float64
    assert any(bool(np.any(w * 32768 != np.round(w * 32768))) for w in wavs.values()) == (subtype == "PCM_24")
    write_shard(Dataset.open(root), member, "train", tmp_path / "full.h5")
    write_shard(Dataset.open(root), member, "train", tmp_path / "small.h5", sample_rate=22050, mono=True)
    with Shard(tmp_path / "full.h5") as full, Shard(tmp_path / "small.h5") as small:
        np.testing.assert_array_equal(full.audio[:], np.stack([wavs[s] for s in STREAMS]))
        np.testing.assert_array_equal(small.references(), np.stack([wavs[s] for s in SOURCES]))


def test_hq_missing_source(tmp_path):
    root, member = hq_track(tmp_path / "hq", override={"vocals": (None, 0, "")})
    expect_error(root, member, tmp_path / "out" / "t.h5", "vocals.wav: missing file", "Artist & Co - Song (Live)")


def test_hq_different_lengths(tmp_path):
    root, member = hq_track(tmp_path / "hq", override={"bass": (np.zeros((30000, 2)), 44100, "FLOAT")})
    expect_error(root, member, tmp_path / "out" / "t.h5", "sources differ in length", "bass 0.6803 s",
                 "Artist & Co - Song (Live)")


def test_hq_different_rates(tmp_path):
    root, member = hq_track(tmp_path / "hq", override={"drums": (np.zeros((48000, 2)), 48000, "FLOAT")})
    expect_error(root, member, tmp_path / "out" / "t.h5", "sources differ in sample rate", "drums 48000 Hz")


def test_nan_after_decoding(tmp_path):
    bad = np.zeros((44100, 2), dtype=np.float32)
    bad[30000, 1] = np.nan
    root, member = hq_track(tmp_path / "hq", override={"other": (bad, 44100, "FLOAT")})
    expect_error(root, member, tmp_path / "out" / "t.h5", "NaN or Inf in 'other'", "near 0.00 s",
                 "Artist & Co - Song (Live)")


def test_silent_source_is_flagged(tmp_path):
    root, member = hq_track(tmp_path / "hq", override={"vocals": (np.zeros((44100, 2)), 44100, "PCM_16")})
    attrs = write_shard(Dataset.open(root), member, "train", tmp_path / "out" / "t.h5")
    assert attrs["silent"] == ["vocals"]


def test_wrong_number_of_streams(tmp_path, example_stem):
    (tmp_path / "ds" / "train").mkdir(parents=True)
    streams = np.zeros((2, 44100, 2), dtype=np.float32)
    write_stem_mp4(tmp_path / "ds" / "train" / "Two - Streams.stem.mp4", streams, 44100, ["a", "b"])
    expect_error(tmp_path / "ds", "train/Two - Streams.stem.mp4", tmp_path / "out" / "t.h5",
                 "Two - Streams.stem.mp4", "has 2 audio stream(s)", "track 'Two - Streams'")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_stem_file(tmp_path, example_stem, damage):
    (tmp_path / "ds" / "train").mkdir(parents=True)
    target = tmp_path / "ds" / "train" / "Broken - Track.stem.mp4"
    data = example_stem.read_bytes()
    target.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:64] + os.urandom(len(data) - 64))
    expect_error(tmp_path / "ds", "train/Broken - Track.stem.mp4", tmp_path / "out" / "t.h5",
                 str(target), "track 'Broken - Track'")


def test_missing_member(real_musdb, tmp_path):
    expect_error(real_musdb, "train/Nobody - Here.stem.mp4", tmp_path / "out" / "t.h5",
                 "Nobody - Here.stem.mp4: missing file")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.h5") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError
    assert leftovers(tmp_path) == []


def test_killed_mid_write_leaves_no_shard(tmp_path):
    """SIGKILL while the shard is being written: the output name never appears."""
    long = np.zeros((44100 * 60, 2), dtype=np.float32)
    root, member = hq_track(tmp_path / "hq", "Long - One", seconds=0.1,
                            override={s: (long, 44100, "PCM_16") for s in STREAMS})
    out = tmp_path / "out" / "long.h5"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "musicsep", "shard", str(root), member,
                             "--split", "train", "--out", str(out)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(out.parent.glob(".*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert [p for p in leftovers(out.parent) if not p.endswith(".tmp")] == []
    # the retried job completes and clears what the killed one left
    write_shard(Dataset.open(root), member, "train", out)
    assert leftovers(out.parent) == ["long.h5"]


def test_hq_zip_toy_round_trip(tmp_path):
    from musicsep.data.musdb import scan
    from musicsep.toy.musdb import make_toy_musdb

    archive = make_toy_musdb(tmp_path / "musdb18hq.zip", seed=4, train=2, test=0, duration=1.5, fmt="hq")
    dataset, tracks = scan(archive, subsets=["train"])
    assert (dataset.kind, dataset.is_zip) == ("hq", True)
    assert [t.duration for t in tracks] == [1.5, 1.5]
    out = tmp_path / "out" / "t.h5"
    write_shard(dataset, tracks[0].member, tracks[0].split, out)
    with zipfile.ZipFile(archive) as zf, zf.open(f"{tracks[0].member}/bass.wav") as fh:
        reference, _ = soundfile.read(fh, dtype="float32")
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["audio"][2], reference.T)


def test_shard_without_slug_stores_the_workflows_slug(real_musdb, tmp_path):
    """`musicsep shard` without --slug stores the slug the workflow gives the track
    (its track table's), not an empty one; the shard's file name plays no part."""
    from musicsep.data.musdb import scan

    out = tmp_path / "out" / "any-name.h5"
    proc = subprocess.run([sys.executable, "-m", "musicsep", "shard", str(real_musdb), JULIET,
                           "--split", "train", "--out", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    [track] = [t for t in scan(real_musdb)[1] if t.member == JULIET]
    assert read_attrs(out)["slug"] == track.slug == "juliets_rescue_heartbeats"
    with Shard(out) as shard:
        assert shard.slug == track.slug


# sha256 of the `audio` of the HQ toy's first track (seed 2019, 3 s) as shards held it before datasets
# of any sources: at the source rate, and resampled to 16 kHz (with its references)
BEFORE_SOURCES = {44100: ("fa24d7ef3248771b81c327077a811578acffe631bb6b042ca2b7c3057d41ac94", None),
                  16000: ("0cd453ac3eafe535504f44d1a04f97060bff313c7cf6b51e7280a0d066063a4c",
                          "2eb9c02b5e6ccf32fcc645381554b130dd7ad27d5d840523f9bf27773230df3e")}


def test_musdb_shards_hold_what_they_held_before_any_sources(tmp_path):
    """A MUSDB18 shard of the toy is bit for bit what it was before shards
    named their sources; it names them now (MUSDB18's four), and one without
    the attribute reads as MUSDB18's four."""
    import hashlib

    from musicsep.toy.musdb import make_toy_musdb

    dataset = Dataset.open(make_toy_musdb(tmp_path / "hq", seed=2019, train=1, test=0, duration=3.0, fmt="hq"))
    [(_, member)] = dataset.members("train")
    for rate, (audio_sha, references_sha) in BEFORE_SOURCES.items():
        out = tmp_path / f"{rate}.h5"
        write_shard(dataset, member, "train", out, sample_rate=rate)
        with h5py.File(out) as h5:
            assert hashlib.sha256(h5["audio"][:].tobytes()).hexdigest() == audio_sha
            assert references_sha is None and "references" not in h5 or \
                hashlib.sha256(h5["references"][:].tobytes()).hexdigest() == references_sha
        with Shard(out) as shard:
            assert shard.source_names == SOURCES and "missing" not in shard.attrs
        with h5py.File(out, "r+") as h5:
            del h5.attrs["sources"]
        with Shard(out) as shard:
            assert shard.source_names == SOURCES and shard.sources().shape[0] == 4


def test_sources_that_do_not_fit_the_rows_are_refused(tmp_path, make_shard):
    path = make_shard(tmp_path / "t.h5", np.zeros((len(SOURCES), 2, 100), np.float32))
    with h5py.File(path, "r+") as h5:
        h5.attrs["sources"] = ["vocals", "guitar"]
    with pytest.raises(MusicsepError, match=f"{path}: not a musicsep shard .no audio of 3 streams"):
        Shard(path)
