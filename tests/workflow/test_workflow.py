"""The Snakemake workflow's real runs (each in its own working directory): the
data rules on a toy and on real MUSDB audio, and the tiny toy from dataset to
summary."""

import json
from base64 import urlsafe_b64encode
from pathlib import Path

import h5py
import pandas as pd
import pytest
from conftest import job_counts, make_real_musdb, snakemake

from musicsep.data import SHARD_FORMAT

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def check_outputs(results: Path, n_tracks: int) -> pd.DataFrame:
    shards = sorted((results / "data" / "shards").glob("*.h5"))
    assert len(shards) == n_tracks
    table = pd.read_csv(results / "data" / "tracks.tsv", sep="\t", keep_default_na=False)
    assert sorted(table["slug"] + ".h5") == [p.name for p in shards]
    assert (results / "data" / "summary.md").read_text().startswith("# Data summary")
    for rule in ["tracks", "stats", "summary"]:
        assert (results / "logs" / "data" / f"{rule}.log").exists()
    assert len(list((results / "logs" / "data" / "shard").glob("*.log"))) == n_tracks
    assert not list(results.rglob("*.tmp"))
    return table

DATA = "results/data/summary.md"


def test_real_run_on_a_two_track_toy(tmp_path):
    toy = ["dataset={toy: {train_tracks: 1, test_tracks: 1, duration: 3.0, seed: 5}}"]
    proc = snakemake(tmp_path, DATA, config=toy)
    assert proc.returncode == 0, proc.stderr
    results = tmp_path / "results"
    table = check_outputs(results, 2)
    assert sorted(table["split"]) == ["test", "train"]
    assert (results / "toy" / "musdb18-toy.zip").exists()
    with h5py.File(results / "data" / "stats.h5") as h5:
        assert h5["mean"].shape == (1025,)
        assert list(h5.attrs["tracks"]) == table.loc[table["split"] == "train", "name"].tolist()
    again = snakemake(tmp_path, DATA, config=toy)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_shard_of_an_older_format_is_made_again(tmp_path):
    """The shard rule's params carry the shard format: a shard whose record is
    an older version's (params without the format, as that rule had them) is
    scheduled again, its reason the changed params; the other is kept."""
    toy, tracks = ["dataset={toy: {train_tracks: 1, test_tracks: 1, duration: 1.5, seed: 5}}"], "results/data/tracks.tsv"
    proc = snakemake(tmp_path, tracks, config=toy)
    assert proc.returncode == 0, proc.stderr
    old, kept = sorted((tmp_path / "results" / "data" / "shards").glob("*.h5"))
    record = tmp_path / ".snakemake" / "metadata" / urlsafe_b64encode(
        old.relative_to(tmp_path).as_posix().encode()).decode()
    meta = json.loads(record.read_text())
    assert meta["rule"] == "shard" and meta["params"].count(str(SHARD_FORMAT)) == 1, meta
    meta["params"].remove(str(SHARD_FORMAT))
    record.write_text(json.dumps(meta))
    dry = snakemake(tmp_path, tracks, "-n", config=toy)
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout) == {"shard": 1, "tracks": 1, "total": 2}
    job = dry.stdout[dry.stdout.index("rule shard:"):]
    job = job[: job.index("rule tracks:")] if "rule tracks:" in job else job
    assert f"slug={old.stem}" in job and kept.stem not in job, job
    assert "reason: Params have changed since last execution" in job, job


def test_real_run_on_real_musdb_audio(tmp_path, example_stem):
    dataset = make_real_musdb(tmp_path / "musdb 18", example_stem, {
        "train": ["Actions - One Minute Smile", "Juliet's Rescue - Heartbeats",
                  "James Elder & Mark M Thompson - The English Actor"],
        "test": ["The Easton Ellises (Baumi) - SDRNR", "M.E.R.C. Music - Knockout"]})
    proc = snakemake(tmp_path, "out/data/summary.md", config=[f"dataset={{path: '{dataset}'}}", "results=out"])
    assert proc.returncode == 0, proc.stderr
    table = check_outputs(tmp_path / "out", 5).set_index("name")
    assert table.loc["Actions - One Minute Smile", "split"] == "valid"     # official validation track
    assert table.loc["Juliet's Rescue - Heartbeats", "split"] == "train"
    assert table.loc["M.E.R.C. Music - Knockout", "split"] == "test"
    assert (table["duration"] - 6.084).abs().max() < 0.01
    with h5py.File(tmp_path / "out" / "data" / "stats.h5") as h5:
        assert sorted(h5.attrs["tracks"]) == ["James Elder & Mark M Thompson - The English Actor",
                                              "Juliet's Rescue - Heartbeats"]


def test_end_to_end_on_a_tiny_toy(tmp_path):
    """Dataset to summary: shards, three trained models, oracles, museval per
    (system, track), the aggregate tables."""
    from musicsep.models.checkpoint import load_model

    config = ["dataset={toy: {train_tracks: 3, test_tracks: 1, duration: 3.0, seed: 5}}",
              "loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
              "training={epochs: 2, batch_size: 4, workers: 0, sdr_every: 2}"]
    proc = snakemake(tmp_path, config=config)
    assert proc.returncode == 0, proc.stderr
    for exp, name in [("baseline", "blstm_mask"), ("centroids", "conditional_centroids"), ("dpcl", "deep_clustering")]:
        model, state = load_model(tmp_path / "results" / "models" / exp / "model.pt")
        assert model.name == name and state["spec"]["name"] == exp
        lines = (tmp_path / "results" / "models" / exp / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 2
        assert (tmp_path / "results" / "runs" / exp / "latest.pt").exists()
        assert list((tmp_path / "results" / "runs" / exp).glob("events.out.tfevents.*"))   # TensorBoard run: exp
    results = tmp_path / "results"
    systems = ["baseline", "centroids", "dpcl", "oracle_mix", "oracle_irm1", "oracle_irm2", "oracle_ibm", "oracle_mwf"]
    (slug,) = [p.stem for p in (results / "scores" / "baseline").glob("*.json")]
    for system in systems:
        assert (results / "scores" / system / f"{slug}.json").exists()
        assert sorted(p.name for p in (results / "estimates" / system / slug).iterdir()) == \
            sorted(f"{t}.wav" for t in ["vocals", "drums", "bass", "other", "accompaniment"])
    scores = pd.read_csv(results / "scores.csv")
    assert set(scores["system"]) == set(systems)
    summary = (results / "summary.md").read_text()
    assert "| oracle_irm1 |" in summary and "| mixture |" in summary and "### baseline" in summary
    assert "## Share of the oracle's improvement" in summary
    medians = pd.read_csv(results / "medians.csv")
    assert list(medians.columns) == ["system", "target", "metric", "median", "source"]
    assert set(medians["system"]) == set(systems) and "share" in set(medians["metric"])
    # a changed experiment block retrains that experiment only
    again = snakemake(tmp_path, "-n", config=config + ["experiments={dpcl: {model_args: {dim: 8}}}"])
    assert again.returncode == 0 and job_counts(again.stdout)["train"] == 1
    assert job_counts(again.stdout)["evaluate"] == 1 and "oracle" not in job_counts(again.stdout)
