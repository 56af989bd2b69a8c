"""Configuration: load YAML, validate against a JSON schema, fill defaults.

Every key is described in ``config/schema.yaml`` with its default: a value,
or (``default_constant: musicsep.N_FFT``) a constant of the package, so that
a value the code also uses is written once. Errors name
the key by its dotted path (``data.sample_rate``), and unknown keys are
rejected with the keys that are allowed in their place. What the schema
cannot state, a rule across keys of an experiment's merged ``training``
block, is checked after it (:func:`_training_errors`). Config files are
layered as Snakemake layers them (:func:`layer`); what the workflow checks at
parse time, with each problem's config file, is :mod:`musicsep.workflow.check`.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from musicsep import MusicsepError


def load_yaml(path: str | Path, name: str | None = None) -> Any:
    """Read a YAML file with ``safe_load``; errors name the file (as ``name``
    when given), and the line of a YAML error."""
    path = Path(path)
    where = path if name is None else name
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise MusicsepError(f"{where}: file not found") from None
    except yaml.YAMLError as err:
        raise MusicsepError(f"{where}: {_yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise MusicsepError(f"{where}: not UTF-8 text") from None
    except OSError as err:
        raise MusicsepError(f"{where}: cannot be read ({err.strerror})") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: where the parser stopped, and why."""
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark, context = getattr(err, "problem_mark", None), getattr(err, "context", None)
    if context and getattr(err, "context_mark", None) is not None:
        context = f"{context} from {at(err.context_mark)}"
    what = [str(part) for part in (context, getattr(err, "problem", None)) if part]
    where = f"{at(mark)}: " if mark is not None else ""
    return f"{where}not valid YAML ({': '.join(what) or ' '.join(str(err).split())})"


def read_config_file(path: str | Path, name: str | None = None) -> dict:
    """A config file's keys (:func:`load_yaml`, errors naming ``name``); like
    Snakemake, a file whose top level is not a mapping of keys to values is
    refused."""
    values = load_yaml(path, name)
    if not isinstance(values, dict):
        found = type(values).__name__ if values is not None else "nothing"
        raise MusicsepError(f"{path if name is None else name}: a config file must be a mapping of keys to "
                            f"values at its top level (found {found})")
    return values


def layer(configs: Iterable[dict]) -> dict:
    """Config files layered as Snakemake layers ``--configfile`` files (and
    ``--config`` over them): ``snakemake.utils.update_config`` applied in
    order. A later mapping merges into the earlier one key by key, recursively;
    any other value (a list, a number, null) replaces what was there; and a
    non-empty mapping over a value that is not one replaces it."""
    def update(base, over: Mapping):
        for key, value in over.items():
            if not isinstance(base, Mapping):
                base = {}
            base[key] = update(base.get(key, {}), value) if isinstance(value, Mapping) else value
        return base

    merged: dict = {}
    for config in configs:
        update(merged, copy.deepcopy(config))
    return merged


class ConfigError(MusicsepError):
    """The problems of a configuration, one line each, with the key each
    names (a path: ``("data", "sample_rate")``) in ``problems``."""

    def __init__(self, problems: list[tuple[tuple, str]]):
        self.problems = problems
        super().__init__("\n".join(message for _, message in problems))


_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def _coerce(schema: dict, value: str) -> Any:
    """A string where the schema wants a number, boolean or null (Snakemake's
    ``--config a={b: 1}`` passes nested values as strings): its YAML value
    when that has a wanted type, else the string unchanged."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "null" in types and value in ("null", "~"):
        return None
    if "string" in types or not any(t in _TYPES for t in types):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    ok = any(isinstance(parsed, _TYPES[t]) and not (t != "boolean" and isinstance(parsed, bool))
             for t in types if t in _TYPES)
    return parsed if ok else value


def constant(path: str) -> Any:
    """The package constant a schema's ``default_constant`` names (``musicsep.N_FFT``)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _default(schema: dict) -> Any:
    if "default_constant" in schema:
        return constant(schema["default_constant"])
    return copy.deepcopy(schema["default"])


def _has_default(schema: dict) -> bool:
    return "default" in schema or "default_constant" in schema


def _fill_defaults(schema: dict, value: Any) -> Any:
    """Return ``value`` with the schema's defaults filled in, recursively."""
    if value is None and _has_default(schema):
        value = _default(schema)
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in value and _has_default(sub):
                value[key] = _default(sub)
            if isinstance(value.get(key), dict):
                value[key] = _fill_defaults(sub, value[key])
    return value


def _coerce_tree(schema: dict, value: Any, root: dict) -> Any:
    """Coerce command-line strings everywhere the schema reaches: properties,
    additionalProperties and local ``$ref``s."""
    if "$ref" in schema and schema["$ref"].startswith("#/"):
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(value, str):
        return _coerce(schema, value)
    if isinstance(value, dict):
        extra = schema.get("additionalProperties")
        for key in value:
            sub = schema.get("properties", {}).get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = _coerce_tree(sub, value[key], root)
    return value


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _problems(err: jsonschema.ValidationError) -> list[tuple[tuple, str]]:
    """A schema error as (key, line) problems: an unknown key each on its own."""
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return [((*path, key), (f"unknown config key {_key([*path, key])} (allowed in {_key(path)}: "
                                f"{', '.join(allowed)})"))
                for key in sorted(set(err.instance) - set(allowed))]
    return [(path, f"config key {_key(path)}: {err.message}")]


def validate(config: dict | None, schema: dict | str | Path) -> dict:
    """Validate ``config`` against ``schema`` (a dict or a YAML file) and return
    a new dict with every default filled in. Raises ConfigError naming the
    offending key(s), one line each."""
    if not isinstance(schema, dict):
        schema = load_yaml(schema)
    config = copy.deepcopy(config) if config is not None else {}
    if not isinstance(config, dict):
        raise ConfigError([((), "the configuration must be a mapping of keys to values")])
    config = _coerce_tree(schema, _fill_defaults(schema, config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted((problem for err in validator.iter_errors(config) for problem in _problems(err)),
                      key=lambda problem: [str(part) for part in problem[0]]) or _training_errors(config) \
        or _augment_errors(config)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return config


def _augment_errors(config: dict) -> list[tuple[tuple, str]]:
    """What the schema cannot check of ``loader.augment``: a gain range in
    order (:func:`musicsep.data.augment.problems`)."""
    from musicsep.data.augment import problems

    augment = (config.get("loader") or {}).get("augment")
    return [(("loader", "augment", key), f"config key loader.augment.{key}: {why}") for key, why in problems(augment)]


def _training_errors(config: dict) -> list[tuple[tuple, str]]:
    """What the schema cannot check: each experiment trains with the shared
    ``training`` block under its own, and ``select_by: sdr`` needs SDR
    computed (``sdr_every`` > 0). The keys are named where they are set."""
    errors, shared = [], config.get("training")
    if not isinstance(shared, dict):
        return errors
    for name, exp in (config.get("experiments") or {}).items():
        own = exp.get("training") or {}
        merged = {**shared, **own}
        key = {k: ("experiments", name, "training", k) if k in own else ("training", k)
               for k in ("select_by", "sdr_every")}
        if merged.get("select_by") == "sdr" and not merged.get("sdr_every"):
            errors.append((key["select_by"], (f"config key {_key(key['select_by'])}: 'sdr' needs "
                                              f"{_key(key['sdr_every'])} > 0 (the epochs that compute SDR; "
                                              "it is 0: never)")))
    return list(dict.fromkeys(errors))
