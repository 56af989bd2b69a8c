"""Benchmarks of the training step, each against a baseline measured in the same run.

1. Training throughput: excerpts/s of one full training step of each model
   (``blstm_mask`` with the l1 loss, ``conditional_centroids`` with l1_dc,
   ``deep_clustering`` with dc): exactly what the trainer does per batch,
   ``compute_loss`` (STFTs, features, model, loss) under the trainer's autocast
   and ``optimizer_step`` (``zero_grad``, ``backward``, gradient-norm clipping
   and the Adam step), the trainer's own functions, on a fixed batch of random
   sources ``(batch, 4, 2, samples)``. The baseline is a bare
   ``nn.LSTM`` stack of the same shape (input n_mels, hidden H, L layers,
   bidirectional, dropout 0.3) doing forward + backward (sum of the output as the
   loss) on a tensor of the model's LSTM input shape ``(batch * channels, frames,
   n_mels)``: the work no implementation of these models can avoid. Contenders
   are run in turn (bare, blstm_mask, centroids, dpcl, bare, ...) and medians
   compared. Goals: bare/blstm_mask >= 0.8 (features, masks and loss add at most
   a quarter to the LSTM), conditional_centroids' step within 1.3x blstm_mask's.
2. Loader vs consumption: excerpts/s of ``ExcerptDataset`` over real shards
   (toy MUSDB tracks written by ``write_shard``) through a DataLoader built as
   the trainer builds it (its batch sampler, ``--workers`` workers, pinned memory
   on a GPU), timed from the first batch on (worker start-up excluded), as a
   ratio to the excerpts/s the blstm_mask training step consumes at the same
   excerpt length. One loader epoch runs in each repetition of benchmark 1
   (interleaved, not concurrently). Goal >= 5: the loader is never what a
   training run waits for.

Prints ratios and goals; asserts nothing about time (numbers depend on the
machine; measured figures are kept in ``benchmarks/RESULTS.md``). Run from
the repository root with the virtual environment:

    python benchmarks/bench_train.py [--quick] [--device cuda] [--hidden 300 --layers 4]
                                     [--batch 4] [--seconds 1.0] [--workers N] [--profile]
                                     [--shards results/data/shards/*.h5]

Defaults on CPU: paper-size models (hidden 300, 4 layers, 300 mels) on a batch
of 4 excerpts of 1.0 s, 11 repetitions of timings of >= 1 s each (about a
minute on 2 idle cores); ``--quick``: hidden 64, 2 layers, 5 repetitions of >= 0.3 s
(under a minute). On CUDA the batch and excerpt default to the trainer's (20 of
3.2 s). Each timing runs as many steps as fill ``--min-time`` (counted after
two warm-up steps) and waits for the device. The median of the repetitions is
the figure (goals are judged on the ratio of medians); the fastest is printed
beside it, as on a shared machine the gap between the two is other processes'
doing, and so is the median of the per-repetition ratios ("paired": the two
timings of a ratio are seconds apart, so a burst of other work that slows both
cancels), with the spread of each contender's repetitions.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import interleave, note, paired, print_summary
from torch import nn
from torch.utils.data import DataLoader

from musicsep.data.excerpts import ExcerptDataset
from musicsep.memory import reuse_freed_memory
from musicsep.models.registry import build_model
from musicsep.train.distributed import RankBatches, loader_workers
from musicsep.train.loop import make_optimizer, optimizer_step
from musicsep.train.objective import compute_loss

RATE, N_FFT, HOP, N_MELS, LOG_EPS, DROPOUT, CLIP = 44100, 2048, 512, 300, 1e-6, 0.3, 100.0
# model -> (loss, extra model_args), as the experiments of config/config.yaml
MODELS = {
    "blstm_mask": ("l1", {}),
    "conditional_centroids": ("l1_dc", {"dim": 15, "covariance": "tied_diag", "em_iterations": 0}),
    "deep_clustering": ("dc", {"dim": 20, "clustering": "kmeans"}),
}


def repeated(fn, steps: int):
    """``fn`` called ``steps`` times, as one contender for :func:`interleave`."""
    def run() -> None:
        for _ in range(steps):
            fn()
    return run


def timed(fn, steps: int, device: torch.device) -> float:
    """Mean seconds of one call of ``fn`` over ``steps`` calls (device work included)."""
    return interleave({"fn": repeated(fn, steps)}, 1, warm_up=False, device=device)["fn"][0] / steps


# --------------------------------------------------------------------------- #
# Contenders
# --------------------------------------------------------------------------- #

def training_step(name: str, hidden: int, layers: int, sources: torch.Tensor, device: torch.device, amp):
    """One training step of ``name`` as the trainer's loop (:mod:`musicsep.train.loop`)
    runs it (without the logging), on the fixed batch ``sources``."""
    loss_name, extra = MODELS[name]
    model = build_model(name, sample_rate=RATE, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, log_eps=LOG_EPS,
                        hidden=hidden, layers=layers, dropout=DROPOUT, **extra).to(device).train()
    optimizer = make_optimizer(model, lr=2e-4)        # the trainer's optimiser

    def step() -> None:
        with amp():
            loss, _ = compute_loss(model, loss_name, sources, dc_weight=1.0)
        optimizer_step(model, optimizer, loss, CLIP)

    return step, model


def bare_step(hidden: int, layers: int, rows: int, frames: int, device: torch.device, amp):
    """The baseline: the same LSTM stack, forward + backward on an input of the
    model's LSTM input shape (no features, no head, no loss, no optimiser)."""
    lstm = nn.LSTM(N_MELS, hidden, num_layers=layers, dropout=DROPOUT if layers > 1 else 0.0,
                   bidirectional=True, batch_first=True).to(device).train()
    x = torch.randn(rows, frames, N_MELS, device=device)

    def step() -> None:
        lstm.zero_grad(set_to_none=True)
        with amp():
            out = lstm(x)[0]
        out.float().sum().backward()

    return step, lstm


