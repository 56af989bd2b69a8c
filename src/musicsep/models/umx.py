"""Open-Unmix (UMX), the field's reference baseline, layer for layer.

Stöter, Uhlich, Liutkus, Mitsufuji, "Open-Unmix - A Reference Implementation
for Music Source Separation", JOSS 2019 (published MUSDB18 test medians of
SDR, UMX: vocals 6.32, drums 5.73, bass 5.23, other 4.02 dB).

:class:`OpenUnmixNet` is ``openunmix.model.OpenUnmix`` of openunmix 1.3.0
(``openunmix/model.py``): the same layers, created in the same order (so one
seed gives both the same initial weights) under the same names, and the same
operations in the same order. A state dict of open-unmix's loads into it as
it is (:meth:`UMX.load_openunmix`); ``tests/models/test_umx.py`` checks the
two against each other, outputs and a training step. Per frame: the
mixture's magnitude of every channel, cropped to ``max_bin`` (a bandwidth in
Hz), shifted and scaled per bin (``input_mean``, ``input_scale``: learnable),
``fc1`` (all channels' bins, no bias) + ``bn1`` + tanh, a BLSTM of ``layers``
layers (``hidden // 2`` per direction, dropout 0.4 between layers), the skip
connection (its input and output concatenated), ``fc2`` + ``bn2`` + ReLU,
``fc3`` + ``bn3`` to every bin of every channel, ``output_scale`` and
``output_mean`` per bin, ReLU; open-unmix's output is that times the
mixture's magnitude.

:class:`UMX` holds one such network per source of its ``sources`` (MUSDB18's
four, :data:`musicsep.SOURCES`, by default), in order, as open-unmix trains
one model per target, behind the package's model interface
(:mod:`musicsep.models.base`):

- Channels. The package folds a stereo track's channels into the batch
  (``mix_mag`` ``(batch * channels, freq, frames)``); UMX joins them (``fc1``
  reads both), so the model unfolds the batch into ``(batch, channels, freq,
  frames)``, ``channels`` being 1 or 2 (the workflow sets it from
  ``data.mono``). A batch whose size is not a multiple of ``channels`` is
  taken as single-channel examples, each given to the network on every
  channel (as open-unmix's ``Separator`` upmixes a mono mixture), with the
  first channel's masks returned: the one-channel excerpts of TensorBoard's
  masks and of the report's mask figure. Separation upmixes a mono mixture
  itself (:class:`musicsep.separate.separator.Separator`), whose batches of
  chunks can be a multiple of ``channels``.
- Masks. The estimate of a source is ``g * |X|``, ``g`` the network's last
  ReLU; with the mixture's phase it is open-unmix's ``Separator`` with
  ``niter=0, softmask=False`` (the estimated magnitude with the mixture's
  phase). The masks are therefore ``g`` itself, the estimate over ``|X|``
  wherever ``|X| > 0`` (where ``|X| = 0`` the estimate is 0 whatever the
  mask): not clamped to [0, 1] (a gain above 1, an estimate louder than the
  mixture, is what open-unmix outputs). ``evaluation.wiener`` refines these
  estimates with one multichannel Wiener iteration
  (:func:`musicsep.spectral.wiener.wiener`), open-unmix's ``niter=1``. The
  masks are at full resolution already: :meth:`UMX.mel_masks`, what
  separation and validation call, returns them, and ``features.to_linear``
  is the identity.
- Precision. The networks run in float32 with autocast off: open-unmix
  trains and separates in float32, and the trainer's bfloat16 autocast on
  CUDA would change the reference's numerics.
- Input statistics. open-unmix initialises ``input_mean`` and
  ``input_scale`` with the per-bin mean and standard deviation of the
  training mixtures' magnitude. ``stats.h5`` holds the mean ``mu`` and
  standard deviation ``s`` of the log magnitude ``log(|X| + eps)`` per bin
  (:func:`musicsep.spectral.features.compute_stats`, pooled over channels),
  which ``features.load_stats`` turns into a magnitude mean under a
  log-normal model, ``exp(mu + s²/2) - eps``, and uses it for both (the
  scale floored at 1e-4 of its largest value, as open-unmix floors its
  standard deviation): see :func:`magnitude_statistics` for why that fits.
  :meth:`UMX.set_input_statistics` takes open-unmix's own statistics where
  they are at hand.
- Loss: ``mse``, open-unmix's mean squared error between estimated and true
  magnitude spectrograms (:func:`musicsep.models.losses.mse_magnitude_loss`),
  summed over the four networks, so that each gets exactly the gradient of
  its own open-unmix training.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicsep import LOG_EPS, N_MELS, SAMPLE_RATE, SOURCES, MusicsepError
from musicsep.models.registry import check_model_args
from musicsep.spectral.features import Features

Channels = typing.Literal[1, 2]


def bandwidth_to_max_bin(rate: float, n_fft: int, bandwidth: float) -> int:
    """open-unmix's ``utils.bandwidth_to_max_bin``: the number of STFT bins
    at frequencies up to ``bandwidth`` Hz."""
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1, endpoint=True)
    return int(np.max(np.where(freqs <= bandwidth)[0]) + 1)


def magnitude_statistics(log_mean: np.ndarray, log_std: np.ndarray, log_eps: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """open-unmix's input statistics, a per-bin mean and scale of the
    magnitude, from ``stats.h5``'s mean ``mu`` and standard deviation ``s``
    of ``log(|X| + eps)``: the mean of a log-normal variable,
    ``exp(mu + s²/2) - eps``, for both, the scale floored at 1e-4 of its
    largest value (open-unmix's floor of its standard deviation).

    Why this fits: in training mode ``input_mean`` has no effect (``fc1`` is
    linear without a bias, so a shift of its input adds a constant per unit
    that ``bn1`` subtracts), and a constant factor on ``input_scale`` neither
    (``bn1`` divides it out): what counts is the scale's shape across bins.
    Measured on the MUSDB18 excerpt in stempeg's wheel (its ``stats.h5`` at
    STFT 4096/1024, bins 1 to 1486, below 16 kHz) against the statistics
    open-unmix computes there (its ``get_statistics``: the channels' mean
    magnitude, frames without centring): the estimate is 1.05 times the true
    mean (median over bins; interquartile range 1.03-1.10, correlation of
    the logarithms 0.993) and 0.98 times the true standard deviation
    (0.84-1.13, correlation 0.981), the magnitude's standard deviation being
    close to its mean (1.11 times it). The log-normal standard deviation
    ``sqrt(exp(s²) - 1) exp(mu + s²/2)`` fits worse (1.51 times, 1.33-1.80,
    correlation 0.938): the log magnitude's tail towards silence inflates
    ``s``. (tests/models/test_umx.py repeats the measurement.)"""
    mean = np.maximum(np.exp(log_mean + np.square(log_std) / 2) - log_eps, 0.0)
    return mean, np.maximum(mean, 1e-4 * mean.max())


class OpenUnmixNet(nn.Module):
    """``openunmix.model.OpenUnmix`` (openunmix 1.3.0), its names and
    arguments (``nb_bins``: bins of the STFT; ``max_bin``: the input's
    bandwidth in bins, None for all), plus ``dropout`` (open-unmix's fixed
    0.4). :meth:`forward` is open-unmix's: magnitudes ``(samples, channels,
    bins, frames)`` in, the estimate of the same shape out; :meth:`gains` is
    the same without the final product with the mixture."""

    def __init__(self, nb_bins: int = 4096, nb_channels: int = 2, hidden_size: int = 512, nb_layers: int = 3,
                 unidirectional: bool = False, max_bin: int | None = None, dropout: float = 0.4):
        super().__init__()
        self.nb_output_bins = nb_bins
        self.nb_bins = max_bin if max_bin else nb_bins
        self.hidden_size = hidden_size
        self.fc1 = nn.Linear(self.nb_bins * nb_channels, hidden_size, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_size)
        self.lstm = nn.LSTM(input_size=hidden_size, hidden_size=hidden_size if unidirectional else hidden_size // 2,
                            num_layers=nb_layers, bidirectional=not unidirectional, batch_first=False,
                            dropout=dropout if nb_layers > 1 else 0)
        self.fc2 = nn.Linear(in_features=hidden_size * 2, out_features=hidden_size, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden_size)
        self.fc3 = nn.Linear(in_features=hidden_size, out_features=self.nb_output_bins * nb_channels, bias=False)
        self.bn3 = nn.BatchNorm1d(self.nb_output_bins * nb_channels)
        self.input_mean = nn.Parameter(torch.zeros(self.nb_bins))
        self.input_scale = nn.Parameter(torch.ones(self.nb_bins))
        self.output_scale = nn.Parameter(torch.ones(self.nb_output_bins))
        self.output_mean = nn.Parameter(torch.ones(self.nb_output_bins))

    def gains(self, x: torch.Tensor) -> torch.Tensor:
        """The network's last ReLU ``(samples, channels, bins, frames)``: the
        estimate over the mixture's magnitude ``x``."""
        x = x.permute(3, 0, 1, 2)                                      # (frames, samples, channels, bins)
        nb_frames, nb_samples, nb_channels, _ = x.shape
        x = x[..., :self.nb_bins]
        x = x + self.input_mean
        x = x * self.input_scale
        x = self.bn1(self.fc1(x.reshape(-1, nb_channels * self.nb_bins)))
        x = torch.tanh(x.reshape(nb_frames, nb_samples, self.hidden_size))
        x = torch.cat([x, self.lstm(x)[0]], -1)                          # the skip connection
        x = F.relu(self.bn2(self.fc2(x.reshape(-1, x.shape[-1]))))
        x = self.bn3(self.fc3(x))
        x = x.reshape(nb_frames, nb_samples, nb_channels, self.nb_output_bins)
        x = x * self.output_scale
        x = x + self.output_mean
        return F.relu(x).permute(1, 2, 3, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gains(x) * x.detach()


@torch.no_grad()
def set_input_statistics(nets: Iterable[OpenUnmixNet], mean: np.ndarray, scale: np.ndarray) -> None:
    """open-unmix's initialisation: ``input_mean = -mean``, ``input_scale =
    1 / scale``, cropped to each network's bandwidth."""
    mean, scale = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    for net in nets:
        net.input_mean.copy_(torch.from_numpy(-mean[:net.nb_bins]))
        net.input_scale.copy_(torch.from_numpy(1.0 / scale[:net.nb_bins]))


class UMXFeatures(nn.Module):
    """UMX's spectral side: the STFT of :class:`musicsep.spectral.features.Features`
    (the same frames; no mel projection, no whitening: the networks read
    linear magnitudes), ``to_linear`` the identity (the masks are at full
    resolution), and ``load_stats``, which initialises the networks' input
    statistics from ``stats.h5`` (:func:`magnitude_statistics`)."""

    stft = Features.stft
    istft = Features.istft

    def __init__(self, *, sample_rate: int, n_fft: int, hop: int, nets: nn.ModuleDict):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop = sample_rate, n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        object.__setattr__(self, "_nets", nets)          # the model's networks, not registered here twice

    def to_linear(self, masks: torch.Tensor) -> torch.Tensor:
        return masks

    def load_stats(self, path: str | Path) -> None:
        """The networks' input statistics from ``stats.h5``; refuses ones
        computed with other STFT settings."""
        with h5py.File(path, "r") as h5:
            for key in ("n_fft", "hop", "sample_rate"):
                if int(h5.attrs[key]) != getattr(self, key):
                    raise MusicsepError(f"{path}: statistics were computed with {key} {int(h5.attrs[key])}, "
                                        f"the model uses {getattr(self, key)}")
            log_mean, log_std = h5["mean"][:].astype(np.float64), h5["std"][:].astype(np.float64)
            log_eps = float(h5.attrs["log_eps"])
        set_input_statistics(self._nets.values(), *magnitude_statistics(log_mean, log_std, log_eps))


class UMX(nn.Module):
    """Open-Unmix, one network per source (see the module's description).

    ``channels``: 1 or 2, the channels each network joins (the workflow sets
    it from ``data.mono``); ``hidden``, ``layers``, ``dropout``,
    ``bandwidth`` (Hz: the input's band, open-unmix's ``--bandwidth``) and
    ``unidirectional``: open-unmix's ``hidden_size``, ``nb_layers``, its
    fixed LSTM dropout, ``max_bin`` and ``unidirectional``; the defaults are
    its published ones, and ``n_fft`` 4096 / ``hop`` 1024 its STFT (the
    workflow passes the run's ``features`` instead). ``n_mels`` and
    ``log_eps``, keys of the ``features`` block that the workflow passes to
    every model, are not used (the statistics' own ``log_eps`` is).
    """

    name = "umx"

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, n_fft: int = 4096, hop: int = 1024, n_mels: int = N_MELS,
                 log_eps: float = LOG_EPS, channels: Channels = 2, hidden: int = 512, layers: int = 3,
                 dropout: float = 0.4, bandwidth: float = 16000.0, unidirectional: bool = False,
                 sources: tuple[str, ...] = SOURCES):
        check_model_args(self.name, channels=channels)
        for key, value, fits, what in [
                ("hidden", hidden, hidden >= 2 and (unidirectional or hidden % 2 == 0),
                 "even and at least 2 (the BLSTM has hidden // 2 units per direction)"),
                ("layers", layers, layers >= 1, "at least 1"), ("dropout", dropout, 0 <= dropout < 1, "in [0, 1)"),
                ("bandwidth", bandwidth, bandwidth >= 0, "at least 0 (Hz)")]:
            if not fits:
                raise MusicsepError(f"model_args.{key}: {value} must be {what}")
        super().__init__()
        self.channels, self.sources = channels, tuple(sources)
        nb_bins = n_fft // 2 + 1
        self.max_bin = bandwidth_to_max_bin(sample_rate, n_fft, bandwidth)
        self.targets = nn.ModuleDict({source: OpenUnmixNet(nb_bins, channels, hidden, layers, unidirectional,
                                                           self.max_bin, dropout) for source in self.sources})
        self.features = UMXFeatures(sample_rate=sample_rate, n_fft=n_fft, hop=hop, nets=self.targets)

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    def kwargs(self) -> dict:
        return dict(self._kwargs)

    def _gains(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Every network's gains for ``mix_mag`` ``(batch * channels, freq,
        frames)``: ``(batch * channels, sources, freq, frames)``."""
        n, c = mix_mag.shape[0], self.channels
        upmixed = n % c != 0
        x = mix_mag[:, None].expand(n, c, *mix_mag.shape[1:]) if upmixed else mix_mag.unflatten(0, (n // c, c))
        with torch.autocast(mix_mag.device.type, enabled=False):
            x = x.float()
            gains = torch.stack([net.gains(x) for net in self.targets.values()], dim=2)
        return gains[:, 0] if upmixed else gains.flatten(0, 1)         # (batch, channels, sources, ...) folded

    def forward(self, mix_mag: torch.Tensor, full_resolution: bool = True) -> dict:
        """``masks`` (``mel_masks`` with ``full_resolution=False``: the same
        tensor, for the interface's callers) and ``magnitudes``, the
        estimates open-unmix outputs, ``(batch * channels, sources, freq,
        frames)``."""
        gains = self._gains(mix_mag)
        return {"masks" if full_resolution else "mel_masks": gains,
                "magnitudes": gains * mix_mag.detach().float()[:, None]}

    def masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Masks ``(batch * channels, sources, freq, frames)``: the gains, not clamped."""
        return self._gains(mix_mag)

    mel_masks = masks

    def set_input_statistics(self, mean: np.ndarray, scale: np.ndarray) -> None:
        """open-unmix's statistics (its ``get_statistics``: per-bin mean and
        standard deviation of the training set's magnitude, ``n_fft // 2 + 1``
        each) as every network's ``input_mean`` and ``input_scale``."""
        set_input_statistics(self.targets.values(), mean, scale)

    def load_openunmix(self, source: str, state_dict: Mapping[str, torch.Tensor]) -> None:
        """The weights of one of open-unmix's target models
        (``openunmix.model.OpenUnmix``'s state dict, e.g. a pretrained
        target's ``.pth``) into this model's network for ``source``: the
        names are the same. Keys beyond the network's are left out; a
        missing key (but BatchNorm's counter) or another shape is a
        MusicsepError naming it."""
        if source not in self.targets:
            raise MusicsepError(f"no source {source!r} (sources: {', '.join(self.sources)})")
        net = self.targets[source]
        own = net.state_dict()
        missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
        wrong = [f"{k} {tuple(state_dict[k].shape)} (the model's {tuple(v.shape)})" for k, v in own.items()
                 if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
        if missing or wrong:
            raise MusicsepError(f"open-unmix weights for {source}: "
                                + (f"no {', '.join(missing)}" if missing else f"shapes differ: {wrong[0]}"))
        net.load_state_dict({k: state_dict[k] for k in own if k in state_dict}, strict=False)
