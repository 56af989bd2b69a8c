"""The training loader on shards whose audio encodes where it came from:
channel 0 holds the sample index (t / 2**20, exact in float32), channel 1 the
track number plus the source number / 10."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from musicsep import STREAMS
from musicsep.data.excerpts import ExcerptDataset, ValidationSet
from musicsep.data.shard import Shard

RATE = 8000
SECONDS = [5.0, 4.0, 6.0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, make_shard):
    root = tmp_path_factory.mktemp("coded")
    paths = []
    for track, seconds in enumerate(SECONDS):
        n = int(seconds * RATE)
        audio = np.stack([np.stack([np.arange(n) / 2**20, np.full(n, track + k / 10)])
                          for k in range(len(STREAMS))]).astype(np.float32)       # stream k of track
        paths.append(make_shard(root / "shards" / f"t{track}.h5", audio[1:], mixture=audio[0], sample_rate=RATE,
                                name=f"Track {track}", split="train"))
    return paths


def decode_item(sources):
    """(offset, track, source number) of each source of an item."""
    offsets = (sources[:, 0, 0] * 2**20).round().long().tolist()
    codes = sources[:, 1, 0].tolist()
    return [(o, int(c + 1e-4), round((c - int(c + 1e-4)) * 10)) for o, c in zip(offsets, codes)]


def test_shapes(shards):
    ds = ExcerptDataset(shards, 1.0, samples_per_epoch=7)
    assert len(ds) == 7 and ds.sample_rate == RATE
    sources = ds[3]
    assert sources.shape == (4, 2, RATE) and sources.dtype == torch.float32


def test_coherent_excerpts_share_offset_and_track(shards):
    ds = ExcerptDataset(shards, 1.0, incoherent=False, samples_per_epoch=20)
    for i in range(20):
        sources = ds[i]
        info = decode_item(sources)
        assert len({(o, t) for o, t, _ in info}) == 1
        assert [s for _, _, s in info] == [1, 2, 3, 4], "sources out of MUSDB order"
        # the excerpt is contiguous audio of that track
        offset, track, _ = info[0]
        expected = (offset + np.arange(RATE)) / 2**20
        np.testing.assert_allclose(sources[0, 0].numpy(), expected, rtol=0, atol=1e-7)
        assert offset + RATE <= SECONDS[track] * RATE


def test_incoherent_offsets_are_independent(shards):
    ds = ExcerptDataset(shards, 1.0, incoherent=True, samples_per_epoch=50)
    items = [decode_item(ds[i]) for i in range(50)]
    assert all(len({t for _, t, _ in info}) == 1 for info in items), "tracks mixed without incoherent_tracks"
    assert sum(len({o for o, _, _ in info}) == 4 for info in items) >= 45
    across = ExcerptDataset(shards, 1.0, incoherent=True, incoherent_tracks=True, samples_per_epoch=50)
    assert sum(len({t for _, t, _ in decode_item(across[i])}) > 1 for i in range(50)) >= 30


def test_draws_are_reproducible_and_differ_by_epoch_and_rank(shards):
    a = ExcerptDataset(shards, 1.0, seed=1)
    b = ExcerptDataset(shards, 1.0, seed=1)
    torch.testing.assert_close(a[5], b[5])
    b.set_epoch(1)
    assert not torch.equal(a[5], b[5])
    c = ExcerptDataset(shards, 1.0, seed=1, rank=1)
    assert not torch.equal(a[5], c[5])


def test_workers_give_the_same_excerpts(shards):
    ds = ExcerptDataset(shards, 0.5, samples_per_epoch=6, seed=3)
    serial = [ds[i] for i in range(6)]
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    batches = list(loader)
    assert batches[0].shape == (3, 4, 2, RATE // 2)
    torch.testing.assert_close(torch.cat(batches), torch.stack(serial))


def test_curriculum_and_short_tracks(shards):
    ds = ExcerptDataset(shards, 1.0)
    ds.set_excerpt_seconds(0.2)
    assert ds[0].shape[-1] == int(0.2 * RATE)
    ds.set_excerpt_seconds(10.0)           # longer than every track: zero-padded
    sources = ds[0]
    assert sources.shape[-1] == 10 * RATE
    assert torch.all(sources[..., -RATE:] == 0)


def test_validation_set_is_fixed(shards):
    a = ValidationSet(shards, 1.0, per_track=3)
    b = ValidationSet(shards, 1.0, per_track=3)
    assert len(a) == 9
    for i in range(len(a)):
        torch.testing.assert_close(a[i], b[i])
    info = [decode_item(a[i]) for i in range(3)]
    offsets = [i[0][0] for i in info]
    assert offsets == [0, 16000, 32000]          # evenly spaced over a 5 s track
    assert all(len({o for o, _, _ in i}) == 1 for i in info)   # coherent


def test_filtered_shards_are_read_through_h5py(shards, tmp_path, make_shard):
    """A shard written with compression (no direct chunk reads) gives the same excerpts."""
    packed = []
    for path in shards:
        with Shard(path) as shard:
            audio, name = shard.audio[:], shard.name
        packed.append(make_shard(tmp_path / path.name, audio[1:], mixture=audio[0], sample_rate=RATE, name=name,
                                 split="train", chunk=1000, compression="gzip"))
    fast, slow = ExcerptDataset(shards, 0.7, seed=9), ExcerptDataset(packed, 0.7, seed=9)
    assert slow.shards.offsets == [None] * 3 and all(o is not None for o in fast.shards.offsets)
    for i in range(10):
        torch.testing.assert_close(fast[i], slow[i])
