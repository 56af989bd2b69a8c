"""A deterministic numpy synthesizer of short four-stem songs (the toy MUSDB's audio).

:func:`plan_song` draws everything musical from the seed: tempo, key and mode, a
chord progression, an arrangement of sections (which parts play where) and a
style per instrument. :func:`render_song` turns a plan into stereo stems:

* drums: one-shot sounds synthesised once per song (swept-sine kick with a click,
  snare body plus band-passed noise, metallic hats, a crash) placed on a 16-step
  grid from a style pattern, with velocity humanisation, fills and crashes;
* bass: a monophonic line on the chord roots (root, fifth, octave and approach
  notes by style) with a plucked, decaying-brightness saw, square or sub timbre;
* other: the chords as a detuned-saw pad, an electric piano, an organ or an arpeggio;
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

from dataclasses import dataclass

import numpy as np
from scipy import fft, signal

from musicsep import SOURCES  # noqa: F401  (the stem order of render_song)

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10), "mixolydian": (0, 2, 4, 5, 7, 9, 10)}
MODE_WEIGHTS = (0.4, 0.4, 0.1, 0.1)
PROGRESSIONS: dict[str, tuple[tuple[int, ...], ...]] = {  # scale degrees, 0 = tonic
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4), (5, 3, 0, 4), (0, 2, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (5, 6, 0, 0)),
    "dorian": ((0, 3, 0, 3), (0, 6, 3, 0), (0, 1, 0, 3)),
    "mixolydian": ((0, 6, 3, 0), (0, 3, 6, 3), (0, 4, 6, 3))}
ARRANGEMENTS = (
    ("intro", "verse", "chorus", "verse", "chorus", "break", "chorus", "outro"),
    ("intro", "verse", "chorus", "bridge", "chorus", "outro"),
    ("intro", "chorus", "verse", "break", "verse", "chorus", "outro"))


@dataclass(frozen=True)
class _Role:
    drums: str         # "", "light", "half", "normal" or "full"
    bass: str          # "pattern" (the song's bass style) or "sustain"
    vocals: bool
    chord_offset: int  # where in the progression the section starts


ROLES: dict[str, _Role] = {
    "intro": _Role("light", "pattern", False, 0), "verse": _Role("normal", "pattern", True, 0),
    "chorus": _Role("full", "pattern", True, 0), "bridge": _Role("half", "sustain", True, 2),
    "break": _Role("", "sustain", True, 2), "outro": _Role("normal", "pattern", False, 0)}
SECTION_IDS = {name: i for i, name in enumerate(ROLES)}

DRUM_STYLES: dict[str, tuple[float, float, float]] = {  # tempo range, swing
    "rock": (92, 146, 0.0), "four_on_floor": (114, 130, 0.0), "half_time": (128, 150, 0.0),
    "hiphop": (78, 98, 0.3), "breakbeat": (96, 138, 0.12)}
EIGHTHS = tuple((s, 0.8 if s % 8 == 0 else 0.6) for s in range(0, 16, 2))
SIXTEENTHS = tuple((s, 0.7 if s % 4 == 0 else 0.4) for s in range(16))
DRUM_PATTERNS: dict[str, dict[str, tuple[tuple[int, float], ...]]] = {  # (16th step, velocity)
    "rock": {"kick": ((0, 1.0), (8, 0.9), (10, 0.7)), "snare": ((4, 1.0), (12, 1.0)), "hat": EIGHTHS},
    "four_on_floor": {"kick": ((0, 1.0), (4, 1.0), (8, 1.0), (12, 1.0)),
                      "snare": ((4, 0.8), (12, 0.8)), "open": ((2, 0.6), (6, 0.6), (10, 0.6), (14, 0.6)),
                      "hat": tuple(h for h in SIXTEENTHS if h[0] % 4 != 2)},
    "half_time": {"kick": ((0, 1.0), (7, 0.6), (10, 0.8)), "snare": ((8, 1.0),), "hat": EIGHTHS},
    "hiphop": {"kick": ((0, 1.0), (7, 0.7), (10, 0.9)), "snare": ((4, 1.0), (12, 1.0)), "hat": SIXTEENTHS},
    "breakbeat": {"kick": ((0, 1.0), (10, 0.9), (11, 0.6)),
                  "snare": ((4, 1.0), (7, 0.3), (9, 0.3), (12, 1.0), (15, 0.35)), "hat": SIXTEENTHS}}
KICK_VARIANTS = ((), (3,), (6,), (14,), (7, 15))
DRUM_GAINS = {"kick": 1.0, "snare": 0.75, "hat": 0.22, "open": 0.25, "crash": 0.3}
DRUM_PANS = {"kick": 0.0, "snare": -0.08, "hat": 0.35, "open": 0.35}
METAL_HZ = (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)  # the TR-808 cymbal oscillators

BASS_FOR_DRUMS = {"rock": ("eighths", "root_fifth"), "four_on_floor": ("offbeat", "eighths"),
                  "half_time": ("syncopated", "halftime"), "hiphop": ("syncopated", "halftime"),
                  "breakbeat": ("syncopated", "root_fifth")}
BASS_PATTERNS: dict[str, tuple[tuple[int, int, str], ...]] = {  # (step, steps, R/5/8/A)
    "eighths": tuple((s, 2, "8" if s == 14 else "R") for s in range(0, 16, 2)),
    "root_fifth": ((0, 4, "R"), (4, 4, "5"), (8, 4, "8"), (12, 2, "5"), (14, 2, "A")),
    "offbeat": ((2, 2, "R"), (6, 2, "R"), (10, 2, "8"), (14, 2, "R")),
    "syncopated": ((0, 3, "R"), (3, 3, "R"), (6, 2, "8"), (10, 2, "5"), (12, 2, "R"), (14, 2, "A")),
    "halftime": ((0, 6, "R"), (6, 2, "R"), (10, 4, "5"), (14, 2, "A")),
    "sustain": ((0, 14, "R"), (14, 2, "A"))}
BASS_TIMBRES = {  # brightness at the attack and at rest (x f0), its decay (s), odd harmonics only, level
    "saw": (9.0, 1.8, 0.12, False, 0.36), "square": (6.0, 2.5, 0.2, True, 0.39),
    "sub": (3.0, 1.1, 0.05, False, 0.5)}
BASS_LOW = 28      # E1: bass roots lie in E1..D#2
CHORD_LOW = 53     # F3: chord voicings lie in F3..E4
CHORD_LEVELS = {"pad": 0.13, "epiano": 0.19, "organ": 0.066, "arp": 0.22}
COMP_PATTERNS = (((0, 1.5), (1.5, 1.0), (2.5, 1.5)), ((0, 2.0), (2, 2.0)),  # (beat, beats)
                 ((0, 1.0), (1.5, 0.5), (2, 1.0), (3.5, 0.5)), ((0.5, 1.0), (2.5, 1.5)))
PAD_DETUNE_CENTS = ((-9.0, 4.0), (7.0, -5.0))  # two voices per channel, different per channel
ORGAN_DRAWBARS = (1.0, 0.8, 0.5, 0.4, 0, 0.25, 0, 0.2)
EPIANO_PARTIALS = (1.0, 0.45, 0.15, 0.2, 0.05, 0.03, 0.08)

VOWELS: dict[str, tuple[tuple[float, float], ...]] = {  # (formant Hz, bandwidth Hz), alto
    "a": ((800, 80), (1150, 90), (2800, 120), (3500, 130)),
    "e": ((400, 60), (1600, 80), (2700, 120), (3300, 150)),
    "i": ((350, 50), (1700, 100), (2700, 120), (3700, 150)),
    "o": ((450, 70), (800, 80), (2830, 100), (3500, 130)),
    "u": ((325, 50), (700, 60), (2530, 170), (3500, 180))}
VOWEL_WEIGHTS = (0.3, 0.2, 0.15, 0.25, 0.1)
RHYTHM_CELLS = (  # one bar of a sung phrase: (onset, length) in eighths
    ((0, 2), (2, 2), (4, 2), (6, 2)), ((0, 3), (3, 1), (4, 4)), ((0, 1), (1, 1), (2, 2), (4, 3), (7, 1)),
    ((1, 1), (2, 1), (3, 3), (6, 2)), ((0, 2), (2, 1), (3, 1), (4, 4)), ((0, 4), (4, 2), (6, 2)),
    ((0, 1), (1, 1), (2, 1), (3, 1), (4, 2), (6, 2)))
ENDING_CELLS = (((0, 2), (2, 3)), ((0, 4),), ((0, 1), (1, 1), (2, 3)), ((0, 3), (3, 2)))  # then rest
VOCAL_SPAN = 16            # semitones above the song's lowest sung note
VOICE_HARMONICS = 48
VOICE_SLOPE = 1.0          # source amplitude ~ k**-slope (glottal -12 dB/oct, lips +6 dB/oct)
VOICE_CUTOFF = 7500.0
GLIDE_S, SCOOP = 0.05, 1.5                          # portamento time constant; semitones scooped
VIBRATO_HZ, VIBRATO_DEPTH = 5.5, 0.4                # depth in semitones (+-40 cents)
VIBRATO_DELAY_S, VIBRATO_RAMP_S = 0.22, 0.35
DRIFT_HZ, DRIFT_DEPTH = 2.0, 0.08                   # slow random pitch wander, semitones rms
BREATH_S, LEGATO_FLOOR = 0.3, 0.35

HOP = 256                  # control frame of time-varying spectra, samples
TABLE_SIZE = 2048
MAX_HARMONICS = 256
VOCAL_LEVEL = 0.26
MIX_PEAK = 0.85


@dataclass(frozen=True)
class SongPlan:
    seed: int
    tempo: float                             # BPM
    key: str                                 # e.g. "F# minor"
    root_midi: int                           # tonic, MIDI 48..59
    mode: str                                # a key of MODES
    progression: tuple[str, ...]             # roman numerals relative to the mode, one per bar
    sections: tuple[tuple[str, int], ...]    # (section, bars); the middle repeats to fill a song
    drum_style: str                          # a key of DRUM_PATTERNS
    drum_variant: int                        # index into KICK_VARIANTS (extra kicks)
    swing: float                             # delay of odd 16ths, fraction of a 16th
    bass_style: str                          # a key of BASS_PATTERNS
    bass_timbre: str                         # a key of BASS_TIMBRES
    chord_timbre: str                        # a key of CHORD_LEVELS
    comp_pattern: int                        # index into COMP_PATTERNS (electric piano)
    sevenths: bool                           # four-note chords
    pad_cutoff: float                        # low-pass of the pad and arpeggio, Hz
    vocal_low: int                           # lowest sung MIDI note


@dataclass(frozen=True)
class _Bar:
    start: float   # seconds
    section: str
    index: int     # bar number within its section
    length: int    # bars in the section
    degree: int    # the bar's chord, a scale degree


def plan_song(seed: int) -> SongPlan:
    """Draw a song's tempo, key, progression, arrangement and styles from ``seed``."""
    rng = np.random.default_rng(seed)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    drum_style = pick(tuple(DRUM_STYLES))
    low, high, swing = DRUM_STYLES[drum_style]
    tempo = round(float(rng.uniform(low, high)), 1)
    mode = str(rng.choice(tuple(MODES), p=MODE_WEIGHTS))
    tonic = int(rng.integers(12))
    degrees = pick(PROGRESSIONS[mode])
    intro = 2 if 240.0 / tempo <= 2.0 else 1
    lengths = {"intro": intro, "verse": pick((4, 8)), "chorus": pick((4, 8)), "bridge": 4,
               "break": 2, "outro": 2}
    return SongPlan(
        seed=seed, tempo=tempo, key=f"{NOTE_NAMES[tonic]} {mode}", root_midi=48 + tonic, mode=mode,
        progression=tuple(_numeral(mode, d) for d in degrees),
        sections=tuple((name, lengths[name]) for name in pick(ARRANGEMENTS)),
        drum_style=drum_style, drum_variant=int(rng.integers(len(KICK_VARIANTS))), swing=swing,
        bass_style=pick(BASS_FOR_DRUMS[drum_style]), bass_timbre=pick(tuple(BASS_TIMBRES)),
        chord_timbre=pick(tuple(CHORD_LEVELS)), comp_pattern=int(rng.integers(len(COMP_PATTERNS))),
        sevenths=bool(rng.random() < 0.4), pad_cutoff=float(round(rng.uniform(900, 3000))),
        vocal_low=int(rng.integers(55, 61)))


