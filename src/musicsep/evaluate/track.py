"""BSS Eval v4 scores of one track, as museval's ``eval_mus_track`` computes them.

``evaluate_track`` is ``eval_mus_track`` without the musdb track object: the
same grouping of targets (the sources evaluated together, MUSDB18's four or
any others a shard names; vocals and accompaniment evaluated as their own
pair when both are estimated), 1 s
windows and hops, the same JSON (museval's ``TrackStore``). The metrics come
from an engine: ``bsseval`` (default, :mod:`musicsep.evaluate.bsseval`: the
same numbers, many times faster) or ``museval`` (``museval.evaluate``, the
reference implementation itself). What this module adds is refusal of what
museval would crash on with a cryptic message, and a report of silent
frames.

Arrays are ``(samples, channels)``, as museval and musdb use them (not the
``(channels, samples)`` of the shards), and float64, as musdb hands them to
museval. Estimates longer or shorter than their reference are cut or
zero-padded at the end, as museval's ``evaluate`` does (with a warning); the
tail after the last whole window is not scored, as in museval.

Silent frames. museval scores a window only when every reference and every
estimate of its evaluation group has a non-zero sample in it; otherwise all
four metrics of every target of the group are NaN for that window (a silent
vocals window thus also blanks drums, bass and other in that window). Those
NaN frames are written to the JSON (as museval and the published SiSEC 2018
files do) and are ignored when aggregating: the median over frames is
pandas' NaN-skipping median, as in museval's ``EvalStore``. A reference or
estimate that is zero over the *whole* track cannot be scored (its
distortion filters would be undetermined): museval raises and so does
:func:`musicsep.evaluate.bsseval.bss_eval`; here every frame of its group is
NaN, with a warning, so that an instrumental track does not stop an
evaluation (the track then drops out of that target's median over tracks). Also museval's: a frame
whose estimate equals its reference exactly has SDR +inf, which
``TrackStore`` stores as NaN (warned as well).

Aggregation over tracks and systems is :mod:`musicsep.evaluate.aggregate`'s.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from musicsep import TARGETS, MusicsepError, accompaniment_sources, targets_of
from musicsep.data.shard import Shard
from musicsep.evaluate import ACCOMPANIMENT_TARGET, ENGINES, bsseval, ordered_targets
from musicsep.io import atomic_path, check_writable

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")


def accompaniment(sources: Mapping[str, np.ndarray]) -> np.ndarray:
    """The sources of :func:`musicsep.accompaniment_sources` summed in its
    order: MUSDB18's bass + drums + other as musdb mixes its
    ``accompaniment`` target (same order, same dtype), so the reference is
    bit-identical to musdb's."""
    names = accompaniment_sources(tuple(name for name in sources if name != ACCOMPANIMENT_TARGET))
    return np.sum(np.array([sources[name] for name in names]), axis=0)


def _check(references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray],
           targets: Sequence[str] | None, where: str, files: Mapping[str, str | os.PathLike]
           ) -> tuple[list[str], dict[str, np.ndarray]]:
    """The targets to score, in the tables' order (:func:`ordered_targets`:
    :data:`TARGETS` for MUSDB18's), and their estimates fitted to the
    references' length as museval fits them. A target is known when it is
    MUSDB18's or has a reference."""
    def est(target):
        return f"estimate '{target}'" + (f" ({files[target]})" if target in files else "")

    known = ordered_targets([*TARGETS, *references]) if set(references) <= set(TARGETS) \
        else ordered_targets(references)
    unknown = sorted(set(estimates) - set(known))
    if unknown:
        raise MusicsepError(f"{where}: unknown target(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(known)}")
    if targets is None:
        targets = ordered_targets(t for t in known if t in estimates)
    else:
        bad = [t for t in targets if t not in known]
        if bad:
            raise MusicsepError(f"{where}: unknown target(s) {', '.join(map(repr, bad))}; "
                                f"expected some of {', '.join(known)}")
        missing = [t for t in targets if t not in estimates]
        if missing:
            raise MusicsepError(f"{where}: missing estimate for target(s) {', '.join(map(repr, missing))}")
        targets = ordered_targets(t for t in known if t in targets)
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
    fitted = {}
    for target in targets:
        e = np.asarray(estimates[target])
        if e.ndim != 2:
            raise MusicsepError(f"{where}: {est(target)} has shape {e.shape}; expected (samples, channels) "
                                f"like its reference {shape}")
        if e.shape == shape[::-1] and e.shape != shape:
            raise MusicsepError(f"{where}: {est(target)} has shape {e.shape}, the reference {shape}: "
                                f"estimates are (samples, channels), not (channels, samples)")
        if e.shape[1] != shape[1]:
            raise MusicsepError(f"{where}: {est(target)} has {e.shape[1]} channel(s), its reference {shape[1]}")
        if not np.isfinite(e).all():
            raise MusicsepError(f"{where}: {est(target)} contains NaN or Inf")
        if e.shape[0] != shape[0]:
            log.warning("%s: %s has %d samples, its reference %d: %s at the end, as museval does", where,
                        est(target), e.shape[0], shape[0], "cut" if e.shape[0] > shape[0] else "zero-padded")
            e = bsseval.fit_length(e, shape[0])
        fitted[target] = e
    return targets, fitted


