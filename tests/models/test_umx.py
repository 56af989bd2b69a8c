"""Open-Unmix (musicsep.models.umx) against the reference implementation,
openunmix 1.3.0 from PyPI: the network's outputs, a training step, and the
separation with and without the Wiener filter; then the model in the
package: registry, shapes, loss, statistics, model files, configs, training.

openunmix's package imports torchaudio at its top, though its model and
separator use none of it; torchaudio has no release for torch 2.13 (and
would replace it), so scripts/setup.sh installs openunmix without its
dependencies, and its import is given an empty module of that name where
torchaudio is not installed (for the import only)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
import types

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from tinymodels import HOP, N_FFT, N_FREQ, SR

from musicsep import SOURCES, MusicsepError
from musicsep.models.checkpoint import load_model, save_model_file
from musicsep.models.losses import mse_magnitude_loss
from musicsep.models.registry import build_model
from musicsep.models.umx import bandwidth_to_max_bin, magnitude_statistics
from musicsep.separate.separator import Separator
from musicsep.spectral.features import compute_stats
from musicsep.spectral.stft import stft
from musicsep.train.loop import make_optimizer, optimizer_step
from musicsep.train.objective import compute_loss, magnitudes
from musicsep.workflow.check import check_files

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEMA, CONFIG, TOY = (ROOT / "config" / name for name in ("schema.yaml", "config.yaml", "toy.yaml"))
TINY_UMX = {"sample_rate": SR, "n_fft": N_FFT, "hop": HOP, "hidden": 16, "layers": 3, "bandwidth": 3000}


@pytest.fixture(scope="module")
def openunmix():
    """``openunmix.model`` of openunmix 1.3.0 (see the module's docstring)."""
    try:
        version = importlib.metadata.version("openunmix")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("openunmix is not installed: scripts/setup.sh installs it "
                    "(pip install --no-deps -c constraints.txt openunmix)")
    assert version == "1.3.0"
    stand_in = "torchaudio" not in sys.modules and importlib.util.find_spec("torchaudio") is None
    if stand_in:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import openunmix.model
        import openunmix.utils
    finally:
        if stand_in:
            del sys.modules["torchaudio"]
    assert openunmix.utils.bandwidth_to_max_bin(SR, N_FFT, 3000) == bandwidth_to_max_bin(SR, N_FFT, 3000)
    return openunmix.model


def tiny_umx(**kwargs):
    torch.manual_seed(0)
    return build_model("umx", **(TINY_UMX | kwargs))


def with_statistics(model, seed: int = 0):
    """Non-trivial input statistics, and BatchNorm running statistics from a few training-mode passes."""
    rng = np.random.default_rng(seed)
    model.set_input_statistics(rng.uniform(0.1, 1, N_FREQ), rng.uniform(0.5, 2, N_FREQ))
    model.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2 * model.channels, N_FREQ, 30, generator=g) * 3)
    return model.eval()


def test_bandwidth_to_max_bin_is_open_unmix_s(openunmix):
    import openunmix.utils

    for rate, n_fft, bandwidth in [(44100, 4096, 16000), (44100, 2048, 16000), (8000, 256, 4000), (8000, 256, 0)]:
        assert bandwidth_to_max_bin(rate, n_fft, bandwidth) == openunmix.utils.bandwidth_to_max_bin(
            rate, n_fft, bandwidth)
    assert bandwidth_to_max_bin(44100, 4096, 16000) == 1487               # umxhq's max_bin


@pytest.mark.parametrize("channels,layers,unidirectional,bandwidth", [
    (2, 3, False, 3000), (1, 3, False, 4000), (2, 1, True, 1000)])
