"""What the Snakemake workflow needs at parse time, kept here so that the
rules stay thin and the logic is tested like the rest of the package."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from musicsep import SOURCES, MusicsepError
from musicsep.data.augment import is_off as augment_is_off
from musicsep.data.musdb import build_table, scan, table_frame
from musicsep.models.registry import check_loss, check_model_args, model_info, signature
from musicsep.toy.musdb import toy_tracks
from musicsep.workflow.config import load_yaml, validate


@dataclass(frozen=True)
class Plan:
    """The dataset and its track table, known before any job runs."""

    dataset: str             # path of the dataset (the toy zip when no path is configured)
    kind: str                # "stems" or "hq" (MUSDB18), "layout" (a dataset of stems)
    is_zip: bool
    is_toy: bool
    tracks: pd.DataFrame     # indexed by slug: slug, name, subset, split, member, duration (+ missing: stems)
    sources: tuple[str, ...] = SOURCES
    layout: str | None = None    # a stems layout: the dataset block as JSON (``musicsep shard --layout``)
    files: dict[str, list[str]] = field(default_factory=dict)    # a stems layout: slug -> its files

    def slugs(self, *splits: str) -> list[str]:
        table = self.tracks
        return list(table.index if not splits else table.index[table["split"].isin(splits)])

    def inputs(self, slug: str) -> list[str]:
        """The files a track's shard is made from (Snakemake's inputs)."""
        if self.is_zip:
            return [self.dataset]
        if self.layout:
            return [str(Path(self.dataset) / entry) for entry in self.files[slug]]
        member = self.tracks.loc[slug, "member"]
        if self.kind == "stems":
            return [str(Path(self.dataset) / member)]
        folder = Path(self.dataset) / member
        return sorted(str(p) for p in folder.glob("*.wav"))


def load_config(config: dict, basedir: str | Path) -> dict:
    """Validate the workflow's config (defaults filled in) against
    ``config/schema.yaml`` under ``basedir``."""
    return validate(config, load_yaml(Path(basedir) / "config" / "schema.yaml"))


LAYOUT_KEYS = ("sources", "stems", "unmapped", "mixture", "mismatch", "splits")
"""The ``dataset`` keys of a stems layout (what ``musicsep shard --layout`` reads)."""


def toy_layout(ds: dict) -> dict | None:
    """The stems layout of the toy (None: a MUSDB18 layout): its MoisesDB-like
    format, or HQ with sources other than MUSDB18's, is read as stems."""
    toy, sources = ds["toy"], list(ds["sources"])
    if toy["format"] == "stems" and tuple(sources) != SOURCES:
        raise MusicsepError(f"dataset.sources: {', '.join(sources)}: the toy of dataset.toy.format stems "
                            f"(.stem.mp4) holds MUSDB18's {', '.join(SOURCES)}; other sources need format hq "
                            "or moisesdb")
    if toy["format"] == "moisesdb" or tuple(sources) != SOURCES:
        return {"sources": sources, "stems": None, "unmapped": "refuse", "mismatch": "refuse",
                "mixture": "mixture.wav" if toy["format"] == "hq" else None, "splits": {"from": "folders"}}
    return None


def plan(config: dict) -> Plan:
    """The dataset and track table for a validated config."""
    ds, valid = config["dataset"], config["data"]["valid"]
    subsets = ds["subsets"]
    if ds["path"] is None:
        toy, layout = ds["toy"], toy_layout(ds)
        suffix = "hq" if toy["format"] == "hq" else ""
        path = f"{config['results']}/toy/musdb18{suffix}-toy.zip" if layout is None else \
            f"{config['results']}/toy/{toy['format']}-{'-'.join(ds['sources'])}-toy.zip"
        fmt = "stems" if toy["format"] == "stems" else "hq"        # the toy's members: files or folders
        rows = [r[:4] for r in toy_tracks(toy["seed"], toy["train_tracks"], toy["test_tracks"],
                                           toy["duration"], fmt) if r[1] in subsets]
        by_subset = [r for s in subsets for r in [x for x in rows if x[1] == s][:ds["max_tracks"]]]
        frame = table_frame(build_table(by_subset, valid["fraction"], valid["seed"]))
        if layout is None:
            return Plan(path, toy["format"], True, True, frame)
        frame["missing"] = ""
        return Plan(path, "layout", True, True, frame, tuple(ds["sources"]), json.dumps(layout, sort_keys=True))
    if ds["layout"] == "stems":
        from musicsep.data.stems import StemsLayout, scan_stems

        block = {key: ds[key] for key in LAYOUT_KEYS}
        dataset, tracks, missing = scan_stems(ds["path"], StemsLayout.from_block(block), subsets,
                                              ds["max_tracks"], valid["fraction"], valid["seed"])
        frame = table_frame(tracks)
        frame["missing"] = [missing[slug] for slug in frame.index]
        files = {} if dataset.is_zip else {t.slug: dataset.files(t.member) for t in tracks}
        return Plan(str(dataset.path), "layout", dataset.is_zip, False, frame, tuple(ds["sources"]),
                    json.dumps(block, sort_keys=True), files)
    if tuple(ds["sources"]) != SOURCES:
        raise MusicsepError(f"dataset.sources: {', '.join(ds['sources'])}: a MUSDB18 dataset (dataset.layout "
                            f"musdb) has {', '.join(SOURCES)}; read other sources with dataset.layout: stems")
    dataset, tracks = scan(ds["path"], subsets, ds["max_tracks"], valid["fraction"], valid["seed"])
    return Plan(str(dataset.path), dataset.kind, dataset.is_zip, False, table_frame(tracks))


