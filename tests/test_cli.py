import re
import subprocess
import sys

import pytest

from musicsep.cli import build_parser

from conftest import ROOT
COMMANDS = ["make-toy-musdb", "index", "shard", "tracks", "stats", "summary", "train", "separate", "evaluate",
            "aggregate", "plots", "check-config", "submit"]


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "musicsep", *args], capture_output=True, text=True, **kw)


def test_help_lists_subcommands(capsys):
    proc = run("--help")
    assert proc.returncode == 0
    for command in COMMANDS:
        assert command in proc.stdout
    # exactly these: an unknown subcommand is refused with the list of the known ones
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["no-such-command"])
    assert exit_info.value.code == 2
    listed = re.search(r"invalid choice: '?no-such-command'? \(choose from (.*)\)", capsys.readouterr().err)
    assert listed, "the error lists the subcommands"
    assert {name.strip("'") for name in listed[1].split(", ")} == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_has_help(command):
    proc = run(command, "--help")
    assert proc.returncode == 0 and "usage: musicsep " + command in proc.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = run("index", str(tmp_path / "missing.zip"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path}/missing.zip: dataset path does not exist"


def test_index_prints_the_table(real_musdb):
    proc = run("index", str(real_musdb))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split("\t") == ["slug", "name", "subset", "split", "member", "duration"]
    assert any("\tJuliet's Rescue - Heartbeats\ttrain\ttrain\t" in line for line in lines)


def test_check_config(tmp_path):
    assert run("check-config", "config/config.yaml", "--schema", "config/schema.yaml",
               cwd=str(ROOT)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("loader:\n  excerpt_secs: 2\n")
    proc = run("check-config", str(bad), "--schema",
               str(ROOT / "config" / "schema.yaml"))
    assert proc.returncode == 1 and "unknown config key loader.excerpt_secs" in proc.stderr
