"""Audio pages and clips (musicsep.report.audio, `musicsep plots audio`)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import soundfile
from reportdata import SR, sources_with_a_loud_middle

from musicsep import SOURCES, TARGETS
from musicsep.cli import main
from musicsep.report.excerpt import read_excerpt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_audio_pages_and_clips(tmp_path, shard_and_models):
    shard, _ = shard_and_models
    sources = sources_with_a_loud_middle()
    estimates = tmp_path / "estimates" / "mysystem" / "artist_title"
    estimates.mkdir(parents=True)
    for k, target in enumerate(["drums", "bass", "other", "vocals"]):
        soundfile.write(estimates / f"{target}.wav", 0.5 * sources[k].T, SR, subtype="FLOAT")
    soundfile.write(estimates / "accompaniment.wav", 0.5 * sources[:3].sum(0).T, SR, subtype="FLOAT")

    ref_dir, sys_dir = tmp_path / "audio" / "reference", tmp_path / "audio" / "mysystem"
    assert main(["plots", "audio", "--shard", str(shard), "--out-dir", str(ref_dir),
                 "--page", str(tmp_path / "audio" / "reference.html"), "--seconds", "2"]) == 0
    assert main(["plots", "audio", "--shard", str(shard), "--estimates", str(estimates), "--out-dir", str(sys_dir),
                 "--page", str(tmp_path / "audio" / "mysystem.html"), "--seconds", "2"]) == 0
    assert sorted(p.name for p in ref_dir.iterdir()) == sorted(f"{t}.wav" for t in ["mixture", *TARGETS])
    assert sorted(p.name for p in sys_dir.iterdir()) == sorted(f"{t}.wav" for t in TARGETS)
    excerpt = read_excerpt(shard, 2.0)
    mixture, rate = soundfile.read(ref_dir / "mixture.wav", dtype="float32", always_2d=True)
    assert rate == SR and mixture.shape == (2 * SR, 2)
    np.testing.assert_allclose(mixture.T, excerpt.mixture, atol=1 / 2 ** 15)
    vocals, _ = soundfile.read(sys_dir / "vocals.wav", dtype="float32", always_2d=True)
    np.testing.assert_allclose(vocals.T, 0.5 * excerpt.sources[SOURCES.index("vocals")], atol=1 / 2 ** 15)

    for name, heading in [("reference", "Reference: the mixture and the true sources"),
                          ("mysystem", "mysystem: estimates")]:
        page = (tmp_path / "audio" / f"{name}.html").read_text()
        assert f"<h2>{heading}</h2>" in page and "Artist - Title, 3.0–5.0 s" in page
        players = re.findall(r'<audio controls preload="none" src="data:audio/(mpeg|wav);base64,([^"]+)"', page)
        assert len(players) == 6                                           # the mixture and five targets
        data = base64.b64decode(players[0][1])
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        assert rate == SR and abs(len(audio) - 2 * SR) < SR // 10

    soundfile.write(estimates / "vocals.wav", sources[3].T, 8000)
    assert main(["plots", "audio", "--shard", str(shard), "--estimates", str(estimates), "--out-dir",
                 str(tmp_path / "x"), "--page", str(tmp_path / "x.html")]) == 1
