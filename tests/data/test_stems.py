"""A multitrack dataset laid out as stems: the track table of a MoisesDB-like
tree (several files per source, a folder per source, a missing source), its
splits (folders, CSV, seed), its shards (sources summed, the mixture given or
summed, stems padded), the toy of six sources through index, shard, tracks
and stats, and the workflow's refusal of the stages after the data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from musicsep import SOURCES, MusicsepError
from musicsep.data import DATASET_SOURCES
from musicsep.data.shard import Shard, read_attrs, write_shard
from musicsep.data.stems import StemsLayout, load_layout, scan_stems
from musicsep.data.tracks import read_track_table, tracks_from_shards

SR = 16000
SIX = ["vocals", "drums", "bass", "guitar", "piano", "other"]


def wav(path: Path, seconds: float = 1.0, channels: int = 2, rate: int = SR, seed: int = 0) -> np.ndarray:
    """A float WAV of noise at ``path`` (folders made); returns its samples ``(frames, channels)``."""
    audio = (0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix != ".wav":       # FLAC: 24-bit PCM, read back as it decodes
        soundfile.write(path, audio, rate, subtype="PCM_24")
        return soundfile.read(path, dtype="float32", always_2d=True)[0]
    soundfile.write(path, audio, rate, subtype="FLOAT")
    return audio


def moises_tree(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """train/ and test/ of MoisesDB-like tracks: a folder per source, the
    guitar in two files, a data.json; the second track has no bass.
    Returns each track's sources (summed files) by folder."""
    truth = {}
    for k, member in enumerate(["train/Ada - One", "train/Ben - Two", "train/Cy - Three", "test/Dee - Four"]):
        track, seed = root / member, 10 * k
        sources = {"vocals": wav(track / "vocals" / "lead.wav", seed=seed),
                   "guitar": wav(track / "guitar" / "rhythm.wav", seed=seed + 1)
                   + wav(track / "guitar" / "solo.wav", seed=seed + 2),
                   "drums": wav(track / "drums" / "kit.wav", seed=seed + 3)}
        if member != "train/Ben - Two":
            sources["bass"] = wav(track / "bass" / "bass.wav", seed=seed + 4)
        (track / "data.json").write_text("{}")
        truth[member] = sources
    return truth


FOUR = StemsLayout.from_block({"sources": ["vocals", "drums", "bass", "guitar"]})


def test_default_sources_are_musdbs():
    assert tuple(DATASET_SOURCES) == SOURCES