def loader_epoch(dataset: ExcerptDataset, batch: int, workers: int, epoch: int, device: torch.device) -> float:
    """Excerpts/s of one epoch through the trainer's DataLoader, timed from the
    first batch on."""
    dataset.set_epoch(epoch)
    sampler = RankBatches(len(dataset), batch, 0, 1)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=False, generator=torch.Generator().manual_seed(epoch))
    items = iter(loader)
    next(items)
    start = time.perf_counter()
    count = sum(len(b) for b in items)
    return count / (time.perf_counter() - start)


def make_shards(work: Path, tracks: int, duration: float) -> list[Path]:
    from musicsep.data.musdb import scan
    from musicsep.data.shard import write_shard
    from musicsep.toy.musdb import make_toy_musdb

    archive = make_toy_musdb(work / "toy.zip", seed=1, train=tracks, test=0, duration=duration, jobs=2)
    dataset, table = scan(archive, subsets=["train"])
    shards = []
    for i, track in enumerate(table):
        shards.append(work / f"{i}.h5")
        write_shard(dataset, track.member, track.split, shards[-1])
    return shards


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller model and fewer repetitions (< 1 minute)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (bf16 autocast there, as the trainer)")
    parser.add_argument("--hidden", type=int, help="LSTM hidden size (default 300; --quick 64)")
    parser.add_argument("--layers", type=int, help="LSTM layers (default 4; --quick 2)")
    parser.add_argument("--batch", type=int, help="excerpts per batch (default 4 on CPU, 20 on CUDA)")
    parser.add_argument("--seconds", type=float, help="excerpt seconds (default 1.0 on CPU, 3.2 on CUDA)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions (default 11; --quick 5)")
    parser.add_argument("--steps", type=int,
                        help="steps per timing (default: enough for --min-time, at least 1)")
    parser.add_argument("--min-time", type=float,
                        help="seconds a timing lasts at least when --steps is not given (default 1; --quick 0.3)")
    parser.add_argument("--workers", type=int,
                        help="DataLoader workers (default: the trainer's, training.workers null: the CPUs this "
                             "process may use, less one, at most 8)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: CPU count)")
    parser.add_argument("--loader-batches", type=int, help="batches per loader epoch (default 40; --quick 20)")
    parser.add_argument("--profile", action="store_true",
                        help="finally, torch.profiler's top operators over 3 steps of each contender")
    parser.add_argument("--shards", type=Path, nargs="+",
                        help="benchmark 2's loader over these shards (e.g. results/data/shards/*.h5) instead of "
                             "toy tracks written for the run (which needs ffmpeg)")
    args = parser.parse_args()
    args.workers = loader_workers(args.workers)
    # as the command line does, for every contender alike (MUSICSEP_MALLOC=system: glibc's defaults)
    print(f"allocator: {'freed blocks kept for reuse' if reuse_freed_memory() else 'system defaults'}")

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU visible")
    hidden = args.hidden or (64 if args.quick else 300)
    layers = args.layers or (2 if args.quick else 4)
    batch = args.batch or (20 if cuda else 4)
    seconds = args.seconds or (3.2 if cuda else 1.0)
    reps = args.reps or (5 if args.quick else 11)
    min_time = args.min_time or (0.3 if args.quick else 1.0)
    loader_batches = args.loader_batches or (20 if args.quick else 40)
    toy_tracks, toy_duration = (2, 6.0) if args.quick else (4, 12.0)
    if not 0 < seconds < toy_duration and not args.shards:
        parser.error(f"--seconds must be below the toy tracks' {toy_duration} s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if cuda:
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    samples = int(round(seconds * RATE))
    frames = samples // HOP + 1
    channels = 2
    print(f"musicsep training benchmarks ({'quick' if args.quick else 'full'}); torch {torch.__version__}, "
          f"python {platform.python_version()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    gpu = f" ({torch.cuda.get_device_name(device)}, bf16 autocast)" if cuda else " (float32)"
    print(f"device {device}{gpu}; excerpt {seconds} s = {samples} samples = {frames} frames; "
          f"batch {batch} x {channels} channels = {batch * channels} sequences")
    print(f"models: hidden {hidden}, {layers} layers, bidirectional, dropout {DROPOUT}, n_mels {N_MELS}, "
          f"n_fft {N_FFT}, hop {HOP}; Adam, clip_grad_norm {CLIP}; {reps} interleaved reps, medians; "
          f"loader: {args.workers} workers, {loader_batches} batches per epoch")
    load_before = os.getloadavg()[0]

    sources = (0.1 * torch.randn(batch, 4, channels, samples, generator=torch.Generator().manual_seed(0))).to(device)
    contenders = {}
    contenders["bare LSTM"], lstm = bare_step(hidden, layers, batch * channels, frames, device, amp)
    params = {"bare LSTM": sum(p.numel() for p in lstm.parameters())}
    for name in MODELS:
        contenders[name], model = training_step(name, hidden, layers, sources, device, amp)
        params[name] = sum(p.numel() for p in model.parameters() if p.requires_grad)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if args.shards:
            shards = args.shards
            print(f"shards: {len(shards)} given ({', '.join(p.name for p in shards[:3])}"
                  f"{', ...' if len(shards) > 3 else ''})")
        else:
            start = time.perf_counter()
            shards = make_shards(Path(tmp), toy_tracks, toy_duration)
            print(f"shards: {len(shards)} toy tracks of {toy_duration} s, written in "
                  f"{time.perf_counter() - start:.1f} s")
        dataset = ExcerptDataset(shards, seconds, incoherent=True, incoherent_tracks=False,
                                 samples_per_epoch=loader_batches * batch, seed=0)

        # -- 1 and 2, interleaved ------------------------------------------------
        print(f"\nwarming up, then {reps} repetitions of: " + ", ".join([*contenders, "loader epoch"]))
        steps = {}
        for name, fn in contenders.items():     # warm-up: allocator, MKL-DNN/cuDNN plans, first Adam step
            timed(fn, 2, device)
            steps[name] = args.steps or max(1, math.ceil(min_time / timed(fn, 1, device)))
        print("steps per timing: " + ", ".join(f"{name} {n}" for name, n in steps.items()))
        loader_rates: list[float] = []      # the loader records its own excerpts/s, epoch k in repetition k
        runs = {name: repeated(fn, steps[name]) for name, fn in contenders.items()}
        runs["loader epoch"] = lambda: loader_rates.append(
            loader_epoch(dataset, batch, args.workers, len(loader_rates), device))
        times = interleave(runs, reps, warm_up=False, device=device)
        del times["loader epoch"]
        times = {name: [t / steps[name] for t in v] for name, v in times.items()}   # seconds per step
        t = {name: statistics.median(v) for name, v in times.items()}

    # -- report ------------------------------------------------------------------
    # medians are the figures (goals judged on them); the fastest repetition is
    # printed beside them: on a shared machine a gap between the two is other
    # processes' doing, and the best-case ratios show the code's own cost.
    best = {name: min(v) for name, v in times.items()}
    bare, bare_best = t["bare LSTM"], best["bare LSTM"]
    print(f"\n== 1. Training step vs a bare LSTM stack forward + backward (median and fastest of {reps} "
          f"interleaved repetitions; excerpts/s = {batch} / step s)")
    print(f"{'contender':22} {'loss':>6} {'params':>11} {'step s':>8} {'fastest s':>10} {'slowest s':>10} "
          f"{'excerpts/s':>11} {'bare/model':>11} {'(fastest)':>10}")
    for name, median in t.items():
        loss = MODELS[name][0] if name in MODELS else "sum"
        print(f"{name:22} {loss:>6} {params[name]:11,d} {median:8.4f} {best[name]:10.4f} {max(times[name]):10.4f} "
              f"{batch / median:11.2f} {bare / median:11.2f} {bare_best / best[name]:10.2f}")
    print("per repetition, s: " + "; ".join(f"{name} " + " ".join(f"{x:.3f}" for x in v)
                                            for name, v in times.items()))
    print("spread (slowest/fastest rep): " + ", ".join(f"{name} {max(v) / min(v):.2f}" for name, v in times.items())
          + "; 'paired': the median over repetitions of the ratio of the two timings of one repetition "
            "(taken seconds apart, so a burst of other work that slows both cancels)")
    note("bare LSTM fwd+bwd step s", bare, ".4f")
    note("bare LSTM excerpts/s", batch / bare, ".2f")
    for name in MODELS:
        note(f"{name} step s", t[name], ".4f")
        note(f"{name} excerpts/s", batch / t[name], ".2f")
        ratio = bare / t[name]
        if name == "blstm_mask":
            note(f"{name} bare/model", ratio, ".2f", ">= 0.8", ratio >= 0.8)
        else:
            note(f"{name} bare/model", ratio, ".2f")
        note(f"{name} bare/model, fastest reps", bare_best / best[name], ".2f")
        note(f"{name} bare/model, paired", paired(times["bare LSTM"], times[name]), ".2f")
    centroids = t["conditional_centroids"] / t["blstm_mask"]
    dpcl = t["deep_clustering"] / t["blstm_mask"]
    print(f"conditional_centroids step / blstm_mask step: {centroids:.2f} (goal <= 1.3; fastest reps "
          f"{best['conditional_centroids'] / best['blstm_mask']:.2f}); deep_clustering step / blstm_mask step: "
          f"{dpcl:.2f} (fastest reps {best['deep_clustering'] / best['blstm_mask']:.2f})")
    note("conditional_centroids/blstm_mask step", centroids, ".2f", "<= 1.3", centroids <= 1.3)
    note("conditional_centroids/blstm_mask, fastest", best["conditional_centroids"] / best["blstm_mask"], ".2f")
    note("conditional_centroids/blstm_mask, paired",
         paired(times["conditional_centroids"], times["blstm_mask"]), ".2f")
    note("deep_clustering/blstm_mask step", dpcl, ".2f")

    loader = statistics.median(loader_rates)
    consumption = batch / t["blstm_mask"]
    ratio = loader / consumption
    print(f"\n== 2. Loader vs training consumption ({seconds} s excerpts, batch {batch}, {args.workers} workers, "
          f"median of {reps} epochs of {loader_batches} batches, timed after the first batch)")
    print(f"loader {loader:.1f} excerpts/s (epochs: {', '.join(f'{r:.0f}' for r in loader_rates)}); "
          f"blstm_mask consumes {consumption:.2f} excerpts/s (fastest rep {batch / best['blstm_mask']:.2f}); "
          f"loader/consumption {ratio:.1f} (goal >= 5)")
    note("loader excerpts/s", loader, ".1f")
    note("blstm_mask consumption excerpts/s", consumption, ".2f")
    note("loader/blstm_mask consumption", ratio, ".1f", ">= 5", ratio >= 5)
    note("loader/blstm_mask consumption, fastest", loader / (batch / best["blstm_mask"]), ".1f")

    load_after = os.getloadavg()[0]
    print(f"\n== Summary (device {device}, {seconds} s x batch {batch}, hidden {hidden}, layers {layers}, "
          f"n_mels {N_MELS}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"1-min load average {load_before:.2f} before, {load_after:.2f} after, {os.cpu_count()} CPUs)")
    print_summary()
    if not cuda and load_before > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine was busy before the run (load {load_before:.2f} on {os.cpu_count()} CPUs); "
              "medians may be inflated, the 'fastest' figures less so")
    if args.profile:
        profile(contenders, device)


def profile(contenders: dict, device: torch.device, rows: int = 15) -> None:
    """Where each contender's step goes: operators by self time over 3 steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for name, fn in contenders.items():
        with torch_profile(activities=activities, record_shapes=True) as prof:
            timed(fn, 3, device)
        print(f"\n== profile: {name}, 3 steps, by self time")
        print(prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=rows,
                                                                 max_name_column_width=40,
                                                                 max_shapes_column_width=60))


if __name__ == "__main__":
    main()
