"""Runs of one setting over training seeds: grouped from the specs, and
summarised with the mean and spread of museval's medians and of the shares."""

from __future__ import annotations

import re
import statistics

import pytest
from test_aggregate import sdr_medians, shares, table_rows, write_scores

from musicsep import MusicsepError
from musicsep.cli import main
from musicsep.workflow.grid import seed_groups


def test_seed_groups_are_specs_that_differ_only_by_seed():
    def spec(name, seed, lr=1e-3):
        return {"name": name, "model": "blstm_mask", "training": {"seed": seed, "lr": lr}}

    specs = {s["name"]: s for s in [spec("baseline", 0), spec("other", 0, lr=2e-4), spec("baseline_seed1", 1),
                                    spec("baseline_seed2", 2), spec("other_seed1", 1, lr=2e-4), spec("alone", 0, 0.5)]}
    assert seed_groups(specs) == {"baseline": ["baseline", "baseline_seed1", "baseline_seed2"],
                                  "other": ["other", "other_seed1"]}


def test_summary_over_seeds_is_the_mean_and_spread_of_the_medians(tmp_path, capsys):
    root = tmp_path / "scores"
    runs = {"base": 4.0, "base_seed1": 5.0, "base_seed2": 6.5, "cc": 7.0, "cc_seed1": 7.5}
    for k, track in enumerate(["a_b", "c_d", "e_f"]):
        for i, (system, mean) in enumerate({**runs, "oracle_mix": -3.0, "oracle_irm1": 12.0}.items()):
            write_scores(root / system / f"{track}.json", seed=10 * i + k, mean=mean)
    summary = tmp_path / "summary.md"
    assert main(["aggregate", str(root), "--out", str(tmp_path / "scores.csv"), "--summary", str(summary),
                 "--seeds", "base=base,base_seed1,base_seed2", "--seeds", "cc=cc,cc_seed1"]) == 0
    text = summary.read_text()
    sdr = table_rows(text, "**median SDR (dB)**")
    share = table_rows(text, "**share of the oracle's improvement**")
    assert sdr["base"][0] == "base, base_seed1, base_seed2" and sdr["cc"][0] == "cc, cc_seed1"
    anchors = sdr_medians(root / "oracle_mix"), sdr_medians(root / "oracle_irm1")
    for group, members in [("base", ["base", "base_seed1", "base_seed2"]), ("cc", ["cc", "cc_seed1"])]:
        medians = [sdr_medians(root / m) for m in members]
        expected = [shares(m, *anchors) for m in medians]
        for i, target in enumerate(["vocals", "drums", "bass", "other", "accompaniment"]):
            values = [m[target] for m in medians]
            assert sdr[group][1 + i] == f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
        for i, target in enumerate(["vocals", "drums", "bass", "other", "sources"]):
            values = [e[target] for e in expected]
            assert share[group][1 + i] == f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    capsys.readouterr()


@pytest.mark.parametrize("seeds, message", [
    (["base=base"], "--seeds base=base: expected NAME=SYSTEM,SYSTEM[,...] (two or more systems)"),
    (["base=base,nope"], "--seeds: no scores of nope"),
])
def test_bad_seed_groups_are_named(tmp_path, seeds, message):
    write_scores(tmp_path / "scores" / "base" / "a_b.json", seed=1)
    with pytest.raises(MusicsepError, match=re.escape(message)):
        from musicsep.evaluate.aggregate import aggregate
        from musicsep.evaluate.groups import parse_groups

        aggregate([tmp_path / "scores"], tmp_path / "scores.csv", tmp_path / "summary.md", seeds=parse_groups(seeds))
    assert not (tmp_path / "summary.md").exists() and not (tmp_path / "scores.csv").exists()
