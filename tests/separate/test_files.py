"""Separating files (``musicsep separate``): streamed separation against the
whole-track path, mono files, the stems' formats, the set of stems written
whole or not at all (a real SIGTERM to a real process, a really full disk),
truncated inputs, and the errors and log lines of the command line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import soxr
import torch
from separation_inputs import SR, music, synthetic_sources, tiny

from musicsep import SOURCES, TARGETS, MusicsepError
from musicsep.cli import main
from musicsep.data.audio import decode
from musicsep.separate import DEFAULT_FORMAT, FORMATS
from musicsep.separate.separator import Separator, separate_file, write_targets
from musicsep.separate.stems import quantise
from musicsep.separate.streaming import StreamingOverlapAdd
from musicsep.spectral.stft import Framing, OverlapAdd

pytestmark = pytest.mark.usefixtures("one_thread")


def save(model, path):
    torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save(tiny(), tmp_path_factory.mktemp("model") / "model.pt")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if " INFO " not in line and " WARNING " not in line]


def cli(capsys, *args) -> tuple[int, list[str]]:
    """``musicsep ARGS`` in this process: its exit status and error lines."""
    capsys.readouterr()
    status = main(["separate", *map(str, args)])
    return status, error_lines(capsys.readouterr().err)


def everything_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def write_wav(path, audio, rate, subtype="FLOAT"):
    soundfile.write(path, np.ascontiguousarray(audio.T), rate, subtype=subtype)
    return path


# streamed = whole track ------------------------------------------------------------------------


@pytest.mark.parametrize("length, n_fft, hop", [(1, 512, 128), (300, 512, 128), (9001, 512, 128),
                                                 (9001, 512, 160), (40000, 1024, 256)])
def test_streaming_overlap_add_is_the_whole_track_overlap_add(length, n_fft, hop):
    """Chunks of random frames added to both: what the streaming sum hands
    out, chunk by chunk, is the whole-track sum's result, value for value
    (hop 160 does not divide 512: the other overlap-add)."""
    framing = Framing(length, n_fft, hop, torch.hann_window(n_fft))
    whole, stream = OverlapAdd(framing, (3, 2)), StreamingOverlapAdd(framing, (3, 2))
    generator = torch.Generator().manual_seed(length)
    blocks = []
    for f0, f1, _, _ in framing.chunks(7):
        spec = torch.randn(3, 2, n_fft // 2 + 1, f1 - f0, dtype=torch.complex64, generator=generator)
        whole.add(spec, f0, f1)
        stream.add(spec, f0, f1)
        blocks.append(stream.flush(f1))
        assert stream.buf.shape[-1] <= (f1 - f0 + 1) * hop + n_fft       # only the open samples are kept
    assert sum(b.shape[-1] for b in blocks[:-1]) < length or len(blocks) == 1
    np.testing.assert_array_equal(np.concatenate(blocks, axis=-1), whole.result())


@pytest.mark.parametrize("rate", [SR, 22050])
def test_a_streamed_file_gives_the_whole_track_estimates(tmp_path, rate):
    """A stereo file separated as a stream (decoded into a scratch file,
    read back a window at a time, written block by block) against the
    whole-track path: decode, resample the whole signal, ``separate`` it in
    memory, resample each estimate back and trim. The sources are equal
    value for value; ``accompaniment`` is summed after resampling, within
    float32 rounding."""
    x = music(3.0)
    if rate != SR:
        x = soxr.resample(x.T, SR, rate, quality="HQ").T.astype(np.float32)
    wav = write_wav(tmp_path / "in.wav", x, rate)
    separator = Separator(tiny(), chunk_seconds=0.5, batch_chunks=2)
    assert separator.n_chunks(3 * SR) == 6
    paths = separate_file(wav, separator, tmp_path / "out", progress=False)

    audio = decode(wav)
    mix = audio if rate == SR else soxr.resample(audio.T, rate, SR, quality="HQ").T.astype(np.float32)
    expected = separator.separate(mix)
    for target in TARGETS:
        reference = expected[target]
        if rate != SR:
            reference = soxr.resample(reference.T, SR, rate, quality="HQ").T
        reference = reference[:, :audio.shape[1]]
        got, got_rate = soundfile.read(paths[target], dtype="float32", always_2d=True)
        assert got_rate == rate and got.T.shape == audio.shape == reference.shape, target
        if target == "accompaniment":
            np.testing.assert_allclose(got.T, reference, rtol=0, atol=2e-6)
        else:
            np.testing.assert_array_equal(got.T, reference, err_msg=target)


# mono ---------------------------------------------------------------------------------------


def passing_model():
    """A real mask model whose weights give drums a mask of 1 and the other
    sources 0 wherever the inverse mel projection reaches 1 (about 450 Hz to
    5 kHz at 16 kHz): its stems of audio in that band sum to the audio."""
    model = tiny()
    with torch.no_grad():
        model.head.weight.zero_()
        bias = torch.full((len(SOURCES), model.features.n_mels), -30.0)
        bias[SOURCES.index("drums")] = 30.0
        model.head.bias.copy_(bias.flatten())
    return model


def test_a_mono_file_comes_back_mono_and_the_stems_sum_to_it(tmp_path):
    """Mono in, mono out, at the input's level: ffmpeg's stereo upmix scaled
    a mono file by 0.7071, so its stems summed to 0.71 of it."""
    rate = 44100
    t = np.arange(int(2.5 * rate)) / rate
    fade = np.minimum(1, np.minimum(t, t[-1] - t) / 0.2)
    tone = fade * sum(0.2 * np.sin(2 * np.pi * f * t + f) for f in (1000, 1500, 2500, 3500))
    wav = write_wav(tmp_path / "mono.wav", tone[None].astype(np.float32), rate)
    assert main(["separate", str(wav), "--model", str(save(passing_model(), tmp_path / "pass.pt")),
                 "--out", str(tmp_path / "out"), "--chunk-seconds", "1"]) == 0
    stems = {}
    for target in TARGETS:
        data, got_rate = soundfile.read(tmp_path / "out" / f"{target}.wav", dtype="float32", always_2d=True)
        assert got_rate == rate and data.shape == (len(tone), 1), target
        stems[target] = data[:, 0]
    total = sum(stems[s] for s in SOURCES)
    assert np.abs(total - tone).max() < 1e-3 * np.abs(tone).max()
    assert np.abs(stems["drums"]).max() > 0.99 * np.abs(tone).max()
    np.testing.assert_allclose(stems["accompaniment"], stems["drums"] + stems["bass"] + stems["other"], atol=1e-7)


# formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_round_trips(tmp_path, fmt):
    """Each format reads back with its subtype and the float estimates
    within half a quantisation step (exactly the rounded values)."""
    x = 3.0 * music(1.0)                              # loud: some estimates pass full scale
    wav = write_wav(tmp_path / "in.wav", x, SR)
    separator = Separator(tiny(), chunk_seconds=0.5)
    reference = separate_file(wav, separator, tmp_path / "float", progress=False)
    paths = separate_file(wav, separator, tmp_path / fmt, progress=False, fmt=fmt)
    container, subtype, ext = FORMATS[fmt]
    assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == sorted(f"{t}{ext}" for t in TARGETS)
    clipped = 0
    for target in TARGETS:
        info = soundfile.info(str(paths[target]))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (container, subtype, SR, 2)
        got, _ = soundfile.read(paths[target], dtype="float64", always_2d=True)
        want, _ = soundfile.read(reference[target], dtype="float64", always_2d=True)
        assert got.shape == want.shape
        if subtype == "FLOAT":
            np.testing.assert_array_equal(got, want)
            continue
        step = 2.0 ** -(15 if subtype == "PCM_16" else 23)
        inside = np.abs(want) < 1 - step
        assert np.abs(got - want)[inside].max() <= step / 2
        np.testing.assert_array_equal(got, np.clip(np.rint(want / step), -1 / step, 1 / step - 1) * step)
        clipped += np.count_nonzero(~inside)
    assert subtype == "FLOAT" or clipped > 0


def test_quantise_clips_and_counts():
    x = np.array([[-1.5], [-1.0], [-0.2], [0.49 / 32768], [0.51 / 32768], [1.0 - 2 ** -15], [1.0], [2.0]],
                 np.float32)
    q16, clipped = quantise(x, "PCM_16")
    assert q16.dtype == np.int16 and clipped == 3
    assert q16[:, 0].tolist() == [-32768, -32768, -6554, 0, 1, 32767, 32767, 32767]
    q24, clipped = quantise(x, "PCM_24")
    assert q24.dtype == np.int32 and clipped == 3 and not (q24 & 255).any()
    assert (q24[:, 0] >> 8).tolist() == [-2 ** 23, -2 ** 23, -1677722, 125, 131, 2 ** 23 - 256, 2 ** 23 - 1,
                                         2 ** 23 - 1]
    assert quantise(x, "FLOAT") == (x, 0)


def test_format_on_the_command_line(tmp_path, model_file, capsys):
    wav = write_wav(tmp_path / "in.wav", music(0.5), SR)
    assert main(["separate", str(wav), "--model", str(model_file), "--out", str(tmp_path / "out"),
                 "--format", "flac-24"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{t}.flac" for t in TARGETS)
    assert DEFAULT_FORMAT == "wav-f32"
    with pytest.raises(SystemExit):
        main(["separate", str(wav), "--model", str(model_file), "--out", str(tmp_path / "x"), "--format", "mp3"])
    assert "invalid choice: 'mp3'" in capsys.readouterr().err


def test_shards_take_a_format_and_oracles_refuse_one(tmp_path, model_file, make_shard, capsys):
    shard = make_shard(tmp_path / "t.h5", synthetic_sources(1.0), sample_rate=SR)
    out = tmp_path / "m"
    assert cli(capsys, shard, "--shard", "--model", model_file, "--out", out, "--format", "wav-16") == (0, [])
    assert [soundfile.info(str(tmp_path / "m" / f"{t}.wav")).subtype for t in TARGETS] == ["PCM_16"] * 5
    assert cli(capsys, shard, "--shard", "--oracle", "irm1", "--out", tmp_path / "o", "--format", "flac-16") == (
        1, ["error: --format flac-16: oracles write wav-f32 (the evaluation's)"])
    assert not (tmp_path / "o").exists()


# the set of stems: whole or nothing ---------------------------------------------------------


def test_stems_replace_a_previous_set(tmp_path, model_file):
    """Into an existing folder the new set replaces the old, other files stay."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for target in TARGETS:
        (out / f"{target}.wav").write_bytes(b"old")
    wav = write_wav(tmp_path / "in.wav", music(0.5), SR)
    paths = separate_file(wav, model_file, out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert everything_under(tmp_path) == sorted(["in.wav", "out", "out/notes.txt"]
                                                + [f"out/{t}.wav" for t in TARGETS])
    assert all(soundfile.info(str(p)).frames == SR // 2 + 33 for p in paths.values())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_writing_leaves_no_stems(tmp_path, model_file, signum):
    """A real SIGTERM (or SIGINT) to a real separation once all five stems
    are being written: no stem appears, nothing is left behind, exit status
    128 + the signal's number, one line saying so."""
    long = np.concatenate([music(10.0, seed=k) for k in range(12)], axis=1)
    wav = write_wav(tmp_path / "long.wav", long, SR, subtype="PCM_16")
    out = tmp_path / "sub" / "out"
    proc = subprocess.Popen([sys.executable, "-m", "musicsep", "separate", str(wav), "--model", str(model_file),
                             "--out", str(out), "--chunk-seconds", "2", "--batch-chunks", "1"],
                            stderr=subprocess.PIPE, text=True)
    staged = tmp_path / "sub" / f".out.{proc.pid}.tmp"

    def writing():
        sizes = [(staged / f"{t}.wav").stat().st_size if (staged / f"{t}.wav").exists() else 0 for t in TARGETS]
        return min(sizes) > 100_000
    deadline = time.monotonic() + 300
    while proc.poll() is None and not writing() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the separation finished before it could be stopped"
    proc.send_signal(signum)
    _, stderr = proc.communicate()
    assert proc.returncode == 128 + signum, stderr
    assert error_lines(stderr) == [f"error: {out}: stopped by {signal.Signals(signum).name}; no stems written"]
    assert everything_under(tmp_path) == ["long.wav"]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, model_file, capsys):
    """A real full disk: a 1 MiB tmpfs (needs root and mount; skipped
    otherwise). The stems of 2 s of stereo float at 16 kHz (5 x 256 kB) do
    not fit: one line naming the file and the cause, exit status 1, the
    tmpfs left empty."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        wav = write_wav(tmp_path / "in.wav", music(2.0), SR)
        status, lines = cli(capsys, wav, "--model", model_file, "--out", disk / "stems")
        assert status == 1 and len(lines) == 1, lines
        assert lines[0].startswith(f"error: {disk / 'stems'}") and lines[0].endswith("No space left on device)")
        assert everything_under(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# bad inputs ---------------------------------------------------------------------------------


def test_out_naming_a_file_and_a_folder_as_input(tmp_path, model_file, capsys):
    wav = write_wav(tmp_path / "in.wav", music(0.3), SR)
    taken = tmp_path / "taken.txt"
    taken.write_text("keep")
    assert cli(capsys, wav, "--model", model_file, "--out", taken) == (1, [
        f"error: {taken}: exists and is not a folder (--out names the folder for the stems)"])
    assert taken.read_text() == "keep"
    assert cli(capsys, tmp_path, "--model", model_file, "--out", tmp_path / "out") == (1, [
        f"error: {tmp_path}: is a folder, not an audio file"])
    assert cli(capsys, wav, "--model", model_file, "--out", taken / "out") == (1, [
        f"error: {taken / 'out'}: cannot make the folder: {taken} is not a folder"])
    assert everything_under(tmp_path) == ["in.wav", "taken.txt"]


def truncate(path, keep_seconds, rate, frame_bytes):
    """Cut a file's audio after ``keep_seconds`` (its header still declares the whole)."""
    data = path.read_bytes()
    header = data.index(b"data") + 8 if path.suffix == ".wav" else 0
    path.write_bytes(data[:header + int(keep_seconds * rate) * frame_bytes])


@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_a_truncated_file_is_an_error(tmp_path, model_file, kind, capsys):
    """The issue's WAV: its header says 6.08 s, its data holds 2.83 s (and a
    FLAC cut short: its STREAMINFO declares the whole). Decoders read what
    is there without complaint; the separation refuses it, naming the
    missing duration, and writes nothing."""
    rate = 16000
    path = tmp_path / f"cut.{kind}"
    audio = np.concatenate([music(3.0, seed=k) for k in (1, 2, 3)], axis=1)[:, :int(6.08 * rate)]
    write_wav(path, audio, rate, subtype="PCM_16")
    if kind == "wav":
        truncate(path, 2.83, rate, 4)
        assert soundfile.info(str(path)).frames == int(2.83 * rate)     # libsndfile clamps to the file
    else:
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    status, lines = cli(capsys, path, "--model", model_file, "--out", tmp_path / "out")
    assert status == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines
    if kind == "wav":
        assert lines[0] == (f"error: {path}: truncated or corrupt: decoded 2.83 s of the 6.08 s its header "
                            "declares (3.25 s missing)")
    else:       # ffmpeg reports the broken frame and exits with status 0; STREAMINFO declares 6.08 s
        assert "truncated or corrupt: decoded " in lines[0] and "of the 6.08 s its header declares (" in lines[0]
    assert everything_under(tmp_path) == [f"cut.{kind}"]


def test_a_complete_file_is_not_flagged(tmp_path, model_file):
    """An mp3 (priming and padding) and a WAV written to a pipe (no size in
    its header) pass."""
    mp3 = tmp_path / "x.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
                    "-ac", "1", "-ar", "44100", str(mp3)], check=True)
    piped = tmp_path / "piped.wav"
    with open(piped, "wb") as fh:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
                        "-f", "wav", "pipe:1"], check=True, stdout=fh)
    for path in (mp3, piped):
        separate_file(path, model_file, tmp_path / path.stem, progress=False)
        assert soundfile.info(str(tmp_path / path.stem / "vocals.wav")).frames == decode(path).shape[-1]


