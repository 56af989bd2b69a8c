"""Training: one experiment, on every device the job was given, resumable.

Read top to bottom: :func:`main_worker` is the whole loop. An experiment is a
*spec*, a plain dict built by the workflow from the config (``name``,
``model``, ``model_args``, ``loss``, ``training``, ``loader``, ``features``,
``sample_rate``); :func:`train` runs it.

- Devices: one process per visible GPU with DistributedDataParallel (NCCL);
  ``processes`` > 1 without GPUs runs the same code on CPU processes with gloo;
  on one device, no process group. Under SLURM (several tasks) or torchrun,
  ranks and the rendezvous come from the job's environment (submitit's
  ``TorchDistributedEnvironment``), so a job of several nodes trains as one.
- Data: every rank reads its own slice of each global batch; the draws are a
  function of the global sample index, so one process and N processes with the
  same global batch see the same excerpts.
- Checkpoints: ``{run_dir}/latest.pt`` every epoch and every
  ``checkpoint_minutes``, ``best.pt`` on validation loss; both hold the model's
  name, kwargs and weights, optimizer, scheduler, position, RNG states, the
  spec, version and git commit, and load with ``weights_only=True``. A rerun
  with the same spec resumes from ``latest.pt`` (also with more epochs: a
  finished run continues); a changed spec moves the old run folder aside and
  starts afresh. SIGTERM/SIGUSR1 save ``latest.pt`` and exit with status 3, so
  a retried job resumes.
- A NaN or Inf loss stops the run with an error naming the epoch and step,
  keeping the run folder.
- Logs: TensorBoard (scalars, audio examples, mask images), ``metrics.jsonl``,
  a progress bar in a terminal and plain lines otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from musicsep import SOURCES, MusicsepError, __version__
from musicsep.data import ExcerptDataset, ValidationSet
from musicsep.features import magnitude
from musicsep.io import atomic_path
from musicsep.losses import affinity_loss, dc_targets, l1_mel_mask_loss, si_sdr
from musicsep.models import build_model

log = logging.getLogger(__name__)

# The fast validation metric's name in TensorBoard (valid/...) and metrics.jsonl (valid_...):
# SI-SDR on the validation excerpts, a training-time proxy, never BSS Eval's SDR.
FAST_SDR = "si_sdr_fast_not_bss_eval"
LOSSES = {"blstm_mask": ("l1",), "conditional_centroids": ("l1_dc", "l1"), "deep_clustering": ("dc",)}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STOPPED_EXIT = 3


class Stopped(MusicsepError):
    """Training stopped by a signal after saving ``latest.pt``."""


# --------------------------------------------------------------------------- #
# Entry: decide the processes, then run main_worker in each
# --------------------------------------------------------------------------- #

def train(spec: dict, train_shards: list[str], valid_shards: list[str], stats: str, run_dir: str | Path,
          out: str | Path, metrics_out: str | Path | None = None, processes: int | None = None) -> None:
    """Train the experiment ``spec``; write the best model to ``out``."""
    check_spec(spec)
    run_dir = Path(run_dir)
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        prepare_run_dir(run_dir, spec)
    args = (spec, [str(p) for p in train_shards], [str(p) for p in valid_shards], str(stats), str(run_dir),
            str(out), str(metrics_out) if metrics_out else None)
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) > 1:
        main_worker(-1, 0, *args)          # launched by torchrun or srun: one process of many
        return
    n = processes or (torch.cuda.device_count() if torch.cuda.is_available() else 1)
    if n <= 1:
        main_worker(None, 1, *args)
        return
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(_free_port())
    context = torch.multiprocessing.start_processes(main_worker, args=(n, *args), nprocs=n, join=False,
                                                    start_method="spawn")
    forward = lambda signum, _frame: [os.kill(p.pid, signum) for p in context.processes if p.is_alive()]  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        while not context.join():
            pass
    except torch.multiprocessing.ProcessExitedException as err:
        if err.exit_code == STOPPED_EXIT:
            raise Stopped(f"training stopped by a signal; {run_dir}/latest.pt saved, rerun to resume") from None
        raise MusicsepError(f"a training process failed (exit code {err.exit_code}); see the log above") from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_spec(spec: dict) -> None:
    """Refuse a spec whose loss does not fit its model (before any work)."""
    allowed = LOSSES.get(spec["model"])
    if allowed is None:
        raise MusicsepError(f"experiments.{spec['name']}.model: unknown model {spec['model']!r}")
    if spec["loss"] not in allowed:
        raise MusicsepError(f"experiments.{spec['name']}.loss: {spec['loss']!r} does not fit model "
                            f"{spec['model']} (use {' or '.join(allowed)})")


# Settings that change how long or how a run is watched, not what it computes:
# changing them continues the run instead of starting afresh.
BUDGET_KEYS = ("epochs", "early_stop_patience", "workers", "checkpoint_minutes", "media_every")


MAX_AUTO_WORKERS = 8


def loader_workers(setting: int | None, sharing: int = 1) -> int:
    """DataLoader workers per training process: ``training.workers``, or when
    that is None the CPUs this process may use (its affinity, which SLURM
    sets to the job's or the task's CPUs) shared among the ``sharing``
    training processes that have the same CPUs, less one for the training
    loop itself, at most :data:`MAX_AUTO_WORKERS` (and 0, loading in the
    loop, on a single CPU)."""
    if setting is not None:
        return setting
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_AUTO_WORKERS, cpus // max(1, sharing) - 1))


def spec_hash(spec: dict) -> str:
    trajectory = {**spec, "training": {k: v for k, v in spec["training"].items() if k not in BUDGET_KEYS}}
    return hashlib.sha256(json.dumps(trajectory, sort_keys=True).encode()).hexdigest()[:16]


def prepare_run_dir(run_dir: Path, spec: dict) -> None:
    """Keep a run folder of the same spec (to resume); move one of another
    spec aside (nothing is deleted)."""
    marker = run_dir / "spec.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if spec_hash(old) == spec_hash(spec):
            with atomic_path(marker) as tmp:
                tmp.write_text(json.dumps(spec, indent=2, sort_keys=True))
            return
        aside = run_dir.with_name(f"{run_dir.name}.{spec_hash(old)}")
        shutil.rmtree(aside, ignore_errors=True)
        run_dir.rename(aside)
        log.info("the experiment changed: previous run moved to %s", aside)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(spec, indent=2, sort_keys=True))


# --------------------------------------------------------------------------- #
# One process
# --------------------------------------------------------------------------- #

def setup_process(local: int | None, world: int) -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group when world > 1.
    ``local`` is the spawn index, -1 when a launcher started us, None alone."""
    if local == -1:
        import submitit

        if "RANK" not in os.environ:
            if "SLURM_PROCID" in os.environ:     # srun's tasks: submitit recognises SLURM only with this
                os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")
            submitit.helpers.TorchDistributedEnvironment().export()
        rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    else:
        rank, local = local or 0, local or 0
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not cuda:          # CPU processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                init_method="env://")
    return rank, world, device


