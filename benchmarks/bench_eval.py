"""Benchmarks of separation and evaluation, each against a baseline measured in the same run.

1. Separation speed: ``Separator(model, chunk_seconds=30).separate(mixture)``
   on a stereo 44.1 kHz track (3 minutes; the toy synth's mixture, or noise)
   with a ``blstm_mask`` model of the paper's shape (n_fft 2048, hop 512, 300
   mels, 4 BLSTM layers of 300, random weights, eval mode), on the CPU (or,
   with ``--device cuda``, both contenders on the GPU, timed to the end of
   their queued work), against
   a bare ``nn.LSTM`` stack of the model's shape (input 300, hidden 300, 4
   layers, bidirectional, batch_first) running forward under ``no_grad`` over
   the same frames: "batched chunks" (the frames cut into chunks of the
   Separator's chunk length, zero-padded to whole chunks, the chunks of both
   channels stacked as one batch), "one sequence" (each channel's frames as
   one long sequence, the channels as the batch) and "the Separator's
   windows" (the frames the Separator's model runs over: each chunk with its
   ``context_seconds`` on each side, in the Separator's calls). The first two
   are the LSTM work no implementation of the model can avoid; the Separator
   adds the STFT, the features, the head, the mel-to-linear projection, the
   masking, the inverse STFT, the context frames and its bookkeeping. The
   third has the context frames too, so that ratio is the cost of everything
   around the LSTM alone. The four contenders are run in turn and medians
   compared (beside them, the fastest repetitions' ratio and the median of
   the per-repetition ratios, "paired"). Goal: bare / ours >= 0.7. The
   frames and batches of each are printed; the Separator's windows are the
   input shapes its model's LSTM was given in one real separation (a
   forward pre-hook records them). ``--profile`` then times the stages of the
   real ``Separator.separate`` call: a profile hook (``sys.setprofile``)
   times each function of the package that the call runs (the STFT, the
   magnitude, the model's features, LSTM and head, the mel-to-linear
   projection, the masking, the inverse FFT and overlap-add, the
   normalisation, the targets), each one's own time, and prints the
   ratio's ceiling: the bare stack over the Separator's LSTM and head alone
   (the model's own work, with its context frames), and with the STFT, mel
   projections and inverse FFT added.
2. Evaluation: our job ``musicsep.evaluate.track.evaluate_track`` with
   ``engine="museval"`` (JSON written; the work our wrapper adds around
   museval; ``benchmarks/bench_bsseval.py`` measures our own engine)
   against museval's own ``eval_mus_track`` (``output_dir`` given, so it writes
   the same JSON) on the same references and estimates of a stereo 44.1 kHz toy
   track (30 s: museval takes about 40 s per minute of audio), through a
   stand-in for the musdb track object (``name``, ``rate``, ``subset`` and
   ``targets[name].audio``, all that ``eval_mus_track`` reads). Runs alternate
   (museval, ours, ours, museval, ...). Goal: ours / museval <= 1.05 (the
   wrapper's checks and silent-window report add nothing noticeable). Both
   spend nearly all their time in ``museval.evaluate``; timing the calls to it
   gives the work around it, whose difference is the same ratio without the
   noise of BSS Eval's own run time. The two JSON files are compared too.
3. Quality on the toy test set: from ``results/scores.csv`` (written by
   ``python -m musicsep aggregate``; every frame score), each system's median
   SDR per target (median over frames, then over tracks, as museval's
   ``EvalStore``) beside the oracle IRM1's, and the fraction. Skipped when the
   file does not exist.

Prints ratios and goals; asserts nothing about time (numbers depend on the
machine). Medians are the figures; the fastest repetition is printed beside
them, since on a shared machine the gap between the two is other processes'
doing. With as many torch threads as cores (the default here, as asked), a
single other busy process makes the LSTM several times slower, and a few make
it tens of times slower (each time step's parallel region waits for a thread
that lost its core); a "disturbed" note says when the repetitions spread.
Measured figures are kept in ``benchmarks/RESULTS.md``. Run from the
repository root with the virtual environment:

    python benchmarks/bench_eval.py [--quick] [--seconds 180] [--reps 5] [--profile] [--device cuda]
                                    [--eval-seconds 30] [--eval-reps 3] [--scores results/scores.csv]

Defaults: a 180 s track, 5 repetitions (about 3 minutes on 2 idle cores), a
30 s track evaluated 3 times each way (about 2 minutes). ``--quick``: a 30 s
track, 3 repetitions; a 10 s evaluation, 2 each way (well under a minute).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from common import SUMMARY, interleave, medians, note, paired, print_summary, sync
from torch import nn

from musicsep import SOURCES, STREAMS
from musicsep.memory import reuse_freed_memory
from musicsep.models.registry import build_model
from musicsep.separate.separator import Separator

ROOT = Path(__file__).resolve().parents[1]
RATE, N_FFT, HOP, N_MELS, HIDDEN, LAYERS, DROPOUT = 44100, 2048, 512, 300, 300, 4, 0.3
CHUNK_SECONDS = 30.0
GOAL_SEPARATION = 0.7     # bare LSTM time / Separator time, at least
GOAL_EVALUATION = 1.05    # evaluate_track time / eval_mus_track time, at most
# what the issue reports for the bare stack on 2 cores (x real time)
ISSUE_BARE = {"bare, batched chunks": 55.0, "bare, one sequence": 34.0}


def disturbed(times: dict[str, list[float]], what: str, factor: float = 1.5) -> None:
    """Say so when a contender's slowest repetition took ``factor`` times its
    fastest: other processes took the cores for a while (with as many torch
    threads as cores, a busy core stalls every parallel region)."""
    spread = {name: max(v) / min(v) for name, v in times.items() if min(v) > 0}
    bad = {name: r for name, r in spread.items() if r >= factor}
    if bad:
        print(f"note: {what} disturbed (slowest / fastest repetition: "
              + ", ".join(f"{name} {r:.1f}x" for name, r in bad.items())
              + "); the medians are unreliable, compare the fastest figures")
        SUMMARY.append((f"{what}: timings disturbed", "yes", "", None))


def toy_streams(seconds: float, seed: int) -> tuple[np.ndarray, int]:
    """The toy synth's five streams ``(5, samples, 2)`` of the first song from
    ``seed`` on whose every stem has sound (museval refuses a silent reference),
    and that song's seed."""
    from musicsep.toy.musdb import render_streams

    for song in range(seed, seed + 50):
        streams = render_streams(song, seconds)
        if all(np.any(streams[k] != 0) for k in range(1, len(STREAMS))):
            return streams, song
    raise SystemExit(f"no toy song among seeds {seed}..{seed + 49} has sound in every stem over {seconds} s")