# what the log counts ------------------------------------------------------------------------


def test_the_log_counts_chunks_and_batches(tmp_path, model_file, caplog):
    """"8 chunks in 3 batches", then progress by batch (stderr is not a terminal here: log lines)."""
    wav = write_wav(tmp_path / "in.wav", music(7.0), SR)
    caplog.set_level(logging.INFO)
    assert main(["separate", str(wav), "--model", str(model_file), "--out", str(tmp_path / "out"),
                 "--chunk-seconds", "1", "--batch-chunks", "3"]) == 0
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.endswith(": 8 chunks in 3 batches") for line in lines), lines
    assert [line for line in lines if ": batch " in line] == [f"in.wav: batch {k}/3" for k in (1, 2, 3)]
    assert not any("chunk(s)" in line or "chunk 1/" in line for line in lines)


def test_write_targets_takes_a_format_and_refuses_unknown_ones(tmp_path):
    estimates = Separator(tiny()).separate(music(0.2))
    paths = write_targets(estimates, tmp_path / "o", SR, "wav-24")
    assert soundfile.info(str(paths["vocals"])).subtype == "PCM_24"
    with pytest.raises(MusicsepError, match="unknown stem format 'ogg'"):
        write_targets(estimates, tmp_path / "p", SR, "ogg")
    assert not (tmp_path / "p").exists()
