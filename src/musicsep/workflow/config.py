"""Configuration: load YAML, validate against a JSON schema, fill defaults.

Every key is described in ``config/schema.yaml`` with its default: a value,
or (``default_constant: musicsep.N_FFT``) a constant of the package, so that
a value the code also uses is written once. Errors name
the key by its dotted path (``data.sample_rate``), and unknown keys are
rejected with the keys that are allowed in their place. What the schema
cannot state, a rule across keys of an experiment's merged ``training``
block, is checked after it (:func:`_training_errors`).
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from musicsep import MusicsepError


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with ``safe_load``; errors name the file."""
    path = Path(path)
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise MusicsepError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise MusicsepError(f"{path}: not valid YAML: {err}") from None


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


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        where = _key(err.absolute_path)
        names = ", ".join(
            _key([*err.absolute_path, key]) for key in unknown
        )
        return (f"unknown config key {names} (allowed in {where}: "
                f"{', '.join(allowed)})")
    return f"config key {_key(err.absolute_path)}: {err.message}"


def validate(config: dict | None, schema: dict | str | Path) -> dict:
    """Validate ``config`` against ``schema`` (a dict or a YAML file) and return
    a new dict with every default filled in. Raises MusicsepError naming the
    offending key(s)."""
    if not isinstance(schema, dict):
        schema = load_yaml(schema)
    config = copy.deepcopy(config) if config is not None else {}
    if not isinstance(config, dict):
        raise MusicsepError("the configuration must be a mapping of keys to values")
    config = _coerce_tree(schema, _fill_defaults(schema, config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [_message(e) for e in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))]
    errors = errors or _training_errors(config)
    if errors:
        raise MusicsepError("invalid configuration:\n  " + "\n  ".join(errors))
    return config


def _training_errors(config: dict) -> list[str]:
    """What the schema cannot check: each experiment trains with the shared
    ``training`` block under its own, and ``select_by: sdr`` needs SDR
    computed (``sdr_every`` > 0). The keys are named where they are set."""
    errors, shared = [], config.get("training")
    if not isinstance(shared, dict):
        return errors
    for name, exp in (config.get("experiments") or {}).items():
        own = exp.get("training") or {}
        merged = {**shared, **own}
        key = {k: f"experiments.{name}.training.{k}" if k in own else f"training.{k}"
               for k in ("select_by", "sdr_every")}
        if merged.get("select_by") == "sdr" and not merged.get("sdr_every"):
            errors.append(f"config key {key['select_by']}: 'sdr' needs {key['sdr_every']} > 0 (the epochs "
                          "that compute SDR; it is 0: never)")
    return list(dict.fromkeys(errors))