# --------------------------------------------------------------------------- #
# 1. Separation speed
# --------------------------------------------------------------------------- #

def paper_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("blstm_mask", sample_rate=RATE, n_fft=N_FFT, hop=HOP, n_mels=N_MELS,
                       hidden=HIDDEN, layers=LAYERS, dropout=DROPOUT).eval()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"the CPU ({torch.get_num_threads()} torch threads)"


def bare_lstm() -> nn.LSTM:
    return nn.LSTM(N_MELS, HIDDEN, num_layers=LAYERS, dropout=DROPOUT, bidirectional=True,
                   batch_first=True).eval()


def model_lstm(model: nn.Module) -> nn.LSTM:
    """The model's LSTM stack (the one ``nn.LSTM`` module in it)."""
    found = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    if len(found) != 1:
        raise SystemExit(f"expected one nn.LSTM in the model, found {len(found)}")
    return found[0]


def lstm_inputs(separator: Separator, mixture: np.ndarray) -> list[tuple[int, ...]]:
    """The input shapes of the model's LSTM in each of its calls during one
    ``separator.separate(mixture)`` (chunks x channels, frames with context,
    features), recorded by a forward pre-hook."""
    shapes: list[tuple[int, ...]] = []
    hook = model_lstm(separator.model).register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    try:
        separator.separate(mixture)
    finally:
        hook.remove()
    return shapes


