"""BSS Eval v4: our engine (``musicsep.evaluate.bsseval``) against museval.

1. Speed and memory: one track's evaluation as the workflow's evaluate job
   does it, ``evaluate_track(..., engine="bsseval")``, against museval's own
   ``eval_mus_track`` (through a stand-in for the musdb track: ``name``,
   ``rate``, ``subset``, ``targets[name].audio``), both writing the JSON, on
   a stereo 44.1 kHz toy track (default 3 minutes) with estimates of the four
   sources and the accompaniment (so museval also runs its second, 2-source
   pass). Each run is a fresh process (its peak resident memory is the
   figure; both load the same arrays first, and that baseline is printed),
   museval and ours alternating (museval, ours, ours, museval, ...). Twice:
   on 2 cores (museval's BLAS with its default threads; ours with 2 threads)
   and pinned to one core (one BLAS thread, ours with 1 thread). Goals:
   museval / ours >= 20 on 2 cores, >= 10 on one core, our peak memory below
   museval's. ``--device cuda`` adds ours on the GPU (torch float64).
2. Accuracy over a corpus: toy tracks (oracle IRM1 estimates, estimates
   like a separator's, museval's random-estimate recipe, near-silent
   frames), stempeg's real MUSDB18 excerpt (the random recipe, leaky
   estimates, an estimate equal to its reference) and, with ``--results``,
   every system's estimates of every test track of a finished workflow run.
   Per case, on each evaluation group of ``eval_mus_track`` (``museval.evaluate``
   against ``bsseval.bss_eval``, before the JSON's 5-decimal rounding): the
   largest difference of each metric over all frames (values above 150 dB
   are float64 rounding in both and are skipped), of the medians over frames,
   whether the NaN and +inf frames are identical, and the condition number
   of the Gram matrix of each group. Goals: SDR within 1e-9 dB, ISR/SIR/SAR within
   1e-4 dB, medians within 1e-5 dB, identical NaN frames.

Asserts nothing about time (numbers depend on the machine); prints ratios
and goals. Figures are kept in ``benchmarks/RESULTS.md``. Run from the
repository root with the virtual environment:

    .venv/bin/python benchmarks/bench_bsseval.py [--seconds 180] [--reps 1]
        [--only 1|2] [--results results] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

RATE = 44100
NAME = "Toy Artist - Toy Song"
GOAL_2_CORES, GOAL_1_CORE = 20.0, 10.0
ROUNDING_DB = 150.0
TOLERANCE = {"SDR": 1e-9, "ISR": 1e-4, "SIR": 1e-4, "SAR": 1e-4}
MEDIAN_TOLERANCE = 1e-5
METRICS = ("SDR", "SIR", "ISR", "SAR")
SUMMARY: list[tuple[str, str, str, bool | None]] = []


def note(figure: str, value: str, goal: str = "", met: bool | None = None) -> None:
    SUMMARY.append((figure, value, goal, met))


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #

def toy_track(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """References ``{target: (samples, 2)}`` float64 of a toy song with sound
    in every stem (museval refuses a silent source), on musdb's 16-bit grid."""
    from musicsep import SOURCES, STREAMS
    from musicsep.evaluate.track import accompaniment
    from musicsep.toy.musdb import render_streams

    for song in range(seed, seed + 50):
        streams = render_streams(song, seconds)
        if all(np.any(streams[k] != 0) for k in range(1, len(STREAMS))):
            refs = {s: np.round(streams[STREAMS.index(s)].astype(np.float64) * 32768) / 32768 for s in SOURCES}
            refs["accompaniment"] = accompaniment(refs)
            return refs
    raise SystemExit(f"no toy song among seeds {seed}..{seed + 49} has sound in every stem")


def leaky(refs: dict, seed: int, noise: float = 0.003) -> dict[str, np.ndarray]:
    """Estimates like a separator's: most of the source, some of the others, noise."""
    from musicsep import SOURCES
    from musicsep.evaluate.track import accompaniment

    rng = np.random.default_rng(seed)
    mix = sum(refs[s] for s in SOURCES)
    est = {s: 0.8 * refs[s] + 0.1 * (mix - refs[s]) + noise * rng.standard_normal(mix.shape) for s in SOURCES}
    est["accompaniment"] = accompaniment(est)
    return est


