"""The band: drums, bass and the chord instruments (the 'other' stem)."""

from __future__ import annotations

import numpy as np

from musicsep.toy.dsp import _add, _envelope, _filter, _frame_times, _pan, _read, _reverb, _saw_amps, _tables, _tone
from musicsep.toy.song import (
    BASS_LOW,
    BASS_PATTERNS,
    BASS_TIMBRES,
    CHORD_LEVELS,
    CHORD_LOW,
    COMP_PATTERNS,
    DRUM_GAINS,
    DRUM_PANS,
    DRUM_PATTERNS,
    EPIANO_PARTIALS,
    KICK_VARIANTS,
    METAL_HZ,
    ORGAN_DRAWBARS,
    PAD_DETUNE_CENTS,
    ROLES,
    SongPlan,
    _above,
    _Bar,
    _chord,
    _hz,
    _in_scale,
    _step_s,
)


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
