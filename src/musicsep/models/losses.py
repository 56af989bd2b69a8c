"""Training losses. Shapes as in :mod:`musicsep.models.base`.

- :func:`l1_mask_loss`: L1 between the masked mixture magnitude and each
  source's magnitude capped at the mixture's (the target of mask models).
- :func:`l1_mel_mask_loss`: the same loss of mel-resolution masks taken to full
  resolution by the (frozen) inverse mel projection and clamped to [0, 1], in
  one matrix product each way and a few in-place passes (what training uses;
  equal to ``l1_mask_loss(features.to_linear(mel_masks), ...)``, gradient
  included, up to float rounding).
- :func:`affinity_loss`: the deep-clustering loss ‖VVᵀ − YYᵀ‖²_F (Hershey et
  al., ICASSP 2016, arXiv:1508.04306), weighted per bin, in the efficient form
  ‖VᵀV‖² − 2‖VᵀY‖² + ‖YᵀY‖² that never builds the points × points matrix.
- :func:`dc_targets`: the dominant-source labels and bin weights of the
  affinity loss: weights are the inverse square root of the class frequency
  (Wang, Le Roux, Hershey, "Alternative objective functions for deep
  clustering", ICASSP 2018), zero for bins more than ``threshold_db`` below the
  mixture's maximum.
- :func:`mse_magnitude_loss`: open-unmix's mean squared error between
  estimated and true magnitude spectrograms, per source (the ``mse`` loss of
  :class:`musicsep.models.umx.UMX`).
- :func:`si_sdr`: scale-invariant SDR in dB, the fast validation metric of
  training (logged as ``si_sdr_fast_not_bss_eval``). It is not BSS Eval's SDR
  (museval, :mod:`musicsep.evaluate.track`) and never enters the published tables.
"""

from __future__ import annotations

import torch

from musicsep.spectral.features import banded_linear, banded_linear_t


def target_magnitudes(mix_mag: torch.Tensor, src_mag: torch.Tensor) -> torch.Tensor:
    """Each source's magnitude capped at the mixture's: ``(batch, sources, freq, frames)``."""
    return torch.minimum(src_mag, mix_mag[:, None])


def l1_mask_loss(masks: torch.Tensor, mix_mag: torch.Tensor, src_mag: torch.Tensor) -> torch.Tensor:
    return (masks * mix_mag[:, None] - target_magnitudes(mix_mag, src_mag)).abs().mean()


