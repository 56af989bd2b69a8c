"""Mask figures (musicsep.report.masks, `musicsep plots masks`)."""

from __future__ import annotations

import pytest
from reportdata import PNG, SR

from musicsep.cli import main
from musicsep.report.masks import plot_masks

pytestmark = pytest.mark.usefixtures("one_thread")


def test_masks_figure(tmp_path, shard_and_models):
    shard, models = shard_and_models
    for exp, path in models.items():
        out = tmp_path / f"{exp}.png"
        assert main(["plots", "masks", "--model", str(path), "--shard", str(shard), "--seconds", "2",
                     "--out", str(out)]) == 0
        assert out.read_bytes().startswith(PNG)
    excerpt = plot_masks(models["base"], shard, tmp_path / "x.svg", seconds=1.5, start=0.5, name="named")
    assert excerpt.start == SR // 2 and "named: masks on Artist - Title, 0.5–2.0 s" in (tmp_path / "x.svg").read_text()
