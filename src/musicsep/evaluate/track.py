"""BSS Eval v4 scores of one track (museval, as SiSEC 2018 computed them).

``evaluate_track`` is museval's ``eval_mus_track`` without the musdb track
object: the same grouping of targets (the four sources evaluated together;
vocals and accompaniment evaluated as their own pair when both are
estimated), the same calls (``museval.evaluate`` with 1 s windows and hops,
``TrackStore``), the same JSON. What it adds is refusal of what museval would
silently pad, truncate or crash on, and a report of silent frames.

Arrays are ``(samples, channels)``, as museval and musdb use them (not the
``(channels, samples)`` of the shards). musdb hands museval float64 audio;
the arrays are passed to museval as they are given, so give float64 to
reproduce published scores to the last digit (the CLI does).

Silent frames. museval scores a window only when every reference and every
estimate of its evaluation group has a non-zero sample in it; otherwise all
four metrics of every target of the group are NaN for that window (a silent
vocals window thus also blanks drums, bass and other in that window). Those
NaN frames are written to the JSON (as museval and the published SiSEC 2018
files do) and are ignored when aggregating: the median over frames is
pandas' NaN-skipping median, as in museval's ``EvalStore``. museval itself
raises ``ValueError`` when a reference or an estimate is zero over the
*whole* track; here that case follows the same window rule (every window of
the group is NaN) with a warning, so an instrumental track does not stop an
evaluation. Also museval's: a frame whose estimate equals its reference
exactly has SDR +inf, which ``TrackStore`` stores as NaN (warned as well).

Aggregation over tracks and systems is :mod:`musicsep.evaluate.aggregate`'s.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from musicsep import ACCOMPANIMENT, SOURCES, TARGETS, MusicsepError
from musicsep.data.shard import Shard
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")


def accompaniment(sources: Mapping[str, np.ndarray]) -> np.ndarray:
    """bass + drums + other, summed as musdb mixes its ``accompaniment`` target
    (same order, same dtype), so the reference is bit-identical to musdb's."""
    return np.sum(np.array([sources[name] for name in ACCOMPANIMENT]), axis=0)


def _zero_samples(audio: np.ndarray) -> np.ndarray:
    """Per sample, whether museval counts it as silent (its
    ``_any_source_silent``: the sum over channels is zero); a window is silent
    when all its samples are."""
    return np.sum(audio, axis=tuple(range(1, audio.ndim))) == 0


def _check(references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray],
           targets: Sequence[str] | None, where: str, files: Mapping[str, str | os.PathLike]) -> list[str]:
    def est(target):
        return f"estimate '{target}'" + (f" ({files[target]})" if target in files else "")

    unknown = sorted(set(estimates) - set(TARGETS))
    if unknown:
        raise MusicsepError(f"{where}: unknown target(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(TARGETS)}")
    if targets is None:
        targets = [t for t in TARGETS if t in estimates]
    else:
        bad = [t for t in targets if t not in TARGETS]
        if bad:
            raise MusicsepError(f"{where}: unknown target(s) {', '.join(map(repr, bad))}; "
                                f"expected some of {', '.join(TARGETS)}")
        missing = [t for t in targets if t not in estimates]
        if missing:
            raise MusicsepError(f"{where}: missing estimate for target(s) {', '.join(map(repr, missing))}")
        targets = [t for t in TARGETS if t in targets]
    missing = [t for t in targets if t not in references]
    if missing:
        raise MusicsepError(f"{where}: no reference for target(s) {', '.join(map(repr, missing))}")
    if not targets:
        raise MusicsepError(f"{where}: no estimates to evaluate")
    if len(targets) < 2:
        raise MusicsepError(f"{where}: BSS Eval needs at least two estimated targets "
                            f"(museval scores nothing for '{targets[0]}' alone)")
    shape = None
    for target in targets:
        ref = references[target]
        if ref.ndim != 2:
            raise MusicsepError(f"{where}: reference '{target}' has shape {ref.shape}; "
                                f"expected (samples, channels)")
        if shape is None:
            shape, first = ref.shape, target
        elif ref.shape != shape:
            raise MusicsepError(f"{where}: references differ in shape: '{first}' {shape}, '{target}' {ref.shape}")
    for target in targets:
        e = np.asarray(estimates[target])
        if e.ndim != 2:
            raise MusicsepError(f"{where}: {est(target)} has shape {e.shape}; expected (samples, channels) "
                                f"like its reference {shape}")
        if e.shape == shape[::-1] and e.shape != shape:
            raise MusicsepError(f"{where}: {est(target)} has shape {e.shape}, the reference {shape}: "
                                f"estimates are (samples, channels), not (channels, samples)")
        if e.shape[0] != shape[0]:
            raise MusicsepError(f"{where}: {est(target)} has {e.shape[0]} samples, its reference "
                                f"{shape[0]}: lengths must match exactly (museval would pad or truncate)")
        if e.shape[1] != shape[1]:
            raise MusicsepError(f"{where}: {est(target)} has {e.shape[1]} channel(s), its reference {shape[1]}")
        if not np.isfinite(e).all():
            raise MusicsepError(f"{where}: {est(target)} contains NaN or Inf")
    return targets


