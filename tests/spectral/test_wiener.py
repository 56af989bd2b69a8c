"""The multichannel Wiener filter (musicsep.spectral.wiener): on the true
sources it is the MWF oracle; as the separator's post-filter it keeps shapes
and its estimates sum to the mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from separation_inputs import HOP, N_FFT, assert_targets, sdr, synthetic_sources, tiny

from musicsep import SOURCES
from musicsep.separate.oracles import oracle
from musicsep.separate.separator import Separator
from musicsep.spectral.stft import Framing, OverlapAdd
from musicsep.spectral.wiener import wiener

pytestmark = pytest.mark.usefixtures("one_thread")


def test_wiener_of_true_sources_is_the_mwf_oracle():
    sources = synthetic_sources()
    mixture = sources.sum(0)
    framing = Framing(mixture.shape[-1], N_FFT, HOP, torch.hann_window(N_FFT))
    x = framing.stft(lambda a, b: mixture[:, a:b], 0, framing.frames)
    s = framing.stft(lambda a, b: sources[..., a:b], 0, framing.frames)
    filtered = wiener(s, x)
    assert filtered.shape == s.shape
    acc = OverlapAdd(framing, (4, 2))
    acc.add(filtered, 0, framing.frames)
    reference = oracle("mwf", sources, n_fft=N_FFT, hop=HOP)
    for k, name in enumerate(SOURCES):
        assert sdr(reference[name], acc.result()[k]) > 40, name


def test_wiener_post_filter_keeps_shapes_and_sums_to_the_mixture():
    sources = synthetic_sources()
    mixture = sources.sum(0)
    model = tiny()
    plain = Separator(model).separate(mixture)
    filtered = Separator(model, wiener=True, chunk_seconds=1.0).separate(mixture)
    assert_targets(filtered, mixture.shape)
    # the BLSTM's independent sigmoid masks do not sum to one; the filter's outputs do
    assert sdr(mixture, sum(filtered[n] for n in SOURCES)) > 25
    assert sdr(mixture, sum(filtered[n] for n in SOURCES)) > sdr(mixture, sum(plain[n] for n in SOURCES)) + 10
    # an untrained model's estimates stay bounded by the mixture's energy
    for name in SOURCES:
        assert np.sum(filtered[name] ** 2) < 1.5 * np.sum(mixture ** 2)