def museval_groups(targets: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """museval's evaluation groups of ``eval_mus_track`` for ``targets``
    (:func:`ordered_targets` order; any sources): ``(scored together, kept
    from that group)``. Vocals and accompaniment are their own pair when both
    are there; the other targets (vocals included) are scored together, and
    give all but vocals when the pair gives it."""
    has_acc = "vocals" in targets and "accompaniment" in targets
    groups = []
    rest = [t for t in targets if t != "accompaniment"] if has_acc else list(targets)
    if len(rest) >= 2:
        groups.append((rest, [t for t in rest if not (has_acc and t == "vocals")]))
    if has_acc:
        groups.append((["vocals", "accompaniment"], ["vocals", "accompaniment"]))
    return groups


def evaluate_track(references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray],
                   rate: int, track_name: str, out_json: str | os.PathLike,
                   win: float = 1.0, hop: float = 1.0, *, targets: Sequence[str] | None = None,
                   estimate_files: Mapping[str, str | os.PathLike] | None = None,
                   engine: str = "bsseval", threads: int = 1, device: str | None = None) -> dict:
    """Score a track's estimates with BSS Eval v4 as museval's
    ``eval_mus_track`` does and write museval's JSON to ``out_json``.

    ``references`` and ``estimates`` map target names (MUSDB18's vocals, drums,
    bass, other, accompaniment, or any sources and their accompaniment) to arrays of shape ``(samples, channels)``;
    ``targets`` (default: every estimated one) are evaluated, each needing a
    reference. Channel counts must match the references'.
    ``win`` and ``hop`` are in seconds (SiSEC 2018: 1 and 1).
    ``estimate_files`` names the file of each estimate in error messages.
    ``engine``: ``bsseval`` (ours, ``threads`` threads, or torch on
    ``device``) or ``museval``.

    Returns ``track``, ``json``, ``targets`` (in the JSON's order),
    ``frames`` (windows per target), ``scores`` ({target: {metric: median
    over frames}}, NaN frames ignored), ``nan_frames`` ({target: count}),
    ``silent`` ({reference or estimate label: silent windows}) and
    ``warnings`` (the messages also logged).
    """
    from museval.aggregate import TrackStore

    if engine not in ENGINES:
        raise MusicsepError(f"unknown evaluation engine '{engine}'; expected one of {', '.join(ENGINES)}")
    out_json = Path(out_json)
    where = f"track '{track_name}' ({out_json})"
    targets, estimates = _check(references, estimates, targets, where, estimate_files or {})

    groups = museval_groups(targets)
    window, step = int(win * rate), int(hop * rate)
    nsampl = references[targets[0]].shape[0]
    wins = bsseval.frames(window, step, nsampl)
    data = TrackStore(win=win, hop=hop, track_name=track_name)
    silent: dict[str, list] = {}
    wholly: list[str] = []
    perfect: list[str] = []
    for members, kept in groups:
        refs = [np.asarray(references[t], dtype=np.float64) for t in members]
        ests = [np.asarray(estimates[t], dtype=np.float64) for t in members]
        # which windows will be NaN, and why (for the report only), and which
        # sources are silent over the whole track (the last window: all of it)
        whole = []
        for kind, group in (("reference", refs), ("estimate", ests)):
            for target, audio in zip(members, group):
                windows = bsseval.silent_windows(audio, [*wins, slice(0, nsampl)])
                if windows[-1]:
                    whole.append(f"{kind} '{target}'")
                count = int(windows[:-1].sum())
                if count:
                    entry = silent.setdefault(f"{kind} '{target}'", [count, []])
                    entry[1] += [t for t in members if t != target and t not in entry[1]]
        if whole:
            # both engines refuse this (museval raises); the group's frames are NaN instead
            wholly.append(f"{', '.join(whole)} silent over the whole track: BSS Eval cannot score "
                          f"{', '.join(members)} together (museval refuses it), so every frame of them is NaN")
            SDR = ISR = SIR = SAR = np.full((len(members), len(wins)), np.nan)
        elif engine == "museval":
            import museval
            SDR, ISR, SIR, SAR = museval.evaluate(refs, ests, win=window, hop=step)
        else:
            SDR, ISR, SIR, SAR = bsseval.bss_eval(refs, ests, window, step, threads=threads, device=device)
        for i, target in enumerate(members):
            if target not in kept:
                continue
            if np.isinf(SDR[i]).any():
                perfect.append(f"estimate '{target}' equals its reference in {int(np.isinf(SDR[i]).sum())} "
                               f"of {len(wins)} frames: its SDR there is +inf, which museval stores as NaN")
            data.add_target(target_name=target, values={
                "SDR": SDR[i].tolist(), "SIR": SIR[i].tolist(), "ISR": ISR[i].tolist(), "SAR": SAR[i].tolist()})
    warnings_ = [f"{track_name}: {key} is silent: museval's SDR is NaN for its frames ({count} of {len(wins)}, "
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
    log.info("%s: BSS Eval v4 by %s: %s -> %s", track_name,
             engine if engine == "museval" else f"bsseval ({device or f'numpy, {threads} thread(s)'})",
             ", ".join(f"{t} SDR {s['SDR']:.2f}" for t, s in scores.items()), out_json)
    return {"track": track_name, "json": str(out_json), "targets": [e["name"] for e in data.scores["targets"]],
            "frames": len(wins), "scores": scores, "nan_frames": nan_frames,
            "silent": {key: count for key, (count, _) in silent.items()},
            "warnings": warnings_}


def read_shard_references(shard: str | os.PathLike) -> tuple[dict[str, np.ndarray], int, str]:
    """References of a shard as float64 ``(samples, channels)`` arrays (its
    sources, :attr:`~musicsep.data.shard.Shard.source_names`, and, with vocals
    among two or more, the accompaniment: :func:`musicsep.targets_of`), their
    rate and the track's name.
    They are musdb's own (:meth:`musicsep.data.shard.Shard.references`: the
    source rate, stereo, whatever the models' rate and channels), in float64
    as musdb hands them to museval, the accompaniment summed as musdb sums it."""
    with Shard(shard) as sh:
        sources, rate, name, names = sh.references(), sh.reference_rate, sh.name, sh.source_names
    refs = {s: audio.T.astype(np.float64) for s, audio in zip(names, sources)}
    if ACCOMPANIMENT_TARGET in targets_of(names):
        refs[ACCOMPANIMENT_TARGET] = accompaniment(refs)
    return refs, rate, name


def to_reference(audio: np.ndarray, rate: int, reference_rate: int,
                 shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """An estimate ``(samples, channels)`` at ``rate`` brought to references of
    ``shape`` ``(samples, channels)`` at ``reference_rate``: resampled with
    soxr (high quality) when the rates differ, then cut or zero-padded to the
    references' length when it differs by no more than resampling rounds (an
    estimate of another length keeps it, for :func:`evaluate_track` to
    report); a mono estimate is duplicated to every channel. Returns it and
    what was done (empty when nothing was)."""
    done = []
    if rate != reference_rate:
        import soxr

        audio = soxr.resample(audio, rate, reference_rate, quality="HQ")
        samples, rounding = shape[0], int(np.ceil(reference_rate / rate)) + 1
        if abs(len(audio) - samples) <= rounding:
            audio = np.pad(audio[:samples], ((0, max(0, samples - len(audio))), (0, 0)))
        done.append(f"resampled from {rate} to {reference_rate} Hz (soxr)")
    if audio.shape[1] == 1 < shape[1]:
        audio = np.repeat(audio, shape[1], axis=1)
        done.append(f"mono duplicated to {shape[1]} channels")
    return audio, done


def read_estimates(folder: str | os.PathLike, rate: int, targets: Sequence[str] | None = None, *,
                   shard: str | os.PathLike | None = None) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """``{target}.wav`` estimates in ``folder`` (all of the targets that exist,
    or exactly ``targets``), read as float32 and returned as float64
    ``(samples, channels)`` arrays, with their paths. Each must be at
    ``rate``, or, with ``shard`` (whose references are at ``rate``), in the
    format of the shard's audio, what its models separate: estimates at its
    rate and with its channels, where these differ from its references', are
    brought to the references (:func:`to_reference`), and what was done is
    logged. The targets are the shard's (:func:`musicsep.targets_of` its
    sources; without ``shard``, :data:`TARGETS`); another ``*.wav`` in
    ``folder`` is refused, naming it and them."""
    import soundfile

    folder = Path(folder)
    if not folder.is_dir():
        raise MusicsepError(f"{folder}: estimates folder does not exist")
    model = shape = None
    known = TARGETS
    if shard is not None:
        with Shard(shard) as sh:
            channels, samples = sh.reference_shape
            known = tuple(ordered_targets(targets_of(sh.source_names)))
            if (sh.sample_rate, sh.channels) != (rate, channels):
                model, shape = (sh.sample_rate, sh.channels), (samples, channels)
    wanted = list(targets) if targets else list(known)
    bad = [t for t in wanted if t not in known]
    if bad:
        raise MusicsepError(f"unknown target(s) {', '.join(map(repr, bad))}; expected some of {', '.join(known)}")
    extra = sorted(p.name for p in folder.glob("*.wav") if p.stem not in known)
    if extra:
        raise MusicsepError(f"{folder}: estimate(s) of no target: {', '.join(extra)} (the targets"
                            f"{' of ' + str(shard) if shard is not None else ''}: {', '.join(known)})")
    estimates, files, converted = {}, {}, []
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
        audio = audio.astype(np.float64)
        if model and (file_rate, audio.shape[1]) == model:
            audio, done = to_reference(audio, file_rate, rate, shape)
            converted.append(target)
        elif file_rate != rate:
            also = f" (or the shard's models' {model[0]} Hz)" if model and model[0] != rate else ""
            raise MusicsepError(f"{path}: sample rate {file_rate} Hz, the references' {rate} Hz{also}")
        estimates[target], files[target] = audio, path
    if not estimates:
        raise MusicsepError(f"{folder}: no estimates ({', '.join(t + '.wav' for t in known)})")
    absent = [t for t in known if t not in estimates]
    if absent and not targets:
        log.warning("%s: no estimate of %s (%s): scoring the others", folder, ", ".join(absent),
                    ", ".join(f"{t}.wav" for t in absent))
    if converted:
        log.info("%s: %s at the shard's %d Hz, %d channel(s), as its models separate: %s, as its references",
                 folder, ", ".join(converted), *model, ", ".join(done))
    return estimates, files


def evaluate_shard(shard: str | os.PathLike, estimates_dir: str | os.PathLike, out_json: str | os.PathLike,
                   name: str | None = None, targets: Sequence[str] | None = None, *, engine: str = "bsseval",
                   threads: int = 1, device: str | None = None) -> dict:
    """Evaluate the ``{target}.wav`` estimates in ``estimates_dir`` against a
    shard's references (see :func:`evaluate_track`, which ``engine``,
    ``threads`` and ``device`` are given to); estimates at the shard's
    models' rate and channels are brought to the references'
    (:func:`read_estimates`)."""
    check_writable(out_json)        # before the work
    refs, rate, shard_name = read_shard_references(shard)
    estimates, files = read_estimates(estimates_dir, rate, targets, shard=shard)
    return evaluate_track(refs, estimates, rate, name or shard_name, out_json, targets=targets,
                          estimate_files=files, engine=engine, threads=threads, device=device)