def bench_separation(seconds: float, reps: int, signal: str, seed: int, profile: bool,
                     device: torch.device) -> None:
    samples = int(round(seconds * RATE))
    start = time.perf_counter()
    if signal == "toy":
        streams, song = toy_streams(seconds, seed)
        mixture = np.ascontiguousarray(streams[STREAMS.index("mixture")].T)       # (2, samples)
        what = f"toy song {song}"
    else:
        mixture = (0.1 * np.random.default_rng(seed).standard_normal((2, samples))).astype(np.float32)
        what = "white noise"
    made = time.perf_counter() - start
    samples = mixture.shape[-1]
    model = paper_model()
    separator = Separator(model, chunk_seconds=CHUNK_SECONDS, device=device)
    channels = mixture.shape[0]
    frames = 1 + samples // HOP
    chunk, context = separator.chunk_frames()
    n_chunks = math.ceil(frames / chunk)
    # the windows the Separator's model sees (chunk + context), in its calls, as it ran them
    calls = lstm_inputs(separator, mixture)
    fed = sum(rows * length for rows, length, _ in calls) // channels
    lstm = bare_lstm().to(device)
    generator = torch.Generator().manual_seed(0)
    x_long = torch.randn(channels, frames, N_MELS, generator=generator)
    padded = torch.nn.functional.pad(x_long, (0, 0, 0, n_chunks * chunk - frames))
    x_batched = padded.reshape(channels * n_chunks, chunk, N_MELS).contiguous().to(device)
    windows = [torch.randn(shape, generator=generator).to(device) for shape in calls]
    x_long = x_long.to(device)

    print(f"\n== 1. Separation of a {seconds:g} s stereo track ({what}, made in {made:.1f} s) vs a bare "
          f"LSTM stack forward on {describe(device)} (median and fastest of {reps} interleaved repetitions)")
    print(f"blstm_mask: n_fft {N_FFT}, hop {HOP}, {N_MELS} mels, {LAYERS} x BLSTM {HIDDEN}, "
          f"{sum(p.numel() for p in model.parameters()):,d} parameters; Separator(chunk_seconds="
          f"{separator.chunk_seconds:g}, context_seconds={separator.context_seconds:g}, "
          f"batch_chunks={separator.batch_chunks}, wiener={separator.wiener})")
    print(f"frames: {frames} per channel = {n_chunks} chunk(s) of {chunk} (+ {context} context frames "
          f"each side); the Separator's model sees {fed} frames per channel (+{100 * (fed / frames - 1):.1f}% "
          f"context) in {len(calls)} call(s) of {', '.join(str(rows // channels) for rows, *_ in calls)} "
          f"chunk(s) x {channels} channels (at most {separator.batch_chunks} chunks a call)")
    print(f"bare batched chunks: input {tuple(x_batched.shape)} (last chunk zero-padded by "
          f"{n_chunks * chunk - frames} frames); bare one sequence: input {tuple(x_long.shape)}; bare on the "
          f"Separator's windows (the shapes its LSTM was given): inputs "
          f"{', '.join(str(tuple(w.shape)) for w in windows)}")

    def bare(*inputs):
        def run():
            with torch.no_grad():
                for x in inputs:
                    lstm(x)
        return run

    runs = {"bare, batched chunks": bare(x_batched), "bare, one sequence": bare(x_long),
            "bare, Separator's windows": bare(*windows), "Separator.separate": lambda: separator.separate(mixture)}
    times = interleave(runs, reps, device=device)
    med = medians(times)
    best = {k: min(v) for k, v in times.items()}
    ours, ours_best = med["Separator.separate"], best["Separator.separate"]
    print(f"{'contender':26} {'median s':>9} {'fastest s':>10} {'slowest s':>10} {'x real time':>12} "
          f"{'(fastest)':>10} {'bare/ours':>10} {'(fastest)':>10} {'(paired)':>9}  issue's x real time")
    for name in runs:
        bare_ratio = f"{med[name] / ours:10.2f} {best[name] / ours_best:10.2f} " \
                     f"{paired(times[name], times['Separator.separate']):9.2f}" \
            if name != "Separator.separate" else f"{'':10} {'':10} {'':9}"
        issue = f"  {ISSUE_BARE[name]:.0f}" if name in ISSUE_BARE else ""
        print(f"{name:26} {med[name]:9.3f} {best[name]:10.3f} {max(times[name]):10.3f} "
              f"{seconds / med[name]:12.1f} {seconds / best[name]:10.1f} {bare_ratio}{issue}")
    print("per repetition, s: " + "; ".join(f"{name} " + " ".join(f"{x:.2f}" for x in v)
                                            for name, v in times.items()))
    disturbed(times, "separation")
    tag = f"{seconds:g} s track"
    note(f"Separator x real time, {tag}", seconds / ours, ".1f")
    note(f"Separator x real time, fastest rep, {tag}", seconds / ours_best, ".1f")
    for name, short in (("bare, batched chunks", "batched chunks"), ("bare, one sequence", "one sequence"),
                        ("bare, Separator's windows", "Separator's windows")):
        note(f"bare LSTM x real time, {short}", seconds / med[name], ".1f")
        ratio = med[name] / ours
        note(f"bare {short} / Separator", ratio, ".2f", f">= {GOAL_SEPARATION}", ratio >= GOAL_SEPARATION)
        note(f"bare {short} / Separator, fastest reps", best[name] / ours_best, ".2f")
        note(f"bare {short} / Separator, paired", paired(times[name], times["Separator.separate"]), ".2f")
    if profile:
        profile_separation(separator, mixture, lstm, x_batched, x_long)