class _MelMaskL1(torch.autograd.Function):
    """mean |clamp(P⁺ m, 0, 1) ⊙ |X| − T| with its gradient in m, computed in
    the frames-major layout (see :class:`musicsep.spectral.features.Features`).

    Autograd would keep (and allocate) the projected masks, the clamped masks,
    the masked mixture, the difference and its absolute value, and walk back
    through as many passes; here the forward pass leaves one tensor, the
    gradient factor ``−sign(d) ⊙ |X|`` where the clamp let the value through
    (zero elsewhere, and where ``d = 0``: autograd's subgradients), and
    the backward pass is one matrix product scaled by the incoming gradient."""

    @staticmethod
    def forward(ctx, mel_masks, inverse, mix_tf, target_tf):
        # mel_masks (batch, sources, frames, n_mels); inverse (freq, n_mels);
        # mix_tf (batch, frames, freq); target_tf (batch, sources, frames, freq)
        ctx.cpu = mel_masks.device.type == "cpu" and mel_masks.dtype == inverse.dtype
        if ctx.cpu:                                                      # as Features.to_linear there
            lin = banded_linear(mel_masks, inverse)
        else:                                                            # autocast (CUDA) applies here,
            lin = torch.matmul(mel_masks, inverse.detach().transpose(0, 1))  # as in Features.to_linear
        ctx.gemm_dtype = lin.dtype
        ctx.work_dtype = work = torch.promote_types(lin.dtype, torch.float32)
        lin, mix_tf, target_tf = lin.to(work), mix_tf.to(work), target_tf.to(work)
        masks = lin.clamp(0, 1)
        neg_diff = torch.addcmul(target_tf, masks, mix_tf[:, None], value=-1, out=masks)    # T - M|X|
        loss = neg_diff.abs().mean()              # (vector_norm(ord=1) would skip a pass, but sums less exactly)
        # -sign(d)|X| where 0 <= lin <= 1 (the clamp lets the gradient through, bounds included, as
        # autograd's clamp), else 0: hardtanh's backward keeps what lies strictly between its bounds,
        # here the neighbours of 0 and 1, in one pass (a bool mask and a product take three)
        factor = neg_diff.sign_().mul_(mix_tf[:, None])
        below, above = (torch.nextafter(torch.tensor(b, dtype=work), torch.tensor(b + d, dtype=work)).item()
                        for b, d in ((0.0, -1.0), (1.0, 1.0)))
        factor = torch.ops.aten.hardtanh_backward.grad_input(factor, lin, below, above, grad_input=lin)
        ctx.save_for_backward(factor)
        ctx.inverse = inverse                      # the frozen parameter itself (its banded blocks are cached)
        ctx.numel, ctx.mask_dtype = neg_diff.numel(), mel_masks.dtype
        return loss

    @staticmethod
    def backward(ctx, grad):
        factor, = ctx.saved_tensors
        inverse = ctx.inverse
        dtype = ctx.gemm_dtype
        if ctx.cpu:
            grad_mel = banded_linear_t(factor, inverse).to(ctx.work_dtype)
        else:
            grad_mel = torch.matmul(factor.to(dtype), inverse.to(dtype)).to(ctx.work_dtype)
        grad_mel.mul_(grad * (-1.0 / ctx.numel))
        return grad_mel.to(ctx.mask_dtype), None, None, None


def l1_mel_mask_loss(mel_masks: torch.Tensor, inverse: torch.Tensor, mix_mag: torch.Tensor,
                     src_mag: torch.Tensor) -> torch.Tensor:
    """``l1_mask_loss(clamp(inverse @ mel_masks, 0, 1), mix_mag, src_mag)``
    without materialising the masks: ``mel_masks`` (batch, sources, n_mels,
    frames), ``inverse`` the inverse mel projection (freq, n_mels) (a constant:
    no gradient), magnitudes as in :func:`l1_mask_loss`. Fastest when all
    are views of frames-major memory, as :func:`musicsep.train.objective.magnitudes` and
    the models make them."""
    with torch.no_grad():
        target_tf = target_magnitudes(mix_mag, src_mag).transpose(-1, -2)
    return _MelMaskL1.apply(mel_masks.transpose(-1, -2), inverse, mix_mag.transpose(-1, -2), target_tf)


