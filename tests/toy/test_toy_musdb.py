"""The built-in toy MUSDB: format, determinism, that it is music, and that a
stopped command leaves no worker and no partial output behind."""

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import musdb
import numpy as np
import pytest
import soundfile
from conftest import command_line, descendants, process_table, wait_until_gone

from musicsep import SAMPLE_RATE, SOURCES, STREAMS, MusicsepError
from musicsep.data.audio import decode, probe
from musicsep.toy.musdb import make_toy_musdb, render_streams, toy_names, toy_tracks
from musicsep.toy.song import plan_song


def test_names_carry_musdb_characters():
    names = toy_names(1, 10)
    assert len(set(names)) == 10 and names == toy_names(1, 10) and names != toy_names(2, 10)
    first5 = " ".join(names[:5])
    for char in " '&.()":
        assert char in first5, f"{char!r} missing from {names[:5]}"
    assert all(" - " in name for name in names)


def test_zip_layout_and_streams(toy_zip, tmp_path):
    rows = toy_tracks(7, 2, 1, 4.0)
    with zipfile.ZipFile(toy_zip) as zf:
        files = sorted(n for n in zf.namelist() if n.endswith(".stem.mp4"))
        assert files == sorted(member for _, _, member, _, _ in rows)
        assert {n.split("/")[0] for n in files} == {"train", "test"}
        zf.extractall(tmp_path)
    for member in files:
        streams = probe(tmp_path / member)
        assert len(streams) == 5
        assert {(s.codec, s.sample_rate, s.channels) for s in streams} == {("aac", 44100, 2)}
        assert streams[0].duration == pytest.approx(4.0, abs=0.05)


def snr(reference, estimate):
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2))


def test_mixture_is_the_sum_of_the_stems(toy_zip, tmp_path):
    with zipfile.ZipFile(toy_zip) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".stem.mp4"))
        zf.extract(member, tmp_path)
    streams = np.stack([decode(tmp_path / member, stream=k) for k in range(5)])
    assert snr(streams[0], streams[1:].sum(0)) > 20     # AAC at 256 kb/s per stream
    # before encoding the sum is exact
    exact = render_streams(7000, 2.0)
    np.testing.assert_allclose(exact[0], exact[1:].sum(0), atol=1e-6)


def test_same_seed_same_audio():
    a, b, c = render_streams(11, 3.0), render_streams(11, 3.0), render_streams(12, 3.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 3 * SAMPLE_RATE, 2) and a.dtype == np.float32
    assert not np.allclose(a, c)
    assert np.abs(a[0]).max() <= 0.9 + 1e-6


def test_musdb_sources_render_as_before_the_guitar_and_piano():
    """MUSDB18's four sources render bit for bit as they did before the toy
    had more voices (sha256 of seed 2019000's streams, 3 s); six sources add a
    guitar and a piano, each audible, the mixture their sum."""
    import hashlib

    streams = render_streams(2019000, 3.0)
    assert hashlib.sha256(streams.tobytes()).hexdigest() == \
        "ef7c9256cafbffb40d472b541dc7a5e9ae3f835850743ec15e35b4a71ca70962"
    six = ("vocals", "drums", "bass", "guitar", "piano", "other")
    mixed = render_streams(2019000, 3.0, six)
    assert mixed.shape == (7, 3 * SAMPLE_RATE, 2)
    np.testing.assert_allclose(mixed[0], mixed[1:].sum(0), atol=1e-6)
    rms = dict(zip(six, np.sqrt(np.mean(mixed[1:] ** 2, axis=(1, 2)))))
    assert rms["guitar"] > 0.01 and rms["piano"] > 0.01, rms
    assert band_share(mixed[1 + six.index("guitar")], 80, 5000) > 0.7       # strings, not noise


def test_sources_beyond_musdbs_need_a_layout_of_files(tmp_path):
    with pytest.raises(MusicsepError, match="--sources: a .stem.mp4 holds MUSDB18's"):
        make_toy_musdb(tmp_path / "t.zip", train=1, test=0, duration=1, sources=("vocals", "guitar"))
    with pytest.raises(MusicsepError, match="--sources: the toy has no 'flute'"):
        make_toy_musdb(tmp_path / "t", train=1, test=0, duration=1, fmt="moisesdb", sources=("flute",))
    assert not list(tmp_path.iterdir())


def test_same_seed_same_files(tmp_path):
    one = make_toy_musdb(tmp_path / "a", seed=3, train=1, test=0, duration=2.0)
    two = make_toy_musdb(tmp_path / "b", seed=3, train=1, test=0, duration=2.0)
    (track,) = one.glob("train/*.stem.mp4")
    np.testing.assert_array_equal(decode(track, stream=4), decode(two / track.relative_to(one), stream=4))


def test_songs_differ_in_tempo_key_and_arrangement():
    plans = [plan_song(seed) for seed in range(8)]
    assert len({p.tempo for p in plans}) >= 6
    assert len({p.key for p in plans}) >= 4
    assert len({p.sections for p in plans}) >= 4


def band_share(audio, low, high):
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=-1))) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / SAMPLE_RATE)
    return spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum()


