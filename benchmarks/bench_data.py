"""Benchmarks of the data stage, each against a baseline measured in the same run.

1. Shard preparation: ``write_shard(Dataset.open(...), ...)`` on a MUSDB folder
   and on a zip holding the same file (extraction included), against ffmpeg
   alone decoding the same five AAC streams to raw float32 (the minimum work).
   Runs are interleaved (ffmpeg, folder, zip, ffmpeg, ...) and medians compared.
   Files: the real MUSDB18 excerpt in stempeg's wheel (6 s), a 60 s track tiled
   from it, and any ``--stem FILE`` (e.g. a full-length MUSDB18 track).
2. Loader throughput: excerpts/s of ``ExcerptDataset`` over shards, through a
   one-worker DataLoader and indexed in-process, against the same random draws
   sliced from the same audio held in numpy arrays (coherent and incoherent).
   Timing starts after the first excerpt (worker start-up excluded); shards sit
   in the page cache, as they do after the first epoch of training. The goal
   (>= 0.5) is checked like for like: through one worker against the in-memory
   baseline through one worker, and in-process against in-process. Through a
   worker both are bound by PyTorch moving each 4.5 MB excerpt between
   processes; that ceiling is printed as "mem+worker". Then the same loader
   with every augmentation of ``loader.augment`` on (:data:`AUGMENT_ALL`:
   gain, channel swap, polarity flip, source dropout) against it off, on the
   same draws, in-process and through one worker, and the ratio on/off.
3. Dry run of the workflow on a MUSDB18-size dataset (150 tracks, as a folder
   and as a zip): wall seconds of ``snakemake -n`` and the shard jobs it lists.

Prints ratios and goals; asserts nothing about time (numbers depend on the
machine; measured figures are kept in ``benchmarks/RESULTS.md``). Run from
the repository root with the virtual environment:

    python benchmarks/bench_data.py [--quick] [--stem FILE ...] [--seconds 3.2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import stempeg
import torch
from common import interleave, medians, note, print_summary
from torch.utils.data import DataLoader

from musicsep import STREAMS
from musicsep.data.audio import decode_blocks, probe, write_stem_mp4
from musicsep.data.excerpts import ExcerptDataset
from musicsep.data.shard import SOURCE_ROWS
from musicsep.data.musdb import VALID_TRACKS, Dataset
from musicsep.data.shard import write_shard
from musicsep.memory import reuse_freed_memory

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
RATE = 44100


def musdb(root: Path, stem: Path, names: dict[str, list[str]], zip_too: bool = False) -> tuple[Path, Path | None]:
    """A MUSDB18-layout folder of hard links (copies across devices) to ``stem``, and its zip."""
    for subset, tracks in names.items():
        (root / subset).mkdir(parents=True, exist_ok=True)
        for name in tracks:
            try:
                os.link(stem, root / subset / f"{name}.stem.mp4")
            except OSError:
                shutil.copy(stem, root / subset / f"{name}.stem.mp4")
    if not zip_too:
        return root, None
    archive = root.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:   # as the toy musdb18.zip
        for path in sorted(root.rglob("*.stem.mp4")):
            zf.write(path, f"musdb18/{path.relative_to(root).as_posix()}")
    return root, archive


def tiled_stem(example: Path, out: Path, seconds: float) -> Path:
    """A longer stem file: the example's five streams decoded, tiled and re-encoded."""
    audio = np.concatenate(list(decode_blocks([(example, k) for k in range(len(STREAMS))])))
    reps = int(np.ceil(seconds * RATE / len(audio)))
    streams = np.tile(audio, (reps, 1, 1))[: int(seconds * RATE)].transpose(1, 0, 2)
    write_stem_mp4(out, streams, RATE, STREAMS)
    return out


# --------------------------------------------------------------------------- #
# 1. Shard preparation
# --------------------------------------------------------------------------- #