def test_moisesdb_like_tree_table_and_shards(tmp_path):
    truth = moises_tree(tmp_path / "db")
    dataset, tracks, missing = scan_stems(tmp_path / "db", FOUR)
    assert [t.member for t in tracks] == ["train/Ada - One", "train/Ben - Two", "train/Cy - Three", "test/Dee - Four"]
    assert [t.subset for t in tracks] == ["train", "train", "train", "test"]
    assert sorted(t.split for t in tracks) == ["test", "train", "train", "valid"]       # data.valid draws one
    assert all(t.duration == 1.0 for t in tracks)
    assert missing == {"ada_one": "", "ben_two": "bass", "cy_three": "", "dee_four": ""}
    shards = []
    for t in tracks:
        out = tmp_path / "shards" / f"{t.slug}.h5"
        attrs = write_shard(dataset, t.member, t.split, out, sample_rate=SR, slug=t.slug)
        assert attrs["missing"] == (["bass"] if t.slug == "ben_two" else [])
        with Shard(out) as shard:
            assert shard.source_names == ("vocals", "drums", "bass", "guitar")
            audio = shard.audio[:]
            assert audio.shape == (5, 2, SR) and shard.reference_rate == SR
            for row, name in enumerate(shard.source_names, start=1):
                expected = truth[t.member].get(name, np.zeros((SR, 2), np.float32))
                np.testing.assert_allclose(audio[row], expected.T, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(audio[0], audio[1:].sum(0), atol=1e-6)    # no mixture file: the sum
        shards.append(out)
    frame = tracks_from_shards(shards, tmp_path / "tracks.tsv")
    assert dict(zip(frame["slug"], frame["missing"])) == missing
    table = read_track_table(tmp_path / "tracks.tsv")
    assert table.loc[table["slug"] == "ben_two", "silent"].item() == "bass"
    assert read_attrs(shards[0])["subset"] == "train" and read_attrs(shards[-1])["subset"] == "test"


def test_a_table_without_missing_reads_as_none_missing(tmp_path):
    (tmp_path / "tracks.tsv").write_text("slug\tname\tsubset\tsplit\tduration\tsample_rate\tchannels\tsilent\n"
                                         "a\tA\ttrain\ttrain\t1.0\t16000\t2\t\n")
    assert read_track_table(tmp_path / "tracks.tsv")["missing"].tolist() == [""]


def test_patterns_catch_all_and_mixture_given(tmp_path):
    """Explicit patterns, a catch-all for every other audio file, and a
    mixture file that the shard keeps as it is (not the sum)."""
    track = tmp_path / "db" / "Song"
    voc = wav(track / "lead vocal.flac", seed=1)
    keys = wav(track / "keys" / "a.wav", seed=2) + wav(track / "keys" / "b.wav", seed=3)
    rest = wav(track / "shaker.wav", seed=4) + wav(track / "fx" / "noise.wav", seed=5)
    mix = wav(track / "mix.wav", seed=6)
    (track / "cover.jpg").write_bytes(b"\xff\xd8")
    layout = StemsLayout.from_block({"sources": ["vocals", "keys", "rest"], "unmapped": "rest", "mixture": "mix.wav",
                                     "stems": {"lead*": "vocals", "keys": "keys"}, "splits": {"from": "seed"}})
    dataset, tracks, _ = scan_stems(tmp_path / "db", layout)
    assert [t.member for t in tracks] == ["Song"] and tracks[0].split == "train"
    write_shard(dataset, "Song", "train", tmp_path / "song.h5", sample_rate=SR)
    with Shard(tmp_path / "song.h5") as shard:
        audio = shard.audio[:]
    for row, expected in enumerate([mix, voc, keys, rest]):
        np.testing.assert_allclose(audio[row], expected.T, atol=1e-6)


def test_splits_from_folders_with_valid(tmp_path):
    for member in ["train/A", "valid/B", "test/C", "train/D"]:
        wav(tmp_path / member / "vocals.wav")
    layout = StemsLayout.from_block({"sources": ["vocals"]})
    _, tracks, _ = scan_stems(tmp_path, layout)
    assert {t.name: (t.subset, t.split) for t in tracks} == {
        "A": ("train", "train"), "B": ("train", "valid"), "D": ("train", "train"), "C": ("test", "test")}
    _, tracks, _ = scan_stems(tmp_path, layout, subsets=["test"])
    assert [t.name for t in tracks] == ["C"]


def test_splits_from_csv_and_from_a_seed(tmp_path):
    names = [f"Track {k}" for k in range(10)]
    for name in names:
        wav(tmp_path / "db" / name / "vocals.wav", seconds=0.1)
    (tmp_path / "splits.csv").write_text("track,split\n" + "".join(
        f"{n},{'test' if k < 3 else 'valid' if k == 3 else 'train'}\n" for k, n in enumerate(names)))
    csv_layout = StemsLayout.from_block({"sources": ["vocals"], "splits": {"from": "csv", "csv": str(tmp_path / "splits.csv")}})
    _, tracks, _ = scan_stems(tmp_path / "db", csv_layout)
    assert [t.name for t in tracks if t.split == "test"] == names[:3]
    assert [t.name for t in tracks if t.split == "valid"] == [names[3]]
    seeded = {"sources": ["vocals"], "splits": {"from": "seed", "test_fraction": 0.3, "seed": 5}}
    _, first, _ = scan_stems(tmp_path / "db", StemsLayout.from_block(seeded))
    _, again, _ = scan_stems(tmp_path / "db", StemsLayout.from_block(seeded))
    _, other, _ = scan_stems(tmp_path / "db", StemsLayout.from_block({**seeded, "splits": {"from": "seed", "seed": 6,
                                                                                         "test_fraction": 0.3}}))
    assert first == again and sum(t.split == "test" for t in first) == 3
    assert sum(t.split == "valid" for t in first) == 1          # data.valid's share of the 7 left
    assert {t.name for t in first if t.split == "test"} != {t.name for t in other if t.split == "test"}


def test_mismatched_stems_pad_or_refuse(tmp_path):
    track = tmp_path / "db" / "train" / "Song"
    voc = wav(track / "vocals.wav", seconds=1.0)
    bass = wav(track / "bass.wav", seconds=0.5, seed=1)
    wav(track / "drums.wav", seconds=1.0, rate=8000, seed=2)
    block = {"sources": ["vocals", "bass", "drums"]}
    dataset, _, _ = scan_stems(tmp_path / "db", StemsLayout.from_block(block))
    with pytest.raises(MusicsepError, match=r"drums\.wav: track 'Song': 8000 Hz.*dataset\.mismatch"):
        write_shard(dataset, "train/Song", "train", tmp_path / "x.h5", sample_rate=SR)
    assert not (tmp_path / "x.h5").exists()
    dataset, _, _ = scan_stems(tmp_path / "db", StemsLayout.from_block({**block, "mismatch": "pad"}))
    attrs = write_shard(dataset, "train/Song", "train", tmp_path / "x.h5", sample_rate=SR)
    assert attrs["samples"] == SR and attrs["source_sample_rate"] == SR
    with Shard(tmp_path / "x.h5") as shard:
        audio = shard.audio[:]
    np.testing.assert_allclose(audio[1], voc.T, atol=1e-6)
    np.testing.assert_allclose(audio[2, :, : SR // 2], bass.T, atol=1e-6)
    assert not audio[2, :, SR // 2:].any() and np.abs(audio[3]).max() > 0.01


def test_layout_keys_are_checked():
    with pytest.raises(MusicsepError, match="dataset.sources: 'bass' is listed twice"):
        StemsLayout.from_block({"sources": ["bass", "bass"]})
    with pytest.raises(MusicsepError, match="dataset.unmapped: 'rest' is neither"):
        StemsLayout.from_block({"sources": ["bass"], "unmapped": "rest"})
    with pytest.raises(MusicsepError, match=r"dataset.stems.v\*: 'voice' is not among dataset.sources"):
        StemsLayout.from_block({"sources": ["bass"], "stems": {"v*": "voice"}})
    assert load_layout('{"sources": ["a", "b"], "mismatch": "pad"}').mismatch == "pad"


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicsep", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, check=False)


@pytest.mark.parametrize("fmt", ["--moisesdb", "--hq"])
def test_six_source_toy_through_index_shard_tracks_stats(tmp_path, fmt):
    """The toy of six sources, MoisesDB-like (the guitar in two files) or HQ
    (a mixture file), through the command line: index, shard, tracks, stats."""
    toy = tmp_path / "toy"
    proc = run("make-toy-musdb", toy, fmt, "--sources", *SIX, "--train", 2, "--test", 1, "--duration", 2)
    assert proc.returncode == 0, proc.stderr
    if fmt == "--moisesdb":
        assert len(list(toy.glob("train/*/guitar/*.wav"))) == 4 and not list(toy.rglob("mixture.wav"))
    layout = tmp_path / "layout.yaml"
    layout.write_text(f"dataset:\n  sources: [{', '.join(SIX)}]\n  layout: stems\n"
                      + ("  mixture: mixture.wav\n" if fmt == "--hq" else ""))
    proc = run("index", toy, "--layout", layout, "--out", tmp_path / "index.tsv")
    assert proc.returncode == 0, proc.stderr
    index = pd.read_csv(tmp_path / "index.tsv", sep="\t", keep_default_na=False)
    assert len(index) == 3 and (index["missing"] == "").all() and (index["duration"] == 2.0).all()
    shards = []
    for row in index.itertuples():
        out = tmp_path / "shards" / f"{row.slug}.h5"
        proc = run("shard", toy, row.member, "--layout", layout, "--out", out, "--split", row.split,
                   "--slug", row.slug, "--sample-rate", 22050)
        assert proc.returncode == 0, proc.stderr
        shards.append(out)
    with Shard(shards[0]) as shard:
        assert shard.source_names == tuple(SIX) and shard.audio.shape == (7, 2, 2 * 22050)
        assert shard.references().shape == (6, 2, 2 * 44100)
        rms = np.sqrt(np.mean(shard.sources()[:] ** 2, axis=(1, 2)))
        loud = dict(zip(SIX, rms))
        assert loud["guitar"] > 1e-2 and loud["piano"] > 1e-2, loud     # the new voices sound (vocals come later)
        # summed, or the HQ toy's mixture file (its own 16-bit rounding: 7 roundings apart)
        np.testing.assert_allclose(shard.mixture()[:], shard.sources()[:].sum(0),
                                   atol=1e-6 if fmt == "--moisesdb" else 7 * 2 ** -15)
    assert run("tracks", *shards, "--out", tmp_path / "tracks.tsv").returncode == 0
    assert read_track_table(tmp_path / "tracks.tsv")["missing"].tolist() == ["", "", ""]
    train = [s for s, split in zip(shards, index["split"]) if split == "train"]
    proc = run("stats", *train, "--out", tmp_path / "stats.h5", "--n-fft", 512, "--hop", 128)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.workflow
def test_workflow_plans_every_stage_for_other_sources(tmp_path):
    """A dry run of config/stems-demo.yaml: every stage, each per-target file
    list the six sources and the accompaniment."""
    from conftest import ROOT, job_counts, snakemake

    configs = (ROOT / "config" / "config.yaml", ROOT / "config" / "stems-demo.yaml")
    proc = snakemake(tmp_path, "-n", configfiles=configs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["toy_stems"] == 1 and counts["shard"] == 6 and counts["train"] == 3
    assert counts["separate"] == 3 * 2 and counts["oracle"] == 5 * 2 and counts["evaluate"] == 8 * 2
    assert counts["aggregate"] == counts["plot_scores"] == 1
    targets = [*SIX, "accompaniment"]
    for folder in ("estimates/baseline/", "estimates/oracle_irm1/"):    # rules separate and oracle
        outputs = [line for line in proc.stdout.splitlines() if line.strip().startswith("output:") and folder in line]
        assert len(outputs) == 2, outputs
        for line in outputs:
            assert sorted(w.split("/")[-1].rstrip(",") for w in line.split()[1:]) == sorted(f"{t}.wav" for t in targets)
    assert not (tmp_path / "results").exists(), "a dry run wrote results"


def test_plan_of_a_stems_dataset(tmp_path):
    from musicsep.workflow.plan import load_config, plan
    from conftest import ROOT

    moises_tree(tmp_path / "db")
    config = load_config({"dataset": {"path": str(tmp_path / "db"), "layout": "stems",
                                      "sources": ["vocals", "drums", "bass", "guitar"]}}, ROOT)
    the_plan = plan(config)
    assert the_plan.kind == "layout" and the_plan.sources == ("vocals", "drums", "bass", "guitar")
    assert the_plan.tracks.loc["ben_two", "missing"] == "bass"
    assert the_plan.inputs("ben_two") == sorted(str(p) for p in (tmp_path / "db" / "train" / "Ben - Two").rglob("*.wav"))
    assert load_layout(the_plan.layout).sources == the_plan.sources
    with pytest.raises(MusicsepError, match="dataset.sources: .*dataset.layout: stems"):
        plan(load_config({"dataset": {"sources": ["vocals", "drums"], "path": str(tmp_path / "db")}}, ROOT))


@pytest.mark.workflow
@pytest.mark.slow
def test_stems_demo_runs_the_whole_workflow(tmp_path):
    """The README's commands: config/stems-demo.yaml's six-source toy through
    the data stages (toy, shards, tracks.tsv, stats, summary), then the whole
    workflow: three tiny models of six sources, the oracles, the evaluation of
    seven targets, the summary and the figures."""
    from conftest import ROOT, snakemake

    from musicsep.models.checkpoint import load_model

    configs = (ROOT / "config" / "config.yaml", ROOT / "config" / "stems-demo.yaml")
    proc = snakemake(tmp_path, "results/stems-demo/data/summary.md", configfiles=configs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = tmp_path / "results" / "stems-demo"
    data = results / "data"
    assert "| train | 3 |" in (data / "summary.md").read_text()
    shards = sorted((data / "shards").glob("*.h5"))
    assert len(shards) == 6
    with Shard(shards[0]) as shard:
        assert shard.source_names == tuple(SIX)
    assert not (results / "models").exists()

    # two oracles of the five (the anchors of the share): the others follow the same code as the models'
    proc = snakemake(tmp_path, configfiles=configs, timeout=3600, config=["evaluation={oracles: [mix, irm1]}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    targets = [*SIX, "accompaniment"]
    systems = ["baseline", "centroids", "dpcl", "oracle_mix", "oracle_irm1"]
    for exp in systems[:3]:
        model, _ = load_model(results / "models" / exp / "model.pt")
        assert model.sources == tuple(SIX)
    slugs = sorted(p.stem for p in (results / "scores" / "baseline").glob("*.json"))
    assert len(slugs) == 2
    for system in systems:
        for slug in slugs:
            assert sorted(p.name for p in (results / "estimates" / system / slug).iterdir()) == \
                sorted(f"{t}.wav" for t in targets), (system, slug)
    scores = pd.read_csv(results / "scores.csv")
    assert set(scores["system"]) == set(systems) and set(scores["target"]) == set(targets)
    assert scores.groupby(["system", "target"])["track"].nunique().eq(2).all()
    summary = (results / "summary.md").read_text()
    assert "| system | tracks | vocals | drums | bass | other | guitar | piano | accompaniment |" in summary
    assert "6 sources (median)" in summary and "### baseline" in summary
    medians = pd.read_csv(results / "medians.csv", keep_default_na=False)
    assert {"sources", *targets} == set(medians.loc[medians["metric"] == "share", "target"])
    irm1 = medians[(medians["system"] == "oracle_irm1") & (medians["metric"] == "SDR")].set_index("target")["median"]
    mix = medians[(medians["system"] == "oracle_mix") & (medians["metric"] == "SDR")].set_index("target")["median"]
    assert (irm1[SIX] > mix[SIX]).all(), (irm1, mix)      # the ideal masks separate the six sources
    for figure in ("sdr_boxplots.svg", "sdr_heatmap.svg"):
        svg = (results / "plots" / "scores" / figure).read_text()
        assert all(svg.count(f">{t}</text>") == 1 for t in targets), figure
