"""A toy song's plan: tempo, key, mode, chords, arrangement and styles, drawn from its seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


GLIDE_S, SCOOP = 0.05, 1.5                          # portamento time constant; semitones scooped


VIBRATO_HZ, VIBRATO_DEPTH = 5.5, 0.4                # depth in semitones (+-40 cents)


VIBRATO_HZ, VIBRATO_DEPTH = 5.5, 0.4                # depth in semitones (+-40 cents)


VIBRATO_DELAY_S, VIBRATO_RAMP_S = 0.22, 0.35


VIBRATO_DELAY_S, VIBRATO_RAMP_S = 0.22, 0.35


DRIFT_HZ, DRIFT_DEPTH = 2.0, 0.08                   # slow random pitch wander, semitones rms


DRIFT_HZ, DRIFT_DEPTH = 2.0, 0.08                   # slow random pitch wander, semitones rms


BREATH_S, LEGATO_FLOOR = 0.3, 0.35


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
