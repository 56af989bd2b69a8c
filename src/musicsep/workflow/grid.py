"""Experiment grids: an experiment block with a ``grid`` stands for one
experiment per point of the grid, expanded when the workflow is parsed.

    experiments:
      small:
        model: blstm_mask
        model_args: {layers: 2}
        grid: {model_args.hidden: [300, 600], training.lr: [2.0e-4, 1.0e-3]}

is the four experiments ``small_hidden300_lr0p0002``, ``small_hidden300_lr0p001``,
``small_hidden600_lr0p0002`` and ``small_hidden600_lr0p001``: the block
without its grid, each grid key (``model``, ``loss``, ``model_args.NAME``
or ``training.NAME``) set to one of its values. A point's name is the
experiment's, then each key's last part and its value (``.`` written ``p``),
so it depends only on the point: adding a value to the grid adds
experiments and leaves the others, and what they trained, alone.
"""

from __future__ import annotations

import copy
import itertools
import json
import re

from musicsep.workflow.config import ConfigError

KEY = re.compile(r"^(model|loss|(model_args|training)\.[A-Za-z_][A-Za-z0-9_]*)$")
"""The keys a grid may vary."""


def _token(value) -> str:
    """A grid value as it appears in a point's name."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        value = f"{value:g}".replace("+", "")
    return re.sub(r"[^A-Za-z0-9-]+", "-", str(value).replace(".", "p")).strip("-")


def _labels(keys: list[str]) -> list[str]:
    """Each key's label in names: its last part, or the whole key (``.`` as
    ``-``) where two keys share a last part."""
    leaves = [key.rsplit(".", 1)[-1] for key in keys]
    return [leaf if leaves.count(leaf) == 1 else key.replace(".", "-") for key, leaf in zip(keys, leaves)]


def _grid_problems(name: str, grid) -> list[tuple[tuple, str]]:
    where = ("experiments", name, "grid")
    dotted = ".".join(where)
    if not isinstance(grid, dict) or not grid:
        return [(where, f"{dotted}: a mapping of keys to lists of values, e.g. "
                        "{model_args.hidden: [300, 600]} (found " + repr(grid) + ")")]
    problems = []
    for key, values in grid.items():
        if not isinstance(key, str) or not KEY.match(key):
            problems.append(((*where, key), f"{dotted}.{key}: a grid varies model, loss, model_args.NAME "
                                            "or training.NAME"))
        elif not isinstance(values, list) or not values \
                or not all(isinstance(v, (str, int, float, bool)) for v in values):
            problems.append(((*where, key), f"{dotted}.{key}: a non-empty list of values "
                                            f"(numbers, strings or booleans; found {values!r})"))
        elif len({_token(v) for v in values}) < len(values):
            problems.append(((*where, key), f"{dotted}.{key}: values repeat (or would name two "
                                            f"experiments alike): {values}"))
    return problems


def expand_grids(config: dict) -> dict:
    """``config`` with every experiment that has a ``grid`` replaced by its
    points (in the grid's order), named as the module says. Raises
    ConfigError naming the key of a bad grid or of a point whose name an
    experiment already has."""
    experiments = config.get("experiments")
    if not isinstance(experiments, dict) or \
            not any(isinstance(block, dict) and "grid" in block for block in experiments.values()):
        return config
    out, problems = {}, []
    for name, block in experiments.items():
        if not isinstance(block, dict) or "grid" not in block:
            out[name] = block
            continue
        grid = block["grid"]
        found = _grid_problems(name, grid)
        if found:
            problems += found
            continue
        keys = list(grid)
        base = {k: v for k, v in block.items() if k != "grid"}
        for values in itertools.product(*(grid[key] for key in keys)):
            point = copy.deepcopy(base)
            for key, value in zip(keys, values):
                head, _, leaf = key.partition(".")
                if leaf:
                    if not isinstance(point.get(head), dict):
                        point[head] = {}
                    point[head][leaf] = value
                else:
                    point[head] = value
            point_name = "_".join([name] + [f"{label}{_token(v)}" for label, v in zip(_labels(keys), values)])
            if point_name in out or point_name in experiments:
                problems.append((("experiments", name, "grid"),
                                 f"experiments.{name}.grid: its point {point_name} has the name of "
                                 "another experiment"))
            out[point_name] = point
    if problems:
        raise ConfigError(problems)
    return {**config, "experiments": out}


def seed_groups(specs: dict[str, dict]) -> dict[str, list[str]]:
    """Experiments whose training specs differ only by their name and
    ``training.seed`` (repeats of one setting, as a grid over
    ``training.seed`` makes them): the first one's name -> every member, in
    the specs' order, for groups of two or more. The summary gives their mean
    and spread."""
    groups: dict[str, list[str]] = {}
    for name, spec in specs.items():
        key = json.dumps({**spec, "name": None, "training": {**spec["training"], "seed": None}}, sort_keys=True)
        groups.setdefault(key, []).append(name)
    return {members[0]: members for members in groups.values() if len(members) > 1}