def random_recipe(refs: dict) -> dict[str, np.ndarray]:
    """museval's regression test: ``np.random.seed(0)``, then uniform random
    estimates of each target's shape, in musdb's target order."""
    from musicsep import TARGETS

    np.random.seed(0)
    return {t: np.random.random(refs[t].shape) for t in TARGETS}


def irm1(refs: dict) -> dict[str, np.ndarray]:
    from musicsep import SOURCES
    from musicsep.evaluate.track import accompaniment
    from musicsep.separate.oracles import oracle

    out = oracle("irm1", np.stack([refs[s].T for s in SOURCES]))
    est = {s: out[s].T.astype(np.float64) for s in SOURCES}
    est["accompaniment"] = accompaniment(est)
    return est


def musdb_track(refs: dict, name: str = NAME):
    from musicsep import TARGETS
    return SimpleNamespace(name=name, rate=RATE, subset="test", targets=OrderedDict(
        (t, SimpleNamespace(audio=refs[t])) for t in TARGETS if t in refs))


def json_frames(path: Path) -> dict[str, dict[str, np.ndarray]]:
    import simplejson
    content = simplejson.loads(path.read_text(), allow_nan=True)
    return {t["name"]: {m: np.array([float(f["metrics"][m]) for f in t["frames"]]) for m in METRICS}
            for t in content["targets"]}


# --------------------------------------------------------------------------- #
# 1. speed and memory, one process per run
# --------------------------------------------------------------------------- #

def worker(args) -> None:
    """One evaluation in this process; prints its wall/CPU time and peak RSS."""
    import logging

    from musicsep.memory import reuse_freed_memory

    reuse_freed_memory()          # as the command line does, for both contenders alike
    logging.getLogger("musicsep").setLevel(logging.ERROR)
    data = np.load(args.input)
    refs = {k[4:]: data[k] for k in data.files if k.startswith("ref_")}
    est = {k[4:]: data[k] for k in data.files if k.startswith("est_")}
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = Path(args.out)
    start, cpu = time.perf_counter(), time.process_time()
    if args.worker == "museval":
        import museval
        museval.eval_mus_track(musdb_track(refs), est, output_dir=str(out))
    else:
        from musicsep.evaluate.track import evaluate_track
        evaluate_track(refs, est, RATE, NAME, out / "test" / f"{NAME}.json", engine="bsseval",
                       threads=args.threads, device=None if args.device == "cpu" else args.device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": peak / 1024, "inputs_mb": baseline / 1024}))


def run_worker(kind: str, inputs: Path, out: Path, cores: int, device: str = "cpu") -> dict:
    env = dict(os.environ)
    if cores == 1:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(inputs), "--out", str(out),
           "--threads", str(cores), "--device", device]
    if cores == 1:
        cmd = ["taskset", "-c", "0"] + cmd
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_json(theirs: Path, ours: Path) -> tuple[dict, bool]:
    a, b = json_frames(theirs), json_frames(ours)
    worst = {m: 0.0 for m in METRICS}
    same_nan = list(a) == list(b)
    for target in a:
        for m in METRICS:
            x, y = a[target][m], b[target][m]
            same_nan &= bool(np.array_equal(np.isnan(x), np.isnan(y)))
            keep = np.isfinite(x) & np.isfinite(y) & ~((x > ROUNDING_DB) & (y > ROUNDING_DB))
            worst[m] = max(worst[m], float(np.abs(x[keep] - y[keep]).max(initial=0)))
    return worst, same_nan


