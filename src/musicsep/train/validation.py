"""Validation during training: the loss on fixed excerpts, a fast SI-SDR,
BSS Eval's SDR of whole validation tracks (every ``training.sdr_every``
epochs), and media for TensorBoard."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.distributed as dist

from musicsep import SOURCES, TARGETS, MusicsepError, targets_of
from musicsep.data.excerpts import ValidationSet
from musicsep.models.losses import si_sdr
from musicsep.train.objective import compute_loss

# The fast validation metric's name in TensorBoard (valid/...) and metrics.jsonl (valid_...):
# SI-SDR on the validation excerpts, a training-time proxy, never BSS Eval's SDR.
FAST_SDR = "si_sdr_fast_not_bss_eval"


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
    sdr = torch.zeros(2, model.n_sources, device=device, dtype=torch.float64)    # sums, counts
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
    per_source = {f"{FAST_SDR}_{name}": float(s / n) for name, s, n in zip(model.sources, *sdr) if n > 0}
    scores = {FAST_SDR: sum(per_source.values()) / len(per_source)} if per_source else {}
    return float(total[0] / total[1].clamp_min(1)), scores | per_source


def _nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():                       # all NaN: NaN, without numpy's warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def sdr_targets(sources) -> tuple[str, ...]:
    """The targets of a separation into ``sources`` in the order the SDR
    validation reports them: :data:`TARGETS` for MUSDB18's four, else
    :func:`musicsep.targets_of`."""
    return TARGETS if tuple(sources) == SOURCES else targets_of(sources)


def track_sdr(shard: str, separator) -> np.ndarray:
    """One validation track's median over frames of BSS Eval SDR per target
    (:func:`sdr_targets` of the separator's sources): the shard's mixture separated by ``separator``
    (a :class:`musicsep.separate.separator.Separator`), scored against the
    shard's sources (accompaniment: the sum of all but the vocals, as musdb's) in float64 with
    :func:`musicsep.evaluate.bsseval.sdr`, 1 s windows and hops at the
    shard's rate, grouped as museval groups them
    (:func:`musicsep.evaluate.track.museval_groups`). NaN
    frames are skipped as museval's medians skip them (+inf, an estimate
    equal to its reference, counts as NaN, as museval stores it); a group
    with a reference or estimate silent over the whole track, which museval
    refuses to score, is NaN throughout."""
    from musicsep import accompaniment_sources
    from musicsep.data.shard import Shard
    from musicsep.evaluate.bsseval import SilentSource, sdr
    from musicsep.evaluate.track import museval_groups

    with Shard(shard) as sh:
        mixture, sources, rate, names = sh.mixture(), sh.sources(), sh.sample_rate, sh.source_names
    model_sources = tuple(getattr(separator, "sources", SOURCES))
    if names != model_sources:
        raise MusicsepError(f"{shard}: its sources ({', '.join(names)}) are not the model's "
                            f"({', '.join(model_sources)})")
    targets = sdr_targets(names)
    references = {s: audio.T.astype(np.float64) for s, audio in zip(names, sources)}
    summed = accompaniment_sources(names)
    if summed:                               # musdb's sum, in its order (np.sum over the stacked sources)
        references["accompaniment"] = np.sum(np.array([references[name] for name in summed]), axis=0)
    estimates = separator.separate(mixture)
    medians = {}
    for group, kept in museval_groups(targets):
        try:
            frames = sdr(np.stack([references[t] for t in group]),
                         np.stack([estimates[t].T for t in group]).astype(np.float64), rate, rate)
        except SilentSource:
            frames = np.full((len(group), 1), np.nan)
        frames[np.isinf(frames)] = np.nan
        medians |= {t: m for t, m in zip(group, _nanmedian(frames, 1)) if t in kept}
    return np.array([medians[t] for t in targets])


@torch.no_grad()
def validate_sdr(model, shards: list[str], separation: dict, device: torch.device, rank: int,
                 world: int) -> dict[str, float]:
    """BSS Eval SDR of ``model``'s separation of whole validation tracks:
    :func:`track_sdr` of each track (the tracks shared out among the ranks),
    then the median over tracks per target (tracks NaN for a target left
    out), as ``sdr/{target}``, and ``sdr``, the mean of the model's sources'
    medians (accompaniment, their sum, is reported but not averaged in).
    Targets NaN on every track are left out. ``separation``: the
    :class:`~musicsep.separate.separator.Separator`'s settings (the
    workflow's ``evaluation`` ones: Wiener filter, chunks, context)."""
    from musicsep.separate.separator import Separator

    separator = Separator(model, device=device, **separation)
    targets = sdr_targets(model.sources)
    scores = np.full((len(shards), len(targets)), np.nan)
    for t in range(rank, len(shards), world):
        scores[t] = track_sdr(shards[t], separator)
    if world > 1:                                         # each track is one rank's: sum values and flags
        both = torch.tensor(np.stack([np.nan_to_num(scores), ~np.isnan(scores)]), device=device)
        dist.all_reduce(both)
        both = both.cpu().numpy()
        scores = np.where(both[1] > 0, both[0], np.nan)
    medians = dict(zip(targets, _nanmedian(scores, 0).tolist()))
    out = {f"sdr/{t}": v for t, v in medians.items() if not np.isnan(v)}
    sources = [medians[s] for s in model.sources if f"sdr/{s}" in out]
    return ({"sdr": float(np.mean(sources))} if sources else {}) | out


def fast_si_sdr(model, kept: dict, sources: torch.Tensor, silence: float = 1e-10) -> torch.Tensor:
    """SI-SDR sums and counts ``(2, sources)`` over a validation batch: each
    source's estimate is the inverse STFT of its mask times the mixture's
    spectrogram (mixture phase), scored against the true source (both channels
    as one signal) with :func:`musicsep.models.losses.si_sdr`; references whose mean
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
    for name, mask, audio in zip(model.sources, masks, estimates):
        writer.add_audio(f"estimate/{name}", audio.float().cpu(), step, sample_rate=valid.sample_rate)
        writer.add_image(f"mask/{name}", mask.flip(0).float().cpu()[None], step)
