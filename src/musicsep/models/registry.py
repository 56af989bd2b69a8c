"""The model families by name: class, losses, report items, and argument checks.

This module imports neither torch nor the models: the workflow checks every
experiment block at parse time (model name, arguments and their types, loss)
from here, reading each model's constructor signature from its source, and a
model is imported only when :func:`build_model` builds it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path

from musicsep import MusicsepError


@dataclass(frozen=True)
class ModelInfo:
    """A model family: where its class lives, the losses it trains with (the
    first is the default) and the report items it can draw."""

    module: str
    cls: str
    losses: tuple[str, ...]
    plots: tuple[str, ...] = ("masks",)

    @property
    def default_loss(self) -> str:
        return self.losses[0]


MODELS: dict[str, ModelInfo] = {
    "blstm_mask": ModelInfo("musicsep.models.blstm_mask", "BLSTMMask", ("l1",)),
    "conditional_centroids": ModelInfo("musicsep.models.centroids", "ConditionalCentroids", ("l1_dc", "l1"),
                                       ("masks", "embeddings")),
    "deep_clustering": ModelInfo("musicsep.models.deep_clustering", "DeepClustering", ("dc",),
                                 ("masks", "embeddings")),
    "umx": ModelInfo("musicsep.models.umx", "UMX", ("mse",)),
}
"""Model name (the config's ``model``, the model file's ``model``) -> its family."""


def model_info(name: str, where: str = "model") -> ModelInfo:
    if name not in MODELS:
        raise MusicsepError(f"{where}: unknown model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name]


def model_class(name: str) -> type:
    """The model's class (imports its module, and so torch)."""
    info = model_info(name)
    return getattr(importlib.import_module(info.module), info.cls)


@functools.cache
def signature(name: str) -> dict[str, str | tuple]:
    """The model's keyword arguments: name -> its annotation (``int``,
    ``float``, ``bool``, ``str``) or the tuple of values of a ``Literal``,
    read from the constructor's source without importing the module."""
    info = model_info(name)
    tree = ast.parse(Path(importlib.util.find_spec(info.module).origin).read_text())
    literals = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript) \
                and ast.unparse(node.value.value).endswith("Literal"):
            values = ast.literal_eval(node.value.slice)
            for target in node.targets:
                literals[target.id] = values if isinstance(values, tuple) else (values,)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == info.cls)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = [a for a in init.args.args[1:] + init.args.kwonlyargs]
    return {a.arg: literals.get(ast.unparse(a.annotation), ast.unparse(a.annotation)) for a in args}


def _fits(value, annotation: str) -> bool:
    if annotation == "tuple[str, ...]":             # a list of names (``sources``): distinct, not empty
        return isinstance(value, (list, tuple)) and len(value) > 0 and len(set(value)) == len(value) \
            and all(isinstance(v, str) and v for v in value)
    kind = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(annotation, object)
    return isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))


def check_model_args(name: str, where: str = "model", **kwargs) -> None:
    """Refuse an unknown model name, an unknown keyword or a value of the wrong
    type, naming the key (``where`` prefixes it); nothing is built."""
    model_info(name, where)
    params = signature(name)
    for key, value in kwargs.items():
        if key not in params:
            raise MusicsepError(f"{where}.{key}: unknown argument of {name} (known: {', '.join(params)})")
        hint = params[key]
        if isinstance(hint, tuple):
            if value not in hint:
                raise MusicsepError(f"{where}.{key}: {value!r} is not one of {', '.join(map(repr, hint))}")
        elif not _fits(value, hint):
            what = "a list of distinct names" if hint == "tuple[str, ...]" else f"of type {hint}"
            raise MusicsepError(f"{where}.{key}: {value!r} is not {what}")


def check_loss(experiment: str, model: str, loss: str) -> None:
    """Refuse a loss that does not fit the model (before any work)."""
    allowed = model_info(model, f"experiments.{experiment}.model").losses
    if loss not in allowed:
        raise MusicsepError(f"experiments.{experiment}.loss: {loss!r} does not fit model "
                            f"{model} (use {' or '.join(allowed)})")


def build_model(name: str, where: str = "model", **kwargs):
    """Build a model by name, its arguments checked by :func:`check_model_args`;
    the model keeps every constructor argument (defaults included) for its file."""
    check_model_args(name, where, **kwargs)
    if "sources" in kwargs:                         # a list read from YAML or JSON: the model keeps a tuple
        kwargs["sources"] = tuple(kwargs["sources"])
    cls = model_class(name)
    params = inspect.signature(cls.__init__).parameters
    model = cls(**kwargs)
    model._kwargs = {k: v.default for k, v in params.items() if k != "self"} | kwargs
    return model

