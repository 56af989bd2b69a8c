"""The data subcommands of ``python -m musicsep`` (make-toy-musdb, index,
shard): their arguments and what they run, added to the command line by
:func:`add_data_commands` (:mod:`musicsep.cli` holds the rest)."""

from __future__ import annotations

import sys
from pathlib import Path

from musicsep import SAMPLE_RATE, SOURCES, data, toy

LAYOUT_HELP = ("read the dataset laid out as stems (track folders of audio files): a YAML file holding the "
               "`dataset` block (sources, stems, unmapped, mixture, mismatch, splits), or that block as JSON")


def _make_toy(args) -> None:
    from musicsep.toy.musdb import make_toy_musdb

    fmt = "moisesdb" if args.moisesdb else "hq" if args.hq else "stems"
    make_toy_musdb(args.out, seed=args.seed, train=args.train, test=args.test, duration=args.duration,
                   fmt=fmt, jobs=args.jobs, sources=tuple(args.sources))


def _index(args) -> None:
    from musicsep.data.musdb import scan, table_frame, write_table

    if args.layout:
        from musicsep.data.stems import load_layout, scan_stems

        _, tracks, missing = scan_stems(args.dataset, load_layout(args.layout), args.subsets, args.max_tracks,
                                        args.valid_fraction, args.valid_seed)
        frame = table_frame(tracks)
        frame["missing"] = [missing[slug] for slug in frame.index]
    else:
        _, tracks = scan(args.dataset, args.subsets, args.max_tracks, args.valid_fraction, args.valid_seed)
        frame = table_frame(tracks)
    if args.out:
        write_table(frame, args.out)
    else:
        frame.to_csv(sys.stdout, sep="\t", index=False, float_format="%.3f")


def _shard(args) -> None:
    from musicsep.data.musdb import Dataset
    from musicsep.data.shard import write_shard

    if args.layout:
        from musicsep.data.stems import StemsDataset, load_layout

        dataset = StemsDataset.open(args.dataset, load_layout(args.layout))
    else:
        dataset = Dataset.open(args.dataset)
    write_shard(dataset, args.member, args.split, args.out, sample_rate=args.sample_rate, mono=args.mono,
                chunk_seconds=args.chunk_seconds, silence_db=args.silence_db, slug=args.slug)


def add_data_commands(command) -> None:
    """Add make-toy-musdb, index and shard; ``command(name, func, help)`` makes a subparser."""
    p = command("make-toy-musdb", _make_toy, "write the built-in toy MUSDB (musdb18.zip format, HQ, or "
                                             "MoisesDB-like track folders of any sources)")
    p.add_argument("out", type=Path, help="output: a .zip file (like musdb18.zip) or a folder")
    p.add_argument("--seed", type=int, default=toy.SEED, help=f"seed of names and audio (default {toy.SEED})")
    p.add_argument("--train", type=int, default=toy.TRAIN_TRACKS, help=f"train tracks (default {toy.TRAIN_TRACKS})")
    p.add_argument("--test", type=int, default=toy.TEST_TRACKS, help=f"test tracks (default {toy.TEST_TRACKS})")
    p.add_argument("--duration", type=float, default=toy.SECONDS, help=f"seconds per track (default {toy.SECONDS:g})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--hq", action="store_true", help="MUSDB18-HQ layout (wav per source)")
    which.add_argument("--moisesdb", action="store_true",
                       help="MoisesDB-like layout: track folders with a folder of wav file(s) per source")
    p.add_argument("--sources", nargs="+", default=list(SOURCES), metavar="SOURCE",
                   help=f"the sources, of {', '.join(toy.VOICES)} (default MUSDB18's: {' '.join(SOURCES)}; "
                        "others need --hq or --moisesdb)")
    p.add_argument("--jobs", type=int, default=1, help="tracks rendered in parallel (default 1)")

    p = command("index", _index, "list a dataset's tracks: slug, name, subset, split, member, duration")
    p.add_argument("dataset", type=Path, help="musdb18.zip, MUSDB18 folder, MUSDB18-HQ zip/folder, or (with "
                                              "--layout) a dataset of stems")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP + "; adds the column missing")
    p.add_argument("--subsets", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--max-tracks", type=int, default=None, help="first N tracks per subset")
    p.add_argument("--valid-fraction", type=float, default=data.VALID_FRACTION,
                   help=f"validation share when MUSDB's official names are absent (default {data.VALID_FRACTION:g})")
    p.add_argument("--valid-seed", type=int, default=data.VALID_SEED,
                   help=f"seed of that split (default {data.VALID_SEED})")
    p.add_argument("--out", type=Path, help="write a TSV here instead of printing it")

    p = command("shard", _shard, "decode one track once and write its HDF5 shard")
    p.add_argument("dataset", type=Path, help="the dataset (zip or folder)")
    p.add_argument("member", help="the track inside it, e.g. 'train/Artist - Title.stem.mp4' (with --layout: "
                                  "its folder, e.g. 'train/Artist - Title')")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP)
    p.add_argument("--out", type=Path, required=True, help="shard to write (.h5)")
    p.add_argument("--split", required=True, choices=["train", "valid", "test"])
    p.add_argument("--slug", default=None,
                   help="the track's slug, stored in the shard (default: its name's, as the workflow makes it)")
    p.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help=f"output rate in Hz (default {SAMPLE_RATE})")
    p.add_argument("--mono", action="store_true", help="downmix every stream to mono")
    p.add_argument("--chunk-seconds", type=float, default=data.SHARD_CHUNK_SECONDS,
                   help=f"HDF5 chunk length (default {data.SHARD_CHUNK_SECONDS:g})")
    p.add_argument("--silence-db", type=float, default=data.SILENCE_DB,
                   help=f"RMS (dBFS) under which a source is flagged silent (default {data.SILENCE_DB:g})")
