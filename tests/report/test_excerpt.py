"""The report's excerpt (musicsep.report.excerpt): where all sources play."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from reportdata import SR, sources_with_a_loud_middle

from musicsep import MusicsepError
from musicsep.report.excerpt import choose_start, read_excerpt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_excerpt_is_where_all_sources_play(tmp_path, make_shard):
    shard = make_shard(tmp_path / "t.h5", sources_with_a_loud_middle(), sample_rate=SR)
    with h5py.File(shard) as h5:
        assert choose_start(h5["audio"], SR, 2 * SR) == 3 * SR
        assert choose_start(h5["audio"], SR, 10 * SR) == 0
    excerpt = read_excerpt(shard, 2.0)
    assert excerpt.start == 3 * SR and excerpt.audio.shape == (5, 2, 2 * SR) and excerpt.name == "Artist - Title"
    np.testing.assert_array_equal(excerpt.sources.sum(0), excerpt.mixture)
    assert excerpt.describe() == "Artist - Title, 3.0–5.0 s"
    assert read_excerpt(shard, 2.0, start=5.5).start == 4 * SR          # kept inside the track
    assert read_excerpt(shard, 60.0).audio.shape[-1] == 6 * SR          # shorter track: all of it
    with pytest.raises(MusicsepError, match="not a readable shard"):
        read_excerpt(tmp_path / "missing.h5")