# --------------------------------------------------------------------------- #
# The profile: where the time of the real Separator.separate goes
# --------------------------------------------------------------------------- #

class StageClock:
    """Times the functions ``Separator.separate`` calls while it runs: a
    profile hook (``sys.setprofile``) watches the calls of the given functions
    (each a stage) and adds up each stage's own time, the time of the watched
    functions it calls excluded, per call path (the same function under two
    callers is two entries). Nothing of the separation is replaced or
    re-implemented: the real call runs, and a function it no longer calls
    shows no calls. On a GPU every stage boundary waits for the device's
    queued work, so that each stage's time covers its kernels."""

    def __init__(self, stages: dict[str, object], device: torch.device):
        self.labels = {inspect.unwrap(fn).__code__: label for label, fn in stages.items()}
        self.device = device
        self.seconds: dict[tuple, float] = {}       # call path (codes) -> own seconds
        self.calls: dict[tuple, int] = {}
        self._stack: list[list] = []                # [frame, code, start, seconds in watched callees]

    def _event(self, frame, event: str, _arg) -> None:
        if event == "call" and frame.f_code in self.labels:
            sync(self.device)
            self._stack.append([frame, frame.f_code, time.perf_counter(), 0.0])
        elif event == "return" and self._stack and self._stack[-1][0] is frame:
            sync(self.device)
            elapsed = time.perf_counter() - self._stack[-1][2]
            path = tuple(entry[1] for entry in self._stack)
            self.seconds[path] = self.seconds.get(path, 0.0) + elapsed - self._stack[-1][3]
            self.calls[path] = self.calls.get(path, 0) + 1
            self._stack.pop()
            if self._stack:
                self._stack[-1][3] += elapsed

    def run(self, fn, *args):
        """``fn(*args)`` with the stages timed (their figures replace the previous run's)."""
        self.seconds, self.calls, self._stack = {}, {}, []
        sys.setprofile(self._event)
        try:
            return fn(*args)
        finally:
            sys.setprofile(None)

    def label(self, path: tuple) -> str:
        return self.labels[path[-1]]