def evaluate_track(references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray],
                   rate: int, track_name: str, out_json: str | os.PathLike,
                   win: float = 1.0, hop: float = 1.0, *, targets: Sequence[str] | None = None,
                   estimate_files: Mapping[str, str | os.PathLike] | None = None) -> dict:
    """Score a track's estimates with BSS Eval v4 as museval's
    ``eval_mus_track`` does and write museval's JSON to ``out_json``.

    ``references`` and ``estimates`` map target names (vocals, drums, bass,
    other, accompaniment) to arrays of shape ``(samples, channels)``;
    ``targets`` (default: every estimated one) are evaluated, each needing a
    reference. Lengths and channel counts must match the references exactly.
    ``win`` and ``hop`` are in seconds (SiSEC 2018: 1 and 1).
    ``estimate_files`` names the file of each estimate in error messages.

    Returns ``track``, ``json``, ``targets`` (in the JSON's order),
    ``frames`` (windows per target), ``scores`` ({target: {metric: median
    over frames}}, NaN frames ignored), ``nan_frames`` ({target: count}),
    ``silent`` ({reference or estimate label: silent windows}) and
    ``warnings`` (the messages also logged).
    """
    import museval
    from museval.aggregate import TrackStore
    from museval.metrics import Framing

    out_json = Path(out_json)
    where = f"track '{track_name}' ({out_json})"
    targets = _check(references, estimates, targets, where, estimate_files or {})

    # museval's eval_mus_track: vocals + accompaniment are their own scenario;
    # the other targets (vocals included) are evaluated together.
    has_acc = "vocals" in targets and "accompaniment" in targets
    groups = []
    rest = [t for t in targets if t != "accompaniment"] if has_acc else list(targets)
    if len(rest) >= 2:
        groups.append((rest, [t for t in rest if not (has_acc and t == "vocals")]))
    elif not has_acc:  # unreachable after _check; kept to mirror museval
        raise MusicsepError(f"{where}: BSS Eval needs at least two estimated targets")
    if has_acc:
        groups.append((["vocals", "accompaniment"], ["vocals", "accompaniment"]))

    window, step = int(win * rate), int(hop * rate)
    nsampl = references[targets[0]].shape[0]
    nwin = Framing(window, step, nsampl).nwin
    data = TrackStore(win=win, hop=hop, track_name=track_name)
    silent: dict[str, list] = {}
    wholly: list[str] = []
    perfect: list[str] = []
    for members, kept in groups:
        refs = [references[t] for t in members]
        ests = [estimates[t] for t in members]
        # which windows museval will leave NaN, and why (for the report only)
        whole = []
        for kind, target, audio in ([("reference", t, a) for t, a in zip(members, refs)]
                                    + [("estimate", t, a) for t, a in zip(members, ests)]):
            zero = _zero_samples(audio)
            if zero.all():
                whole.append(f"{kind} '{target}'")
            count = int(sum(zero[w].all() for w in Framing(window, step, nsampl)))
            if count:
                entry = silent.setdefault(f"{kind} '{target}'", [count, []])
                entry[1] += [t for t in members if t != target and t not in entry[1]]
        if whole:
            # museval.metrics.validate raises here; apply its window rule instead
            wholly.append(f"{', '.join(whole)} silent over the whole track: every frame of "
                          f"{', '.join(members)} is NaN (museval itself would raise ValueError)")
            nan = np.full((len(members), nwin), np.nan)
            SDR = ISR = SIR = SAR = nan
        else:
            SDR, ISR, SIR, SAR = museval.evaluate(refs, ests, win=window, hop=step)
        for i, target in enumerate(members):
            if target in kept and np.isinf(SDR[i]).any():
                perfect.append(f"estimate '{target}' equals its reference in {int(np.isinf(SDR[i]).sum())} "
                               f"of {nwin} frames: its SDR there is +inf, which museval stores as NaN")
            if target in kept:
                data.add_target(target_name=target, values={
                    "SDR": SDR[i].tolist(), "SIR": SIR[i].tolist(),
                    "ISR": ISR[i].tolist(), "SAR": SAR[i].tolist()})
    warnings_ = [f"{track_name}: {key} is silent: museval's SDR is NaN for its frames ({count} of {nwin}, "
                 f"and the same frames of {', '.join(others)}, evaluated with it)"
                 for key, (count, others) in silent.items()]
    warnings_ += [f"{track_name}: {msg}" for msg in wholly + perfect]
    for msg in warnings_:
        log.warning("%s", msg)
    data.validate()
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(data.json)

    scores, nan_frames = {}, {}
    for entry in data.scores["targets"]:
        values = {m: np.array([float(f["metrics"][m]) for f in entry["frames"]]) for m in METRICS}
        nan_frames[entry["name"]] = int(np.isnan(values["SDR"]).sum())
        scores[entry["name"]] = {m: (float(np.nanmedian(v)) if not np.isnan(v).all() else math.nan)
                                 for m, v in values.items()}
    log.info("%s: %s -> %s", track_name,
             ", ".join(f"{t} SDR {s['SDR']:.2f}" for t, s in scores.items()), out_json)
    return {"track": track_name, "json": str(out_json), "targets": [e["name"] for e in data.scores["targets"]],
            "frames": nwin, "scores": scores, "nan_frames": nan_frames,
            "silent": {key: count for key, (count, _) in silent.items()},
            "warnings": warnings_}


