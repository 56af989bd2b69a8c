"""The oracles (musicsep.separate.oracles) against the true sources: SDR gains,
chunked against whole-track results, SiSEC's binary masks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from separation_inputs import HOP, N_FFT, assert_targets, sdr, synthetic_sources

from musicsep import ORACLES, SOURCES, TARGETS, MusicsepError
from musicsep.separate.oracles import _oracle_masks, oracle


@pytest.mark.parametrize("kind", ORACLES)
def test_oracles_recover_the_sources(kind):
    sources = synthetic_sources()
    mixture = sources.sum(0)
    out = oracle(kind, dict(zip(SOURCES, sources)), mixture, n_fft=N_FFT, hop=HOP)
    assert_targets(out, mixture.shape)
    for k, name in enumerate(SOURCES):
        gain = sdr(sources[k], out[name]) - sdr(sources[k], mixture)
        assert gain > 15, (name, gain)
    total = sum(out[name] for name in SOURCES)
    if kind in ("irm1", "ibm", "mwf"):                 # their masks sum to one (mwf: up to the regulariser)
        assert sdr(mixture, total) > 50
    # chunked reading gives the whole-track result (mwf: covariances over the whole track)
    chunked = oracle(kind, sources, mixture, n_fft=N_FFT, hop=HOP, chunk_frames=17)
    for name in TARGETS:
        np.testing.assert_allclose(chunked[name], out[name], atol=1e-4)


def test_sisec_binary_masks_threshold_the_ratio_to_the_mixture():
    """IBM1 and IBM2 as in SiSEC 2018's oracles: a source keeps a bin where its
    magnitude (IBM1) or power (IBM2) is at least half the mixture's, so a bin
    may go to no source; ``ibm`` gives every bin to its loudest source."""
    # one channel, one frame, three bins; magnitudes of the four sources
    mags = torch.tensor([[0.6, 0.3, 0.72], [0.4, 0.3, 0.0], [0.0, 0.2, 0.28], [0.0, 0.2, 0.0]])
    src = mags[:, None, :, None].to(torch.complex64)
    mix = src.sum(0)                                    # |X| = 1 in every bin
    ibm1 = _oracle_masks("ibm1", src, mix)[:, 0, :, 0]
    ibm2 = _oracle_masks("ibm2", src, mix)[:, 0, :, 0]
    ibm = _oracle_masks("ibm", src, mix)[:, 0, :, 0]
    assert ibm1[:, 0].tolist() == [1, 0, 0, 0] and ibm1[:, 1].tolist() == [0, 0, 0, 0]
    assert ibm1[:, 2].tolist() == [1, 0, 0, 0]
    assert ibm2[:, 0].tolist() == [0, 0, 0, 0]          # 0.36 < 0.5
    assert ibm2[:, 2].tolist() == [1, 0, 0, 0]          # 0.5184 >= 0.5
    assert ibm.sum(0).tolist() == [1, 1, 1] and ibm[0].tolist() == [1, 1, 1]


def test_oracle_rejects_bad_input():
    sources = synthetic_sources(0.2)
    with pytest.raises(MusicsepError, match="unknown oracle 'irm3'"):
        oracle("irm3", sources)
    with pytest.raises(MusicsepError, match="lack vocals"):
        oracle("irm1", dict(zip(SOURCES[:3], sources)))
    with pytest.raises(MusicsepError, match="differ in shape"):
        oracle("irm1", sources, sources.sum(0)[:, :-1])
