"""The BSS Eval v4 engine (musicsep.evaluate.bsseval) against museval itself,
the reference implementation: every frame of every metric, the NaN frames,
and museval's handling of lengths, short tracks, overlapping frames, mono,
and silent sources. Real audio from stempeg's MUSDB18 excerpt, and random
signals; short, since museval takes seconds per call."""

from __future__ import annotations

import museval
import numpy as np
import pytest
import stempeg

from musicsep.evaluate.bsseval import SilentSource, bss_eval, sdr

# the accuracy goals, in dB
SDR_TOL, OTHER_TOL = 1e-9, 1e-4
# above this a ratio is float64 rounding (an error energy 1e-15 of the
# signal's): both implementations give some huge value, not the same one
ROUNDING_DB = 150


def assert_like_museval(references, estimates, ours=None, **kw):
    """Our metrics equal museval's: same NaN frames, SDR within 1e-9 dB and
    ISR/SIR/SAR within 1e-4 dB, +inf where museval gives +inf, and above
    150 dB (rounding) where museval is."""
    theirs = museval.evaluate(references, estimates, **kw)
    ours = ours if ours is not None else bss_eval(references, estimates, window=kw.get("win", 44100),
                                                  hop=kw.get("hop", 44100))
    for name, a, b, tol in zip(("SDR", "ISR", "SIR", "SAR"), theirs, ours, (SDR_TOL,) + 3 * (OTHER_TOL,)):
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=name)
        huge = a > ROUNDING_DB
        assert (b[huge] > ROUNDING_DB).all(), name
        finite = np.isfinite(a) & ~huge
        assert np.abs(a[finite] - b[finite]).max(initial=0) <= tol, (name, np.abs(a[finite] - b[finite]).max())
    return theirs, ours


@pytest.fixture(scope="module")
def excerpt():
    """The real excerpt's four sources ``(4, samples, 2)`` float64, decoded as
    musdb decodes them (16-bit)."""
    audio, rate = stempeg.read_stems(stempeg.example_stem_path(), ffmpeg_format="s16le", dtype=np.float64)
    assert rate == 44100
    return audio[1:]


def test_real_excerpt_random_estimates(excerpt):
    """museval's regression recipe: uniform random estimates from seed 0."""
    np.random.seed(0)
    estimates = np.stack([np.random.random(s.shape) for s in excerpt])
    assert_like_museval(excerpt, estimates)


def test_real_excerpt_leaky_estimates_silence_and_a_perfect_estimate(excerpt):
    """Estimates with leakage and filtering, a silent second in one (that frame
    is NaN for all), and one equal to its reference (SDR +inf as museval's;
    ISR/SIR/SAR finite and huge in both)."""
    rng = np.random.default_rng(1)
    mixture = excerpt.sum(axis=0)
    estimates = 0.7 * excerpt + 0.1 * mixture + 0.01 * rng.standard_normal(excerpt.shape)
    estimates[:, 1:] += 0.2 * estimates[:, :-1]
    estimates[2, 44100:88200] = 0
    estimates[1] = excerpt[1]
    _, ours = assert_like_museval(excerpt, estimates)
    assert np.isnan(ours[0][:, 1]).all() and not np.isnan(ours[0][:, 0]).any()
    assert np.isinf(ours[0][1][~np.isnan(ours[0][1])]).all()
    assert (ours[1][1][~np.isnan(ours[1][1])] > 150).all()


@pytest.mark.parametrize("extra", [-1500, 2000])
def test_estimates_padded_or_cut_like_museval(excerpt, extra):
    rng = np.random.default_rng(2)
    refs = excerpt[:3, :3 * 44100 + 700]
    n = refs.shape[1] + extra
    estimates = 0.9 * np.pad(refs, [(0, 0), (0, max(0, extra)), (0, 0)])[:, :n] + 0.05 * rng.standard_normal((3, n, 2))
    assert_like_museval(refs, estimates)


def test_short_track_overlapping_frames_and_mono():
    rng = np.random.default_rng(3)
    refs = rng.standard_normal((3, 30000, 1))
    est = refs + 0.3 * rng.standard_normal(refs.shape)
    _, ours = assert_like_museval(refs, est)                         # shorter than a window: one frame
    assert ours[0].shape == (3, 1)
    refs = rng.standard_normal((2, 9 * 4000 + 123))
    est = refs[::-1] * 0.3 + refs
    assert_like_museval(refs, est, win=8000, hop=3000, ours=bss_eval(refs, est, 8000, 3000))


def test_windows_shorter_than_the_filters():
    rng = np.random.default_rng(4)
    refs = rng.standard_normal((2, 5000, 2))
    est = refs + 0.2 * rng.standard_normal(refs.shape) + 0.1 * refs[::-1]
    for win, hop in ((300, 300), (400, 250)):
        assert_like_museval(refs, est, win=win, hop=hop, ours=bss_eval(refs, est, win, hop))


def test_a_source_silent_over_the_whole_track_is_refused_as_museval_refuses_it():
    rng = np.random.default_rng(4)
    refs = rng.standard_normal((2, 20000, 2))
    est = refs.copy()
    est[1] = 0
    with pytest.raises(ValueError):
        museval.evaluate(refs, est)
    with pytest.raises(SilentSource, match="estimate 1 is zero over the whole track"):
        bss_eval(refs, est)
    with pytest.raises(SilentSource, match="reference 1"):
        sdr(est, refs)


def test_backends_and_sdr_only_agree(excerpt):
    """torch float64 (the CUDA path, run on the CPU), two threads and the
    SDR-only mode give the numpy engine's numbers."""
    rng = np.random.default_rng(5)
    refs = excerpt[:, :2 * 44100 + 5000]
    est = 0.8 * refs + 0.1 * refs[::-1] + 0.01 * rng.standard_normal(refs.shape)
    est[0, :44100] = 0
    base = bss_eval(refs, est)
    for other in (bss_eval(refs, est, device="cpu"), bss_eval(refs, est, threads=2, batch=1)):
        for a, b, tol in zip(base, other, (SDR_TOL,) + 3 * (OTHER_TOL,)):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    np.testing.assert_allclose(sdr(refs, est), base[0], rtol=0, atol=1e-12)
    assert np.isnan(base[0][:, 0]).all()


def test_a_singular_gram_matrix_falls_back_to_least_squares_as_museval_does():
    """A source whose two channels are identical (a mono stem in a stereo
    file: common in MUSDB18) makes the Gram matrix exactly singular; museval's
    solve then raises and it takes least squares, and so do we."""
    rng = np.random.default_rng(6)
    refs = rng.standard_normal((3, 2 * 44100 + 300, 2))
    refs[1, :, 1] = refs[1, :, 0]
    est = 0.8 * refs + 0.1 * refs[[1, 2, 0]] + 0.05 * rng.standard_normal(refs.shape)
    _, ours = assert_like_museval(refs, est)
    assert np.isfinite(ours[2]).all()