def profile_separation(separator: Separator, mixture: np.ndarray, lstm: nn.LSTM,
                       x_batched: torch.Tensor, x_long: torch.Tensor, runs: int = 3) -> None:
    """Where the time of ``separator.separate(mixture)`` goes, stage by stage
    (:class:`StageClock` over the real call), beside the bare stack on the
    same frames; then the ceiling of the goal's ratio that those stages allow."""
    from musicsep.separate.separator import BLOCK_FRAMES, apply_masks, as_targets
    from musicsep.spectral.stft import Framing, OverlapAdd, magnitude, overlap_add
    from musicsep.spectral.wiener import wiener

    model = separator.model
    stages = {
        "Separator.separate itself (checks, batching, loops)": Separator.separate,
        "STFT (Framing.stft_many: reflect-padded reads, torch.stft)": Framing.stft_many,
        "|X| (magnitude)": magnitude,
        "model.mel_masks itself (sigmoid, views)": type(model).mel_masks,
        "features.inputs (log, whiten, mel projection)": type(model.features).inputs,
        "LSTM (nn.LSTM: chunks x channels a call, with context)": type(model_lstm(model)).forward,
        "linear layer (nn.Linear)": nn.Linear.forward,
        "to_linear (mel -> linear masks, clamp)": type(model.features).to_linear,
        "apply_masks (masks * X, complex by real)": apply_masks,
        "wiener (post-filter)": wiener,
        "OverlapAdd.add itself": OverlapAdd.add,
        "irfft (Framing.overlap_add_into itself)": Framing.overlap_add_into,
        "overlap_add (windowed strided multiply-adds)": overlap_add,
        "OverlapAdd.result (normalise by the envelope)": OverlapAdd.result,
        "Framing.envelope itself": Framing.envelope,
        "as_targets (contiguous copies, accompaniment)": as_targets,
    }
    clock = StageClock(stages, separator.device)
    reference = separator.separate(mixture)
    clock.run(separator.separate, mixture)                        # warm-up
    best: dict[tuple, float] = {}
    calls: dict[tuple, int] = {}
    totals, plain, bare = [], [], {"batched chunks": [], "one sequence": []}
    for _ in range(runs):             # per stage, the fastest of the runs (robust to other processes)
        start = time.perf_counter()
        out = clock.run(separator.separate, mixture)
        totals.append(time.perf_counter() - start)
        for path, t in clock.seconds.items():
            best[path] = min(best.get(path, math.inf), t)
        calls = clock.calls
        plain.append(interleave({"plain": lambda: separator.separate(mixture)}, 1, warm_up=False,
                                device=separator.device)["plain"][0])
        with torch.no_grad():
            bare_times = interleave({name: (lambda x=x: lstm(x)) for name, x in
                                     (("batched chunks", x_batched), ("one sequence", x_long))}, 1,
                                    warm_up=False, device=separator.device)
        for name, t in bare_times.items():
            bare[name] += t
    peak = max(float(np.abs(v).max()) for v in reference.values()) or 1.0
    diff = max(float(np.abs(out[k] - reference[k]).max()) for k in reference)
    seconds = mixture.shape[-1] / RATE
    total = sum(best.values())
    print(f"\n== profile: the real Separator.separate of the {seconds:g} s track, stage by stage (the functions it "
          f"calls, each one's own time: watched callees excluded, indented under it), fastest of {runs} runs per "
          f"stage; blocks of {BLOCK_FRAMES} frames")
    print(f"{'stage':64} {'calls':>6} {'s':>7} {'share':>6} {'ms per s of audio':>18}")
    for path in sorted(best, key=lambda p: [list(clock.labels).index(c) for c in p]):
        label = "  " * (len(path) - 1) + clock.label(path)
        print(f"{label:64} {calls.get(path, 0):6d} {best[path]:7.3f} {100 * best[path] / total:5.1f}% "
              f"{1000 * best[path] / seconds:18.1f}")
    print(f"{'sum of the stages':64} {'':6} {total:7.3f} {100.0:5.1f}% {1000 * total / seconds:18.1f}")
    called = {path[-1] for path in best}
    unused = [label for code, label in clock.labels.items() if code not in called]
    if unused:
        print(f"not called in this separation: {'; '.join(unused)}")
    print(f"whole runs, s: profiled {' '.join(f'{t:.2f}' for t in totals)}; unprofiled "
          f"{' '.join(f'{t:.2f}' for t in plain)} (the profile hook's own cost is the difference); profiled "
          f"output vs unprofiled: max |difference| {diff / peak:.1e} of the peak")

    def own(label: str, parent: str | None = None) -> float:
        return sum(t for path, t in best.items() if clock.label(path) == label
                   and (parent is None or len(path) > 1 and clock.labels[path[-2]] == parent))

    lstm_label = "LSTM (nn.LSTM: chunks x channels a call, with context)"
    in_lstm = own(lstm_label)
    print(f"outside the LSTM: {total - in_lstm:.3f} s ({100 * (total - in_lstm) / total:.0f}%); the LSTM as the "
          f"Separator runs it ({separator.batch_chunks} chunks x channels a call at most, with context): "
          f"{in_lstm:.3f} s; the bare stack on the same frames (fastest of {runs}): batched chunks "
          f"{min(bare['batched chunks']):.3f} s, one sequence {min(bare['one sequence']):.3f} s")
    note("profile: share of separation outside the LSTM, %", 100 * (total - in_lstm) / total, ".0f")
    note("profile: LSTM in Separator / bare batched chunks", in_lstm / min(bare["batched chunks"]), ".2f")
    # what the goal's ratio could be at most: the model's own work (its LSTM over the
    # context frames too, its head and sigmoid) with everything else free; then with the
    # transforms (STFT, mel projections, inverse FFT) at their measured speed too
    mel_masks = "model.mel_masks itself (sigmoid, views)"
    head = own("linear layer (nn.Linear)", mel_masks) + own(mel_masks)
    model_work = in_lstm + head
    transforms = sum(own(label) for label in ("STFT (Framing.stft_many: reflect-padded reads, torch.stft)",
                                              "features.inputs (log, whiten, mel projection)",
                                              "to_linear (mel -> linear masks, clamp)",
                                              "irfft (Framing.overlap_add_into itself)"))
    fastest_bare = min(bare["batched chunks"])
    ceiling = fastest_bare / model_work
    print(f"ceiling of bare batched / Separator: {ceiling:.2f} with nothing but the model's own work (LSTM "
          f"with context, head and sigmoid: {model_work:.3f} s), {fastest_bare / (model_work + transforms):.2f} "
          f"with the STFT, mel projections and inverse FFT too ({transforms:.3f} s)")
    note("profile: ceiling of bare batched / Separator (model's own work only)", ceiling, ".2f")