def bench_speed(seconds: float, reps: int, seed: int, device: str) -> None:
    refs = toy_track(seconds, seed)
    est = leaky(refs, seed)
    print(f"\n== 1. Speed and memory: a {seconds:g} s stereo toy track, 5 targets (museval's two passes), "
          f"{reps} repetition(s) each, one process per run, alternating")
    with tempfile.TemporaryDirectory(prefix="bench-bsseval-") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "inputs.npz"
        np.savez(inputs, **{f"ref_{k}": v for k, v in refs.items()}, **{f"est_{k}": v for k, v in est.items()})
        configs = [(2, "cpu"), (1, "cpu")] + ([(1, device)] if device != "cpu" else [])
        for cores, dev in configs:
            label = f"{cores} core{'s' if cores > 1 else ''}" + (f", ours on {dev}" if dev != "cpu" else "")
            runs: dict[str, list[dict]] = {"museval": [], "bsseval": []}
            for rep in range(reps):
                order = ["museval", "bsseval"] if rep % 2 == 0 else ["bsseval", "museval"]
                for kind in order:
                    runs[kind].append(run_worker(kind, inputs, tmp / kind, cores, dev))
            worst, same_nan = compare_json(tmp / "museval" / "test" / f"{NAME}.json",
                                           tmp / "bsseval" / "test" / f"{NAME}.json")
            med = {k: {f: statistics.median(r[f] for r in v) for f in ("wall", "cpu", "peak_mb", "inputs_mb")}
                   for k, v in runs.items()}
            ratio = med["museval"]["wall"] / med["bsseval"]["wall"]
            cpu_ratio = med["museval"]["cpu"] / med["bsseval"]["cpu"]
            print(f"-- {label}")
            for k, m in med.items():
                print(f"{k:8} wall {m['wall']:8.2f} s  cpu {m['cpu']:8.2f} s  peak {m['peak_mb']:7.0f} MB "
                      f"(inputs loaded: {m['inputs_mb']:.0f} MB)  {60 * m['wall'] / seconds:6.2f} s per min of audio")
            print(f"museval / ours: wall {ratio:.1f}x, CPU {cpu_ratio:.1f}x; largest differences "
                  + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()) + f"; NaN frames identical: {same_nan}")
            goal = GOAL_2_CORES if cores == 2 else GOAL_1_CORE
            if dev == "cpu":
                note(f"museval / ours wall, {label}", f"{ratio:.1f}", f">= {goal:g}", ratio >= goal)
                note(f"museval / ours CPU time, {label}", f"{cpu_ratio:.1f}")
                note(f"peak MB museval / ours, {label}",
                     f"{med['museval']['peak_mb']:.0f}/{med['bsseval']['peak_mb']:.0f}", "ours lower",
                     med["bsseval"]["peak_mb"] < med["museval"]["peak_mb"])
            else:
                note(f"museval (1 core) / ours on {dev}, wall", f"{ratio:.1f}")
                note(f"ours on {dev}, s per track", f"{med['bsseval']['wall']:.2f}")


# --------------------------------------------------------------------------- #
# 2. accuracy corpus
# --------------------------------------------------------------------------- #

def corpus(seed: int, results: Path | None):
    """(case name, references, estimates) of the corpus."""
    import stempeg

    from musicsep import SOURCES
    from musicsep.evaluate.track import accompaniment

    audio, _ = stempeg.read_stems(stempeg.example_stem_path(), ffmpeg_format="s16le", dtype=np.float64)
    real = {s: audio[k + 1] for k, s in enumerate(("drums", "bass", "other", "vocals"))}
    real["accompaniment"] = accompaniment(real)
    yield "real excerpt, museval's random recipe", real, random_recipe(real)
    yield "real excerpt, leaky estimates", real, leaky(real, seed)
    equal = leaky(real, seed + 1)
    equal["bass"] = real["bass"].copy()
    yield "real excerpt, bass estimate equal to its reference", real, equal
    yield "real excerpt, oracle IRM1", real, irm1(real)
    for k, song in enumerate((seed, seed + 7, seed + 13)):
        refs = toy_track(20.0, song)
        yield f"toy song {song}, oracle IRM1", refs, irm1(refs)
        yield f"toy song {song}, leaky estimates", refs, leaky(refs, song)
        if k == 0:
            yield f"toy song {song}, random recipe", refs, random_recipe(refs)
            quiet = leaky(refs, song)
            for s in SOURCES:                      # near-silent frames: a second at -180 dB
                quiet[s][3 * RATE:4 * RATE] *= 1e-9
                quiet[s][6 * RATE:7 * RATE] = 0
            quiet["accompaniment"] = accompaniment(quiet)
            yield f"toy song {song}, near-silent and silent frames", refs, quiet
    if results is not None:
        from musicsep.evaluate.track import read_estimates, read_shard_references
        for folder in sorted((results / "estimates").glob("*/*")):
            shard = results / "data" / "shards" / f"{folder.name}.h5"
            if shard.exists():
                refs, rate, name = read_shard_references(shard)
                est, _ = read_estimates(folder, rate, shard=shard)
                yield f"{folder.parent.name} on {name}", refs, est


def groups_of(est: dict) -> list[list[str]]:
    """museval's evaluation groups of ``eval_mus_track`` for these estimates."""
    sources = [t for t in ("drums", "bass", "other", "vocals") if t in est]
    return [sources] + ([["vocals", "accompaniment"]] if "accompaniment" in est and "vocals" in est else [])


