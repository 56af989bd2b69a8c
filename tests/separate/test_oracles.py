"""The oracles (musicsep.separate.oracles) against the true sources: SDR gains,
chunked against whole-track results, SiSEC's binary masks, the mixture as
every estimate, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from separation_inputs import HOP, N_FFT, assert_targets, sdr, synthetic_sources

from musicsep import ORACLES, SOURCES, TARGETS, MusicsepError
from musicsep.cli import main
from musicsep.separate.oracles import _oracle_masks, oracle


@pytest.mark.parametrize("kind", [kind for kind in ORACLES if kind != "mix"])
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


def test_the_mix_oracle_is_the_shards_mixture_for_every_target(tmp_path, make_shard):
    """``mix`` (SiSEC's MIX): the shard's own mixture, not the sum of its
    sources, as each of the five targets, accompaniment too, sample for
    sample; through the command line as the workflow's rule runs it."""
    sources = synthetic_sources(0.5)
    mixture = sources.sum(0) + np.float32(0.01)        # a stored mixture that is not the sources' sum
    shard = make_shard(tmp_path / "t.h5", sources, mixture=mixture, sample_rate=16000)
    assert main(["separate", str(shard), "--shard", "--oracle", "mix", "--out", str(tmp_path / "mix")]) == 0
    for target in TARGETS:
        audio, rate = soundfile.read(tmp_path / "mix" / f"{target}.wav", dtype="float32", always_2d=True)
        assert rate == 16000
        np.testing.assert_array_equal(audio.T, mixture.astype(np.float32), err_msg=target)
    out = oracle("mix", sources, mixture)
    assert list(out) == list(TARGETS)
    for target in TARGETS:
        np.testing.assert_array_equal(out[target], mixture.astype(np.float32))
    with pytest.raises(ValueError):                       # one array for every target: read-only
        out["vocals"][0, 0] = 1.0


def test_oracle_rejects_bad_input():
    sources = synthetic_sources(0.2)
    with pytest.raises(MusicsepError, match="unknown oracle 'irm3'"):
        oracle("irm3", sources)
    with pytest.raises(MusicsepError, match="lack vocals"):
        oracle("irm1", dict(zip(SOURCES[:3], sources)))
    with pytest.raises(MusicsepError, match="differ in shape"):
        oracle("irm1", sources, sources.sum(0)[:, :-1])