# --------------------------------------------------------------------------- #
# 2. Evaluation
# --------------------------------------------------------------------------- #

def bench_evaluation(seconds: float, reps: int, seed: int) -> None:
    import museval

    from musicsep import TARGETS
    from musicsep.evaluate.track import accompaniment, evaluate_track

    streams, song = toy_streams(seconds, seed)
    refs = {s: streams[STREAMS.index(s)].astype(np.float64) for s in SOURCES}   # (samples, 2), as musdb
    refs["accompaniment"] = accompaniment(refs)
    mix = streams[STREAMS.index("mixture")].astype(np.float64)
    rng = np.random.default_rng(seed)
    # estimates like a separator's: most of the source, a little of the others, some noise
    estimates = {s: 0.8 * refs[s] + 0.1 * (mix - refs[s]) + 0.003 * rng.standard_normal(mix.shape)
                 for s in SOURCES}
    estimates["accompaniment"] = accompaniment(estimates)
    name = "Toy Artist - Toy Song"

    def track(references):
        return SimpleNamespace(name=name, rate=RATE, subset="test", targets=OrderedDict(
            (t, SimpleNamespace(audio=references[t])) for t in TARGETS))

    print(f"\n== 2. Evaluation of a {seconds:g} s stereo toy track (song {song}, {len(TARGETS)} targets): "
          f"evaluate_track vs museval.eval_mus_track, both writing the JSON ({reps} repetitions each, "
          f"in the order A B B A ..., after a warm-up on 2 s)")
    logging.getLogger("musicsep").setLevel(logging.ERROR)     # silent-window warnings: same work, no noise
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        tmp = Path(tmp)
        short = int(2 * RATE)
        refs2 = {k: v[:short] for k, v in refs.items()}
        est2 = {k: v[:short] for k, v in estimates.items()}
        museval.eval_mus_track(track(refs2), est2, output_dir=str(tmp / "warm"))
        evaluate_track(refs2, est2, RATE, name, tmp / "warm" / "ours.json", engine="museval")

        ours_json = tmp / "ours" / "test" / f"{name}.json"
        # both call museval.evaluate (a module global of museval, looked up at
        # each call): time spent inside it, per run, splits each run into
        # BSS Eval itself and the job around it (grouping, checks, JSON)
        inside: list[float] = []
        bss_eval = museval.evaluate

        def timed_evaluate(*a, **kw):
            start = time.perf_counter()
            try:
                return bss_eval(*a, **kw)
            finally:
                inside.append(time.perf_counter() - start)

        def run(key, fn):
            def go():
                inside.clear()
                fn()
                around[key].append(sum(inside))
            return go

        runs = {
            "museval.eval_mus_track": lambda: museval.eval_mus_track(track(refs), estimates,
                                                                     output_dir=str(tmp / "museval")),
            "evaluate_track": lambda: evaluate_track(refs, estimates, RATE, name, ours_json, engine="museval"),
        }
        around: dict[str, list[float]] = {k: [] for k in runs}
        wrapped = {k: run(k, fn) for k, fn in runs.items()}
        museval.evaluate = timed_evaluate
        try:
            times = interleave(wrapped, reps, warm_up=False, alternate=True)
        finally:
            museval.evaluate = bss_eval
        theirs_text = (tmp / "museval" / "test" / f"{name}.json").read_text()
        same = theirs_text == ours_json.read_text()
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    # seconds outside museval.evaluate, per run
    outside = {k: [t - i for t, i in zip(times[k], around[k])] for k in times}
    out_med = {k: statistics.median(v) for k, v in outside.items()}
    ratio = med["evaluate_track"] / med["museval.eval_mus_track"]
    ratio_best = best["evaluate_track"] / best["museval.eval_mus_track"]
    # the same ratio from the work outside BSS Eval only (robust to load on the
    # shared BSS Eval part): 1 + (our extra seconds) / museval's whole run
    added = 1 + (out_med["evaluate_track"] - out_med["museval.eval_mus_track"]) / med["museval.eval_mus_track"]
    print(f"{'contender':24} {'median s':>9} {'fastest s':>10} {'slowest s':>10} {'s per min audio':>16} "
          f"{'outside BSS Eval s':>19}")
    for name_, v in times.items():
        print(f"{name_:24} {med[name_]:9.2f} {best[name_]:10.2f} {max(v):10.2f} {60 * med[name_] / seconds:16.1f} "
              f"{out_med[name_]:19.3f}")
    print("per repetition, s: " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in times.items()))
    disturbed(times, "evaluation", 1.2)
    print(f"ours / museval: {ratio:.3f} (fastest reps {ratio_best:.3f}; goal <= {GOAL_EVALUATION}); from the "
          f"work outside museval.evaluate alone: {added:.4f}; JSON files identical: {'yes' if same else 'NO'}")
    tag = f"{seconds:g} s track"
    note("museval eval_mus_track s per min of audio", 60 * med["museval.eval_mus_track"] / seconds, ".1f")
    note(f"evaluate_track / eval_mus_track, {tag}", ratio, ".3f", f"<= {GOAL_EVALUATION}",
         ratio <= GOAL_EVALUATION)
    note("evaluate_track / eval_mus_track, fastest reps", ratio_best, ".3f")
    note("same, from the work outside museval.evaluate", added, ".4f", f"<= {GOAL_EVALUATION}",
         added <= GOAL_EVALUATION)
    note("evaluate_track s outside museval.evaluate", out_med["evaluate_track"], ".3f")
    note("evaluate_track JSON == eval_mus_track JSON", float(same), ".0f", "== 1", same)


