"""A deterministic numpy synthesizer of short four-stem songs (the toy MUSDB's audio).

:func:`musicsep.toy.song.plan_song` draws everything musical from the seed: tempo, key and mode, a
chord progression, an arrangement of sections (which parts play where) and a
style per instrument. :func:`render_song` turns a plan into stereo stems:

* drums: one-shot sounds synthesised once per song (swept-sine kick with a click,
  snare body plus band-passed noise, metallic hats, a crash) placed on a 16-step
  grid from a style pattern, with velocity humanisation, fills and crashes;
* bass: a monophonic line on the chord roots (root, fifth, octave and approach
  notes by style) with a plucked, decaying-brightness saw, square or sub timbre;
* other: the chords as a detuned-saw pad, an electric piano, an organ or an arpeggio;
* guitar and piano (only in toys of more sources than MUSDB18's four,
  :mod:`musicsep.toy.keys`): strummed Karplus-Strong strings and an additive piano;
* vocals: a source-filter voice. A harmonic source with a spectral slope is shaped
  by vowel formants that morph from syllable to syllable; it sings a melody made
  for each section (chord tones on strong beats, steps between) in phrases
  separated by rests, with portamento, delayed vibrato, breath and consonant noise.

Every pitched tone is wavetable synthesis: a single-cycle table is built from
harmonic amplitudes with one inverse FFT (only harmonics below Nyquist) and read
at the tone's phase. Time-varying spectra (plucks, formants) get one table per
control frame, crossfaded linearly. All randomness comes from
``np.random.default_rng`` seeded by the song seed and a stream number per part,
so a seed renders bit-identically; the stems share one gain at the end.
"""

from __future__ import annotations

import numpy as np

from musicsep import SAMPLE_RATE, SOURCES
from musicsep.toy.band import _bass, _drums, _other
from musicsep.toy.keys import _guitar, _piano
from musicsep.toy.song import MIX_PEAK, SongPlan, _timeline
from musicsep.toy.voice import _vocals

PARTS = {"drums": _drums, "bass": _bass, "other": _other, "vocals": _vocals, "guitar": _guitar, "piano": _piano}
"""The toy's voices by source name; each draws from its own random stream (its index here)."""


def render_song(plan: SongPlan, duration: float, sample_rate: int = SAMPLE_RATE,
                sources: tuple[str, ...] = SOURCES) -> np.ndarray:
    """Return float32 array of shape (sources, n, 2) — stems in ``sources`` order, n = round(duration*sample_rate), stereo."""
    n = int(round(duration * sample_rate))
    if n <= 0:
        return np.zeros((len(sources), 0, 2), dtype=np.float32)
    bars = _timeline(plan, duration)
    stems = np.empty((len(sources), n, 2))
    for k, source in enumerate(sources):
        stream = list(PARTS).index(source)
        stems[k] = PARTS[source](plan, bars, n, sample_rate, np.random.default_rng([plan.seed, stream]))
    t = np.arange(n) / sample_rate
    stems *= (np.clip(t / 0.01, 0, 1) * np.clip((duration - t) / min(0.5, duration / 4), 0, 1))[:, None]
    peak = np.abs(stems.sum(axis=0)).max(initial=0.0)
    if peak > 0:
        stems *= MIX_PEAK / peak
    return stems.astype(np.float32)
