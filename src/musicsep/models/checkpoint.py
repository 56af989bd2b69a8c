"""Model files and run checkpoints, written and read here only.

A model file (``model.pt``) holds the model's registry name, its constructor
keyword arguments and its weights, plus the experiment spec, epoch,
validation loss, version and git commit: :func:`load_model` rebuilds the
model from the file alone. A run checkpoint (``latest.pt``, ``best.pt``)
holds the same three keys and the training state (optimizer, scheduler,
position, RNG states). Both load with ``weights_only=True``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import torch

from musicsep import MusicsepError, __version__
from musicsep.io import atomic_path
from musicsep.models.registry import build_model, model_info


def _first_line(err: Exception) -> str:
    """An error's message cut to its first line, without terminal escapes
    (torch's load errors run to several paragraphs; the command line prints one)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a model file or checkpoint (``weights_only`` load);
    returns the model (eval mode) and the file's contents. Anything else (a
    file torch cannot read, one holding pickled objects, a dict of other
    things, weights that do not fit the file's model arguments) is a
    one-line MusicsepError naming the file."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise MusicsepError(f"{path}: no such model file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        if found:
            raise MusicsepError(f"{path}: not a musicsep model file: it holds pickled Python objects "
                                f"({found[1]}; a module saved whole with torch.save(model)?), which are not "
                                "loaded; a model file holds a model name, its arguments and weights, as "
                                "musicsep train writes it") from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        raise MusicsepError(f"{path}: not a PyTorch file "
                            f"({found[1].strip() if found else _first_line(err) or 'unpickling failed'})") from None
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        reason = ": ".join(filter(None, (type(err).__name__, _first_line(err))))
        raise MusicsepError(f"{path}: not a PyTorch file ({reason})") from None
    if not isinstance(state, dict) or not {"model", "kwargs", "weights"} <= set(state) \
            or not isinstance(state["kwargs"], dict) or not isinstance(state["weights"], dict):
        raise MusicsepError(f"{path}: not a musicsep model file (no model name, kwargs and weights)")
    model_info(state["model"], f"{path}")
    model = build_model(state["model"], where=f"{path}: kwargs", **state["kwargs"])
    try:
        model.load_state_dict(state["weights"])
    except RuntimeError as err:           # missing, unexpected or misshapen weights, listed one per line
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MusicsepError(f"{path}: the weights do not fit {state['model']} with the file's kwargs: "
                            f"{problems[0] if problems else _first_line(err)}{more}") from None
    return model.eval(), state


def git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent)
        return proc.stdout.strip() or None if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _save(path: str | Path, contents: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(contents, tmp)


def _model_keys(model) -> dict:
    """What rebuilds a model: its registry name, constructor kwargs and weights."""
    return {"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}


def save_model_file(path: str | Path, model, spec: dict, epoch: int, valid_loss: float) -> None:
    """The model file of a finished experiment (what :func:`load_model` reads)."""
    _save(path, {**_model_keys(model), "spec": spec, "epoch": epoch, "valid_loss": valid_loss,
                 "version": __version__, "git_commit": git_commit()})


def save_checkpoint(path: str | Path, model, optimizer, scheduler, state: dict, spec: dict) -> None:
    """A run checkpoint: the model file's keys plus all a resumed run needs
    (optimizer, scheduler, position ``state``, RNG states)."""
    _save(path, {**_model_keys(model), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "state": dict(state), "rng": rng_states(), "spec": spec, "version": __version__,
                 "git_commit": git_commit()})


def load_checkpoint(path: str | Path, device: torch.device) -> dict:
    """A run checkpoint's contents (``weights_only``), tensors on ``device``."""
    return torch.load(path, map_location=device, weights_only=True)


def resume(saved: dict, model, optimizer, scheduler) -> dict:
    """Put a checkpoint's weights, optimizer, scheduler and RNG states back;
    returns its position ``state``."""
    model.load_state_dict(saved["weights"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_states(saved["rng"])
    return saved["state"]
