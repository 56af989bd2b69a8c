"""What a training batch costs: its spectrograms (one STFT for every source
and channel) and the loss of each kind a model trains with
(:data:`musicsep.models.registry.MODELS` says which fits which model)."""

from __future__ import annotations

import torch

from musicsep import MusicsepError
from musicsep.models.losses import (
    affinity_loss,
    dc_targets,
    l1_mel_mask_loss,
    mse_magnitude_loss,
)
from musicsep.spectral.stft import magnitude


def spectrograms(features, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex mixture ``(batch * channels, freq, frames)`` and source
    ``(batch * channels, sources, freq, frames)`` spectrograms of a batch of
    sources ``(batch, sources, channels, samples)``: one STFT call for all
    sources and channels; the mixture is their sum (the STFT is linear: no 5th
    transform); channels are folded into the batch. Both are views of
    frames-major memory, as ``torch.stft`` returns them (the sum is taken in
    that layout, faster than across it: ``benchmarks/RESULTS.md``, training
    step)."""
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
    inner = model.module if hasattr(model, "module") else model
    features = inner.features
    joined = getattr(inner, "channels", None)           # a model that joins the channels (umx) needs as many
    if joined is not None and sources.shape[2] != joined:
        raise MusicsepError(f"model {inner.name} joins {joined} channel(s), the training audio has "
                            f"{sources.shape[2]} (data.mono): set model_args.channels to {sources.shape[2]}")
    mix_spec, src_spec = spectrograms(features, sources)
    mix_mag, src_mag = magnitude(mix_spec), magnitude(src_spec)
    out = model(mix_mag, full_resolution=False)
    parts = {}
    if loss_name in ("l1", "l1_dc"):
        parts["l1"] = l1_mel_mask_loss(out["mel_masks"], features.mel_inverse.weight, mix_mag, src_mag)
    if loss_name in ("dc", "l1_dc"):
        labels, weights = dc_targets(features.to_mel(mix_mag), features.to_mel(src_mag))
        parts["dc"] = affinity_loss(out["embeddings"].float(), labels, weights)
    if loss_name == "mse":          # open-unmix's, summed over the networks (each gets its own gradient)
        per_source = mse_magnitude_loss(out["magnitudes"], src_mag)
        parts.update({f"mse_{name}": value for name, value in zip(inner.sources, per_source)})
        parts["mse"] = per_source.sum()
    loss = parts.get("mse", 0.0) + parts.get("l1", 0.0) \
        + (dc_weight if loss_name == "l1_dc" else 1.0) * parts.get("dc", 0.0)
    if keep is not None:
        keep.update(out, mix_spec=mix_spec)
    return loss, {k: v.detach() for k, v in parts.items()}
