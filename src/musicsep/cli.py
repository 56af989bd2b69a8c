"""``python -m musicsep``: the command line every rule, test and person uses.

Each subcommand is a thin layer over a function of the package; errors caused
by input are printed as one ``error:`` line naming the file or key, with exit
status 1 and no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from musicsep import HOP, LOG_EPS, N_FFT, ORACLES, TARGETS, MusicsepError, __version__, report
from musicsep.data.commands import add_data_commands
from musicsep.evaluate import ENGINES
from musicsep.interrupt import Terminated, exit_status, terminated_raises
from musicsep.io import setup_logging
from musicsep.memory import reuse_freed_memory
from musicsep.separate import BATCH_CHUNKS, CHUNK_SECONDS, CONTEXT_SECONDS, DEFAULT_FORMAT, FORMATS

log = logging.getLogger("musicsep")

ABOVE_ZERO = {"make-toy-musdb": "duration jobs", "index": "max_tracks", "shard": "sample_rate chunk_seconds",
              "stats": "n_fft hop log_eps", "train": "processes", "evaluate": "threads", "plots": "seconds points"}
"""Numeric options that must be more than 0, per subcommand: checked before it runs."""


def _tracks(args) -> None:
    from musicsep.data.tracks import tracks_from_shards

    tracks_from_shards(args.shards, args.out)


def _stats(args) -> None:
    from musicsep.spectral.features import compute_stats

    compute_stats(args.shards, args.out, n_fft=args.n_fft, hop=args.hop, log_eps=args.log_eps)


def _summary(args) -> None:
    from musicsep.data.tracks import write_summary

    print(write_summary(args.tracks, args.stats, args.out))


def _train(args) -> None:
    import json

    from musicsep.data.tracks import read_track_table
    from musicsep.train.loop import train

    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as err:
        raise MusicsepError(f"--spec is not valid JSON ({err})") from None
    table = read_track_table(args.tracks)
    by_slug = {path.stem: str(path) for path in args.shards}
    missing = sorted(set(table.loc[table["split"] != "test", "slug"]) - set(by_slug))
    if missing:
        raise MusicsepError(f"{args.tracks}: no shard given for {', '.join(missing)}")
    split = {s: [by_slug[slug] for slug in table.loc[table["split"] == s, "slug"]] for s in ("train", "valid")}
    if not split["train"]:
        raise MusicsepError(f"{args.tracks}: no training tracks")
    train(spec, split["train"], split["valid"], args.stats, args.run_dir, args.out, args.metrics,
          processes=args.processes)


def _separate(args) -> int | None:
    from musicsep.separate.oracles import oracle_shard
    from musicsep.separate.separator import separate_file, separate_shard
    from musicsep.separate.stems import Interrupted

    try:
        if args.oracle:
            if not args.shard:
                raise MusicsepError("--oracle needs --shard: oracles take the true sources from a shard")
            if args.format != DEFAULT_FORMAT:
                raise MusicsepError(f"--format {args.format}: oracles write {DEFAULT_FORMAT} (the evaluation's)")
            oracle_shard(args.input, args.oracle, args.out, n_fft=args.n_fft, hop=args.hop)
        else:
            run = separate_shard if args.shard else separate_file
            run(args.input, args.model, args.out, wiener=args.wiener, chunk_seconds=args.chunk_seconds,
                context_seconds=args.context_seconds, batch_chunks=args.batch_chunks, device=args.device,
                fmt=args.format)
    except Interrupted as err:
        print(f"error: {err}", file=sys.stderr)
        return 128 + err.signum


def _evaluate(args) -> None:
    from musicsep.evaluate.track import evaluate_shard

    evaluate_shard(args.shard, args.estimates, args.out, name=args.name, targets=args.targets,
                   engine=args.engine, threads=args.threads, device=args.device)


def _aggregate(args) -> None:
    from musicsep.evaluate.aggregate import aggregate, track_names_from_table
    from musicsep.evaluate.groups import parse_groups

    names = track_names_from_table(args.tracks) if args.tracks else None
    aggregate(args.paths, args.out, summary_md=args.summary, system_from=args.system_from,
              published=args.published, track_names=names, medians_csv=args.medians, seeds=parse_groups(args.seeds))
    if args.summary:
        print(args.summary.read_text())


def _plots(args) -> None:
    from musicsep.report import audio, embeddings, masks, scores, training

    if args.kind == "scores":
        scores.plot_scores(args.scores, summary=args.summary, table=args.table, medians=args.medians,
                           box=args.box, heatmap=args.heatmap)
    elif args.kind == "training":
        training.plot_training(args.metrics, args.out, name=args.name)
    elif args.kind == "learning-curves":
        training.plot_learning_curves(args.metrics, args.out, names=args.names)
    elif args.kind == "masks":
        masks.plot_masks(args.model, args.shard, args.out, seconds=args.seconds, start=args.start,
                          name=args.name)
    elif args.kind == "embeddings":
        embeddings.plot_embeddings(args.model, args.shard, args.out, seconds=args.seconds, start=args.start,
                               name=args.name, points=args.points)
    elif args.kind == "audio":
        audio.audio_examples(args.shard, args.out_dir, args.page, estimates=args.estimates, name=args.name,
                              seconds=args.seconds, start=args.start)


def _submit(args) -> int:
    from musicsep.workflow.submit import Resources, submit

    command = list(args.subcommand)[1:] if args.subcommand[:1] == ["--"] else list(args.subcommand)
    if not command:
        raise MusicsepError("submit needs a musicsep subcommand after --, e.g. "
                            "`musicsep submit --gpu 1 -- separate song.mp3 --model model.pt --out out/`")
    if command[0] == "submit":
        raise MusicsepError("submit: the command to run cannot be submit itself")
    build_parser().parse_args(command)  # a mistyped command fails here, not on the cluster
    res = Resources(**{key: getattr(args, key) for key in Resources.__dataclass_fields__})
    return submit(command, res, executor=args.executor, log_dir=args.log_dir, wait=args.wait, name=args.name)


def _check_config(args) -> int:
    from musicsep.workflow.check import check_config

    return check_config(args.config, args.schema)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicsep", description="Music source separation on MUSDB18: data, training, evaluation.")
    parser.add_argument("--version", action="version", version=f"musicsep {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    add_data_commands(command)     # make-toy-musdb, index, shard

    p = command("tracks", _tracks, "write the track table from shards (durations, silent sources)")
    p.add_argument("shards", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)

    p = command("stats", _stats, "whitening statistics of the log-magnitude STFT of training shards")
    p.add_argument("shards", nargs="+", type=Path, help="training shards (never test or validation)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-fft", type=int, default=N_FFT)
    p.add_argument("--hop", type=int, default=HOP)
    p.add_argument("--log-eps", type=float, default=LOG_EPS)

    p = command("summary", _summary, "write a short Markdown summary of the prepared data")
    p.add_argument("--tracks", type=Path, required=True, help="the track table (tracks.tsv)")
    p.add_argument("--stats", type=Path, required=True, help="the statistics (stats.h5)")
    p.add_argument("--out", type=Path, required=True)

    p = command("train", _train, "train one experiment (resumes from its run folder)")
    p.add_argument("--spec", required=True, help="the experiment as JSON (the workflow writes it)")
    p.add_argument("--tracks", type=Path, required=True, help="tracks.tsv (the splits)")
    p.add_argument("--shards", type=Path, nargs="+", required=True, help="the shards ({slug}.h5)")
    p.add_argument("--stats", type=Path, required=True, help="whitening statistics (stats.h5)")
    p.add_argument("--run-dir", type=Path, required=True, help="checkpoints, TensorBoard and metrics")
    p.add_argument("--out", type=Path, required=True, help="the model file to write (best weights)")
    p.add_argument("--metrics", type=Path, help="copy metrics.jsonl here")
    p.add_argument("--processes", type=int, default=None,
                   help="training processes (default: one per visible GPU, else 1; >1 on CPU uses gloo)")

    p = command("separate", _separate,
                f"separate an audio file (or a shard) into TARGET.wav (or --format's) for each of the model's "
                f"sources, and accompaniment with vocals (MUSDB18's: {{{','.join(TARGETS)}}})")
    p.add_argument("input", type=Path, help="an audio file ffmpeg reads (mono stays mono), or a shard (.h5) "
                                            "with --shard")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="the model file (model.pt)")
    which.add_argument("--oracle", choices=ORACLES,
                       help="an oracle from the true sources instead of a model (needs --shard)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for the stems (written as a set: all of them or none)")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help=f"the stems' format (default {DEFAULT_FORMAT}: 32-bit float WAV, what the evaluation "
                        "reads; wav-16, wav-24, flac-16, flac-24 round to 16 or 24 bits)")
    p.add_argument("--shard", action="store_true", help="INPUT is a shard: separate its mixture at its rate")
    p.add_argument("--wiener", action="store_true", help="multichannel Wiener post-filter (one iteration)")
    p.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS,
                   help=f"output seconds per chunk (default {CHUNK_SECONDS:g})")
    p.add_argument("--context-seconds", type=float, default=CONTEXT_SECONDS,
                   help=f"context on each side of a chunk (default {CONTEXT_SECONDS:g})")
    p.add_argument("--batch-chunks", type=int, default=BATCH_CHUNKS,
                   help=f"chunks stacked into one model call (default {BATCH_CHUNKS}; more is faster and "
                        "takes more memory)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--n-fft", type=int, default=N_FFT, help=f"STFT size of an oracle (default {N_FFT})")
    p.add_argument("--hop", type=int, default=HOP, help=f"STFT hop of an oracle (default {HOP})")

    p = command("evaluate", _evaluate, "BSS Eval v4 of one track's estimates (museval's JSON, as SiSEC 2018)")
    p.add_argument("--shard", type=Path, required=True, help="the track's shard (.h5): the references")
    p.add_argument("--estimates", type=Path, required=True,
                   help="folder of {target}.wav estimates at the shard's sample rate and channels (brought to "
                        "its references': the source rate, stereo) or at its references'")
    p.add_argument("--out", type=Path, required=True, help="museval JSON to write")
    p.add_argument("--name", default=None, help="track name (default: the shard's)")
    p.add_argument("--targets", nargs="+", default=None,
                   choices=TARGETS, metavar="TARGET",
                   help="targets to evaluate, each required (default: every {target}.wav present)")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help="what computes BSS Eval v4: bsseval (ours, the default: museval's numbers, many times "
                        "faster) or museval (the reference implementation)")
    p.add_argument("--threads", type=int, default=1, help="threads of the bsseval engine (default 1)")
    p.add_argument("--device", default=None,
                   help="run the bsseval engine in torch float64 on this device (e.g. cuda; default: numpy)")

    p = command("aggregate", _aggregate, "gather museval JSON scores into a CSV (and a Markdown summary)")
    p.add_argument("paths", nargs="*", type=Path,
                   help="museval JSON files or folders of them (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="CSV of every frame score to write")
    p.add_argument("--summary", type=Path, default=None, help="Markdown summary to write (and print)")
    p.add_argument("--medians", type=Path, default=None,
                   help="CSV of the summary's medians at full precision (system, target, metric, median)")
    p.add_argument("--published", type=Path, nargs="+", default=[],
                   help="published results beside ours: umx (built in), SiSEC 2018 files or folders (README)")
    p.add_argument("--tracks", type=Path, default=None,
                   help="track table (tracks.tsv): name tracks by their MUSDB names, not the file stems (slugs)")
    p.add_argument("--seeds", nargs="+", action="extend", default=[], metavar="NAME=A,B", help="runs over seeds")
    p.add_argument("--system-from", "--experiment-from", choices=["parent", "root"], default="parent",
                   help="system name: the JSON's folder (skipping test/train) or the folder given (default parent)")

    p = command("plots", _plots, "figures, tables and audio pages of the HTML report (snakemake --report)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    k = kinds.add_parser("scores", help="summary tables, SDR box plots and per-track heat map from scores.csv")
    k.add_argument("scores", type=Path, help="the frame scores (scores.csv, from aggregate)")
    k.add_argument("--summary", type=Path, help="summary.md (from aggregate), rendered by --table")
    k.add_argument("--table", type=Path, help="write the summary tables as an HTML page here")
    k.add_argument("--medians", type=Path, help="write the per-track medians over frames (CSV) here")
    k.add_argument("--box", type=Path, help="write the SDR box plots (.svg or .png) here")
    k.add_argument("--heatmap", type=Path, help="write the per-track SDR heat map (.svg or .png) here")
    k = kinds.add_parser("training", help="training curves of one experiment from its metrics.jsonl")
    k.add_argument("metrics", type=Path, help="metrics.jsonl (one record per epoch)")
    k.add_argument("--out", type=Path, required=True, help="the figure (.svg or .png)")
    k.add_argument("--name", default=None, help="experiment name (default: the file's folder)")
    k = kinds.add_parser("learning-curves", help="every experiment's validation loss and SDR against step and time")
    k.add_argument("metrics", type=Path, nargs="+", help="the experiments' metrics.jsonl files")
    k.add_argument("--names", nargs="+", default=None, help="one name per file (default: the files' folders)")
    k.add_argument("--out", type=Path, required=True, help="the figure (.svg or .png)")
    for kind, help_ in [("masks", "mixture spectrogram, a model's masks and the ideal ratio masks on an excerpt"),
                        ("embeddings", "2-D PCA of an embedding model's embeddings of an excerpt")]:
        k = kinds.add_parser(kind, help=help_)
        k.add_argument("--model", type=Path, required=True, help="the model file (model.pt)")
        k.add_argument("--shard", type=Path, required=True, help="the track's shard (.h5)")
        k.add_argument("--out", type=Path, required=True, help="the figure (.png or .svg)")
        k.add_argument("--name", default=None, help="experiment name (default: the model's)")
    k.add_argument("--points", type=int, default=report.EMBEDDING_POINTS,
                   help=f"points drawn (default {report.EMBEDDING_POINTS})")
    k = kinds.add_parser("audio", help="WAV excerpts of a system's estimates (or of the true sources) and "
                                       "a page of audio players")
    k.add_argument("--shard", type=Path, required=True, help="the track's shard (.h5): mixture and true sources")
    k.add_argument("--estimates", type=Path, default=None,
                   help="folder of the track's {target}.wav estimates (estimates/{system}/{slug}); "
                        "without it: the mixture and the true sources")
    k.add_argument("--name", default=None, help="system name (default: the folder's parent, or 'reference')")
    k.add_argument("--out-dir", type=Path, required=True, help="the clips: OUT_DIR/{target}.wav")
    k.add_argument("--page", type=Path, required=True, help="the HTML page of audio players")
    for k in (kinds.choices["masks"], kinds.choices["embeddings"], kinds.choices["audio"]):
        k.add_argument("--seconds", type=float, default=report.EXCERPT_SECONDS,
                       help=f"excerpt length (default {report.EXCERPT_SECONDS:g})")
        k.add_argument("--start", type=float, default=None,
                       help="excerpt start in seconds (default: where the four sources are loudest together)")

    p = command("submit", _submit,
                "run a musicsep subcommand as a SLURM job (submitit), e.g. `musicsep submit --gpu 1 --wait -- "
                "separate song.mp3 --model model.pt --out out/`; resources as in the Snakemake SLURM profile")
    p.add_argument("--executor", choices=["auto", "slurm", "local"], default="auto",
                   help="slurm, local (a background process here), or auto: slurm where sbatch exists (default)")
    p.add_argument("--log-dir", type=Path, default=Path("results/logs/submit"),
                   help="the job's logs and submitit files go to LOG_DIR/JOBID/ (default results/logs/submit)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job, print its output and exit with the command's status")
    p.add_argument("--name", default=None, help="job name (default musicsep-COMMAND)")
    for option, type_, help_ in [
            ("slurm_partition", str, "partition (sbatch --partition)"),
            ("runtime", int, "time limit in minutes (default 60)"),
            ("mem_mb", int, "memory per node in MB (sbatch --mem)"),
            ("cpus_per_task", int, "CPUs per task"),
            ("gpu", int, "GPUs per node"),
            ("gpu_model", str, "GPU model, e.g. a100 (with --gpu: --gpus-per-node=MODEL:N)"),
            ("tasks", int, "tasks in all, split evenly over the nodes (default one per node)"),
            ("nodes", int, "nodes (default 1)"),
            ("slurm_account", str, "account to charge (sbatch --account)"),
            ("slurm_extra", str, "more sbatch options, e.g. '--qos=high --constraint=ib' "
                                  "(one alone as --slurm-extra=--qos=high)")]:
        p.add_argument("--" + option.replace("_", "-"), *(["--" + option] if "_" in option else []),
                       dest=option, type=type_, default=60 if option == "runtime" else None, help=help_)
    p.add_argument("subcommand", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the musicsep subcommand and its arguments")

    p = command("check-config", _check_config, "check a workflow config as the workflow does at parse time")
    p.add_argument("config", type=Path, nargs="*", help="config files layered as by `snakemake --configfile "
                   "FILE ...`, over ./config/config.yaml when it exists (the workflow's; the default)")
    p.add_argument("--schema", type=Path, default=Path("config/schema.yaml"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    reuse_freed_memory()
    try:
        for key in ABOVE_ZERO.get(args.command, "").split():
            if getattr(args, key, None) is not None and not getattr(args, key) > 0:
                raise MusicsepError(f"--{key.replace('_', '-')} {getattr(args, key)}: must be more than 0")
        with terminated_raises():       # SIGTERM cleans up as Ctrl-C does
            status = args.func(args)
    except MusicsepError as err:
        print(f"error: {err}", file=sys.stderr)
        from musicsep.train import STOPPED_EXIT, Stopped

        return STOPPED_EXIT if isinstance(err, Stopped) else 1
    except KeyboardInterrupt as err:
        print("terminated" if isinstance(err, Terminated) else "interrupted", file=sys.stderr)
        return exit_status(err)
    return status if isinstance(status, int) else 0
