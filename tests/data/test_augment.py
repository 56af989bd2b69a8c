"""Augmentation of training excerpts (``loader.augment``): each augmentation
does what it says to each source, the draws are reproducible, off changes
nothing (bit for bit against the loader before augmentation existed),
validation is never augmented, bad settings are named, and the setting
reaches the experiments' specs and run folders only when it augments."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from musicsep import MusicsepError
from musicsep.data.augment import OFF, Augment, is_off
from musicsep.data.excerpts import ExcerptDataset, ValidationSet
from musicsep.data.shard import SOURCE_ROWS, Shard
from musicsep.train.runs import prepare_run_dir, spec_hash
from musicsep.workflow.config import layer, validate
from musicsep.workflow.plan import experiment_specs, load_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config" / "schema.yaml"
RATE = 8000
ALL_ON = {"gain": [0.25, 1.25], "channel_swap": True, "polarity_flip": True, "source_dropout": 0.2}


def noise_shards(root: Path, make_shard, channels: int) -> list[Path]:
    """Three tracks of noise (no sample exactly zero; the channels differ)."""
    rng = np.random.default_rng(channels)
    paths = []
    for track, seconds in enumerate([3.0, 2.0, 4.0]):
        audio = rng.uniform(0.1, 1.0, (4, channels, int(seconds * RATE))) * rng.choice([-1, 1], (4, channels, 1))
        paths.append(make_shard(root / f"t{track}.h5", audio.astype(np.float32), sample_rate=RATE,
                                name=f"Track {track}", split="train"))
    return paths


@pytest.fixture(scope="module")
def stereo(tmp_path_factory, make_shard):
    return noise_shards(tmp_path_factory.mktemp("stereo"), make_shard, 2)


@pytest.fixture(scope="module")
def mono(tmp_path_factory, make_shard):
    return noise_shards(tmp_path_factory.mktemp("mono"), make_shard, 1)


def pairs(shards, augment, n=60, **options):
    """(plain, augmented) excerpts of the same seed, epoch and index."""
    plain = ExcerptDataset(shards, 0.25, samples_per_epoch=n, seed=4, **options)
    augmented = ExcerptDataset(shards, 0.25, samples_per_epoch=n, seed=4, augment=augment, **options)
    return [(plain[i].numpy(), augmented[i].numpy()) for i in range(n)]


def unaugmented(ds: ExcerptDataset, index: int) -> np.ndarray:
    """An excerpt as ExcerptDataset drew it before augmentation existed (its code then)."""
    rng = np.random.default_rng([ds.seed, ds.rank, ds.epoch, index])
    n_tracks = len(ds.shards.paths)
    track = int(rng.integers(n_tracks))
    if not ds.incoherent:
        return ds.shards.read(track, SOURCE_ROWS, ds._offset(rng, track), ds.excerpt)
    sources = np.empty((len(SOURCE_ROWS), ds.shards.channels, ds.excerpt), dtype=np.float32)
    for i, row in enumerate(SOURCE_ROWS):
        src_track = int(rng.integers(n_tracks)) if ds.incoherent_tracks else track
        ds.shards.read_into(sources[i], src_track, row, ds._offset(rng, src_track))
    return sources


@pytest.mark.parametrize("augment", [None, {}, dict(OFF), {"gain": None, "source_dropout": 0.0}])
@pytest.mark.parametrize("incoherent, tracks", [(True, False), (True, True), (False, False)])
def test_off_is_bit_for_bit_the_loader_without_augmentation(stereo, augment, incoherent, tracks):
    ds = ExcerptDataset(stereo, 0.3, incoherent=incoherent, incoherent_tracks=tracks, samples_per_epoch=12,
                        seed=7, rank=1, augment=augment)
    assert not ds.augment.active
    for epoch in (0, 3):
        ds.set_epoch(epoch)
        for i in range(12):
            assert ds[i].numpy().tobytes() == unaugmented(ds, i).tobytes()


def test_gain_is_one_draw_per_source_within_the_range(stereo):
    gains = []
    for plain, augmented in pairs(stereo, {"gain": [0.5, 1.5]}):
        ratio = augmented / plain
        per_source = ratio[:, 0, 0]
        np.testing.assert_allclose(ratio, per_source[:, None, None] * np.ones_like(ratio), rtol=1e-6)
        assert len(set(per_source.round(6))) == 4, "the sources share a gain"
        gains.extend(per_source)
    assert 0.5 <= min(gains) < 0.55 and 1.45 < max(gains) <= 1.5 + 1e-6


def test_channel_swap_swaps_the_channels_of_some_sources(stereo):
    swapped = 0
    for plain, augmented in pairs(stereo, {"channel_swap": True}):
        for source, out in zip(plain, augmented):
            if np.array_equal(out, source[::-1]):
                swapped += 1
            else:
                assert np.array_equal(out, source), "neither the source nor its channels swapped"
    assert 80 < swapped < 160, f"{swapped} of 240 sources swapped, not about half"


def test_polarity_flip_negates_some_sources(stereo):
    flipped = 0
    for plain, augmented in pairs(stereo, {"polarity_flip": True}):
        for source, out in zip(plain, augmented):
            if np.array_equal(out, -source):
                flipped += 1
            else:
                assert np.array_equal(out, source)
    assert 80 < flipped < 160, f"{flipped} of 240 sources negated, not about half"


@pytest.mark.parametrize("p", [0.3, 0.9])
def test_source_dropout_silences_sources_never_all(stereo, p):
    dropped, alone = 0, 0
    for plain, augmented in pairs(stereo, {"source_dropout": p}, n=100):
        silent = [not out.any() for out in augmented]
        assert not all(silent), "every source silenced"
        for source, out, gone in zip(plain, augmented, silent):
            assert gone or np.array_equal(out, source)
        dropped += sum(silent)
        alone += sum(silent) == 3
    if p == 0.3:
        assert 80 < dropped < 160, f"{dropped} of 400 sources silenced at p 0.3"
    else:       # 0.9: three or four drawn 95% of the time (all four: 66%), and then one is kept
        assert alone > 85 and dropped > 270


def test_all_together_and_the_mixture_is_their_sum(stereo):
    for plain, augmented in pairs(stereo, ALL_ON):
        for source, out in zip(plain, augmented):
            if not out.any():
                continue
            straight = out / source
            crossed = out / source[::-1]
            ratio = straight if np.allclose(straight, straight.flat[0], rtol=1e-5) else crossed
            np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
            assert 0.25 - 1e-6 <= abs(ratio.flat[0]) <= 1.25 + 1e-6
    batch = torch.stack([torch.from_numpy(a) for _, a in pairs(stereo, ALL_ON, n=4)])
    from musicsep.train.objective import spectrograms

    class Features:
        @staticmethod
        def stft(x):
            return torch.stft(x.flatten(0, 1), 64, 16, window=torch.hann_window(64), return_complex=True
                              ).unflatten(0, x.shape[:2])

    mix_spec, _ = spectrograms(Features, batch)          # what training separates: the augmented sources' sum
    expected = Features.stft(batch.sum(1).reshape(-1, 1, batch.shape[-1]))[:, 0]
    torch.testing.assert_close(mix_spec, expected, rtol=1e-4, atol=1e-4)


def test_mono_channel_swap_changes_nothing(mono):
    for plain, augmented in pairs(mono, {"channel_swap": True}):
        assert plain.shape[1] == 1 and np.array_equal(plain, augmented)
    for plain, augmented in pairs(mono, ALL_ON, n=10):
        assert augmented.shape == plain.shape and not np.array_equal(plain, augmented)


def test_draws_are_reproducible_and_differ_by_epoch(stereo):
    a = ExcerptDataset(stereo, 0.25, seed=2, augment=ALL_ON)
    b = ExcerptDataset(stereo, 0.25, seed=2, augment=ALL_ON)
    for i in range(8):
        assert torch.equal(a[i], b[i])
    b.set_epoch(1)
    assert not any(torch.equal(a[i], b[i]) for i in range(8))
    # the augmentation's own draws differ from one excerpt to the next: gains of the same positions
    c = ExcerptDataset(stereo, 0.25, seed=2, augment={"gain": [0.25, 1.25]})
    plain = ExcerptDataset(stereo, 0.25, seed=2)
    gains = {tuple((c[i] / plain[i])[:, 0, 0].numpy().round(5)) for i in range(8)}
    assert len(gains) == 8


def test_workers_give_the_same_augmented_excerpts(stereo):
    ds = ExcerptDataset(stereo, 0.25, samples_per_epoch=6, seed=3, augment=ALL_ON)
    serial = torch.stack([ds[i] for i in range(6)])
    torch.testing.assert_close(torch.cat(list(DataLoader(ds, batch_size=3, num_workers=2))), serial,
                               rtol=0, atol=0)


def test_validation_is_never_augmented(stereo):
    valid = ValidationSet(stereo, 0.25, per_track=2)
    with Shard(stereo[0]) as shard:
        audio = shard.audio[:]
    first, last = valid[0].numpy(), valid[1].numpy()
    excerpt = first.shape[-1]
    assert np.array_equal(first, audio[list(SOURCE_ROWS), :, :excerpt])
    assert np.array_equal(last, audio[list(SOURCE_ROWS), :, -excerpt:])
    with pytest.raises(TypeError):
        ValidationSet(stereo, 0.25, per_track=2, augment=ALL_ON)


@pytest.mark.parametrize("augment, message", [
    ({"gain": [1.5, 0.5]}, "config key loader.augment.gain: [1.5, 0.5]: the low gain 1.5 is above the high gain 0.5"),
    ({"gain": [0.5]}, "config key loader.augment.gain: [0.5] is too short"),
    ({"gain": [-0.5, 1]}, "config key loader.augment.gain.0: -0.5 is less than the minimum of 0"),
    ({"gain": 1.0}, "config key loader.augment.gain: 1.0 is not of type 'array', 'null'"),
    ({"source_dropout": 1}, "config key loader.augment.source_dropout: 1 is greater than or equal to the maximum"),
    ({"source_dropout": -0.1}, "config key loader.augment.source_dropout: -0.1 is less than the minimum of 0"),
    ({"channel_swap": 2}, "config key loader.augment.channel_swap: 2 is not of type 'boolean'"),
    ({"flip": True}, "unknown config key loader.augment.flip (allowed in loader.augment: channel_swap, gain"),
])
def test_bad_config_values_are_named(augment, message):
    with pytest.raises(MusicsepError) as info:
        validate({"loader": {"augment": augment}}, SCHEMA)
    assert str(info.value).splitlines() == [str(info.value)] and str(info.value).startswith(message)


@pytest.mark.parametrize("augment, message", [
    ({"gain": [2, 1]}, "loader.augment.gain: [2, 1]: the low gain 2 is above the high gain 1"),
    ({"gain": [0.5, "x"]}, "loader.augment.gain: [0.5, 'x'] is not a range [low, high] of two numbers"),
    ({"gain": [-1, 1]}, "loader.augment.gain: [-1, 1]: the low gain is negative"),
    ({"source_dropout": 1.0}, "loader.augment.source_dropout: 1.0: a probability in [0, 1) expected"),
    ({"polarity_flip": "yes"}, "loader.augment.polarity_flip: 'yes' is not true or false"),
    ({"dropout": 0.1}, "loader.augment.dropout: unknown augmentation (known: gain, channel_swap"),
    ([0.25, 1.25], "loader.augment: [0.25, 1.25] is not a mapping"),
])
def test_a_bad_spec_is_named_when_the_loader_starts(stereo, augment, message):
    """A spec written by hand (``musicsep train --spec``) is checked by the loader itself."""
    with pytest.raises(MusicsepError) as info:
        ExcerptDataset(stereo, 0.25, augment=augment)
    assert str(info.value).startswith(message)


def specs(*layers: dict) -> dict:
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return experiment_specs(load_config(layer([default, *layers]), ROOT))


def test_off_is_left_out_of_the_specs_and_keeps_older_runs(tmp_path):
    for off in ({}, {"loader": {"augment": dict(OFF)}}, {"loader": {"augment": {"source_dropout": 0.0}}}):
        spec = specs(off)["baseline"]
        assert sorted(spec["loader"]) == ["excerpt_seconds", "incoherent", "incoherent_tracks",
                                          "samples_per_epoch", "seed", "valid_excerpts_per_track"]
    run = tmp_path / "baseline"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps(spec))      # a run of the version before augmentation
    (run / "latest.pt").write_bytes(b"checkpoint")
    prepare_run_dir(run, specs({"loader": {"augment": {"gain": None}}})["baseline"])
    assert (run / "latest.pt").read_bytes() == b"checkpoint"


def test_an_augmentation_is_in_the_specs_and_starts_afresh(tmp_path):
    on = specs({"loader": {"augment": {"gain": [0.25, 1.25]}}})["baseline"]
    assert on["loader"]["augment"] == {**OFF, "gain": [0.25, 1.25]}
    other = specs({"loader": {"augment": {"gain": [0.5, 1.25]}}})["baseline"]
    off = specs()["baseline"]
    assert len({spec_hash(on), spec_hash(other), spec_hash(off)}) == 3
    run = tmp_path / "baseline"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps(off))
    prepare_run_dir(run, on)
    assert json.loads((run / "spec.json").read_text())["loader"]["augment"]["gain"] == [0.25, 1.25]
    assert list(tmp_path.glob("baseline.*")), "the run without augmentation was not moved aside"
    assert Augment.from_config(on["loader"]["augment"]) == Augment(gain=(0.25, 1.25))


def test_is_off():
    assert is_off(None) and is_off({}) and is_off(dict(OFF)) and is_off({"gain": None})
    assert not is_off({"channel_swap": True}) and not is_off({"source_dropout": 0.5})
    assert not Augment.from_config(None).active and Augment.from_config(ALL_ON).active
