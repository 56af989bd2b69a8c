"""Peak memory of separating a long file with ``musicsep separate``, against its length.

For each length in ``--minutes`` a stereo 16-bit WAV of that many minutes at
44.1 kHz is generated here, block by block (tones and noise bursts: what the
model makes of them does not matter, only how much of it there is), and
``python -m musicsep separate FILE --model MODEL --out DIR --format FMT`` runs
in a process of its own. Printed per length: the peak resident memory of that
process (its ``ru_maxrss``, the largest of it and its ffmpeg decoder), its
wall time, and the bytes of stems it wrote. Goals: a 60-minute file under
2 GB, and the longest file's peak within 1.2 times the shortest's (memory
does not grow with the length).

For contrast, ``--whole-minutes`` (10 by default; 0 skips it) also measures
the whole-track path the command took before it streamed: the file decoded
into memory, resampled there, ``Separator.separate`` on the whole signal and
``write_targets`` of the five whole estimates.

The model is an untrained BLSTM mask model of the paper's size (hidden 300,
4 layers, 44.1 kHz, n_fft 2048; memory and time do not depend on its
weights), or with ``--tiny`` one of the tests' size at 16 kHz (hidden 8: a
quick run, resampling both ways). Asserts nothing; peak memory depends on
the machine's allocator and threads, so compare the lengths against each
other (measured figures: ``benchmarks/RESULTS.md``, separation memory). The
inputs and stems (for 60 minutes: 0.6 GB in, 1.3 GB of scratch, 3.2 GB of
16-bit stems) go to a temporary folder under ``--workdir``, removed at the
end. Run from the repository root with the virtual environment:

    python benchmarks/bench_separate_memory.py [--minutes 10 60] [--whole-minutes 10]
        [--tiny] [--format wav-16] [--workdir /tmp] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from common import note, print_summary

from musicsep.models.registry import build_model
from musicsep.separate import FORMATS

RATE = 44100
GOAL_BYTES = 2 * 10 ** 9

PEAK = """import resource, subprocess, sys
status = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, status)
"""

WHOLE = """import sys
import numpy as np, soxr
from musicsep.data.audio import decode
from musicsep.memory import reuse_freed_memory
from musicsep.separate.separator import Separator, write_targets
reuse_freed_memory()
path, model, out, fmt = sys.argv[1:]
separator = Separator.from_file(model, device="cpu")
audio = decode(path)
rate, length = 44100, audio.shape[-1]
mix = audio if separator.sample_rate == rate else soxr.resample(audio.T, rate, separator.sample_rate, quality="HQ").T
estimates = separator.separate(np.ascontiguousarray(mix, dtype=np.float32))
if separator.sample_rate != rate:
    estimates = {k: soxr.resample(v.T, separator.sample_rate, rate, quality="HQ").T[:, :length]
                 for k, v in estimates.items()}
write_targets(estimates, out, rate, fmt)
"""


def make_input(path: Path, minutes: float, seed: int = 0) -> None:
    """``minutes`` of stereo 16-bit audio at 44.1 kHz: a chord per second and
    decaying noise bursts, written 10 s at a time."""
    rng = np.random.default_rng(seed)
    block = 10 * RATE
    t = np.arange(block) / RATE
    with soundfile.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as fh:
        left = int(minutes * 60 * RATE)
        while left > 0:
            notes = 110 * 2 ** (rng.integers(0, 36, size=(10, 3)) / 12)       # a chord per second
            freq = np.repeat(notes, RATE, axis=0)
            tones = 0.1 * np.sin(2 * np.pi * freq * t[:, None]).sum(1)
            burst = 0.2 * rng.standard_normal(block) * np.exp(-20 * ((2 * t) % 1))
            audio = np.stack([tones + 0.7 * burst, 0.8 * tones + burst], axis=1)[:min(block, left)]
            fh.write(audio.astype(np.float32))
            left -= len(audio)


def peak_of(cmd: list[str], env: dict) -> tuple[int, float]:
    """Peak resident bytes of the largest process ``cmd`` starts, and its wall seconds."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    kib, status = out.stdout.split()[-2:]
    if status != "0":
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return int(kib) * 1024, seconds


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--whole-minutes", type=float, default=10.0,
                    help="also measure the whole-track path on a file this long (0: not)")
    ap.add_argument("--tiny", action="store_true", help="a test-size model at 16 kHz instead of the paper's")
    ap.add_argument("--format", choices=FORMATS, default="wav-16")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the separation")
    args = ap.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="bench-separate-memory-", dir=args.workdir))
    try:
        torch.manual_seed(0)
        if args.tiny:
            model = build_model("blstm_mask", hidden=8, layers=1, n_mels=32, n_fft=512, hop=128, sample_rate=16000)
        else:
            model = build_model("blstm_mask", hidden=300, layers=4, sample_rate=RATE)
        model_path = work / "model.pt"
        torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}, model_path)
        print(f"model: {model.name} {model.kwargs()}; stems as {args.format}; {args.threads} threads; "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"{'minutes':>8} {'path':>10} {'peak MB':>9} {'wall s':>8} {'x real time':>12} {'stems MB':>9}")
        peaks = {}
        lengths = sorted(set(args.minutes) | ({args.whole_minutes} if args.whole_minutes else set()))
        for minutes in lengths:
            wav = work / f"in-{minutes:g}.wav"
            make_input(wav, minutes)
            runs = []
            if minutes in args.minutes:
                runs.append(("streamed", ["-m", "musicsep", "separate", str(wav), "--model", str(model_path),
                                          "--out", str(work / "out"), "--format", args.format, "--device", "cpu"]))
            if minutes == args.whole_minutes:
                runs.append(("whole", ["-c", WHOLE, str(wav), str(model_path), str(work / "out"), args.format]))
            for name, cmd in runs:
                peak, seconds = peak_of([sys.executable, *cmd], env)
                stems = folder_bytes(work / "out")
                print(f"{minutes:8g} {name:>10} {peak / 1e6:9.0f} {seconds:8.1f} {minutes * 60 / seconds:12.1f} "
                      f"{stems / 1e6:9.0f}", flush=True)
                shutil.rmtree(work / "out")
                if name == "streamed":
                    peaks[minutes] = peak
                    goal = minutes >= 60
                    note(f"peak MB, {minutes:g} min, streamed", peak / 1e6, ".0f",
                         "< 2000" if goal else None, peak < GOAL_BYTES if goal else None)
                else:
                    note(f"peak MB, {minutes:g} min, whole track", peak / 1e6, ".0f")
            wav.unlink()
        if len(peaks) > 1:
            ratio = peaks[max(peaks)] / peaks[min(peaks)]
            note(f"peak {max(peaks):g} min / {min(peaks):g} min, streamed", ratio, ".2f", "<= 1.2", ratio <= 1.2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print_summary(8)


if __name__ == "__main__":
    main()