def bench_shards(stems: list[Path], work: Path, reps: int) -> None:
    print(f"\n== 1. Shard preparation vs ffmpeg decoding the 5 streams (median of {reps}, interleaved)")
    print(f"{'file':32} {'audio s':>8} {'ffmpeg s':>9} {'folder s':>9} {'zip s':>8} "
          f"{'folder/ff':>10} {'zip/ff':>7} {'audio s/s':>10}")
    for i, stem in enumerate(stems):
        seconds = probe(stem)[0].duration
        name = "Artist - Title"
        folder, archive = musdb(work / f"shard{i}" / "musdb18", stem, {"train": [name]}, zip_too=True)
        member, out = f"train/{name}.stem.mp4", work / f"shard{i}" / "out.h5"
        ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(stem)]
        for k in range(len(STREAMS)):
            ffmpeg += ["-map", f"0:a:{k}", "-f", "f32le", "/dev/null"]
        t = medians(interleave({
            "ffmpeg": lambda: subprocess.run(ffmpeg, check=True),
            "folder": lambda: write_shard(Dataset.open(folder), member, "train", out),
            "zip": lambda: write_shard(Dataset.open(archive), member, "train", out),
        }, reps, before=lambda rep: out.unlink(missing_ok=True)))   # a shard job writes a new file
        folder_ratio, zip_ratio = t["folder"] / t["ffmpeg"], t["zip"] / t["ffmpeg"]
        label = stem.name[:32]
        print(f"{label:32} {seconds:8.1f} {t['ffmpeg']:9.3f} {t['folder']:9.3f} {t['zip']:8.3f} "
              f"{folder_ratio:10.2f} {zip_ratio:7.2f} {seconds / t['folder']:10.0f}")
        tag = f"{seconds:.0f} s track"
        note(f"shard/ffmpeg, folder, {tag}", folder_ratio, ".2f", "<= 1.5", folder_ratio <= 1.5)
        note(f"shard/ffmpeg, zip, {tag}", zip_ratio, ".2f", "<= 1.5", zip_ratio <= 1.5)
        note(f"audio s prepared per s, folder, {tag}", seconds / t["folder"], ".0f")


# --------------------------------------------------------------------------- #
# 2. Loader throughput
# --------------------------------------------------------------------------- #

class MemoryExcerpts(torch.utils.data.Dataset):
    """The baseline: ExcerptDataset's draws sliced from arrays held in memory
    (all tracks longer than the excerpt, so no padding). Coherent excerpts are
    copied out, as a shard read is: a view would keep, and send a worker's
    parent, the whole track."""

    def __init__(self, audio: list[np.ndarray], like: ExcerptDataset):
        self.audio, self.like = audio, like

    def __len__(self) -> int:
        return len(self.like)

    def __getitem__(self, index: int):
        like = self.like
        rng = np.random.default_rng([like.seed, like.rank, like.epoch, index])
        track = self.audio[int(rng.integers(len(self.audio)))]
        span = track.shape[-1] - like.excerpt + 1
        if like.incoherent:
            sources = np.stack([track[row, :, (o := int(rng.integers(0, span))):o + like.excerpt]
                                for row in SOURCE_ROWS])
        else:
            o = int(rng.integers(0, span))
            sources = track[1:, :, o:o + like.excerpt].copy()   # a view would ship the whole track
        return torch.from_numpy(sources)


def excerpts_per_second(ds, workers: int | None) -> float:
    """Excerpts/s over one epoch, indexed in-process (``workers`` None) or through
    a DataLoader, timed from the first excerpt on (worker start-up excluded)."""
    items = (ds[i] for i in range(len(ds))) if workers is None else \
        iter(DataLoader(ds, batch_size=None, num_workers=workers))
    next(items)
    start = time.perf_counter()
    count = sum(1 for _ in items)
    return count / (time.perf_counter() - start)