def dc_targets(mix_mel: torch.Tensor, src_mel: torch.Tensor, threshold_db: float = 40.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``(batch, points, sources)`` (one-hot dominant source) and weights
    ``(batch, points)`` from mel magnitudes ``mix_mel`` (batch, n_mels, frames)
    and ``src_mel`` (batch, sources, n_mels, frames); points are frame-major,
    as the models' embeddings."""
    n_sources = src_mel.shape[1]
    # over the sources, across contiguous points: max's indices (the first of equal maxima, as
    # argmax), faster on the CPU than argmax there or along a last dimension of 4
    # (benchmarks/RESULTS.md, training step)
    dominant = src_mel.transpose(-1, -2).max(dim=1).indices.reshape(src_mel.shape[0], -1)    # (batch, points)
    labels = torch.zeros(*dominant.shape, n_sources, dtype=mix_mel.dtype, device=mix_mel.device)
    labels.scatter_(-1, dominant[..., None], 1.0)
    level = 20 * torch.log10(mix_mel.transpose(1, 2).reshape(mix_mel.shape[0], -1) + 1e-10)
    active = (level >= level.amax(dim=1, keepdim=True) - threshold_db).to(mix_mel.dtype)
    counts = torch.zeros_like(labels[:, 0]).scatter_add_(1, dominant, active)                 # (batch, sources)
    inv_sqrt = torch.where(counts > 0, counts.clamp_min(1).rsqrt(), torch.zeros_like(counts))
    weights = inv_sqrt.gather(1, dominant) * active
    return labels, weights


class _Affinity(torch.autograd.Function):
    """The weighted affinity loss in one Gram matrix each way.

    With ``z = √w ⊙ [V | Y]`` (points × (dim + sources)), ``G = zᵀz`` holds
    ``A = VᵀWV``, ``B = VᵀWY`` and ``YᵀWY`` as its blocks: the loss is
    ‖A‖² − 2‖B‖² + ‖YᵀWY‖² over (Σw)², and its gradient in V is
    4 √w ⊙ (z [A; −Bᵀ]) / (Σw)², one product over the points. Autograd takes
    three Gram products forward, and six products and as many elementwise
    passes over the points back."""

    @staticmethod
    def forward(ctx, v, labels, weights):
        dim = v.shape[-1]
        root = weights.to(v.dtype).sqrt().unsqueeze(-1)
        z = torch.cat([v, labels.to(v.dtype)], dim=-1).mul_(root)                # (batch, points, dim + sources)
        gram = z.transpose(1, 2) @ z
        sq = gram.square()
        per = sq[:, :dim, :dim].sum((1, 2)) - 2 * sq[:, :dim, dim:].sum((1, 2)) + sq[:, dim:, dim:].sum((1, 2))
        norm = weights.to(v.dtype).sum(1).square().clamp_min(1e-8)
        ctx.save_for_backward(z, root, gram, norm)
        ctx.dim = dim
        return (per / norm).mean()

    @staticmethod
    def backward(ctx, grad):
        z, root, gram, norm = ctx.saved_tensors
        dim = ctx.dim
        blocks = torch.cat([gram[:, :dim, :dim], -gram[:, dim:, :dim]], dim=1)            # [A; −Bᵀ]
        blocks = blocks * (4 * grad / (norm * len(norm)))[:, None, None]
        return (z @ blocks).mul_(root), None, None


def affinity_loss(v: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted ‖VVᵀ − YYᵀ‖²_F / (Σw)², averaged over the batch; ``v``
    (batch, points, dim), ``labels`` (batch, points, sources), ``weights``
    (batch, points). Each pair (i, j) counts with weight w_i w_j. The gradient
    reaches ``v`` only (labels and weights are targets)."""
    return _Affinity.apply(v, labels, weights)


def affinity_loss_naive(v: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The same loss with the points × points matrices built (for tests)."""
    w = weights[:, :, None] * weights[:, None, :]
    diff = v @ v.transpose(1, 2) - labels @ labels.transpose(1, 2)
    return ((w * diff.square()).sum((1, 2)) / weights.sum(1).square().clamp_min(1e-8)).mean()


def mse_magnitude_loss(estimates: torch.Tensor, src_mag: torch.Tensor) -> torch.Tensor:
    """Mean squared error per source ``(sources,)`` between estimated and
    true magnitudes, both ``(batch, sources, freq, frames)``: for each source,
    open-unmix's ``mse_loss(Y_hat, Y)`` of its target (the true magnitude is
    not capped at the mixture's)."""
    return (estimates - src_mag).square().mean(dim=(0, 2, 3))


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last dimension (Le Roux, Wisdom,
    Erdogan, Hershey, "SDR – half-baked or well done?", ICASSP 2019): the
    reference scaled by α = ⟨ŝ, s⟩ / ‖s‖² is the target, the rest of the
    estimate the distortion, 10 log10 ‖αs‖² / ‖αs − ŝ‖²; no mean removal.
    Computed in float64 with float64's epsilon in numerator and denominator
    (a perfect estimate scores about 300 dB, a silent reference about 0 dB:
    callers exclude silent references). A fast training-time proxy, not BSS
    Eval's SDR."""
    est, ref = estimate.double(), reference.double()
    eps = torch.finfo(torch.float64).eps
    alpha = ((est * ref).sum(-1, keepdim=True) + eps) / (ref.square().sum(-1, keepdim=True) + eps)
    target = alpha * ref
    return 10 * torch.log10((target.square().sum(-1) + eps) / ((target - est).square().sum(-1) + eps))