def test_it_is_music():
    streams = render_streams(2019000, 16.0)
    stems = dict(zip(STREAMS, streams))
    for source in SOURCES:
        rms = np.sqrt(np.mean(stems[source] ** 2))
        assert 20 * np.log10(rms) > -40, f"{source} is (nearly) silent"
    assert band_share(stems["bass"], 0, 300) > 0.8                 # a bass line
    assert band_share(stems["vocals"], 150, 4000) > 0.8            # a voice's range
    assert band_share(stems["drums"], 5000, 22050) > 0.01          # cymbals are there
    # drums are percussive: energy in 10 ms frames is peaky
    frames = np.sqrt(np.mean(stems["drums"][: 16 * 44100].reshape(-1, 441, 2) ** 2, axis=(1, 2)))
    assert np.percentile(frames, 95) > 4 * np.median(frames)
    # the voice sings in phrases: there are rests of a quarter second or more
    voc = np.sqrt(np.mean(stems["vocals"].reshape(-1, 11025, 2) ** 2, axis=(1, 2)))
    assert (voc < 0.01 * voc.max()).sum() >= 2


def test_hq_layout_and_musdb_reads_both(tmp_path, toy_zip):
    hq = make_toy_musdb(tmp_path / "hq", seed=7, train=1, test=1, duration=2.0, fmt="hq")
    folders = sorted(p.relative_to(hq).as_posix() for p in hq.glob("*/*"))
    assert len(folders) == 2
    for folder in folders:
        names = sorted(p.name for p in (hq / folder).iterdir())
        assert names == sorted(f"{s}.wav" for s in STREAMS)
        audio = {s: soundfile.read(hq / folder / f"{s}.wav")[0] for s in STREAMS}
        assert audio["vocals"].shape == (2 * 44100, 2)
        np.testing.assert_allclose(audio["mixture"], sum(audio[s] for s in SOURCES), atol=3e-4)
    db = musdb.DB(root=str(hq), is_wav=True)
    assert len(db) == 2 and db[0].audio.shape == (2 * 44100, 2)
    stems_dir = tmp_path / "stems"
    with zipfile.ZipFile(toy_zip) as zf:
        zf.extractall(stems_dir)
    db = musdb.DB(root=str(stems_dir), subsets="train")
    assert len(db) == 2
    assert db[0].targets["vocals"].audio.shape[1] == 2


def start_toy_command(out, log, new_session: bool = False) -> tuple[subprocess.Popen, dict[int, int]]:
    """`musicsep make-toy-musdb` with two workers, its messages to the file
    ``log`` (a pipe would keep a test waiting on a worker left behind), in a
    process group of its own with ``new_session``, caught while both workers
    run and one of them is encoding a track with ffmpeg; returns the command
    and every process below it then (pid -> start time)."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "musicsep", "make-toy-musdb", str(out), "--train", "4",
                                 "--test", "0", "--duration", "8", "--jobs", "2"], stderr=err,
                                start_new_session=new_session)
    below: dict[int, int] = {}
    while proc.poll() is None:
        table = process_table()
        below = {pid: table[pid][2] for pid in descendants(proc.pid, table)}
        commands = [(command_line(pid) or "").split(" ")[0] for pid in below]
        workers = [pid for pid in below if table[pid][0] == proc.pid
                   and "resource_tracker" not in (command_line(pid) or "")]
        if len(workers) == 2 and any(Path(c).name == "ffmpeg" for c in commands):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the command finished before it could be stopped"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "no work folder yet"
    return proc, below


def test_sigterm_ends_the_workers_and_leaves_nothing(tmp_path):
    """SIGTERM (SLURM's, or a requeued job's checkpoint): the command terminates its
    workers and their ffmpeg, removes its work folder and exits with 143."""
    out = tmp_path / "out" / "toy.zip"
    out.parent.mkdir()
    proc, below = start_toy_command(out, tmp_path / "log")
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    err = (tmp_path / "log").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.rstrip().endswith("terminated"), err
    assert wait_until_gone(below) == [], [command_line(pid) for pid in below]
    assert leftovers(out.parent) == []


@pytest.mark.slow
def test_ctrl_c_ends_the_workers_and_leaves_nothing(tmp_path):
    """Ctrl-C in a terminal: SIGINT to every process of the group. The workers leave
    it to the command, which ends them (and their ffmpeg) and exits with 130."""
    out = tmp_path / "out" / "toy.zip"
    out.parent.mkdir()
    proc, below = start_toy_command(out, tmp_path / "log", new_session=True)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait()
    err = (tmp_path / "log").read_text()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert err.rstrip().endswith("interrupted"), err
    assert wait_until_gone(below) == []
    assert leftovers(out.parent) == []


@pytest.mark.slow
def test_a_killed_command_takes_its_workers_along(tmp_path):
    """SIGKILL cannot be handled: the workers end with their parent anyway, and the
    next run removes the work folder the killed one left."""
    out = tmp_path / "out" / "toy.zip"
    out.parent.mkdir()
    proc, below = start_toy_command(out, tmp_path / "log")
    proc.kill()
    proc.wait()
    assert wait_until_gone(below) == [], [command_line(pid) for pid in below]
    assert [name for name in leftovers(out.parent) if name.startswith(".toy.zip.")]
    make_toy_musdb(out, seed=1, train=1, test=0, duration=1.0)
    assert leftovers(out.parent) == ["toy.zip"]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())