def test_network_is_open_unmix_s(openunmix, channels, layers, unidirectional, bandwidth):
    """The same seed gives both the same weights; open-unmix's weights load as
    they are; eval and training mode give the same outputs."""
    model = tiny_umx(channels=channels, layers=layers, unidirectional=unidirectional, bandwidth=bandwidth)
    ours = with_statistics(model).targets["vocals"]
    torch.manual_seed(1)
    ref = openunmix.OpenUnmix(nb_bins=N_FREQ, nb_channels=channels, hidden_size=16, nb_layers=layers,
                              unidirectional=unidirectional, max_bin=model.max_bin)
    torch.manual_seed(1)
    fresh = type(ours)(N_FREQ, channels, 16, layers, unidirectional, model.max_bin)
    assert list(fresh.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(3, channels, N_FREQ, 25, generator=torch.Generator().manual_seed(2)) * 4
    with torch.no_grad():
        expected = ref.eval()(x)
        torch.testing.assert_close(ours.eval()(x), expected, rtol=1e-5, atol=1e-6)
        assert expected.abs().max() > 0
        ref.train(), ours.train()
        torch.manual_seed(3)
        expected = ref(x)
        torch.manual_seed(3)
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)


def sources_audio(batch: int = 3, channels: int = 2, seconds: float = 0.4, seed: int = 0) -> torch.Tensor:
    """Sources ``(batch, 4, channels, samples)``: a noise burst, a low tone, a chord, a vibrato tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    out = []
    for _ in range(batch):
        drums = rng.standard_normal(len(t)) * np.exp(-20 * (t % 0.125))
        bass = np.sin(2 * np.pi * rng.uniform(50, 90) * t)
        other = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(300, 700, 3)) / 2
        vocals = np.sin(2 * np.pi * rng.uniform(1000, 1500) * t + 3 * np.sin(2 * np.pi * 5 * t))
        sources = 0.2 * np.stack([drums, bass, other, vocals])
        out.append(np.stack([sources * rng.uniform(0.5, 1, (4, 1)) for _ in range(channels)], axis=1))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def test_a_training_step_is_open_unmix_s(openunmix):
    """compute_loss's gradient in a source's network (the first: dropout draws
    alike) is that of open-unmix's own training (mse_loss of its target), and
    an Adam step with weight decay moves both weights alike."""
    model = with_statistics(tiny_umx()).train()
    ref = openunmix.OpenUnmix(nb_bins=N_FREQ, nb_channels=2, hidden_size=16, nb_layers=3, max_bin=model.max_bin)
    ref.load_state_dict(model.targets["drums"].state_dict())
    ref.train()
    sources = sources_audio()
    mix_mag, src_mag = magnitudes(model.features, sources)
    x = mix_mag.unflatten(0, (3, 2))
    y = src_mag[:, 0].unflatten(0, (3, 2))
    optimizer = make_optimizer(model, 1e-3, 1e-5)
    ref_optimizer = torch.optim.Adam(ref.parameters(), lr=1e-3, weight_decay=1e-5)
    torch.manual_seed(4)
    loss, parts = compute_loss(model, "mse", sources, dc_weight=1.0)
    torch.manual_seed(4)
    ref_loss = torch.nn.functional.mse_loss(ref(x), y)
    torch.testing.assert_close(parts["mse_drums"], ref_loss.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(loss, sum(parts[f"mse_{s}"] for s in SOURCES), rtol=1e-6, atol=0)
    optimizer_step(model, optimizer, loss, max_norm=1e9)
    ref_optimizer.zero_grad()
    ref_loss.backward()
    ref_optimizer.step()
    net = model.targets["drums"]
    for name, param in ref.named_parameters():
        ours = net.get_parameter(name)
        torch.testing.assert_close(ours.grad, param.grad, rtol=1e-4, atol=1e-7, msg=name)
        torch.testing.assert_close(ours.detach(), param.detach(), rtol=1e-5, atol=1e-7, msg=name)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-5


@pytest.mark.parametrize("wiener", [False, True], ids=["masks", "wiener"])
def test_separation_is_open_unmix_s_separator(openunmix, wiener):
    """Our Separator (the estimates' magnitudes with the mixture's phase;
    with ``wiener``, one multichannel Wiener iteration) gives what
    open-unmix's Separator (niter 0, softmask False; niter 1) gives with the
    same weights, on the whole signal in one chunk; chunked with context, close."""
    model = with_statistics(tiny_umx(layers=2))
    nets = {}
    for source in SOURCES:
        nets[source] = openunmix.OpenUnmix(nb_bins=N_FREQ, nb_channels=2, hidden_size=16, nb_layers=2,
                                           max_bin=model.max_bin)
        nets[source].load_state_dict(model.targets[source].state_dict())
    ref_separator = openunmix.Separator(nets, niter=int(wiener), softmask=False, sample_rate=SR, n_fft=N_FFT,
                                        n_hop=HOP, nb_channels=2, wiener_win_len=None).eval()
    audio = sources_audio(batch=1, seconds=2.0)[0].sum(0).numpy()
    with torch.no_grad():
        expected = ref_separator(torch.from_numpy(audio)[None])[0].numpy()            # (sources, channels, time)
    whole = Separator(model, chunk_seconds=10, context_seconds=0, wiener=wiener).separate(audio)
    scale = np.abs(expected).max()
    assert scale > 0.01
    tolerance = 1e-4 if wiener else 1e-5        # open-unmix inverts the mixture's covariances in float32, we in float64
    np.testing.assert_allclose(np.stack([whole[s] for s in SOURCES]), expected, rtol=0, atol=tolerance * scale)
    if not wiener:           # (the Wiener filter's covariances are each chunk's: open-unmix's per window)
        chunked = Separator(model, chunk_seconds=0.5, context_seconds=0.25).separate(audio)
        assert np.abs(np.stack([chunked[s] for s in SOURCES]) - expected).max() < 1e-3 * scale


def test_registry_shapes_masks_and_mono(openunmix):
    model = with_statistics(tiny_umx())
    assert model.name == "umx" and model.kwargs()["channels"] == 2 and model.kwargs()["hidden"] == 16
    mix = torch.rand(4, N_FREQ, 30, generator=torch.Generator().manual_seed(5)) + 0.01    # 2 stereo examples
    with torch.no_grad():
        out = model(mix)
        low = model(mix, full_resolution=False)
        masks = model.masks(mix)
    assert set(out) == {"masks", "magnitudes"} and set(low) == {"mel_masks", "magnitudes"}
    assert out["masks"].shape == out["magnitudes"].shape == (4, len(SOURCES), N_FREQ, 30)
    assert torch.equal(out["masks"], masks) and torch.equal(low["mel_masks"], masks)
    assert torch.equal(model.features.to_linear(masks), masks) and torch.equal(model.mel_masks(mix), masks)
    assert masks.min() >= 0 and masks.max() > 1                          # not clamped: open-unmix's gains
    torch.testing.assert_close(out["magnitudes"] / mix[:, None], masks)
    # open-unmix's output per source and channel, the stereo examples unfolded
    ref = openunmix.OpenUnmix(nb_bins=N_FREQ, nb_channels=2, hidden_size=16, nb_layers=3, max_bin=model.max_bin)
    ref.load_state_dict(model.targets["bass"].state_dict())
    with torch.no_grad():
        expected = ref.eval()(mix.unflatten(0, (2, 2)))
    torch.testing.assert_close(out["magnitudes"][:, SOURCES.index("bass")], expected.flatten(0, 1))
    # a single channel (the batch is no multiple of 2) goes in on both channels: the first's masks
    with torch.no_grad():
        mono = model.masks(mix[:1])
        both = model.masks(mix[:1].expand(2, -1, -1))
    assert mono.shape == (1, len(SOURCES), N_FREQ, 30) and torch.equal(mono, both[:1])


def test_separator_upmixes_mono_and_refuses_three_channels():
    model = with_statistics(tiny_umx(layers=1))
    separator = Separator(model, chunk_seconds=0.5, context_seconds=0.1, batch_chunks=2)
    audio = sources_audio(batch=1, seconds=2.0)[0].sum(0).numpy()[:1]
    assert separator.counts(audio.shape[1]) == "4 chunks in 2 batches"      # batches of 2 mono chunks
    mono, stereo = separator.separate(audio), separator.separate(np.repeat(audio, 2, axis=0))
    for target in mono:
        assert mono[target].shape == audio.shape
        np.testing.assert_array_equal(mono[target], stereo[target][:1])
    with pytest.raises(MusicsepError, match="separates 2-channel audio; this has 3"):
        separator.separate(np.repeat(audio, 3, axis=0))
    mono_model = with_statistics(tiny_umx(channels=1, layers=1))          # channels one at a time
    out = Separator(mono_model, chunk_seconds=0.5).separate(np.repeat(audio, 2, axis=0))
    assert out["vocals"].shape == (2, audio.shape[1])


def test_training_steps_lower_the_loss():
    model = with_statistics(tiny_umx(layers=1, dropout=0.0)).train()
    optimizer = make_optimizer(model, 1e-2)
    sources = sources_audio()
    losses = []
    for _ in range(30):
        loss, parts = compute_loss(model, "mse", sources, dc_weight=1.0)
        assert torch.isfinite(loss) and set(parts) == {"mse", *(f"mse_{s}" for s in SOURCES)}
        grad_norm = optimizer_step(model, optimizer, loss, max_norm=1e9)
        assert torch.isfinite(grad_norm)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    with pytest.raises(MusicsepError, match=r"joins 2 channel\(s\), the training audio has 1.*channels to 1"):
        compute_loss(model, "mse", sources[:, :, :1], dc_weight=1.0)


def test_mse_magnitude_loss_is_mse_per_source():
    g = torch.Generator().manual_seed(0)
    est, ref = torch.rand(2, 4, 5, 6, generator=g), torch.rand(2, 4, 5, 6, generator=g)
    expected = torch.stack([torch.nn.functional.mse_loss(est[:, k], ref[:, k]) for k in range(4)])
    torch.testing.assert_close(mse_magnitude_loss(est, ref), expected)


def test_input_statistics_from_stats_h5(tmp_path, make_shard, example_stem):
    """stats.h5 of a real MUSDB18 excerpt: the networks' input statistics are
    magnitude_statistics of it, and they follow the magnitude statistics that
    open-unmix computes (the docstring's measurement)."""
    import stempeg

    audio, rate = stempeg.read_stems(str(example_stem))                  # (5, samples, 2)
    audio = audio.transpose(0, 2, 1).astype(np.float32)
    shard = make_shard(tmp_path / "track.h5", audio[1:], mixture=audio[0], sample_rate=rate, split="train")
    stats = compute_stats([shard], tmp_path / "stats.h5", n_fft=4096, hop=1024)
    model = build_model("umx", sample_rate=rate, n_fft=4096, hop=1024, hidden=8, layers=1)
    model.features.load_stats(tmp_path / "stats.h5")
    mean, scale = magnitude_statistics(stats["mean"], stats["std"], stats["log_eps"])
    assert model.max_bin == 1487
    for net in model.targets.values():
        torch.testing.assert_close(net.input_mean.detach(), torch.from_numpy(-mean[:1487]).float())
        torch.testing.assert_close(net.input_scale.detach(), torch.from_numpy(1 / scale[:1487]).float())
    # open-unmix's statistics (get_statistics): mean and standard deviation per bin of the channels'
    # mean magnitude, its training STFT's frames (without centring)
    mono = stft(torch.from_numpy(audio[0]), 4096, 1024, center=False).abs().double().mean(0)
    true_mean, true_std = mono.mean(1).numpy(), mono.std(1, unbiased=False).numpy()
    band = slice(1, 1487)
    for estimate, truth, low, high, corr in [(mean, true_mean, 1.0, 1.1, 0.99), (scale, true_std, 0.9, 1.1, 0.975)]:
        ratio = estimate[band] / truth[band]
        assert low < np.median(ratio) < high
        assert np.corrcoef(np.log(estimate[band]), np.log(truth[band]))[0, 1] > corr
    other = build_model("umx", sample_rate=rate, n_fft=2048, hop=512, hidden=8, layers=1)
    with pytest.raises(MusicsepError, match="computed with n_fft 4096, the model uses 2048"):
        other.features.load_stats(tmp_path / "stats.h5")


def test_model_file_round_trip_and_open_unmix_weights(tmp_path, openunmix):
    model = with_statistics(tiny_umx(channels=1, bandwidth=2000))
    path = tmp_path / "model.pt"
    save_model_file(path, model, {"name": "x"}, epoch=3, valid_loss=0.5)
    loaded, state = load_model(path)
    assert type(loaded) is type(model) and loaded.kwargs() == model.kwargs() and state["model"] == "umx"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    mix = torch.rand(2, N_FREQ, 20, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(loaded.masks(mix), model.masks(mix))
    # a state dict of open-unmix's (a pretrained target's file) loads into one source's network
    ref = openunmix.OpenUnmix(nb_bins=N_FREQ, nb_channels=1, hidden_size=16, nb_layers=3, max_bin=model.max_bin,
                              input_mean=np.full(N_FREQ, 0.3), input_scale=np.full(N_FREQ, 2.0))
    loaded.load_openunmix("other", ref.state_dict() | {"stft.window": torch.ones(N_FFT)})
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(mix)["magnitudes"][:, SOURCES.index("other")],
                                   ref.eval()(mix[:, None])[:, 0])
    with pytest.raises(MusicsepError, match="no source 'piano'"):
        loaded.load_openunmix("piano", ref.state_dict())
    with pytest.raises(MusicsepError, match="open-unmix weights for bass: no fc1.weight"):
        loaded.load_openunmix("bass", {k: v for k, v in ref.state_dict().items() if k != "fc1.weight"})
    wide = openunmix.OpenUnmix(nb_bins=N_FREQ, nb_channels=2, hidden_size=16, nb_layers=3, max_bin=model.max_bin)
    with pytest.raises(MusicsepError, match=r"shapes differ: fc1.weight \(16, \d+\)"):
        loaded.load_openunmix("bass", wide.state_dict())


def test_bad_arguments_are_named():
    with pytest.raises(MusicsepError, match=r"model\.channels: 3 is not one of 1, 2"):
        build_model("umx", channels=3)
    with pytest.raises(MusicsepError, match=r"model\.hiden: unknown argument of umx"):
        build_model("umx", hiden=8)
    with pytest.raises(MusicsepError, match=r"model_args\.hidden: 15 must be even"):
        build_model("umx", **TINY_UMX | {"hidden": 15})
    with pytest.raises(MusicsepError, match=r"model_args\.bandwidth: -1 must be at least 0"):
        build_model("umx", **TINY_UMX | {"bandwidth": -1})
    with pytest.raises(MusicsepError, match=r"model_args\.dropout: 1.5 must be in \[0, 1\)"):
        build_model("umx", **TINY_UMX | {"dropout": 1.5})
    assert build_model("umx", **TINY_UMX | {"hidden": 15, "unidirectional": True}).kwargs()["hidden"] == 15


def config_example() -> dict:
    """The commented umx example of config/config.yaml, uncommented."""
    lines = CONFIG.read_text().splitlines()
    start = lines.index("# features: {n_fft: 4096, hop: 1024}")
    end = lines.index("#", start)
    return yaml.safe_load("\n".join(line.removeprefix("# ") for line in lines[start:end]))


def check_layers(tmp_path, *layers: dict):
    paths = [CONFIG, TOY]
    for k, values in enumerate(layers):
        paths.append(tmp_path / f"layer{k}.yaml")
        paths[-1].write_text(yaml.safe_dump(values))
    return check_files(paths, SCHEMA)[1]


def test_the_config_example_is_the_published_setup(tmp_path):
    example = config_example()
    checked = check_layers(tmp_path, example)
    spec = checked.specs["umx"]
    assert spec["model"] == "umx" and spec["loss"] == "mse"
    assert spec["model_args"] == {"hidden": 512, "layers": 3, "bandwidth": 16000, "channels": 2}
    assert spec["features"]["n_fft"] == 4096 and spec["features"]["hop"] == 1024
    assert spec["loader"]["excerpt_seconds"] == 6.0 and spec["loader"]["samples_per_epoch"] == 64 * 86
    training = spec["training"]
    assert (training["lr"], training["weight_decay"], training["batch_size"]) == (1e-3, 1e-5, 16)
    assert (training["plateau_factor"], training["plateau_patience"], training["early_stop_patience"]) \
        == (0.3, 80, 140)
    assert "weight_decay" not in checked.specs["baseline"]["training"]     # the default, 0: left out of specs
    mono = check_layers(tmp_path, example, {"data": {"mono": True}})
    assert mono.specs["umx"]["model_args"]["channels"] == 1


@pytest.mark.parametrize("block,message", [
    ({"model_args": {"hiden": 8}},
     r"experiments\.umx\.model_args\.hiden: unknown argument of umx \(known: .*channels, hidden"),
    ({"model_args": {"bandwidth": "wide"}}, r"experiments\.umx\.model_args\.bandwidth: 'wide' is not of type float"),
    ({"loss": "l1"}, r"experiments\.umx\.loss: 'l1' does not fit model umx \(use mse\)"),
    ({"model_args": {"channels": 2}, "mono": True},
     r"experiments\.umx\.model_args\.channels: 2 does not fit data\.mono true \(shards of 1 channel\)"),
])
def test_a_bad_umx_block_is_one_line_naming_file_and_key(tmp_path, block, message):
    block = dict(block)
    mono = block.pop("mono", False)
    layer = {"experiments": {"umx": {"model": "umx", **block}}, "data": {"mono": mono}}
    with pytest.raises(MusicsepError) as info:
        check_layers(tmp_path, layer)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'layer0.yaml'}: ")
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.slow
def test_umx_trains_through_the_trainer(tmp_path):
    """musicsep's trainer on a toy: statistics from stats.h5, weight decay, the
    per-source losses, validation (fast SI-SDR, BSS Eval SDR through the
    Separator, TensorBoard's one-channel masks) and the model file."""
    import json

    from musicsep.data.musdb import scan
    from musicsep.data.shard import read_attrs, write_shard
    from musicsep.toy.musdb import make_toy_musdb
    from musicsep.train.loop import train
    from musicsep.workflow.plan import experiment_specs, load_config

    dataset, tracks = scan(make_toy_musdb(tmp_path / "toy.zip", seed=3, train=3, test=0, duration=3.0))
    shards = {}
    for track in tracks:
        shards[track.slug] = tmp_path / "shards" / f"{track.slug}.h5"
        write_shard(dataset, track.member, track.split, shards[track.slug], sample_rate=16000, slug=track.slug)
    train_shards = [str(shards[t.slug]) for t in tracks if t.split == "train"]
    # validation on a track where every source sounds (museval leaves out a group with a silent source,
    # and the toy's validation track has silent vocals): a training track
    valid_shards = [path for path in map(str, shards.values()) if not len(read_attrs(path)["silent"])][:1]
    assert valid_shards
    stats = compute_stats(train_shards, tmp_path / "stats.h5", n_fft=512, hop=128)
    spec = experiment_specs(load_config({
        "data": {"sample_rate": 16000},
        "features": {"n_fft": 512, "hop": 128},
        "loader": {"samples_per_epoch": 8, "excerpt_seconds": 0.5, "valid_excerpts_per_track": 2},
        "training": {"epochs": 2, "batch_size": 4, "workers": 0, "weight_decay": 1e-5, "sdr_every": 1,
                     "media_every": 1, "curriculum_fraction": 0},
        "experiments": {"x": {"model": "umx", "model_args": {"hidden": 8, "layers": 2, "bandwidth": 6000}}},
    }, ROOT))["x"]
    assert spec["loss"] == "mse" and spec["model_args"]["channels"] == 2
    train(spec, train_shards, valid_shards, tmp_path / "stats.h5", tmp_path / "run", tmp_path / "model.pt",
          tmp_path / "metrics.jsonl")
    model, state = load_model(tmp_path / "model.pt")
    assert model.name == "umx" and state["spec"]["model"] == "umx" and model.features.sample_rate == 16000
    mean, _ = magnitude_statistics(stats["mean"], stats["std"], stats["log_eps"])
    for net in model.targets.values():        # no gradient reaches input_mean in training (bn1 subtracts it)
        torch.testing.assert_close(net.input_mean.detach(), torch.from_numpy(-mean[:model.max_bin]).float(),
                                   rtol=0, atol=2e-3)
    latest = torch.load(tmp_path / "run" / "latest.pt", weights_only=True)
    assert {group["weight_decay"] for group in latest["optimizer"]["param_groups"]} == {1e-5}
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    for m in metrics:
        assert np.isfinite([m["valid_loss"], m["train_loss"], m["sdr"], m["valid_si_sdr_fast_not_bss_eval"]]).all()
        assert m["train_mse"] == pytest.approx(m["train_loss"])
        assert m["train_loss"] == pytest.approx(sum(m[f"train_mse_{s}"] for s in SOURCES))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert {f"mask/{s}" for s in SOURCES} <= set(events.Tags()["images"])
