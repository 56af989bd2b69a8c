"""Training: one experiment, on every device the job was given, resumable.

Read top to bottom: :func:`train` starts one process per device
(:func:`musicsep.train.distributed.launch`), :func:`main_worker` sets each
up, and :func:`_loop` is the whole loop: model, optimiser, data, epochs,
validation, checkpoints, and the model file at the end. An experiment is a
*spec*, a plain dict built by the workflow from the config (``name``,
``model``, ``model_args``, ``loss``, ``training``, ``loader``, ``features``,
``sample_rate``, and with SDR validation ``separation``: the evaluation's
separation settings). The loss of a batch is :mod:`musicsep.train.objective`'s,
checkpoints and model files are :mod:`musicsep.models.checkpoint`'s.

- Devices: one process per visible GPU with DistributedDataParallel (NCCL);
  ``processes`` > 1 without GPUs runs the same code on CPU processes with gloo;
  on one device, no process group. Under SLURM (several tasks) or torchrun,
  ranks and the rendezvous come from the job's environment (submitit's
  ``TorchDistributedEnvironment``), so a job of several nodes trains as one.
- Data: every rank reads its own slice of each global batch; the draws are a
  function of the global sample index, so one process and N processes with the
  same global batch see the same excerpts.
- Checkpoints: ``{run_dir}/latest.pt`` every epoch and every
  ``checkpoint_minutes``, ``best.pt`` on ``select_by``: the lowest validation
  loss, or the highest mean BSS Eval SDR of the validation tracks (computed
  every ``sdr_every`` epochs); both hold the model's
  name, kwargs and weights, optimizer, scheduler, position, RNG states, the
  spec, version and git commit, and load with ``weights_only=True``. A rerun
  with the same spec resumes from ``latest.pt`` (also with more epochs: a
  finished run continues); a changed spec moves the old run folder aside and
  starts afresh. SIGTERM/SIGUSR1 save ``latest.pt`` and exit with status 3, so
  a retried job resumes.
- A NaN or Inf loss stops the run with an error naming the epoch and step,
  keeping the run folder.
- Logs: TensorBoard (scalars, audio examples, mask images), ``metrics.jsonl``
  (one record per epoch: its validation, and ``sdr``, ``sdr/{target}`` at the
  epochs that compute SDR), a progress bar in a terminal and plain lines
  otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from musicsep import SOURCES, MusicsepError
from musicsep.data.excerpts import ExcerptDataset, ValidationSet
from musicsep.io import atomic_path, progress_bar, setup_logging
from musicsep.models.checkpoint import load_checkpoint, resume, save_checkpoint, save_model_file
from musicsep.models.losses import dc_targets
from musicsep.models.registry import build_model, check_loss
from musicsep.train import STOPPED_EXIT, Stopped
from musicsep.train.distributed import STOP_SIGNALS, RankBatches, launch, loader_workers, setup_process
from musicsep.train.objective import compute_loss, magnitudes
from musicsep.train.runs import prepare_run_dir
from musicsep.train.validation import log_media, validate, validate_sdr

log = logging.getLogger(__name__)


def epoch_sums() -> dict:
    """The training state's running sums of an epoch at its start: the loss and its parts summed over
    the batches so far, their number, the seconds spent (checkpoints carry them mid-epoch)."""
    return {"train_sums": {}, "train_batches": 0, "train_seconds": 0.0}


def train(spec: dict, train_shards: list[str], valid_shards: list[str], stats: str, run_dir: str | Path,
          out: str | Path, metrics_out: str | Path | None = None, processes: int | None = None) -> None:
    """Train the experiment ``spec``; write the best model to ``out``."""
    keys = ("name", "model", "loss", "model_args", "features", "sample_rate", "training", "loader")
    missing = [key for key in keys if key not in spec] if isinstance(spec, dict) else list(keys)
    if missing:
        raise MusicsepError(f"--spec: not a whole experiment spec (no {', '.join(missing)}; the workflow writes it)")
    check_loss(spec["name"], spec["model"], spec["loss"])
    run_dir = Path(run_dir)
    made = False        # the run folder made here, removed when the run fails before its first checkpoint
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        made = not run_dir.exists()
        prepare_run_dir(run_dir, spec)
    args = (spec, [str(p) for p in train_shards], [str(p) for p in valid_shards], str(stats), str(run_dir),
            str(out), str(metrics_out) if metrics_out else None)
    try:
        launch(main_worker, args, processes, run_dir)
    except MusicsepError as err:
        if made and not isinstance(err, Stopped) and not (run_dir / "latest.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def main_worker(local: int | None, world: int, spec: dict, train_shards: list[str], valid_shards: list[str],
                stats: str, run_dir: str, out: str, metrics_out: str | None) -> None:
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
    if cfg["batch_size"] < 1:
        raise MusicsepError(f"training.batch_size {cfg['batch_size']}: must be at least 1")
    if cfg["batch_size"] % world:
        raise MusicsepError(f"training.batch_size {cfg['batch_size']} is not divisible by the {world} processes")
    torch.manual_seed(cfg["seed"])
    if cfg["deterministic"]:
        torch.use_deterministic_algorithms(True)
    main = rank == 0
    if main:
        log.info("%s: %d loader worker(s) per training process%s", spec["name"], workers,
                 " (training.workers null: from the CPUs)" if cfg["workers"] is None else "")

    # -- data -----------------------------------------------------------------
    dataset = ExcerptDataset(train_shards, loader_cfg["excerpt_seconds"], incoherent=loader_cfg["incoherent"],
                             incoherent_tracks=loader_cfg["incoherent_tracks"],
                             samples_per_epoch=loader_cfg["samples_per_epoch"], seed=loader_cfg["seed"],
                             augment=loader_cfg.get("augment"))
    valid = ValidationSet(valid_shards or train_shards, loader_cfg["excerpt_seconds"],
                          loader_cfg["valid_excerpts_per_track"])
    sources = check_sources(spec, dataset.sources, train_shards[0], valid.sources, (valid_shards or train_shards)[0])
    if not valid_shards and main:
        log.warning("no validation tracks: validating on training tracks")

    # -- model, optimiser, schedule -------------------------------------------
    model = build_model(spec["model"], where=f"experiments.{spec['name']}.model_args",
                        sample_rate=spec["sample_rate"], **spec["features"],
                        **(spec["model_args"] | {"sources": sources}))
    model.features.load_stats(stats)
    model.to(device)
    optimizer = make_optimizer(model, cfg["lr"], cfg.get("weight_decay", 0.0))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg["plateau_factor"],
                                                           patience=cfg["plateau_patience"])
    # best: the lowest validation loss (early stopping); best_sdr: the highest mean SDR; valid_loss: this epoch's;
    # train_*: the epoch's running sums (epoch_sums), so that a resumed epoch's metrics are the whole epoch's;
    # elapsed_seconds: the training and validation time of the whole run so far, across resumes
    state = {"epoch": 0, "batch": 0, "step": 0, "best": math.inf, "best_sdr": -math.inf, "bad_epochs": 0,
             "valid_loss": math.inf, "elapsed_seconds": 0.0, **epoch_sums()}
    latest = run_dir / "latest.pt"
    if latest.exists():
        saved = load_checkpoint(latest, device)
        check_sources({"model_args": {"sources": saved["kwargs"].get("sources", SOURCES)}}, sources,
                      train_shards[0], where=f"{latest}: a model of")
        state |= resume(saved, model, optimizer, scheduler)
        if main:
            log.info("resuming %s from %s: epoch %d, batch %d", spec["name"], latest, state["epoch"], state["batch"])
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    # -- logging ---------------------------------------------------------------
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        # event files in the run folder itself: `tensorboard --logdir results/runs` names the run by experiment
        writer = SummaryWriter(str(run_dir), purge_step=state["step"] or None)
    stop = {"signal": None}
    handlers = {s: signal.signal(s, lambda signum, _f: stop.update(signal=signum)) for s in STOP_SIGNALS}
    last_save = time.monotonic()
    begun = last_save - state["elapsed_seconds"]       # the run's clock, going on from a resumed run's

    def checkpoint(path: Path) -> None:
        save_checkpoint(path, model, optimizer, scheduler, state, spec)

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
            totals, started = state["train_sums"], time.monotonic() - state["train_seconds"]
            step_done = progress_bar(len(sampler), f"{spec['name']} epoch {epoch + 1}/{cfg['epochs']}", unit="batch",
                                 show=main)
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
                state["train_batches"] += 1
                for k, v in {"loss": loss.detach(), **parts}.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                if writer:
                    writer.add_scalar("train/loss", loss.item(), state["step"])
                    for k, v in parts.items():
                        writer.add_scalar(f"train/{k}", float(v), state["step"])
                    writer.add_scalar("train/grad_norm", float(grad_norm), state["step"])
                step_done(loss=loss.item())
                stopping = torch.tensor([float(stop["signal"] is not None)], device=device)
                if world > 1:
                    dist.all_reduce(stopping, op=dist.ReduceOp.MAX)
                due = time.monotonic() - last_save > 60 * cfg["checkpoint_minutes"]
                if stopping.item() > 0 or due:
                    state["train_seconds"] = time.monotonic() - started
                    state["elapsed_seconds"] = time.monotonic() - begun
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
            sdr = {}
            if cfg["sdr_every"] and (epoch + 1) % cfg["sdr_every"] == 0:
                if hasattr(model, "fit_class_centroids"):      # as export does: they name the clusters
                    fit_centroids(model, dataset, spec, device)
                sdr = validate_sdr(model, valid_shards or train_shards, spec.get("separation", {}), device,
                                   rank, world)
            train_means = {f"train_{k}": v / max(state["train_batches"], 1) for k, v in totals.items()}
            scheduler.step(valid_loss)
            improved = valid_loss < state["best"]
            better_sdr = sdr.get("sdr", -math.inf) > state["best_sdr"]
            state.update(epoch=epoch + 1, batch=0, **epoch_sums(), best=min(valid_loss, state["best"]),
                         elapsed_seconds=time.monotonic() - begun,
                         valid_loss=valid_loss, best_sdr=max(sdr.get("sdr", -math.inf), state["best_sdr"]),
                         bad_epochs=0 if improved else state["bad_epochs"] + 1)
            finished = state["bad_epochs"] >= cfg["early_stop_patience"] or state["epoch"] >= cfg["epochs"]
            record = {"epoch": epoch + 1, "step": state["step"], "valid_loss": valid_loss,
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.monotonic() - started, 3),
                      "elapsed_seconds": round(state["elapsed_seconds"], 3),
                      "excerpt_seconds": round(dataset.excerpt / dataset.sample_rate, 4),
                      **train_means,
                      **{f"valid_{k}": v for k, v in valid_sdr.items()}, **sdr}
            if main:
                log.info("%s epoch %d: %s", spec["name"], epoch + 1,
                         ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
                with open(run_dir / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                writer.add_scalar("valid/loss", valid_loss, state["step"])
                for k, v in (valid_sdr | sdr).items():
                    writer.add_scalar(f"valid/{k}", v, state["step"])
                writer.add_scalar("train/lr", record["lr"], state["step"])
                if (epoch + 1) % cfg["media_every"] == 0 or finished:
                    log_media(writer, model, valid, device, state["step"])
                if better_sdr if cfg["select_by"] == "sdr" else improved:
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


def check_sources(spec: dict, shard_sources: tuple[str, ...], shard: str, valid_sources: tuple | None = None,
                  valid_shard: str | None = None, where: str | None = None) -> tuple[str, ...]:
    """The sources the model is built with: the training shards' (all alike,
    :class:`ExcerptDataset` checks), which must be those of the validation
    shards and those the spec's ``model_args`` name, if it names any (or, with
    ``where``, those of a checkpoint's model); a MusicsepError naming both lists."""
    named = tuple(spec["model_args"].get("sources", shard_sources))
    if named != tuple(shard_sources):
        what = where or f"experiment {spec.get('name')}: model_args.sources"
        raise MusicsepError(f"{what} {', '.join(named)}, but the training shards ({shard}) hold "
                            f"{', '.join(shard_sources)}: a model separates the sources it was trained on")
    if valid_sources is not None and tuple(valid_sources) != tuple(shard_sources):
        raise MusicsepError(f"{valid_shard}: the validation shards hold {', '.join(valid_sources)}, the training "
                            f"shards ({shard}) {', '.join(shard_sources)}")
    return tuple(shard_sources)


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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam over the trainable parameters, fused where this torch has it;
    ``weight_decay`` is Adam's (an L2 term added to the gradient, as
    open-unmix trains with it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def export(model, spec: dict, run_dir: Path, out: Path, metrics_out: Path | None, dataset: ExcerptDataset,
           device: torch.device) -> None:
    """Write the best weights as a self-describing model file (and the metrics)."""
    best = run_dir / "best.pt"
    saved = load_checkpoint(best if best.exists() else run_dir / "latest.pt", device)
    model.load_state_dict(saved["weights"])
    if hasattr(model, "fit_class_centroids"):
        fit_centroids(model, dataset, spec, device)
    save_model_file(out, model, spec, saved["state"]["epoch"], saved["state"]["valid_loss"])
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