# --------------------------------------------------------------------------- #
# 3. Quality on the toy test set
# --------------------------------------------------------------------------- #

def bench_quality(path: Path) -> None:
    print(f"\n== 3. Quality on the toy test set: median SDR (dB; over frames, then tracks) from {path}")
    if not path.is_file():
        print(f"{path} does not exist (written by `python -m musicsep aggregate` at the end of the workflow): "
              "skipped")
        SUMMARY.append(("quality (scores.csv)", "missing", "", None))
        return
    import pandas as pd

    from musicsep import evaluate

    table = pd.read_csv(path)
    medians = getattr(evaluate, "median_scores", None)
    if medians is not None:
        med = medians(table)
    else:       # museval's EvalStore.agg_frames_tracks_scores(), per experiment
        per_track = table.groupby(["experiment", "track", "target", "metric"])["score"].median()
        med = per_track.reset_index().groupby(["experiment", "target", "metric"])["score"].median()
    sdr = med.xs("SDR", level="metric")
    experiments = list(dict.fromkeys(table["experiment"]))
    ref = next((e for e in experiments if e.lower() in ("oracle_irm1", "irm1")), None)
    order = sorted(e for e in experiments if not e.lower().startswith("oracle")) + \
        sorted(e for e in experiments if e.lower().startswith("oracle"))
    targets = [t for t in evaluate.TARGETS if t in set(table["target"])]
    tracks = table.groupby("experiment")["track"].nunique()
    print(f"{len(table):,d} frame scores; IRM1 reference: {ref or 'none found (no fractions)'}; "
          f"cells: median SDR, and in brackets its fraction of {ref or 'IRM1'}'s")
    print(f"{'experiment':14} {'tracks':>6} " + " ".join(f"{t:>20}" for t in targets))
    if ref is not None:
        print(f"{ref:14} {tracks[ref]:6d} " + " ".join(f"{sdr.get((ref, t), math.nan):20.2f}" for t in targets))
    for exp in order:
        if exp == ref:
            continue
        cells = []
        for t in targets:
            value = sdr.get((exp, t), math.nan)
            oracle = sdr.get((ref, t), math.nan) if ref is not None else math.nan
            frac = value / oracle if oracle and not math.isnan(oracle) else math.nan
            cells.append(f"{value:.2f} ({frac:.2f})")
        print(f"{exp:14} {tracks[exp]:6d} " + " ".join(f"{c:>20}" for c in cells))
    negative = [f"{e}/{t}" for e in order for t in targets if sdr.get((e, t), 0.0) < 0]
    if negative:
        print("note: a fraction of the IRM1's SDR means little where an SDR is negative "
              f"({', '.join(negative)})")
    if len({frozenset(table.loc[table['experiment'] == e, 'track']) for e in experiments}) > 1:
        print("note: the experiments were scored on different tracks; their medians compare only roughly")
    if ref is not None:
        for exp in order:
            if exp == ref:
                continue
            fracs = [sdr.get((exp, t), math.nan) / sdr.get((ref, t), math.nan) for t in targets]
            note(f"quality: {exp} SDR / {ref} SDR, median over targets", float(np.nanmedian(fracs)), ".2f")


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 30 s track, fewer repetitions, a 10 s evaluation")
    parser.add_argument("--seconds", type=float, help="track length for benchmark 1 (default 180; --quick 30)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions for benchmark 1 (default 5; --quick 3)")
    parser.add_argument("--signal", choices=("toy", "noise"), default="toy",
                        help="benchmark 1's mixture: the toy synth's (default) or white noise")
    parser.add_argument("--eval-seconds", type=float, help="track length for benchmark 2 (default 30; --quick 10)")
    parser.add_argument("--eval-reps", type=int, help="runs of each for benchmark 2 (default 3; --quick 2)")
    parser.add_argument("--scores", type=Path, default=ROOT / "results" / "scores.csv",
                        help="frame scores for benchmark 3 (default results/scores.csv)")
    parser.add_argument("--seed", type=int, default=2019, help="toy song seed (the first with sound in every stem)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: CPU count)")
    parser.add_argument("--only", type=int, action="append", choices=(1, 2, 3),
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--profile", action="store_true",
                        help="after benchmark 1, time the stages of the real Separator.separate")
    parser.add_argument("--device", default="cpu",
                        help="where benchmark 1 runs the Separator and the bare stack: cpu (default; the goal's "
                             "setting) or cuda[:N]")
    args = parser.parse_args()
    # as the command line does, for every contender alike (MUSICSEP_MALLOC=system: glibc's defaults)
    print(f"allocator: {'freed blocks kept for reuse' if reuse_freed_memory() else 'system defaults'}")
    seconds = args.seconds or (30.0 if args.quick else 180.0)
    reps = args.reps or (3 if args.quick else 5)
    eval_seconds = args.eval_seconds or (10.0 if args.quick else 30.0)
    eval_reps = args.eval_reps or (2 if args.quick else 3)
    if seconds <= 0 or eval_seconds < 2 or reps < 1 or eval_reps < 1:
        parser.error("--seconds must be positive, --eval-seconds at least 2, repetitions at least 1")
    only = set(args.only or (1, 2, 3))
    torch.set_num_threads(args.threads)

    print(f"musicsep separation and evaluation benchmarks ({'quick' if args.quick else 'full'}); "
          f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads")
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} (1, 5, 15 min)")
    if 1 in only:
        bench_separation(seconds, reps, args.signal, args.seed, args.profile, torch.device(args.device))
    if 2 in only:
        bench_evaluation(eval_seconds, eval_reps, args.seed)
    if 3 in only:
        bench_quality(args.scores)

    load_after = os.getloadavg()
    ran = ([f"separation {seconds:g} s x {reps} reps"] if 1 in only else []) + \
        ([f"evaluation {eval_seconds:g} s x {eval_reps}"] if 2 in only else [])
    where = f"separation on {args.device}, " if args.device != "cpu" and 1 in only else ""
    print(f"\n== Summary ({where}CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          + "".join(f"{r}; " for r in ran) + f"1-min load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after, {os.cpu_count()} CPUs)")
    print_summary()
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine was busy before the run (load {load_before[0]:.2f} on {os.cpu_count()} CPUs); "
              "medians may be inflated, the 'fastest' figures less so")


if __name__ == "__main__":
    main()
