"""The configuration a workflow run uses, checked once, by one function
(:func:`check`), at parse time (``rules/common.smk``) and by ``musicsep
check-config``: the schema, the experiments against the model registry, the
dataset and its track table. Each problem is one line that names the config
file (or ``--config``) that set the key, and the key.

The files are layered as Snakemake layers them: the workflow's own
``config/config.yaml`` (its ``configfile``, relative to the working
directory, read when it exists), then each ``--configfile`` in order, then
``--config`` (:func:`musicsep.workflow.config.layer`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from musicsep import SOURCES, MusicsepError
from musicsep.workflow.config import (
    ConfigError,
    layer,
    load_yaml,
    read_config_file,
    validate,
)
from musicsep.workflow.grid import expand_grids
from musicsep.workflow.plan import Plan, experiment_specs, plan

WORKFLOW_CONFIGFILE = "config/config.yaml"
"""The Snakefile's ``configfile`` (relative to the working directory)."""

SCHEMA = "config/schema.yaml"
"""The schema, relative to the workflow's folder (the Snakefile's)."""


@dataclass(frozen=True)
class Source:
    """One layer of the configuration: a config file (by the name shown in
    messages) or the ``--config`` items, and its keys."""

    name: str
    values: dict


@dataclass(frozen=True)
class Checked:
    """A configuration that passed: defaults filled in, its dataset and its
    experiments' training specs."""

    config: dict
    plan: Plan
    specs: dict[str, dict]


def shown(path: str | Path) -> str:
    """A config file's name in messages: relative to the working directory
    when it lies under it, else as it is."""
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(path)


def read_source(path: str | Path) -> Source:
    name = shown(path)
    return Source(name, read_config_file(path, name))


def _depth(tree, path: tuple) -> int:
    """How many leading parts of ``path`` the nested ``tree`` holds."""
    depth = 0
    for part in path:
        held = part in tree if isinstance(tree, Mapping) else \
            isinstance(tree, list) and isinstance(part, int) and part < len(tree)
        if not held:
            break
        tree = tree[part]
        depth += 1
    return depth


def origin(path: tuple, sources: Sequence[Source]) -> str:
    """The layer that set the key ``path``: the last one that holds most of
    it (all of it, for a key that is in the merged config). A key that no
    layer names at all (a default) is the layers' together."""
    depths = [_depth(source.values, path) for source in sources]
    best = max(depths, default=0)
    if best == 0:
        return " + ".join(source.name for source in sources) or "the defaults"
    return [source.name for source, depth in zip(sources, depths) if depth == best][-1]


def _keyed(key: tuple, message: str) -> tuple[tuple, str]:
    """A problem whose message does not start with its dotted key gets it."""
    dotted = ".".join(map(str, key))
    return key, message if message.startswith((dotted + ".", dotted + ":")) else f"{dotted}: {message}"


def _experiment_key(name: str, message: str) -> tuple:
    """The key an experiment's error names (the registry's messages start
    with it: ``experiments.x.model_args.hiden: ...``)."""
    head = message.split(": ", 1)[0]
    prefix = f"experiments.{name}"
    if head == prefix or head.startswith(prefix + "."):
        return ("experiments", name, *head[len(prefix) + 1:].split(".")) if head != prefix \
            else ("experiments", name)
    return ("experiments", name)


def check(config: dict, sources: Sequence[Source], schema: dict | str | Path) -> Checked:
    """Every check the workflow makes of its configuration before any job
    runs: ``config`` (the layered ``sources``), its experiment grids
    expanded (:mod:`musicsep.workflow.grid`), against ``schema`` with the
    defaults filled in, each experiment block against the model registry
    (model, arguments, loss), and the dataset with its track table. Raises
    MusicsepError with one line per problem, ``FILE: ...`` naming the key."""
    try:
        config = validate(expand_grids(config), schema)
        problems, specs = [], {}
        for name, block in config["experiments"].items():
            try:
                specs.update(experiment_specs({**config, "experiments": {name: block}}))
            except MusicsepError as err:
                problems.append((_experiment_key(name, str(err)), str(err)))
        try:
            the_plan = plan(config)
        except MusicsepError as err:
            head = str(err).split(": ", 1)[0]       # a stems layout's key (dataset.stems.vocals/*), else the path's
            key = tuple(head.split(".")) if head.startswith("dataset.") and " " not in head else \
                ("dataset", "path") if config["dataset"]["path"] is not None else ("dataset", "toy")
            problems.append(_keyed(key, str(err)))
        if problems:
            raise ConfigError(problems)
    except ConfigError as err:
        raise MusicsepError("\n".join(f"{origin(key, sources)}: {message}"
                                      for key, message in err.problems)) from None
    return Checked(config, the_plan, specs)


def check_files(paths: Sequence[str | Path], schema: str | Path) -> tuple[list[Source], Checked]:
    """``musicsep check-config``: what ``snakemake --configfile PATHS`` run
    here checks, the workflow's ``config/config.yaml`` first when it exists
    here (not again when it is the first of ``paths``)."""
    paths = list(paths) or [WORKFLOW_CONFIGFILE]
    own = Path(WORKFLOW_CONFIGFILE)
    if own.is_file() and Path(paths[0]).resolve() != own.resolve():
        paths.insert(0, own)
    sources = [read_source(path) for path in paths]
    return sources, check(layer(source.values for source in sources), sources, load_yaml(schema))


def check_config(paths: Sequence[str | Path], schema: str | Path) -> int:
    """``musicsep check-config``: :func:`check_files`, its verdict printed
    (each problem as an ``error:`` line) and returned as an exit status."""
    try:
        sources, checked = check_files(paths, schema)
    except MusicsepError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    only = "" if checked.plan.sources == SOURCES else \
        f"; sources {', '.join(checked.plan.sources)}: the data stages only, for now"
    print(f"{' + '.join(source.name for source in sources)}: valid ({len(checked.plan.tracks)} tracks; "
          f"experiments {', '.join(checked.specs)}{only})")
    return 0


def workflow_sources(workflow) -> list[Source]:
    """The layers of a Snakemake run's ``config`` (``workflow`` is the
    Snakefile's): its own config file unless ``--replace-workflow-config``,
    the ``--configfile`` files, the ``--config`` items."""
    settings = workflow.config_settings
    cli = list(workflow.overwrite_configfiles)
    own = [] if settings.replace_workflow_config else list(workflow.configfiles)[len(cli):]
    sources = [read_source(path) for path in own + cli]
    if settings.config:
        sources.append(Source("--config", dict(settings.config)))
    return sources


def check_workflow(workflow, config: dict) -> Checked:
    """:func:`check` of the config a Snakemake run parsed, each problem named
    by its layer (``rules/common.smk``)."""
    return check(config, workflow_sources(workflow), load_yaml(Path(workflow.basedir) / SCHEMA))