def bench_accuracy(seed: int, results: Path | None) -> None:
    import museval

    from musicsep.evaluate.bsseval import bss_eval, gram

    print("\n== 2. Accuracy: museval.evaluate against bsseval.bss_eval on every evaluation group of "
          "eval_mus_track, every frame (dB; values above 150 dB in both are rounding and skipped)")
    worst_all = {m: 0.0 for m in METRICS}
    worst_median, all_nan_same, cases = 0.0, True, 0
    print(f"{'case':50} {'SDR':>8} {'ISR':>8} {'SIR':>8} {'SAR':>8} {'median':>8} {'NaN same':>8}  cond(G) per group")
    for case, refs, est in corpus(seed, results):
        worst = {m: 0.0 for m in METRICS}
        med, same_nan, conds = 0.0, True, []
        for group in groups_of(est):
            R, E = [refs[t] for t in group], [est[t] for t in group]
            theirs = dict(zip(("SDR", "ISR", "SIR", "SAR"), museval.evaluate(R, E)))
            ours = dict(zip(("SDR", "ISR", "SIR", "SAR"), bss_eval(R, E)))
            for m in METRICS:
                a, b = theirs[m], ours[m]
                same_nan &= bool(np.array_equal(np.isnan(a), np.isnan(b)))
                both = np.isfinite(a) & np.isfinite(b) & ~((a > ROUNDING_DB) & (b > ROUNDING_DB))
                same_nan &= bool(np.array_equal(np.isinf(a), np.isinf(b)))
                worst[m] = max(worst[m], float(np.abs(a[both] - b[both]).max(initial=0)))
                for x, y in zip(a, b):                      # per target: museval's median over frames
                    x, y = np.where(np.isinf(x), np.nan, x), np.where(np.isinf(y), np.nan, y)
                    if not np.isnan(x).all() and np.nanmedian(x) < ROUNDING_DB:
                        med = max(med, abs(float(np.nanmedian(x)) - float(np.nanmedian(y))))
            eig = np.linalg.eigvalsh(gram(R))
            conds.append(f"{eig[-1] / eig[0]:.1e}" if eig[0] > 0 else f"singular (min eig {eig[0]:.1e})")
        print(f"{case[:50]:50} " + " ".join(f"{worst[m]:8.1e}" for m in ("SDR", "ISR", "SIR", "SAR"))
              + f" {med:8.1e} {str(same_nan):>8}  " + ", ".join(conds), flush=True)
        for m in METRICS:
            worst_all[m] = max(worst_all[m], worst[m])
        worst_median = max(worst_median, med)
        all_nan_same &= same_nan
        cases += 1
    for m in ("SDR", "ISR", "SIR", "SAR"):
        note(f"largest |ours - museval| {m} dB, {cases} cases", f"{worst_all[m]:.1e}", f"<= {TOLERANCE[m]:g}",
             worst_all[m] <= TOLERANCE[m])
    note("largest |median difference| dB", f"{worst_median:.1e}", f"<= {MEDIAN_TOLERANCE:g}",
         worst_median <= MEDIAN_TOLERANCE)
    note("NaN (and +inf) frames identical in every case", str(all_nan_same), "True", all_nan_same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="track length for the speed benchmark")
    parser.add_argument("--reps", type=int, default=1, help="runs of each contender per configuration")
    parser.add_argument("--seed", type=int, default=2019, help="toy song seed")
    parser.add_argument("--only", type=int, action="append", choices=(1, 2), help="run only this benchmark")
    parser.add_argument("--results", type=Path, help="a finished workflow run's results folder for the corpus")
    parser.add_argument("--device", default="cpu", help="also time ours on this torch device (e.g. cuda)")
    parser.add_argument("--worker", choices=("museval", "bsseval"), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    only = set(args.only or (1, 2))
    load = os.getloadavg()[0]
    print(f"BSS Eval v4 benchmark: {os.cpu_count()} CPUs, load {load:.2f} before")
    if 1 in only:
        bench_speed(args.seconds, args.reps, args.seed, args.device)
    if 2 in only:
        bench_accuracy(args.seed, args.results)
    print(f"\n== Summary (load {load:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs)")
    width = max(len(f) for f, *_ in SUMMARY)
    for figure, value, goal, met in SUMMARY:
        print(f"{figure:{width}} {value:>10} {goal:>12} {'' if met is None else ('met' if met else 'MISSED')}")


if __name__ == "__main__":
    main()