def bench_loader(example: Path, long_stem: Path, work: Path, seconds: float, n: int, reps: int) -> None:
    print(f"\n== 2. Loader throughput, {seconds} s excerpts (excerpts/s, median of {reps} runs of {n})")
    names = [f"Copy {i} - Excerpt" for i in range(4)]
    folder, _ = musdb(work / "loader" / "musdb18", example, {"train": names})
    shutil.copy(long_stem, folder / "train" / "Long - Tiled.stem.mp4")
    shards = []
    for member in sorted(p.relative_to(folder).as_posix() for p in (folder / "train").iterdir()):
        shards.append(work / "loader" / f"{len(shards)}.h5")
        write_shard(Dataset.open(folder), member, "train", shards[-1])
    audio = []
    for path in shards:
        with h5py.File(path, "r") as h5:
            audio.append(h5["audio"][()])
    print(f"shards: {len(shards)} ({len(names)} x 6 s, 1 x {audio[-1].shape[-1] / RATE:.0f} s); "
          "memory+worker: the baseline through a 1-worker DataLoader (the cost of moving tensors)")
    print(f"{'incoherent':>10} {'memory':>7} {'in-proc':>8} {'worker':>7} {'mem+worker':>11} "
          f"{'in-proc/mem':>12} {'worker/mem':>11} {'worker/mem+worker':>18}")
    for incoherent in (True, False):
        ours = ExcerptDataset(shards, seconds, incoherent=incoherent, samples_per_epoch=n)
        memory = MemoryExcerpts(audio, ours)
        runs = {"memory": (memory, None), "in-proc": (ours, None),
                "worker": (ours, 1), "mem+worker": (memory, 1)}
        rates = {k: [] for k in runs}

        def rate(k, ds, workers):
            return lambda: rates[k].append(excerpts_per_second(ds, workers))

        # new draws each repetition, the same for every contender; each records its own excerpts/s
        interleave({k: rate(k, ds, workers) for k, (ds, workers) in runs.items()}, reps, warm_up=False,
                   before=lambda rep: ours.set_epoch(rep))
        r = medians(rates)
        in_ratio, worker_ratio = r["in-proc"] / r["memory"], r["worker"] / r["memory"]
        print(f"{incoherent!s:>10} {r['memory']:7.0f} {r['in-proc']:8.0f} {r['worker']:7.0f} "
              f"{r['mem+worker']:11.0f} {in_ratio:12.2f} {worker_ratio:11.2f} "
              f"{r['worker'] / r['mem+worker']:18.2f}")
        kind = "incoherent" if incoherent else "coherent"
        for k in runs:
            note(f"excerpts/s {k}, {kind}", r[k], ".0f")
        like_for_like = r["worker"] / r["mem+worker"]
        note(f"1 worker/memory through 1 worker, {kind}", like_for_like, ".2f", ">= 0.5", like_for_like >= 0.5)
        note(f"in-process/memory in-process, {kind}", in_ratio, ".2f", ">= 0.5", in_ratio >= 0.5)
        note(f"1 worker/memory in-process, {kind}", worker_ratio, ".2f")
    bench_augment(shards, seconds, n, reps)


AUGMENT_ALL = {"gain": [0.25, 1.25], "channel_swap": True, "polarity_flip": True, "source_dropout": 0.1}
"""Every augmentation on, at the values demucs and open-unmix train with (dropout: 0.1)."""


def bench_augment(shards: list[Path], seconds: float, n: int, reps: int) -> None:
    """Excerpts/s of the incoherent loader with every augmentation on
    against off, in-process and through one worker."""
    off = ExcerptDataset(shards, seconds, incoherent=True, samples_per_epoch=n)
    on = ExcerptDataset(shards, seconds, incoherent=True, samples_per_epoch=n, augment=AUGMENT_ALL)
    print(f"augmentation (incoherent excerpts), loader.augment {AUGMENT_ALL} against none:")
    print(f"{'where':>10} {'off':>7} {'on':>7} {'on/off':>7}")
    runs = {f"{state} {where}": (ds, workers) for where, workers in (("in-proc", None), ("worker", 1))
            for state, ds in (("off", off), ("on", on))}
    rates = {k: [] for k in runs}

    def rate(k, ds, workers):
        return lambda: rates[k].append(excerpts_per_second(ds, workers))

    def new_draws(rep):
        off.set_epoch(rep)
        on.set_epoch(rep)

    interleave({k: rate(k, ds, workers) for k, (ds, workers) in runs.items()}, reps, warm_up=False,
               before=new_draws)
    r = medians(rates)
    for where in ("in-proc", "worker"):
        ratio = r[f"on {where}"] / r[f"off {where}"]
        print(f"{where:>10} {r[f'off {where}']:7.0f} {r[f'on {where}']:7.0f} {ratio:7.2f}")
        note(f"excerpts/s augmented, {where}", r[f"on {where}"], ".0f")
        note(f"augmented/not augmented, {where}", ratio, ".2f")


