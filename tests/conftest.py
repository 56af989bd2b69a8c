"""Shared fixtures: real MUSDB-format data built from the MUSDB18 excerpt that
stempeg ships, and small toy datasets."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import stempeg

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

# Names as real MUSDB18 names are written; the first is an official validation track.
REAL_NAMES = {
    "train": ["Actions - One Minute Smile", "Juliet's Rescue - Heartbeats"],
    "test": ["The Easton Ellises (Baumi) - SDRNR"],
}


@pytest.fixture(scope="session")
def example_stem() -> Path:
    """The real MUSDB18 test-set excerpt in stempeg's wheel (6 s, 5 AAC streams)."""
    return Path(stempeg.example_stem_path())


def make_real_musdb(root: Path, example: Path, names=REAL_NAMES) -> Path:
    for subset, tracks in names.items():
        (root / subset).mkdir(parents=True, exist_ok=True)
        for name in tracks:
            shutil.copy(example, root / subset / f"{name}.stem.mp4")
    return root


@pytest.fixture(scope="session")
def real_musdb(tmp_path_factory, example_stem) -> Path:
    """A MUSDB18-layout folder of real audio (read only: copy before changing)."""
    return make_real_musdb(tmp_path_factory.mktemp("real") / "musdb18", example_stem)


@pytest.fixture(scope="session")
def toy_zip(tmp_path_factory) -> Path:
    """A small toy MUSDB in musdb18.zip format: 2 train + 1 test tracks of 4 s."""
    from musicsep.toy.musdb import make_toy_musdb

    return make_toy_musdb(tmp_path_factory.mktemp("toy") / "musdb18-toy.zip",
                          seed=7, train=2, test=1, duration=4.0, jobs=2)


@pytest.fixture()
def env_path(monkeypatch):
    """PATH with this interpreter's bin first (for snakemake and python -m musicsep)."""
    monkeypatch.setenv("PATH", os.pathsep.join([BIN, os.environ.get("PATH", "")]))
    return os.environ["PATH"]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and a busy machine slows them less."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
