"""Inputs for the report's tests (tests/report): a track whose sources all
sound only in [3, 5) s, tiny model files, and the shard and models the
figures are drawn from."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

from musicsep.models.registry import build_model

SR = 16000

TINY = dict(hidden=8, layers=1, n_mels=32, n_fft=512, hop=128, sample_rate=SR)

PNG = b"\x89PNG\r\n\x1a\n"


def assert_svg(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root


def sources_with_a_loud_middle(seconds: float = 6.0, rate: int = SR, seed: int = 0) -> np.ndarray:
    """Four stereo sources ``(4, 2, samples)``: tones and noise, all four
    sounding together only in [3, 5) s (bass and vocals are silent before)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    gate = ((t >= 3) & (t < 5)).astype(np.float32)
    drums = 0.3 * rng.standard_normal(len(t)) * np.exp(-30 * ((4 * t) % 1))
    bass = 0.5 * np.sin(2 * np.pi * 70 * t) * gate
    other = 0.2 * np.sin(2 * np.pi * 440 * t) * (t < 5)
    vocals = sum(0.2 / h * np.sin(2 * np.pi * 220 * h * t) for h in range(1, 6)) * gate
    mono = np.stack([drums, bass, other, vocals])
    return np.stack([mono * 0.5, mono * 0.4], axis=1).astype(np.float32)


def save_tiny(path: Path, name: str, **kw) -> Path:
    torch.manual_seed(0)
    model = build_model(name, **TINY, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict(),
                "spec": {"name": path.parent.name}}, path)
    return path


def shard_and_models(root: Path, make_shard) -> tuple[Path, dict[str, Path]]:
    """Under ``root``: a shard of :func:`sources_with_a_loud_middle` and three
    tiny model files (base: blstm_mask, cc: conditional_centroids, dc:
    deep_clustering); returns (shard, {name: model file})."""
    shard = make_shard(root / "track.h5", sources_with_a_loud_middle(), sample_rate=SR)
    models = {"base": save_tiny(root / "base" / "model.pt", "blstm_mask"),
              "cc": save_tiny(root / "cc" / "model.pt", "conditional_centroids", dim=5),
              "dc": save_tiny(root / "dc" / "model.pt", "deep_clustering", dim=6)}
    return shard, models