def read_shard_references(shard: str | os.PathLike) -> tuple[dict[str, np.ndarray], int, str]:
    """References of a shard as float64 ``(samples, channels)`` arrays (the
    four sources and musdb's accompaniment), its rate and its track name."""
    with Shard(shard) as sh:
        sources, rate, name = sh.sources(), sh.sample_rate, sh.name
    # musdb evaluates in float64
    refs = {s: audio.T.astype(np.float64) for s, audio in zip(SOURCES, sources)}
    refs["accompaniment"] = accompaniment(refs)
    return refs, rate, name


def read_estimates(folder: str | os.PathLike, rate: int, targets: Sequence[str] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """``{target}.wav`` estimates in ``folder`` (all of :data:`TARGETS` that
    exist, or exactly ``targets``), read as float32 and returned as float64
    ``(samples, channels)`` arrays, with their paths. Each must be at
    ``rate``."""
    import soundfile

    folder = Path(folder)
    if not folder.is_dir():
        raise MusicsepError(f"{folder}: estimates folder does not exist")
    wanted = list(targets) if targets else list(TARGETS)
    bad = [t for t in wanted if t not in TARGETS]
    if bad:
        raise MusicsepError(f"unknown target(s) {', '.join(map(repr, bad))}; expected some of {', '.join(TARGETS)}")
    estimates, files = {}, {}
    for target in wanted:
        path = folder / f"{target}.wav"
        if not path.exists():
            if targets:
                raise MusicsepError(f"{path}: missing estimate for target '{target}'")
            continue
        try:
            audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as err:
            raise MusicsepError(f"{path}: not a readable WAV file ({err})") from None
        if file_rate != rate:
            raise MusicsepError(f"{path}: sample rate {file_rate} Hz, the references' {rate} Hz")
        estimates[target], files[target] = audio.astype(np.float64), path
    if not estimates:
        raise MusicsepError(f"{folder}: no estimates ({', '.join(t + '.wav' for t in TARGETS)})")
    return estimates, files


def evaluate_shard(shard: str | os.PathLike, estimates_dir: str | os.PathLike, out_json: str | os.PathLike,
                   name: str | None = None, targets: Sequence[str] | None = None) -> dict:
    """Evaluate the ``{target}.wav`` estimates in ``estimates_dir`` against a
    shard's sources (see :func:`evaluate_track`)."""
    refs, rate, shard_name = read_shard_references(shard)
    estimates, files = read_estimates(estimates_dir, rate, targets)
    return evaluate_track(refs, estimates, rate, name or shard_name, out_json,
                          targets=targets, estimate_files=files)
