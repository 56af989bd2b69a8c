"""How much context a trained model needs at chunk boundaries.

The Separator cuts long tracks into chunks and lets the model see
``context_seconds`` of extra frames on each side of each. More context costs
model time (30 s chunks with 1 s of context, the default: 5.6% more frames than
the track; with 2 s, 11.2%),
and a BLSTM that has forgotten its start needs no more of it. How far a
trained model carries context is a property of that model. This script
measures it on its test tracks: each track is separated whole (one window)
and in chunks of ``--chunk-seconds`` with each context length in
``--contexts``. For each context it prints:

- the agreement of the chunked estimates with the whole-track ones (the SDR of
  the chunked estimate taking the whole-track one as the reference, in dB;
  median and worst over tracks and targets; about 140 dB and up is float32
  rounding);
- the median SDR of the chunked and of the whole-track estimates against the
  true sources (a plain energy ratio, not BSS Eval; silent references left
  out);
- the model frames that context adds to a 3-minute track in 30 s chunks.

Short chunks put many boundaries in a short track. Where the agreement
stays far above what the SDR against the truth can show (say 60 dB), that
context is enough for this model (the figures behind the default:
``benchmarks/RESULTS.md``, context). Asserts nothing. Run from the
repository root with the virtual environment, after the workflow has
trained the model:

    python benchmarks/bench_context.py results/models/baseline/model.pt
        [--shards results/data/shards] [--tracks results/data/tracks.tsv] [--split test]
        [--chunk-seconds 4] [--contexts 0 0.25 0.5 1 2] [--max-tracks 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import h5py
import numpy as np

from musicsep import SOURCES, STREAMS, TARGETS, MusicsepError
from musicsep.memory import reuse_freed_memory
from musicsep.separate.separator import Separator


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|reference|² / |reference - estimate|²), in dB (the error floored at 1e-30 for equal signals)."""
    reference = reference.astype(np.float64)
    return 10 * math.log10(float(np.sum(reference ** 2)) / max(float(np.sum((reference - estimate) ** 2)), 1e-30))


def split_shards(shards: Path, tracks: Path, split: str, most: int) -> list[Path]:
    if tracks.is_file():
        with open(tracks, newline="") as fh:
            slugs = [row["slug"] for row in csv.DictReader(fh, delimiter="\t") if row["split"] == split]
        paths = [shards / f"{slug}.h5" for slug in slugs]
    else:
        paths = sorted(shards.glob("*.h5"))
    paths = [p for p in paths if p.is_file()][:most]
    if not paths:
        raise SystemExit(f"no shards of split {split!r} in {shards} (run the workflow first)")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--shards", type=Path, default=Path("results/data/shards"))
    ap.add_argument("--tracks", type=Path, default=Path("results/data/tracks.tsv"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--chunk-seconds", type=float, default=4.0)
    ap.add_argument("--contexts", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--max-tracks", type=int, default=5)
    ap.add_argument("--device", default="cpu",
                    help="where the model runs (cpu, cuda, ...); on a GPU the agreement's rounding floor is "
                         "lower than the CPU's (the kernels differ with the batch)")
    args = ap.parse_args()
    reuse_freed_memory()

    paths = split_shards(args.shards, args.tracks, args.split, args.max_tracks)
    tracks = []
    for path in paths:
        with h5py.File(path, "r") as h5:
            tracks.append((path.stem, h5["audio"][:]))
    try:
        model = Separator.from_file(args.model, device=args.device).model
    except MusicsepError as err:
        raise SystemExit(f"error: {err}") from None
    rate, hop = model.features.sample_rate, model.features.hop
    longest = max(audio.shape[-1] for _, audio in tracks)
    whole_sep = Separator(model, chunk_seconds=2 * longest / rate, context_seconds=0.0,    # one window
                          device=args.device)
    start = time.perf_counter()
    whole = [whole_sep.separate(audio[STREAMS.index("mixture")]) for _, audio in tracks]
    print(f"{args.model} ({whole_sep.name}): {len(tracks)} {args.split} track(s) from {args.shards}, "
          f"{sum(a.shape[-1] for _, a in tracks) / whole_sep.sample_rate:.0f} s in all; whole-track "
          f"separation {time.perf_counter() - start:.1f} s; chunks of {args.chunk_seconds:g} s")
    frames_3min = 1 + 180 * rate // hop
    print(f"{'context s':>9} {'agreement dB: median':>21} {'worst':>7} {'SDR vs truth: chunked':>22} "
          f"{'whole':>6} {'3-min track, 30 s chunks: extra frames':>40}")
    for context in args.contexts:
        chunked_sep = Separator(model, chunk_seconds=args.chunk_seconds, context_seconds=context, device=args.device)
        agree, truth_chunked, truth_whole = [], [], []
        for (_, audio), ref_est in zip(tracks, whole):
            est = chunked_sep.separate(audio[STREAMS.index("mixture")])
            agree += [sdr(ref_est[k], est[k]) for k in TARGETS if np.any(ref_est[k])]
            for name in SOURCES:
                reference = audio[STREAMS.index(name)]
                if np.any(reference):
                    truth_chunked.append(sdr(reference, est[name]))
                    truth_whole.append(sdr(reference, ref_est[name]))
        three_min = Separator(model, chunk_seconds=30.0, context_seconds=context)
        fed = sum(c1 - c0 for *_, c0, c1 in three_min.framing(180 * rate).chunks(*three_min.chunk_frames()))
        print(f"{context:9g} {np.median(agree):21.1f} {np.min(agree):7.1f} {np.median(truth_chunked):22.3f} "
              f"{np.median(truth_whole):6.3f} {100 * (fed / frames_3min - 1):39.1f}%")


if __name__ == "__main__":
    main()
