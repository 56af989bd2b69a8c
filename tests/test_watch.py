"""Watching experiments: scripts/logs.sh, `make dag` and notebooks/results.ipynb
(executed on a scores.csv written by `musicsep aggregate`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import BIN, ROOT
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

LOGS = ROOT / "scripts" / "logs.sh"


def headers(output: str) -> list[str]:
    return re.findall(r"^==> (.*) <==$", output, re.M)


@pytest.fixture()
def log_tree(tmp_path):
    """A workflow's working directory with logs of every kind (and files that
    are not logs), modified in a known order; returns (dir, logs oldest first)."""
    logs = ["out/logs/data/shard/the_track.log",          # rule logs under the results folder
            ".snakemake/slurm_logs/rule_train/baseline/4242.log",
            "out/runs/baseline/metrics.jsonl",             # training
            ".snakemake/log/2026-11-27T101010.000000.snakemake.log",
            "out/logs/submit/77/77_0_log.err",             # musicsep submit
            "out/logs/train/baseline.log"]
    others = ["out/runs/baseline/tensorboard/events.out.tfevents.1.host", "out/runs/baseline/spec.json",
              "out/data/tracks.tsv", ".snakemake/metadata/abc"]
    for i, name in enumerate(others + logs):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{name} line {k}\n" for k in range(1, 4)))
    stamps = [1_700_000_000 + 60 * i for i in range(len(logs))]
    for name, stamp in zip([logs[k] for k in (3, 0, 5, 1, 2, 4)], stamps):  # written in this order
        os.utime(tmp_path / name, (stamp, stamp))
    ordered = [logs[k] for k in (3, 0, 5, 1, 2, 4)]
    return tmp_path, ordered


def test_logs_shows_every_log_most_recent_last(log_tree):
    folder, ordered = log_tree
    proc = subprocess.run(["bash", str(LOGS), "-C", str(folder), "-r", "out", "-n", "2", "--no-follow"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert headers(proc.stdout) == ordered
    for name in ordered:
        assert f"{name} line 2\n{name} line 3\n" in proc.stdout
        assert f"{name} line 1\n" not in proc.stdout  # -n 2


def test_logs_follows_until_stopped(log_tree):
    folder, ordered = log_tree
    proc = subprocess.run(["timeout", "8", "bash", str(LOGS), "-r", "out"], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 124, proc.stderr  # still following when stopped
    assert headers(proc.stdout) == ordered
    assert f"{ordered[-1]} line 1\n" in proc.stdout  # default -n 10: whole files


def test_logs_without_logs_or_with_bad_options(tmp_path):
    proc = subprocess.run(["bash", str(LOGS), "-C", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no log files yet under results/logs" in proc.stderr
    proc = subprocess.run(["bash", str(LOGS), "-n", "many"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "-n needs a number of lines, not 'many'" in proc.stderr
    proc = subprocess.run(["bash", str(LOGS), "--bogus"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr
    proc = subprocess.run(["bash", str(LOGS), "-C", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no directory" in proc.stderr


def can_get_dot() -> bool:
    return bool(shutil.which("dot")) or (shutil.which("apt-get") is not None and os.geteuid() == 0)


@pytest.mark.workflow
@pytest.mark.skipif(not can_get_dot(), reason="graphviz's dot is missing and cannot be installed (not root)")
def test_make_dag_writes_the_job_dag_and_rule_graph_as_svg(tmp_path):
    env = {**os.environ, "PATH": os.pathsep.join([BIN, os.environ["PATH"]])}
    out = tmp_path / "dag"
    proc = subprocess.run(["make", "-C", str(ROOT), "-o", ".venv/.installed", "dag", f"DAG_DIR={out}",
                           f"SNAKEMAKE_ARGS=--directory {tmp_path / 'work'}"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dag, rules = (out / "dag.svg").read_text(), (out / "rules.svg").read_text()
    assert dag.lstrip().startswith("<?xml") and "<svg" in dag and "<svg" in rules
    # every toy track's shard job and every rule is drawn
    assert dag.count(">shard<") == 11
    for rule in ["toy_musdb", "shard", "tracks", "stats", "train", "separate", "evaluate", "aggregate"]:
        assert f">{rule}<" in rules, rule
    assert not (tmp_path / "work" / "results").exists(), "a dry run wrote results"


def museval_json(path: Path, sdr_per_frame: dict[str, list[float]]) -> None:
    """A score file in museval's format (what `musicsep evaluate` writes)."""
    targets = [{"name": target, "frames": [
        {"time": float(i), "duration": 1.0,
         "metrics": {"SDR": sdr, "SIR": sdr + 10, "SAR": sdr + 5, "ISR": sdr + 8}}
        for i, sdr in enumerate(values)]} for target, values in sdr_per_frame.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"targets": targets}))


@pytest.fixture()
def scores_csv(tmp_path):
    """scores.csv from `musicsep aggregate` over two systems and two tracks;
    median SDR over frames then tracks: baseline vocals 3.25, oracle_irm1
    vocals 9.75, baseline drums -1.75."""
    scores = tmp_path / "scores"
    museval_json(scores / "baseline" / "track_a.json", {"vocals": [2.0, 3.0, 9.0], "drums": [-3.0, -2.0, 5.0]})
    museval_json(scores / "baseline" / "track_b.json", {"vocals": [3.5, 1.0, 4.0], "drums": [-1.5, -9.0, 0.0]})
    museval_json(scores / "oracle_irm1" / "track_a.json", {"vocals": [9.5, 9.0, 10.0], "drums": [6.0, 7.0, 8.0]})
    museval_json(scores / "oracle_irm1" / "track_b.json", {"vocals": [10.0, 11.0, 9.0], "drums": [8.0, 6.0, 7.0]})
    out = tmp_path / "scores.csv"
    proc = subprocess.run([sys.executable, "-m", "musicsep", "aggregate", str(scores), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def run_notebook(path: Path, scores: Path, workdir: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("MUSICSEP_SCORES", str(scores))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def outputs(nb, kind: str) -> list[str]:
    return [out["data"][kind] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if kind in out.get("data", {})]


def test_notebook_plots_the_scores(scores_csv, tmp_path, monkeypatch):
    nb = run_notebook(ROOT / "notebooks" / "results.ipynb", scores_csv, tmp_path, monkeypatch)
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors
    assert len(outputs(nb, "image/png")) == 2  # box plots, SDR over time
    table = next(text for text in outputs(nb, "text/plain") if "oracle_irm1" in text and "vocals" in text
                 and "drums" in text)
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:] if line.split()}
    assert rows["baseline"] == ["3.25", "-1.75"] and rows["oracle_irm1"] == ["9.75", "7.00"]  # vocals, drums
    streams = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    assert f"{scores_csv}: 96 frame scores, 2 tracks, systems: baseline, oracle_irm1" in streams


def test_notebook_names_a_missing_score_table(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError, match=re.escape(f"{tmp_path / 'none.csv'}: not a readable score table")):
        run_notebook(ROOT / "notebooks" / "results.ipynb", tmp_path / "none.csv", tmp_path, monkeypatch)
