"""The singer: melodies per section and a source-filter voice that sings them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from musicsep import SOURCES
from musicsep.toy.dsp import _add, _filter, _frame_times, _read, _reverb, _tables
from musicsep.toy.song import (
    BREATH_S,
    DRIFT_DEPTH,
    DRIFT_HZ,
    ENDING_CELLS,
    GLIDE_S,
    HOP,
    LEGATO_FLOOR,
    RHYTHM_CELLS,
    ROLES,
    SCOOP,
    SECTION_IDS,
    VIBRATO_DELAY_S,
    VIBRATO_DEPTH,
    VIBRATO_HZ,
    VIBRATO_RAMP_S,
    VOCAL_LEVEL,
    VOCAL_SPAN,
    VOICE_CUTOFF,
    VOICE_HARMONICS,
    VOICE_SLOPE,
    VOWEL_WEIGHTS,
    VOWELS,
    SongPlan,
    _Bar,
    _chord,
    _degrees,
    _hz,
    _in_scale,
)


@dataclass(frozen=True)
class _Note:
    start: float   # beats from the phrase start
    length: float  # beats
    midi: int
    vowel: str


def _melody(plan: SongPlan, section: str, length: int) -> list[tuple[int, list[_Note]]]:
    """The sung phrases of a section as (first bar, notes); the same each time the
    section comes back. Two rhythms alternate; a rhythm over the same chords
    repeats its pitches, except in the last phrase."""
    rng = np.random.default_rng([plan.seed, len(SOURCES), SECTION_IDS[section], length])
    degrees = _degrees(plan)
    offset = ROLES[section].chord_offset
    phrase_bars = 2 if length <= 4 or rng.random() < 0.5 else 4
    motifs = [[RHYTHM_CELLS[int(rng.integers(len(RHYTHM_CELLS)))] for _ in range(phrase_bars - 1)]
              + [ENDING_CELLS[int(rng.integers(len(ENDING_CELLS)))]] for _ in range(2)]
    scale = np.array([m for m in range(plan.vocal_low, plan.vocal_low + VOCAL_SPAN + 1)
                      if _in_scale(plan, m)])
    center = plan.vocal_low + (10 if section == "chorus" else 6)
    previous, repeated, phrases, sung = center, False, [], {}
    count = length // phrase_bars
    for p in range(count):
        first = p * phrase_bars
        chords = tuple(degrees[(first + b + offset) % len(degrees)] for b in range(phrase_bars))
        if (p % 2, chords) in sung and p < count - 1:
            phrases.append((first, sung[p % 2, chords]))
            previous = phrases[-1][1][-1].midi
            continue
        events = [(b * 8 + onset, eighths) for b, cell in enumerate(motifs[p % 2]) for onset, eighths in cell]
        notes = []
        for j, (onset, eighths) in enumerate(events):
            chord = _chord(plan, chords[onset // 8])
            last = j == len(events) - 1
            if onset % 4 == 0 or eighths >= 3 or last:  # strong: a chord tone
                candidates = scale[np.isin(scale % 12, chord)]
            else:                                       # weak: a step or a small leap
                candidates = scale[np.abs(scale - previous) <= 4]
            target = center + 4 * np.sin(np.pi * j / max(1, len(events) - 1)) - 2 * last
            weight = np.exp(-np.abs(candidates - previous) / 3 - np.abs(candidates - target) / 3)
            weight *= np.where(candidates == previous, 0.1 if repeated else 0.3, 1.0)
            if last:
                weight *= np.where(candidates % 12 == chord[0], 3.0, 1.0)
            midi = int(rng.choice(candidates, p=weight / weight.sum()))
            repeated, previous = midi == previous, midi
            vowel = str(rng.choice(tuple(VOWELS), p=VOWEL_WEIGHTS))
            notes.append(_Note(onset / 2, eighths / 2, previous, vowel))
        sung[p % 2, chords] = notes
        phrases.append((first, notes))
    return phrases


def _voice_spectrum(f0: np.ndarray, formants: np.ndarray, sr: int) -> np.ndarray:
    """Harmonic amplitudes per frame: a sloped source through cascaded formant
    resonators (``formants`` is (frames, 4, [Hz, bandwidth])), unit RMS per frame."""
    k = np.arange(1, VOICE_HARMONICS + 1)
    f = np.outer(f0, k)[..., None]
    hz, width = formants[:, None, :, 0], formants[:, None, :, 1]
    gain = np.prod(hz ** 2 / np.sqrt((hz ** 2 - f ** 2) ** 2 + (width * f) ** 2), axis=-1)
    amps = gain * k ** -VOICE_SLOPE * np.clip((min(VOICE_CUTOFF, 0.45 * sr) - f[..., 0]) / 1000, 0, 1)
    return amps / np.sqrt(0.5 * (amps ** 2).sum(axis=1, keepdims=True))


def _sing(notes: list[tuple[float, float, int, str]], plan: SongPlan, sr: int,
          rng: np.random.Generator) -> np.ndarray:
    """One phrase, mono; ``notes`` are (start s, length s, MIDI, vowel), the first at BREATH_S."""
    starts, lengths = (np.array([note[i] for note in notes], dtype=float) for i in (0, 1))
    midis = np.array([note[2] for note in notes], dtype=float)
    m = int((starts[-1] + lengths[-1] + 0.2) * sr)
    tf = _frame_times(m, sr)
    idx = np.clip(np.searchsorted(starts, tf, "right") - 1, 0, None)
    since = tf - starts[idx]
    # pitch: portamento (with a scoop into the phrase), delayed vibrato, slow drift
    target = np.where(tf < starts[0], midis[0] - SCOOP, midis[idx])
    a = np.exp(-HOP / (sr * GLIDE_S))
    pitch = signal.lfilter([1 - a], [1, -a], target, zi=[a * target[0]])[0]
    depth = VIBRATO_DEPTH * np.clip((since - VIBRATO_DELAY_S) / VIBRATO_RAMP_S, 0, 1)
    depth *= np.clip((lengths[idx] - since) / 0.1, 0, 1)  # and gone by the next note
    b = np.exp(-2 * np.pi * DRIFT_HZ * HOP / sr)
    drift = signal.lfilter([1 - b], [1, -b], rng.standard_normal(len(tf)))
    drift *= DRIFT_DEPTH / np.sqrt((1 - b) / (1 + b))  # the filter's gain on white noise
    f0 = _hz(pitch + depth * np.sin(2 * np.pi * VIBRATO_HZ * tf) + drift)
    # vowels: formants glide from the previous syllable's in the first 60 ms
    shift = np.array([0.9 if plan.vocal_low < 58 else 1.0, 1.5])  # lower voice; wider bands
    shapes = np.array([VOWELS[note[3]] for note in notes]) * shift
    w = np.clip(since / 0.06, 0, 1)[:, None, None]
    formants = shapes[np.maximum(idx - 1, 0)] * (1 - w) + shapes[idx] * w
    # syllables: legato notes dip to LEGATO_FLOOR between them, phrase ends fall to silence
    legato = np.r_[starts[1:] - starts[:-1] - lengths[:-1] < 0.01, False]
    floor_out = LEGATO_FLOOR * legato
    floor_in = np.r_[0.0, floor_out[:-1]]
    attack = np.where(floor_in > 0, 0.03, 0.05)
    release = np.where(legato, np.minimum(0.06, 0.3 * lengths), np.minimum(0.15, 0.5 * lengths))
    accent = 0.85 + 0.15 * rng.random(len(notes))
    rise = floor_in[idx] + (1 - floor_in[idx]) * np.clip(since / attack[idx], 0, 1)
    fall = floor_out[idx] + (1 - floor_out[idx]) * np.clip((lengths[idx] - since) / release[idx], 0, 1)
    samples = np.arange(m)
    env = np.interp(samples, tf * sr, rise * fall * accent[idx])
    phase = np.cumsum(np.interp(samples, tf * sr, f0)) / sr
    voice = _read(_tables(_voice_spectrum(f0, formants, sr)), phase, samples / HOP) * env
    # noise: aspiration, consonants at some syllable starts, a breath before the phrase
    noise = rng.standard_normal(m)
    voice += 0.05 * _filter(noise, "highpass", 2500, sr) * env
    hiss, burst = _filter(noise, "highpass", 5000, sr), int(0.04 * sr)
    for start in starts[rng.random(len(notes)) < 0.4]:
        at = int((start - 0.03) * sr)
        voice[at:at + burst] += 0.2 * hiss[at:at + burst] * np.hanning(burst)
    breath = int((BREATH_S - 0.03) * sr)
    voice[:breath] += 0.25 * _filter(noise, "bandpass", (700, 2500), sr)[:breath] * np.hanning(breath)
    return voice


def _vocals(plan: SongPlan, bars: list[_Bar], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    beat = 60.0 / plan.tempo
    dry = np.zeros((n, 1))
    for bar in bars:
        if bar.index or not ROLES[bar.section].vocals:
            continue
        for first, notes in _melody(plan, bar.section, bar.length):
            begin = bar.start + (first * 4 + notes[0].start) * beat - BREATH_S
            if begin >= n / sr:
                break
            timed = [(BREATH_S + (note.start - notes[0].start) * beat, note.length * beat,
                      note.midi, note.vowel) for note in notes]
            _add(dry, _sing(timed, plan, sr, rng), int(round(begin * sr)))
    voice = dry[:, 0]
    echo = np.zeros((n, 2))
    source = _filter(voice, "lowpass", 4000, sr)
    for channel, delay in enumerate((0.75 * beat, beat)):  # dotted eighth left, quarter right
        for tap in range(1, 4):
            lag = int(round(tap * delay * sr))
            echo[lag:, channel] += 0.4 ** (tap - 1) * source[:max(n - lag, 0)]
    return VOCAL_LEVEL * (voice[:, None] + 0.1 * echo + 0.2 * _reverb(voice, sr, rng, 1.8))