def render_song(plan: SongPlan, duration: float, sample_rate: int = 44100) -> np.ndarray:
    """Return float32 array of shape (4, n, 2) — stems in SOURCES order, n = round(duration*sample_rate), stereo."""
    n = int(round(duration * sample_rate))
    if n <= 0:
        return np.zeros((len(SOURCES), 0, 2), dtype=np.float32)
    bars = _timeline(plan, duration)
    stems = np.empty((len(SOURCES), n, 2))
    for k, part in enumerate((_drums, _bass, _other, _vocals)):
        stems[k] = part(plan, bars, n, sample_rate, np.random.default_rng([plan.seed, k]))
    t = np.arange(n) / sample_rate
    stems *= (np.clip(t / 0.01, 0, 1) * np.clip((duration - t) / min(0.5, duration / 4), 0, 1))[:, None]
    peak = np.abs(stems.sum(axis=0)).max(initial=0.0)
    if peak > 0:
        stems *= MIX_PEAK / peak
    return stems.astype(np.float32)


# -- harmony and time ---------------------------------------------------------------

def _numeral(mode: str, degree: int) -> str:
    scale = MODES[mode]
    third = (scale[(degree + 2) % 7] - scale[degree]) % 12
    fifth = (scale[(degree + 4) % 7] - scale[degree]) % 12
    return (ROMAN[degree] if third == 4 else ROMAN[degree].lower()) + ("°" if fifth == 6 else "")