class RankBatches(torch.utils.data.Sampler):
    """This rank's share of each global batch of sample indices, from batch
    ``start`` on: global batch b is indices [b*B, (b+1)*B); rank r takes
    its r-th slice."""

    def __init__(self, n_samples: int, batch: int, rank: int, world: int, start: int = 0):
        self.n_batches, self.per_rank = n_samples // batch, batch // world
        self.batch, self.rank, self.start = batch, rank, start

    def __len__(self) -> int:
        return self.n_batches - self.start

    def __iter__(self):
        for b in range(self.start, self.n_batches):
            first = b * self.batch + self.rank * self.per_rank
            yield list(range(first, first + self.per_rank))


def spectrograms(features, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex mixture ``(batch * channels, freq, frames)`` and source
    ``(batch * channels, sources, freq, frames)`` spectrograms of a batch of
    sources ``(batch, sources, channels, samples)``: one STFT call for all
    sources and channels; the mixture is their sum (the STFT is linear: no 5th
    transform); channels are folded into the batch. Both are views of
    frames-major memory, as ``torch.stft`` returns them (the sum is taken in
    that layout: many times faster than across it)."""
    batch, n_src, channels, samples = sources.shape
    src_spec = features.stft(sources.transpose(1, 2).reshape(batch * channels, n_src, samples))
    return src_spec.transpose(-1, -2).sum(1).transpose(-1, -2), src_spec


def magnitudes(features, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixture ``(batch * channels, freq, frames)`` and source
    ``(batch * channels, sources, freq, frames)`` magnitudes of a batch of
    sources ``(batch, sources, channels, samples)`` (see :func:`spectrograms`)."""
    mix_spec, src_spec = spectrograms(features, sources)
    return magnitude(mix_spec), magnitude(src_spec)


def compute_loss(model, loss_name: str, sources: torch.Tensor, dc_weight: float,
                 keep: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Loss of a batch of sources ``(batch, sources, channels, samples)``.
    ``keep``, a dict, receives the mixture spectrogram (``mix_spec``) and the
    model's outputs (validation uses them)."""
    features = model.module.features if hasattr(model, "module") else model.features
    mix_spec, src_spec = spectrograms(features, sources)
    mix_mag, src_mag = magnitude(mix_spec), magnitude(src_spec)
    out = model(mix_mag, full_resolution=False)
    parts = {}
    if loss_name in ("l1", "l1_dc"):
        parts["l1"] = l1_mel_mask_loss(out["mel_masks"], features.mel_inverse.weight, mix_mag, src_mag)
    if loss_name in ("dc", "l1_dc"):
        labels, weights = dc_targets(features.to_mel(mix_mag), features.to_mel(src_mag))
        parts["dc"] = affinity_loss(out["embeddings"].float(), labels, weights)
    loss = parts.get("l1", 0.0) + (dc_weight if loss_name == "l1_dc" else 1.0) * parts.get("dc", 0.0)
    if keep is not None:
        keep.update(out, mix_spec=mix_spec)
    return loss, {k: v.detach() for k, v in parts.items()}


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   max_norm: float) -> torch.Tensor:
    """zero_grad, backward, gradient-norm clipping and the optimiser step;
    returns the gradient norm before clipping. The same as
    ``clip_grad_norm_(model.parameters(), max_norm)``, bit for bit, except that
    gradients are not multiplied by a clip factor of exactly 1 (a pass over
    every gradient that changes nothing)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    if not float(max_norm / (norm + 1e-6)) >= 1.0:         # clip_grad_norm_'s factor, clamped at 1
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    optimizer.step()
    return norm


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam over the trainable parameters, fused where this torch has it."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent)
        return proc.stdout.strip() or None if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def main_worker(local: int | None, world: int, spec: dict, train_shards: list[str], valid_shards: list[str],
                stats: str, run_dir: str, out: str, metrics_out: str | None) -> None:
    from musicsep.io import setup_logging

    setup_logging()
    rank, world, device = setup_process(local, world)
    # the processes that share this one's CPUs: the ones we spawned, or torchrun's on
    # this node; srun binds each of its tasks to CPUs of its own
    sharing = world if local != -1 else \
        int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "TORCHELASTIC_RUN_ID" in os.environ else 1
    try:
        _loop(rank, world, device, spec, train_shards, valid_shards, stats, Path(run_dir), Path(out),
              Path(metrics_out) if metrics_out else None, loader_workers(spec["training"]["workers"], sharing))
    except Stopped as err:
        log.warning("%s", err)
        if local is not None:          # a spawned process: the parent turns this into Stopped
            sys.exit(STOPPED_EXIT)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _loop(rank: int, world: int, device: torch.device, spec: dict, train_shards: list[str],
          valid_shards: list[str], stats: str, run_dir: Path, out: Path, metrics_out: Path | None,
          workers: int) -> None:
    cfg, loader_cfg = spec["training"], spec["loader"]
    if cfg["batch_size"] % world:
        raise MusicsepError(f"training.batch_size {cfg['batch_size']} is not divisible by the {world} processes")
    torch.manual_seed(cfg["seed"])
    if cfg["deterministic"]:
        torch.use_deterministic_algorithms(True)
    main = rank == 0
    if main:
        log.info("%s: %d loader worker(s) per training process%s", spec["name"], workers,
                 " (training.workers null: from the CPUs)" if cfg["workers"] is None else "")

    # -- model, optimiser, schedule -------------------------------------------
    model = build_model(spec["model"], where=f"experiments.{spec['name']}.model_args",
                        sample_rate=spec["sample_rate"], **spec["features"], **spec["model_args"])
    model.features.load_stats(stats)
    model.to(device)
    optimizer = make_optimizer(model, cfg["lr"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg["plateau_factor"],
                                                           patience=cfg["plateau_patience"])
    state = {"epoch": 0, "batch": 0, "step": 0, "best": math.inf, "bad_epochs": 0}
    latest = run_dir / "latest.pt"
    if latest.exists():
        saved = torch.load(latest, map_location=device, weights_only=True)
        model.load_state_dict(saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        set_rng_states(saved["rng"])
        if main:
            log.info("resuming %s from %s: epoch %d, batch %d", spec["name"], latest, state["epoch"], state["batch"])
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    # -- data -----------------------------------------------------------------
    dataset = ExcerptDataset(train_shards, loader_cfg["excerpt_seconds"], incoherent=loader_cfg["incoherent"],
                             incoherent_tracks=loader_cfg["incoherent_tracks"],
                             samples_per_epoch=loader_cfg["samples_per_epoch"], seed=loader_cfg["seed"])
    valid = ValidationSet(valid_shards or train_shards, loader_cfg["excerpt_seconds"],
                          loader_cfg["valid_excerpts_per_track"])
    if not valid_shards and main:
        log.warning("no validation tracks: validating on training tracks")

    # -- logging ---------------------------------------------------------------
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=state["step"] or None)
    stop = {"signal": None}
    handlers = {s: signal.signal(s, lambda signum, _f: stop.update(signal=signum)) for s in STOP_SIGNALS}
    last_save = time.monotonic()

    def checkpoint(path: Path) -> None:
        save(path, {"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "state": dict(state), "rng": rng_states(), "spec": spec, "version": __version__,
                    "git_commit": git_commit()})

    try:
        while state["epoch"] < cfg["epochs"] and state["bad_epochs"] < cfg["early_stop_patience"]:
            epoch = state["epoch"]
            curriculum = epoch < math.ceil(cfg["curriculum_fraction"] * cfg["epochs"])
            dataset.set_excerpt_seconds(loader_cfg["excerpt_seconds"] * (cfg["curriculum_scale"] if curriculum else 1))
            dataset.set_epoch(epoch)
            sampler = RankBatches(len(dataset), cfg["batch_size"], rank, world, start=state["batch"])
            loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                pin_memory=device.type == "cuda", persistent_workers=False,
                                generator=torch.Generator().manual_seed(cfg["seed"] + epoch))
            net.train()
            totals, count, started = {}, 0, time.monotonic()
            progress = _progress(len(sampler), f"{spec['name']} epoch {epoch + 1}/{cfg['epochs']}", main)
            for sources in loader:
                with amp:
                    loss, parts = compute_loss(net, spec["loss"], sources.to(device, non_blocking=True),
                                               cfg["dc_weight"])
                finite = torch.tensor([float(torch.isfinite(loss))], device=device)
                if world > 1:
                    dist.all_reduce(finite, op=dist.ReduceOp.MIN)
                if finite.item() < 1:
                    raise MusicsepError(
                        f"experiment {spec['name']}: non-finite loss ({loss.item()}) at epoch {epoch + 1}, "
                        f"step {state['step'] + 1}; stopped, and the run folder {run_dir} with its "
                        "checkpoints is kept")
                grad_norm = optimizer_step(model, optimizer, loss, cfg["clip_grad_norm"])
                state["step"] += 1
                state["batch"] += 1
                count += 1
                for k, v in {"loss": loss.detach(), **parts}.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                if writer:
                    writer.add_scalar("train/loss", loss.item(), state["step"])
                    for k, v in parts.items():
                        writer.add_scalar(f"train/{k}", float(v), state["step"])
                    writer.add_scalar("train/grad_norm", float(grad_norm), state["step"])
                progress(loss.item())
                stopping = torch.tensor([float(stop["signal"] is not None)], device=device)
                if world > 1:
                    dist.all_reduce(stopping, op=dist.ReduceOp.MAX)
                due = time.monotonic() - last_save > 60 * cfg["checkpoint_minutes"]
                if stopping.item() > 0 or due:
                    if main:
                        checkpoint(latest)
                    last_save = time.monotonic()
                    if stopping.item() > 0:
                        if world > 1:
                            dist.barrier()         # nobody leaves before rank 0 has saved
                        raise Stopped(f"experiment {spec['name']}: stopped by a signal at epoch {epoch + 1}, "
                                      f"step {state['step']}; {latest} saved, rerun to resume")

            # -- end of epoch: validate, schedule, checkpoint -------------------
            valid_loss, valid_sdr = validate(net, valid, spec, cfg, device, world, amp)
            scheduler.step(valid_loss)
            improved = valid_loss < state["best"]
            state.update(epoch=epoch + 1, batch=0, best=min(valid_loss, state["best"]),
                         bad_epochs=0 if improved else state["bad_epochs"] + 1)
            finished = state["bad_epochs"] >= cfg["early_stop_patience"] or state["epoch"] >= cfg["epochs"]
            record = {"epoch": epoch + 1, "step": state["step"], "valid_loss": valid_loss,
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.monotonic() - started, 3),
                      "excerpt_seconds": round(dataset.excerpt / dataset.sample_rate, 4),
                      **{f"train_{k}": v / max(count, 1) for k, v in totals.items()},
                      **{f"valid_{k}": v for k, v in valid_sdr.items()}}
            if main:
                log.info("%s epoch %d: %s", spec["name"], epoch + 1,
                         ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
                with open(run_dir / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                writer.add_scalar("valid/loss", valid_loss, state["step"])
                for k, v in valid_sdr.items():
                    writer.add_scalar(f"valid/{k}", v, state["step"])
                writer.add_scalar("train/lr", record["lr"], state["step"])
                if (epoch + 1) % cfg["media_every"] == 0 or finished:
                    log_media(writer, model, valid, device, state["step"])
                if improved:
                    checkpoint(run_dir / "best.pt")
                checkpoint(latest)
                last_save = time.monotonic()
            if world > 1:
                dist.barrier()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        if writer:
            writer.close()

    if main:
        export(model, spec, run_dir, out, metrics_out, dataset, device)


def _progress(total: int, desc: str, main: bool):
    """A tqdm bar on a terminal, plain log lines (every 10%) otherwise."""
    if not main:
        return lambda loss: None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, leave=False)

        def update(loss):
            bar.update()
            bar.set_postfix(loss=f"{loss:.4g}")
            if bar.n >= total:
                bar.close()
        return update
    seen = {"n": 0}

    def plain(loss):
        seen["n"] += 1
        if seen["n"] % max(1, total // 10) == 0 or seen["n"] == total:
            log.info("%s: batch %d/%d, loss %.4g", desc, seen["n"], total, loss)
    return plain


@torch.no_grad()
def validate(net, valid: ValidationSet, spec: dict, cfg: dict, device: torch.device, world: int,
             amp) -> tuple[float, dict]:
    """Mean loss over this rank's share of the fixed validation excerpts,
    averaged over ranks, and the fast SI-SDR (:func:`fast_si_sdr`): its mean
    over sources as ``FAST_SDR`` and per source as ``FAST_SDR_{source}``
    (sources silent in every excerpt left out)."""
    net.eval()
    model = net.module if hasattr(net, "module") else net
    total = torch.zeros(2, device=device)
    sdr = torch.zeros(2, len(SOURCES), device=device, dtype=torch.float64)      # sums, counts
    indices = list(range(len(valid)))[dist.get_rank() if world > 1 else 0::world]
    for start in range(0, len(indices), cfg["batch_size"]):
        sources = torch.stack([valid[i] for i in indices[start:start + cfg["batch_size"]]]).to(device)
        kept = {}
        with amp:
            loss, _ = compute_loss(net, spec["loss"], sources, cfg["dc_weight"], keep=kept)
        total += torch.stack([loss.float() * len(sources), torch.tensor(float(len(sources)), device=device)])
        sdr += fast_si_sdr(model, kept, sources)
    if world > 1:
        dist.all_reduce(total)
        dist.all_reduce(sdr)
    per_source = {f"{FAST_SDR}_{name}": float(s / n) for name, s, n in zip(SOURCES, *sdr) if n > 0}
    scores = {FAST_SDR: sum(per_source.values()) / len(per_source)} if per_source else {}
    return float(total[0] / total[1].clamp_min(1)), scores | per_source


def fast_si_sdr(model, kept: dict, sources: torch.Tensor, silence: float = 1e-10) -> torch.Tensor:
    """SI-SDR sums and counts ``(2, sources)`` over a validation batch: each
    source's estimate is the inverse STFT of its mask times the mixture's
    spectrogram (mixture phase), scored against the true source (both channels
    as one signal) with :func:`musicsep.losses.si_sdr`; references whose mean
    square is at most ``silence`` are left out. ``kept`` is what
    :func:`compute_loss` kept of the batch. Deep clustering's masks are its
    clusters, whose classes are unknown until training ends (the class
    centroids are fitted then), so each example's clusters are matched to the
    sources by the assignment with the best total SI-SDR. A fast proxy that
    tracks training; the published scores are BSS Eval's (museval)."""
    from scipy.optimize import linear_sum_assignment

    features = model.features
    batch, n_src, channels, samples = sources.shape
    mix_spec = kept["mix_spec"]
    if "mel_masks" in kept:
        masks, permute = features.to_linear(kept["mel_masks"].float()).float(), False
    else:
        clusters = torch.stack([model._cluster(v) for v in kept["embeddings"].float()])   # as model.masks
        masks, permute = features.to_linear(model._mel_masks(clusters, mix_spec.shape[-1])).float(), True
    estimates = features.istft(masks * mix_spec[:, None], samples)          # (batch * channels, sources, samples)
    estimates = estimates.view(batch, channels, n_src, samples).transpose(1, 2).reshape(batch, n_src, -1)
    references = sources.float().reshape(batch, n_src, -1)
    active = references.double().square().mean(-1) > silence                    # (batch, sources)
    if permute:
        scores = []
        for est, ref, act in zip(estimates, references, active):
            pairs = torch.stack([si_sdr(est, r) for r in ref], dim=1)           # (clusters, sources)
            weight = torch.where(act[None], pairs, torch.zeros_like(pairs))
            rows, cols = linear_sum_assignment(weight.cpu().numpy(), maximize=True)    # cluster rows[i] -> source cols[i]
            cluster_of = torch.empty(n_src, dtype=torch.long)
            cluster_of[torch.as_tensor(cols)] = torch.as_tensor(rows)
            scores.append(pairs[cluster_of.to(pairs.device), torch.arange(n_src, device=pairs.device)])
        scores = torch.stack(scores)
    else:
        scores = si_sdr(estimates, references)                                   # (batch, sources)
    scores = torch.where(active, scores, torch.zeros_like(scores))
    return torch.stack([scores.sum(0), active.sum(0).double()])


@torch.no_grad()
def log_media(writer, model, valid: ValidationSet, device: torch.device, step: int) -> None:
    """Audio of the separated first validation excerpt and its masks as images."""
    model.eval()
    sources = valid[0].to(device)                                   # (sources, channels, samples)
    mixture = sources.sum(0)[:1]                                    # first channel
    spec = model.features.stft(mixture)
    masks = model.masks(spec.abs())[0]                              # (sources, freq, frames)
    estimates = model.features.istft(masks * spec, mixture.shape[-1])
    writer.add_audio("mixture", mixture[0].float().cpu(), step, sample_rate=valid.sample_rate)
    for name, mask, audio in zip(SOURCES, masks, estimates):
        writer.add_audio(f"estimate/{name}", audio.float().cpu(), step, sample_rate=valid.sample_rate)
        writer.add_image(f"mask/{name}", mask.flip(0).float().cpu()[None], step)


def export(model, spec: dict, run_dir: Path, out: Path, metrics_out: Path | None, dataset: ExcerptDataset,
           device: torch.device) -> None:
    """Write the best weights as a self-describing model file (and the metrics)."""
    best = run_dir / "best.pt"
    saved = torch.load(best if best.exists() else run_dir / "latest.pt", map_location=device, weights_only=True)
    model.load_state_dict(saved["weights"])
    if hasattr(model, "fit_class_centroids"):
        fit_centroids(model, dataset, spec, device)
    save(out, {"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict(), "spec": spec,
               "epoch": saved["state"]["epoch"], "valid_loss": saved["state"]["best"],
               "version": __version__, "git_commit": git_commit()})
    if metrics_out:
        with atomic_path(metrics_out) as tmp:
            shutil.copyfile(run_dir / "metrics.jsonl", tmp)
    log.info("%s: model -> %s", spec["name"], out)


@torch.no_grad()
def fit_centroids(model, dataset: ExcerptDataset, spec: dict, device: torch.device, batches: int = 8) -> None:
    """Deep clustering's class centroids: the weighted mean embedding of the
    bins each source dominates, over a few training batches."""
    model.eval()
    dataset.set_epoch(10**6)
    embeddings, labels, weights = [], [], []
    for b in range(batches):
        sources = torch.stack([dataset[b * 8 + i] for i in range(8)]).to(device)
        mix_mag, src_mag = magnitudes(model.features, sources)
        y, w = dc_targets(model.features.to_mel(mix_mag), model.features.to_mel(src_mag))
        embeddings.append(model.embeddings(mix_mag).flatten(0, 1))
        labels.append(y.flatten(0, 1))
        weights.append(w.flatten(0, 1))
    model.fit_class_centroids(torch.cat(embeddings), torch.cat(labels), torch.cat(weights))
