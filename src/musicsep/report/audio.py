"""Audio pages: short clips of a system's estimates (or the true sources) as players in one HTML page."""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

import numpy as np

from musicsep import MusicsepError
from musicsep.io import atomic_paths
from musicsep.report import EXCERPT_SECONDS
from musicsep.report.common import REFERENCE
from musicsep.report.excerpt import Excerpt, read_excerpt

log = logging.getLogger(__name__)

PAGE_LIMIT = 1_500_000
"""Bytes above which a player page may not show in Chrome: the report shows
an HTML result in an iframe from a base64 data URL (a third larger), and
Chrome has refused navigations to URLs over 2 MB."""


def _encode(audio: np.ndarray, rate: int, fmt: str) -> bytes:
    """``(channels, samples)`` clipped to [-1, 1] as a file's bytes: 16-bit
    WAV, or MP3 (variable bit rate, about 120 kbit/s for stereo music)."""
    import soundfile

    data = np.ascontiguousarray(np.clip(audio, -1, 1).T, dtype=np.float32)
    buffer = io.BytesIO()
    if fmt == "wav":
        soundfile.write(buffer, data, rate, subtype="PCM_16", format="WAV")
    else:
        soundfile.write(buffer, data, rate, format="MP3", subtype="MPEG_LAYER_III", compression_level=0.5,
                        bitrate_mode="VARIABLE")
    return buffer.getvalue()


def _player_format() -> str:
    """mp3 where this libsndfile writes MP3 (1.1 and later), else wav."""
    import soundfile

    return "mp3" if "MP3" in soundfile.available_formats() else "wav"


def _read_estimate(path: Path, start: int, length: int, rate: int) -> np.ndarray:
    import soundfile

    try:
        info = soundfile.info(str(path))
        if info.samplerate != rate:
            raise MusicsepError(f"{path}: sample rate {info.samplerate} Hz, the shard's {rate} Hz")
        audio, _ = soundfile.read(str(path), start=start, stop=start + length, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise MusicsepError(f"{path}: not a readable WAV file ({err})") from None
    if len(audio) < length:
        raise MusicsepError(f"{path}: {len(audio) + start} samples, shorter than the track's excerpt "
                            f"({start + length})")
    return audio.T


def audio_examples(shard: str | Path, out_dir: str | Path, page: str | Path, *,
                   estimates: str | Path | None = None, name: str | None = None, seconds: float = EXCERPT_SECONDS,
                   start: float | None = None) -> dict[str, Path]:
    """One system's audio of an excerpt (:func:`read_excerpt`): the
    excerpt of each ``{target}.wav`` in the folder ``estimates`` (whole-track
    estimates, as ``musicsep separate`` writes them), or without
    ``estimates`` the reference: the mixture and the true sources
    (accompaniment included). Writes ``{out_dir}/{target}.wav`` (16-bit, the
    shard's rate and channels) and ``page``: an HTML page with a player for
    the mixture and for each clip, the audio embedded (MP3 where libsndfile
    writes it) so that the page stands alone. ``name`` defaults to the
    folder's parent (``estimates/{system}/{slug}``). The targets are those of
    the shard's sources (:func:`~musicsep.separate.stems.separation_targets`).
    Returns the clips."""
    from musicsep import accompaniment_sources
    from musicsep.separate.stems import separation_targets

    excerpt = read_excerpt(shard, seconds, start)
    targets = separation_targets(excerpt.source_names)
    if estimates is None:
        name = name or REFERENCE
        truth = {s: excerpt.sources[k] for k, s in enumerate(excerpt.source_names)}
        summed = accompaniment_sources(excerpt.source_names)
        if summed:                                  # as musdb sums it (evaluate.track.accompaniment)
            truth["accompaniment"] = np.sum(np.array([truth[s].T for s in summed]), axis=0).T
        clips = {"mixture": excerpt.mixture, **{t: truth[t] for t in targets}}
    else:
        folder = Path(estimates)
        name = name or folder.parent.name
        if not folder.is_dir():
            raise MusicsepError(f"{folder}: estimates folder does not exist")
        found = {t: folder / f"{t}.wav" for t in targets if (folder / f"{t}.wav").exists()}
        if not found:
            raise MusicsepError(f"{folder}: no estimates ({', '.join(t + '.wav' for t in targets)})")
        clips = {t: _read_estimate(p, excerpt.start, excerpt.length, excerpt.rate) for t, p in found.items()}
    written = {target: Path(out_dir) / f"{target}.wav" for target in clips}
    fmt = _player_format()
    players = {target: f"data:audio/{'mpeg' if fmt == 'mp3' else 'wav'};base64,"
               + base64.b64encode(_encode(audio, excerpt.rate, fmt)).decode()
               for target, audio in {"mixture": excerpt.mixture, **clips}.items()}
    text = _audio_page(name, players, excerpt, fmt, reference=estimates is None, targets=targets)
    with atomic_paths(page, *written.values()) as (tmp_page, *tmps):       # the clips and the page, or none
        for tmp, audio in zip(tmps, clips.values()):
            tmp.write_bytes(_encode(audio, excerpt.rate, "wav"))
        tmp_page.write_text(text)
    if len(text) > PAGE_LIMIT:
        log.warning("%s: %.1f MB: the report may not show a page this large in Chrome (shorten the excerpt)",
                    page, len(text) / 1e6)
    log.info("%s, %s: %d clips -> %s, %s", excerpt.describe(), name, len(written), out_dir, page)
    return written


def _audio_page(name: str, players: dict[str, str], excerpt: Excerpt, fmt: str, reference: bool,
                targets: tuple[str, ...]) -> str:
    what = "true source" if reference else f"estimate by {html.escape(name)}"
    rows = [f'<tr><th>mixture</th><td><audio controls preload="none" src="{players["mixture"]}"></audio></td></tr>']
    rows += [f'<tr><th>{target}</th><td><audio controls preload="none" src="{players[target]}"></audio></td></tr>'
             if target in players else f"<tr><th>{target}</th><td>–</td></tr>" for target in targets]
    title = "Reference: the mixture and the true sources" if reference else f"{html.escape(name)}: estimates"
    coding = "MP3 (about 120 kbit/s)" if fmt == "mp3" else "16-bit WAV"
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;margin:1em;color:#222}"
             "table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:4px 8px}"
             "th{background:#f3f3f3;text-align:left}audio{width:360px;height:34px;vertical-align:middle}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n<h2>{title}</h2>\n<p>{html.escape(excerpt.describe())}: the mixture, then the "
            f"{what} of each target; {excerpt.rate} Hz, {excerpt.audio.shape[1]} channel(s), {coding}, not "
            f"normalised.</p>\n<table><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n")