IMAGE_SCHEMES = ("docker://", "docker-daemon://", "oras://", "library://", "shub://", "http://", "https://")


def check_container(image: str | None, apptainer: bool, strict: bool = True) -> str | None:
    """Under ``--sdm apptainer``, the config key ``container`` must name an
    image: an address Apptainer pulls (``docker://``, ``oras://``, ...) or a
    .sif file that exists. Without apptainer the key is not used. Raises
    MusicsepError, or with ``strict=False`` returns the problem (None if
    none), for the workflow to warn at parse time and stop at onstart."""
    if not apptainer:
        return None
    build = "build it with `apptainer build musicsep.sif containers/musicsep.def` (see the README)"
    problem = None
    if image is None:
        problem = f"--sdm apptainer needs an image, but config key container is null; {build}"
    elif not image.startswith(IMAGE_SCHEMES) and not Path(image).is_file():
        problem = (f"config key container: image file {image} not found (relative to {Path.cwd()}); "
                   f"{build}, or give a docker:// or oras:// address")
    if problem and strict:
        raise MusicsepError(problem)
    return problem


def use_this_python(basedir: str | Path) -> None:
    """Make the rules' ``python -m musicsep`` run this checkout's package: put
    the interpreter running Snakemake first on PATH (so it is found also when
    the virtual environment was not activated) and ``basedir/src`` first on
    PYTHONPATH (so a conda environment or a container with the dependencies
    runs the same code)."""
    for var, entry in (("PATH", str(Path(sys.executable).parent)),
                       ("PYTHONPATH", str(Path(basedir).resolve() / "src"))):
        current = os.environ.get(var, "")
        if current.split(os.pathsep)[0] != entry:
            os.environ[var] = os.pathsep.join([entry, current]) if current else entry


def _yaml_scalar(value):
    """A model argument given on the command line arrives as a string: read it
    as YAML ("8" -> 8, "true" -> True), keeping real strings."""
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (int, float, bool)) else value


SEPARATION_KEYS = ("wiener", "chunk_seconds", "context_seconds", "batch_chunks")
"""The ``evaluation`` settings that a spec's ``separation`` carries to training
(``musicsep.separate.separator.Separator``'s arguments of the same names)."""


NEUTRAL_TRAINING = {"weight_decay": 0}
"""Training settings added after runs existed, at the value that computes what
runs without them did: left out of a spec there, so that the models and run
folders of an older version stay current (Snakemake's params, the run's hash)."""


def _training(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if not (k in NEUTRAL_TRAINING and v == NEUTRAL_TRAINING[k])}


def _loader(settings: dict) -> dict:
    """The loader settings of a spec: ``augment`` only when it augments (added
    after runs existed: all off, it is left out, as :data:`NEUTRAL_TRAINING`)."""
    return {k: v for k, v in settings.items() if not (k == "augment" and augment_is_off(v))}


def experiment_specs(config: dict) -> dict[str, dict]:
    """One training spec per experiment (what ``musicsep train`` runs),
    checked now so that a bad experiment block fails at parse time, naming the
    key: model arguments against the model's signature, the loss against the
    model. The models separate ``dataset.sources``: named in ``model_args``
    (``sources``) only when they are not MUSDB18's four, so that a MUSDB18
    spec (and its run's hash) stays as it was."""
    specs = {}
    sources = tuple((config.get("dataset") or {}).get("sources") or SOURCES)
    for name, exp in config["experiments"].items():
        args = {k: _yaml_scalar(v) for k, v in (exp.get("model_args") or {}).items()}
        info = model_info(exp["model"], f"experiments.{name}.model")
        check_model_args(exp["model"], f"experiments.{name}.model_args", **args)
        if "sources" in args and tuple(args["sources"]) != sources:
            raise MusicsepError(f"experiments.{name}.model_args.sources: {', '.join(args['sources'])} are not "
                                f"dataset.sources ({', '.join(sources)}); the models separate the dataset's sources")
        args.pop("sources", None)
        if sources != SOURCES:
            args["sources"] = list(sources)
        shared = sorted(set(args) & ({"sample_rate"} | set(config["features"])))
        if shared:      # the STFT and features are the workflow's, one for every experiment and the oracles
            raise MusicsepError(f"experiments.{name}.model_args.{shared[0]}: set by the workflow for every "
                                f"experiment (`features.{shared[0]}` or `data.sample_rate`), not per model")
        if "channels" in signature(exp["model"]):       # a model that joins the channels (umx): the shards'
            channels = 1 if config["data"]["mono"] else 2
            if args.setdefault("channels", channels) != channels:
                raise MusicsepError(f"experiments.{name}.model_args.channels: {args['channels']} does not fit "
                                    f"data.mono {str(config['data']['mono']).lower()} (shards of {channels} "
                                    f"channel{'s' * (channels > 1)})")
        spec = {"name": name, "model": exp["model"], "loss": exp.get("loss") or info.default_loss,
                "model_args": args, "training": _training(config["training"] | exp.get("training", {})),
                "loader": _loader(config["loader"]), "features": config["features"],
                "sample_rate": config["data"]["sample_rate"]}
        if spec["training"]["sdr_every"]:       # SDR validation separates as the evaluation will
            spec["separation"] = {k: config["evaluation"][k] for k in SEPARATION_KEYS}
        check_loss(name, spec["model"], spec["loss"])
        specs[name] = spec
    return specs