# --------------------------------------------------------------------------- #
# 3. Dry run on a MUSDB18-size dataset
# --------------------------------------------------------------------------- #

# Real MUSDB18 names where known (the 14 official validation tracks and a few
# others), then invented ones with the same troublesome characters.
TRAIN_NAMES = list(VALID_TRACKS) + ["Juliet's Rescue - Heartbeats", "M.E.R.C. Music - Knockout"]
TEST_NAMES = ["The Easton Ellises (Baumi) - SDRNR", "Al James - Schoolboy Facination",
              "Angels In Amplifiers - I'm Alright", "Ben Carrigan - We'll Talk About It All Tonight"]
ARTISTS = ["The O'Neills", "Rock & Roll Inc.", "Dr. Hook (Tribute)", "St. Vincent's Choir",
           "Smith & Sons Jr.", "A.B.C. Trio", "Müller (feat. Zoë)"]
TITLES = ["Don't Stop", "Salt & Pepper", "Vol. 2 (Live)", "Mr. Brown's Song", "Intro (Reprise)"]


def invented(n: int, start: int) -> list[str]:
    return [f"{ARTISTS[i % len(ARTISTS)]} {i} - {TITLES[i % len(TITLES)]}" for i in range(start, start + n)]


def dry_run(dataset: Path, results: Path) -> tuple[float, int]:
    cmd = ["snakemake", "-n", "--profile", "profiles/default",
           "--config", f"dataset={{path: '{dataset}'}}", f"results={results}"]
    env = {**os.environ, "PATH": os.pathsep.join([BIN, os.environ.get("PATH", "")])}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{proc.stdout}\n{proc.stderr}")
    stats = (proc.stdout + proc.stderr).split("Job stats", 1)[-1]
    found = re.search(r"^\s*shard\s+(\d+)\s*$", stats, re.MULTILINE)
    return seconds, int(found.group(1)) if found else 0


def bench_dry_run(example: Path, work: Path, reps: int) -> None:
    names = {"train": TRAIN_NAMES + invented(100 - len(TRAIN_NAMES), 0),
             "test": TEST_NAMES + invented(50 - len(TEST_NAMES), 100)}
    folder, archive = musdb(work / "dry" / "musdb18", example, names, zip_too=True)
    print(f"\n== 3. snakemake -n on {sum(map(len, names.values()))} tracks "
          f"(100 train, 50 test; median of {reps})")
    results = {"folder": [], "zip": []}

    def run(kind, path):
        return lambda: results[kind].append(dry_run(path, work / "dry" / f"results-{kind}"))

    interleave({kind: run(kind, path) for kind, path in (("folder", folder), ("zip", archive))}, reps,
               warm_up=False)
    for kind, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        jobs = runs[-1][1]
        print(f"{kind:6} {seconds:6.2f} s, shard jobs listed: {jobs}")
        note(f"dry-run seconds, {kind}", seconds, ".2f", "< 10", seconds < 10)
        note(f"shard jobs listed, {kind}", jobs, "d", "== 150", jobs == 150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    parser.add_argument("--stem", type=Path, action="append", default=[],
                        help="more stem files for benchmark 1 (repeatable)")
    parser.add_argument("--seconds", type=float, default=3.2, help="excerpt length for benchmark 2")
    args = parser.parse_args()
    # as the command line does, for every contender alike (MUSICSEP_MALLOC=system: glibc's defaults)
    print(f"allocator: {'freed blocks kept for reuse' if reuse_freed_memory() else 'system defaults'}")
    if not 0 < args.seconds < 6:
        parser.error("--seconds must be below the 6 s of the shortest track")
    reps, n, loader_reps, dry_reps = (5, 100, 3, 1) if args.quick else (11, 400, 5, 3)
    torch.set_num_threads(1)
    example = Path(stempeg.example_stem_path())
    print(f"musicsep data benchmarks ({'quick' if args.quick else 'full'}); "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work = Path(tmp)
        long_stem = tiled_stem(example, work / "tiled.stem.mp4", 60.0)
        bench_shards([example, long_stem, *args.stem], work, reps)
        bench_loader(example, long_stem, work, args.seconds, n, loader_reps)
        bench_dry_run(example, work, dry_reps)
    print("\n== Summary")
    print_summary(8)


if __name__ == "__main__":
    main()
