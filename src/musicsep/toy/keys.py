"""Two more chord instruments for toy datasets of more sources than MUSDB18's:
a plucked guitar (Karplus-Strong strings, strummed) and a piano (decaying,
slightly inharmonic partials). They play the song's chords beside the
``other`` stem's instrument; a toy of MUSDB18's four sources renders neither,
so its audio stays what it always was."""

from __future__ import annotations

import numpy as np
from scipy import signal

from musicsep.toy.dsp import _add, _envelope, _filter, _pan, _reverb
from musicsep.toy.song import CHORD_LOW, COMP_PATTERNS, SongPlan, _above, _Bar, _chord, _hz

GUITAR_LEVEL, PIANO_LEVEL = 0.6, 0.2
PIANO_PARTIALS = (1.0, 0.55, 0.3, 0.22, 0.12, 0.08, 0.05, 0.03)
PIANO_STRETCH = 0.0004
"""Inharmonicity of the piano's strings: partial k sounds at k f0 sqrt(1 + B k^2)."""


def _string(hz: float, m: int, sr: int, rng: np.random.Generator, brightness: float = 0.5,
            decay: float = 0.996) -> np.ndarray:
    """A Karplus-Strong string: a burst of noise through a delay line of one
    period with an averaging low-pass in the loop (one IIR filter)."""
    period = max(2, int(round(sr / hz)))
    burst = np.zeros(m)
    noise = rng.uniform(-1, 1, min(period, m))
    burst[:len(noise)] = _filter(noise, "lowpass", max(200.0, brightness * 0.45 * sr), sr) if m > period else noise
    feedback = np.zeros(period + 2)
    feedback[0] = 1
    feedback[period:period + 2] = -0.5 * decay
    return signal.lfilter([1.0], feedback, burst)


def _guitar(plan: SongPlan, bars: list[_Bar], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Strummed chords, down on the beat and up between, strings a few ms apart."""
    beat = 60.0 / plan.tempo
    out = np.zeros((n, 2))
    for bar in bars:
        if int(round(bar.start * sr)) >= n:
            break
        voicing = [_above(pc, CHORD_LOW - 5) for pc in _chord(plan, bar.degree, 3)]
        voicing += [voicing[0] + 12, voicing[1] + 12]
        for k in range(4):
            down = k % 2 == 0
            strings = voicing if down else voicing[::-1][:3]
            m = int((beat * (2 if down else 1) + 0.3) * sr)
            for j, midi in enumerate(strings):
                x = _string(float(_hz(midi)), m, sr, rng, 0.6 if down else 0.8) * _envelope(m, sr, 0.001, 0.05)
                at = int(round((bar.start + k * beat + 0.008 * j) * sr))
                _add(out, (0.9 if down else 0.5) * _pan(x, -0.45), at)
    return GUITAR_LEVEL * (out + 0.15 * _reverb(out.sum(axis=1), sr, rng, 1.2))


def _piano_note(hz: float, m: int, sr: int) -> np.ndarray:
    """Additive piano: stretched partials, the higher ones dying away faster, a hammer's attack."""
    t = np.arange(m) / sr
    x = np.zeros(m)
    for k, amp in enumerate(PIANO_PARTIALS, start=1):
        f = k * hz * np.sqrt(1 + PIANO_STRETCH * k * k)
        if f < 0.45 * sr:
            x += amp * np.sin(2 * np.pi * f * t) * np.exp(-t * (0.8 + 0.9 * k))
    return x * _envelope(m, sr, 0.003, 0.06)


def _piano(plan: SongPlan, bars: list[_Bar], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The chords comped in a pattern of the song's, the root an octave below."""
    beat = 60.0 / plan.tempo
    pattern = COMP_PATTERNS[(plan.comp_pattern + 1) % len(COMP_PATTERNS)]
    out = np.zeros((n, 2))
    for bar in bars:
        start = int(round(bar.start * sr))
        if start >= n:
            break
        voicing = [_above(pc, CHORD_LOW + 7) for pc in _chord(plan, bar.degree, 3)]
        for onset, beats in pattern:
            m = int((beats * beat + 0.5) * sr)
            velocity = 0.8 + 0.1 * rng.standard_normal()
            for midi in [voicing[0] - 12, *voicing]:
                _add(out, velocity * _pan(_piano_note(float(_hz(midi)), m, sr), 0.4),
                     start + int(round(onset * beat * sr)))
    return PIANO_LEVEL * (out + 0.2 * _reverb(out.sum(axis=1), sr, rng, 1.4))
