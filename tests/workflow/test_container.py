"""The workflow's container image (config key ``container``): the key's
default and checks (musicsep.workflow.plan.check_container), a run without
the image, and jobs that run in the image the key names."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile

import pytest
import yaml
from conftest import ROOT, snakemake

from musicsep import MusicsepError
from musicsep.workflow.config import validate
from musicsep.workflow.plan import check_container

# apptainer as Snakemake calls it, for a machine without containers:
# `apptainer --version`, and `apptainer exec [options] IMAGE SHELL -c COMMAND`,
# which here runs COMMAND on the host; every call's arguments are appended to
# $APPTAINER_CALLS (JSON, a line each).
FAKE_APPTAINER = """#!{python}
import json
import os
import sys

args = sys.argv[1:]
if args == ["--version"]:
    print("apptainer version 1.3.6")
    sys.exit(0)
with open(os.environ["APPTAINER_CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\\n")
if args[0] != "exec" or args[-2] != "-c":
    sys.exit("unexpected apptainer call: " + " ".join(args))
os.execvp(args[-3], args[-3:])
"""


def test_container_key_default_and_checks(tmp_path, monkeypatch):
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert schema["properties"]["container"]["default"] == config["container"] == "musicsep.sif"
    for good in ["docker://registry.example.org/musicsep:0.1.0", "/shared/images/musicsep.sif", None]:
        assert validate({"container": good}, ROOT / "config" / "schema.yaml")["container"] == good
    with pytest.raises(MusicsepError, match="config key container: 'my image.sif' does not match"):
        validate({"container": "my image.sif"}, ROOT / "config" / "schema.yaml")
    monkeypatch.chdir(tmp_path)
    check_container(None, apptainer=False)
    check_container("musicsep.sif", apptainer=False)
    check_container("docker://registry.example.org/musicsep:0.1.0", apptainer=True)
    with pytest.raises(MusicsepError, match="config key container: image file musicsep.sif not found"):
        check_container("musicsep.sif", apptainer=True)
    with pytest.raises(MusicsepError, match="config key container is null"):
        check_container(None, apptainer=True)
    assert "config key container: image file musicsep.sif not found" in \
        check_container("musicsep.sif", apptainer=True, strict=False)  # a warning only
    (tmp_path / "musicsep.sif").write_bytes(b"")
    assert check_container("musicsep.sif", apptainer=True) is None


def test_apptainer_run_without_the_image_names_the_key(tmp_path):
    """Parsing warns, naming the key; a run stops before any job (onstart), a
    dry run goes on. Without apptainer on the machine, Snakemake itself
    refuses --sdm apptainer first."""
    base = ["--sdm", "apptainer"]
    warning = f"warning: config key container: image file musicsep.sif not found (relative to {tmp_path})"
    have_apptainer = bool(shutil.which("apptainer") or shutil.which("singularity"))
    proc = snakemake(tmp_path, *base, cores=1, timeout=300)
    assert proc.returncode != 0 and warning in proc.stderr
    if have_apptainer:
        assert re.search(r"WorkflowError in file .*common\.smk.*\nconfig key container: image file musicsep\.sif "
                         r"not found", proc.stderr)
    else:
        assert "The apptainer or singularity command has to be available" in proc.stderr
    assert not (tmp_path / "results").exists()
    dry = snakemake(tmp_path, *base, "-n", cores=1, timeout=300)
    assert warning in dry.stderr
    assert (dry.returncode == 0) == have_apptainer, dry.stderr


@pytest.mark.workflow
def test_jobs_run_in_the_image_the_config_key_names(tmp_path):
    """Under --sdm apptainer every job's command runs through `apptainer exec`
    with the image that the config key ``container`` names (here another
    image than the default). No container runtime runs here: a stand-in
    apptainer runs the command on the host and records the image."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(FAKE_APPTAINER.format(python=sys.executable))
    (bin_dir / "apptainer").chmod(0o755)
    image = tmp_path / "images" / "other.sif"
    image.parent.mkdir()
    image.write_bytes(b"")
    calls = tmp_path / "apptainer.log"
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]), "APPTAINER_CALLS": str(calls)}
    work = tmp_path / "work"
    target = "results/toy/musdb18-toy.zip"
    proc = snakemake(work, target, "--sdm", "apptainer", env=env, timeout=600,
                     config=[f"container={image}", "dataset={toy: {train_tracks: 1, test_tracks: 1, duration: 2.0}}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "image file" not in proc.stderr                       # the key's image was found
    runs = [args for args in map(json.loads, calls.read_text().splitlines()) if args[0] == "exec"]
    assert len(runs) == 1, runs                                  # the one job, toy_musdb
    assert runs[0][-4] == str(image) and "musicsep make-toy-musdb" in runs[0][-1], runs
    with zipfile.ZipFile(work / target) as zf:                   # and the command ran
        assert sum(n.endswith(".stem.mp4") for n in zf.namelist()) == 2