def _degrees(plan: SongPlan) -> list[int]:
    return [ROMAN.index(numeral.rstrip("°").upper()) for numeral in plan.progression]


def _chord(plan: SongPlan, degree: int, size: int = 3) -> list[int]:
    """Pitch classes of the diatonic chord on ``degree``, root first."""
    scale = MODES[plan.mode]
    return [(plan.root_midi + scale[(degree + 2 * j) % 7]) % 12 for j in range(size)]


def _in_scale(plan: SongPlan, midi: int) -> bool:
    return (midi - plan.root_midi) % 12 in MODES[plan.mode]


def _above(pc: int, low: int) -> int:
    return low + (pc - low) % 12


def _hz(midi: float | np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def _timeline(plan: SongPlan, duration: float) -> list[_Bar]:
    """The song's bars up to one past ``duration``, repeating the sections between
    the intro and the outro until the song is long enough."""
    bar_s = 240.0 / plan.tempo
    needed = int(np.ceil(duration / bar_s)) + 1
    sections = list(plan.sections)
    while sum(length for _, length in sections) < needed:
        sections[-1:-1] = plan.sections[1:-1]
    degrees = _degrees(plan)
    slots = [(name, i, length) for name, length in sections for i in range(length)][:needed]
    return [_Bar(k * bar_s, name, i, length, degrees[(i + ROLES[name].chord_offset) % len(degrees)])
            for k, (name, i, length) in enumerate(slots)]


def _step_s(plan: SongPlan, step: float) -> float:
    """Seconds from the bar start to 16th ``step``, with swing on odd steps."""
    return (step + plan.swing * (int(step) % 2)) * 15.0 / plan.tempo


# -- signal helpers -------------------------------------------------------------------

def _filter(x: np.ndarray, kind: str, hz: float | tuple[float, float], sr: int, order: int = 2) -> np.ndarray:
    edges = np.minimum(np.asarray(hz, dtype=float), 0.45 * sr)
    return signal.sosfilt(signal.butter(order, edges, kind, fs=sr, output="sos"), x, axis=-1)


def _envelope(m: int, sr: int, attack: float, release: float, decay: float = np.inf) -> np.ndarray:
    t = np.arange(m) / sr
    return np.clip(t / attack, 0, 1) * np.clip((m / sr - t) / release, 0, 1) * np.exp(-t / decay)


def _pan(x: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan of mono ``x`` to stereo, ``position`` in -1 (left) .. 1 (right)."""
    angle = (position + 1) * np.pi / 4
    return x[:, None] * np.array([np.cos(angle), np.sin(angle)])


def _add(out: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` (mono or stereo) into ``out`` (n, 2) from sample ``start``, cropped."""
    begin, end = max(start, 0), min(start + len(x), len(out))
    if begin < end:
        seg = x[begin - start:end - start]
        out[begin:end] += seg[:, None] if seg.ndim == 1 else seg


def _tables(amps: np.ndarray) -> np.ndarray:
    """Single-cycle tables, one per row of ``amps`` (amplitudes of harmonics 1.., sine
    phase), each with its first sample repeated at the end for interpolation."""
    amps = np.atleast_2d(amps)[:, :TABLE_SIZE // 2 - 1]
    spectrum = np.zeros((amps.shape[0], TABLE_SIZE // 2 + 1), dtype=complex)
    spectrum[:, 1:amps.shape[1] + 1] = -0.5j * TABLE_SIZE * amps
    tables = np.fft.irfft(spectrum, TABLE_SIZE, axis=1)
    return np.concatenate([tables, tables[:, :1]], axis=1)


def _read(tables: np.ndarray, phase: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
    """Read ``tables`` at ``phase`` (cycles, >= 0), crossfading rows at fractional row ``frame``."""
    x = phase * TABLE_SIZE
    i = x.astype(np.int64)
    frac = x - i
    i &= TABLE_SIZE - 1
    flat = tables.ravel()
    if frame is None:
        a = flat[i]
        return a + frac * (flat[i + 1] - a)
    row = np.minimum(frame.astype(np.int64), len(tables) - 1)
    w = frame - row
    i0 = i + row * (TABLE_SIZE + 1)
    i1 = i + np.minimum(row + 1, len(tables) - 1) * (TABLE_SIZE + 1)
    a, b = flat[i0], flat[i1]
    a += frac * (flat[i0 + 1] - a)
    b += frac * (flat[i1 + 1] - b)
    return a + w * (b - a)


def _tone(hz: float, m: int, sr: int, amps: np.ndarray, phase0: float = 0.0) -> np.ndarray:
    """``m`` samples of a tone: ``amps`` is one spectrum, or one per HOP-sample frame."""
    t = np.arange(m)
    frame = t / HOP if amps.ndim == 2 else None
    return _read(_tables(amps), phase0 + hz * t / sr, frame)


def _saw_amps(hz: float, cutoff: float | np.ndarray, sr: int, odd: bool = False) -> np.ndarray:
    """A saw's (or square's) harmonics through a 24 dB/octave low-pass at ``cutoff``."""
    k = np.arange(1, MAX_HARMONICS + 1)
    amps = (1.0 / k) / np.sqrt(1 + (hz * k / cutoff) ** 4)
    if odd:
        amps[..., 1::2] = 0
    return amps * (hz * k < 0.45 * sr)


def _frame_times(m: int, sr: int) -> np.ndarray:
    return np.arange(m // HOP + 2) * HOP / sr


def _reverb(x: np.ndarray, sr: int, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A stereo reverb tail of mono ``x``: decaying noise, different per channel
    (convolved in float32, which is plenty for a tail and four times faster)."""
    t = np.arange(int(seconds * sr)) / sr
    ir = _filter(rng.standard_normal((2, len(t))), "lowpass", 5000, sr) * np.exp(-6.9 * t / seconds)
    ir[:, :int(0.015 * sr)] = 0
    ir /= np.sqrt((ir ** 2).sum(axis=1, keepdims=True))
    size = fft.next_fast_len(len(x) + len(t), real=True)
    spectra = fft.rfft(ir.astype(np.float32), size, axis=1) * fft.rfft(x.astype(np.float32), size)
    return fft.irfft(spectra, size, axis=1)[:, :len(x)].T


# -- drums ----------------------------------------------------------------------------

def _drum_kit(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The song's drum one-shots, each peaking at 1 (the crash is stereo)."""
    def times(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    t = times(0.5)
    sweep = 45 + 105 * np.exp(-t / 0.035)
    click = _filter(rng.standard_normal(len(t)), "lowpass", 4000, sr) * np.exp(-t / 0.004)
    kick = np.tanh(1.6 * (np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / 0.22) + 0.4 * click))
    kick = _filter(kick, "highpass", 30, sr)  # no DC from the sweep's first half-cycle
    t = times(0.35)
    body = (np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * np.exp(-t / 0.05)
    rattle = _filter(rng.standard_normal(len(t)), "bandpass", (1500, 9000), sr) * np.exp(-t / 0.11)
    snare = 0.6 * body + 2.0 * rattle
    t = times(2.5)
    metal = np.sign(np.sin(2 * np.pi * np.outer(METAL_HZ, t))).sum(axis=0) / len(METAL_HZ)
    hiss = rng.standard_normal((2, len(t)))
    cymbal = 0.6 * hiss[0] + 0.4 * metal
    n_hat, n_open = int(0.12 * sr), int(0.6 * sr)
    kit = {"kick": kick, "snare": snare,
           "hat": _filter(cymbal[:n_hat], "highpass", 7000, sr, 4) * np.exp(-t[:n_hat] / 0.022),
           "open": _filter(cymbal[:n_open], "highpass", 6000, sr, 4) * np.exp(-t[:n_open] / 0.18),
           "crash": (_filter(hiss + 0.5 * metal, "highpass", 3500, sr, 4) * np.exp(-t / 0.8)).T}
    ramp = np.clip(np.arange(len(t)) / (0.001 * sr), 0, 1)  # 1 ms onset, no click
    return {name: (x.T * ramp[:len(x)]).T / np.abs(x).max() for name, x in kit.items()}


def _drum_bar(plan: SongPlan, level: str, crash: bool, fill: bool,
              odd_bar: bool) -> list[tuple[str, int, float]]:
    """(part, step, velocity) hits of one bar at an intensity ``level``."""
    pattern = DRUM_PATTERNS[plan.drum_style]
    if level == "half":
        hits = [("kick", 0, 1.0), ("snare", 8, 0.7)] + [("hat", s, 0.5) for s in (0, 4, 8, 12)]
    else:
        kicks = pattern["kick"] + tuple((s, 0.6) for s in KICK_VARIANTS[plan.drum_variant])
        hits = [("kick", s, v) for s, v in dict(kicks).items()]
        hits += [("hat", s, v * (0.7 if level == "light" else 1.0)) for s, v in pattern["hat"]]
        hits += [("open", s, v) for s, v in pattern.get("open", ())]
        if level != "light":
            hits += [("snare", s, v) for s, v in pattern["snare"]]
        if level == "full" and odd_bar and "open" not in pattern:
            hits = [h for h in hits if h[1] != 14 or h[0] != "hat"] + [("open", 14, 0.6)]
    if fill:
        hits = [h for h in hits if h[1] < 12 or h[0] == "hat"]
        hits += [("snare", s, v) for s, v in zip((12, 13, 14, 15), (0.45, 0.55, 0.7, 0.9))]
    if crash:
        hits = [h for h in hits if h[1] != 0 or h[0] != "hat"] + [("crash", 0, 1.0)]
    return hits


def _drums(plan: SongPlan, bars: list[_Bar], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    kit = _drum_kit(sr, rng)
    out = np.zeros((n, 2))
    for k, bar in enumerate(bars):
        level = ROLES[bar.section].drums
        if not level:
            continue
        after = bars[k + 1] if k + 1 < len(bars) else bar
        before = bars[k - 1] if k else bar
        fill = after.section != bar.section and ROLES[after.section].drums in ("normal", "full")
        crash = bar.index == 0 and k > 0 and (level == "full" or not ROLES[before.section].drums
                                             or bar.section == "outro")
        for part, step, velocity in _drum_bar(plan, level, crash, fill, bar.index % 2 == 1):
            velocity *= 1 + 0.07 * rng.standard_normal()
            jitter = 0.0 if part == "kick" else 0.002 * rng.standard_normal()
            x = kit[part] * DRUM_GAINS[part] * float(np.clip(velocity, 0.2, 1.2))
            start = int(round((bar.start + _step_s(plan, step) + jitter) * sr))
            _add(out, x if x.ndim == 2 else _pan(x, DRUM_PANS[part]), start)
    send = _filter(out.sum(axis=1), "highpass", 300, sr)
    return out + 0.12 * _reverb(send, sr, rng, 0.7)


# -- bass -----------------------------------------------------------------------------

def _pluck(hz: float, m: int, sr: int, bright: float, dark: float, tau: float,
           odd: bool = False) -> np.ndarray:
    """A saw (or square) whose low-pass falls from ``bright`` to ``dark`` times f0 in ``tau`` s."""
    cutoff = hz * (dark + bright * np.exp(-_frame_times(m, sr) / tau))
    return _tone(hz, m, sr, _saw_amps(hz, cutoff[:, None], sr, odd))


def _approach(plan: SongPlan, target: int, current: int) -> int:
    """A scale note a step from ``target``, below it if possible, other than ``current``."""
    return next((m for m in (target - 1, target - 2, target + 1, target + 2)
                 if _in_scale(plan, m) and m != current), target)


def _bass(plan: SongPlan, bars: list[_Bar], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    notes: list[tuple[float, float, int, float]] = []  # (start s, end s, MIDI, velocity)
    for k, bar in enumerate(bars):
        style = plan.bass_style if ROLES[bar.section].bass == "pattern" else "sustain"
        chord = _chord(plan, bar.degree)
        root = _above(chord[0], BASS_LOW)
        following = _above(_chord(plan, bars[min(k + 1, len(bars) - 1)].degree)[0], BASS_LOW)
        for step, steps, kind in BASS_PATTERNS[style]:
            midi = {"R": root, "5": root + (chord[2] - chord[0]) % 12, "8": root + 12,
                    "A": _approach(plan, following, root)}[kind]
            velocity = (1.0 if step % 8 == 0 else 0.85) * (1 + 0.05 * rng.standard_normal())
            notes.append((bar.start + _step_s(plan, step), bar.start + _step_s(plan, step + steps),
                          midi, velocity))
    out = np.zeros((n, 2))
    for (start, end, midi, velocity), following in zip(notes, notes[1:] + [(np.inf,)]):
        m = int((min(end, following[0]) - start) * sr * 0.95)
        bright, dark, tau, odd, level = BASS_TIMBRES[plan.bass_timbre]
        x = _pluck(float(_hz(midi)), m, sr, bright, dark, tau, odd) * _envelope(m, sr, 0.004, 0.02, decay=1.2)
        _add(out, level * velocity * x, int(round(start * sr)))
    return _filter(out.T, "highpass", 20, sr).T  # the notes' first half-cycles leave a little DC


# -- chords ---------------------------------------------------------------------------

def _pad_note(hz: float, m: int, sr: int, cutoff: float, rng: np.random.Generator) -> np.ndarray:
    """Stereo detuned low-passed saws with a slow attack and release."""
    table = _tables(_saw_amps(hz, cutoff, sr))
    t = np.arange(m) / sr
    channels = [sum(_read(table, hz * 2 ** (c / 1200) * t + rng.random()) for c in cents)
                for cents in PAD_DETUNE_CENTS]
    return np.stack(channels, axis=1) * (_envelope(m, sr, 0.3, 0.6) / 2)[:, None]


def _organ_note(hz: float, m: int, sr: int) -> np.ndarray:
    k = np.arange(1, len(ORGAN_DRAWBARS) + 1)
    return _tone(hz, m, sr, np.asarray(ORGAN_DRAWBARS) * (hz * k < 0.45 * sr)) * _envelope(m, sr, 0.01, 0.05)


def _epiano_note(hz: float, m: int, sr: int) -> np.ndarray:
    """Additive electric piano: upper partials die away faster than the fundamental."""
    k = np.arange(1, len(EPIANO_PARTIALS) + 1)
    amps = np.asarray(EPIANO_PARTIALS) * np.exp(-np.outer(_frame_times(m, sr), 1.0 + 1.5 * k))
    return _tone(hz, m, sr, amps * (hz * k < 0.45 * sr)) * _envelope(m, sr, 0.002, 0.08, decay=1.5)


def _other(plan: SongPlan, bars: list[_Bar], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    beat = 60.0 / plan.tempo
    out, mono = np.zeros((n, 2)), np.zeros((n, 1))
    for bar in bars:
        start = int(round(bar.start * sr))
        if start >= n:
            break
        voicing = [_above(pc, CHORD_LOW) for pc in _chord(plan, bar.degree, 4 if plan.sevenths else 3)]
        if plan.chord_timbre in ("pad", "arp"):
            level = 1.0 if plan.chord_timbre == "pad" else 0.35
            for midi in voicing:
                _add(out, level * _pad_note(float(_hz(midi)), int((4 * beat + 0.6) * sr), sr,
                                            plan.pad_cutoff, rng), start)
        if plan.chord_timbre == "organ":
            for midi in voicing:
                _add(mono, _organ_note(float(_hz(midi)), int(4 * beat * sr), sr), start)
        if plan.chord_timbre == "epiano":
            for onset, beats in COMP_PATTERNS[plan.comp_pattern]:
                for midi in voicing:
                    x = _epiano_note(float(_hz(midi)), int((beats * beat + 0.08) * sr), sr)
                    _add(mono, x, start + int(round(onset * beat * sr)))
        if plan.chord_timbre == "arp":
            tones = voicing + [voicing[0] + 12]
            order = list(range(len(tones))) + list(range(len(tones) - 2, 0, -1))
            steps = 1 if plan.tempo < 110 else 2
            for j, step in enumerate(range(0, 16, steps)):
                m = int(1.8 * steps * 15 / plan.tempo * sr)
                x = _pluck(float(_hz(tones[order[j % len(order)]])), m, sr, 8.0, 1.5, 0.1)
                x *= 0.8 * _envelope(m, sr, 0.003, 0.05, decay=0.4)
                at = int(round((bar.start + _step_s(plan, step)) * sr))
                _add(out, _pan(x, 0.35 if j % 2 else -0.35), at)
    if plan.chord_timbre in ("organ", "epiano"):  # rotary speaker / tremolo: out of phase L and R
        lfo = 0.3 * np.sin(2 * np.pi * (6.0 if plan.chord_timbre == "organ" else 4.0) * np.arange(n) / sr)
        out += mono * np.stack([1 + lfo, 1 - lfo], axis=1)
    return CHORD_LEVELS[plan.chord_timbre] * (out + 0.2 * _reverb(out.sum(axis=1), sr, rng, 1.6))


# -- vocals ---------------------------------------------------------------------------

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
