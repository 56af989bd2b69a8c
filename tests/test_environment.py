"""One list of versions: constraints.txt. The Apptainer definition, the
Dockerfile and the conda environment install exactly those pins, and so does
the environment running these tests. No container runtime runs here, so the
files are parsed: their pip commands, base images and system packages. (The
workflow's use of the image: tests/workflow/test_container.py.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from importlib import metadata

import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)$")


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}; every line must be an exact pin."""
    found = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt:{number}: not an exact pin (name==version): {line!r}"
        name = canonicalize_name(match[1])
        assert name not in found, f"constraints.txt:{number}: {name} pinned twice"
        found[name] = match[2]
    return found


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def runtime_names() -> list[str]:
    """What an image holds: torch and the package's dependencies."""
    return ["torch"] + [canonicalize_name(Requirement(r).name) for r in project()["dependencies"]]


def test_constraints_pin_every_dependency_within_the_packages_ranges():
    pinned = pins()
    requirements = project()["dependencies"] + project()["optional-dependencies"]["test"]
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} (pyproject.toml) has no pin in constraints.txt"
        assert req.specifier.contains(pinned[name]), \
            f"constraints.txt pins {name}=={pinned[name]}, outside pyproject.toml's {text!r}"


def test_the_conda_environment_lists_exactly_the_runtime_pins():
    env = yaml.safe_load((ROOT / "envs" / "musicsep.yaml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1, "envs/musicsep.yaml: one pip: section expected"
    listed = {}
    for line in pip[0]:
        match = PIN.match(line)
        assert match, f"envs/musicsep.yaml: pip entry {line!r} is not an exact pin"
        listed[canonicalize_name(match[1])] = match[2]
    pinned = pins()
    assert listed == {name: pinned[name] for name in runtime_names()}
    assert "python=3.11" in conda and "ffmpeg" in conda and "pip" in conda


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current:
            lines.append(current)
        current = ""
    return lines


def commands(lines: list[str]) -> list[list[str]]:
    """Shell lines split at && into argument lists (quotes kept as words)."""
    out = []
    for line in lines:
        for part in line.split("&&"):
            if part.strip():
                out.append(shlex.split(part, posix=True))
    return out


def dockerfile() -> dict:
    lines = logical_lines((ROOT / "containers" / "Dockerfile").read_text())
    by = {}
    for line in lines:
        instruction, _, rest = line.partition(" ")
        by.setdefault(instruction.upper(), []).append(rest.strip())
    args = dict(a.split("=", 1) for a in by.get("ARG", []) if "=" in a)
    return {"from": by["FROM"], "copy": by["COPY"], "args": args, "run": commands(by["RUN"])}


def definition() -> dict:
    text = (ROOT / "containers" / "musicsep.def").read_text()
    header, sections = {}, {}
    name = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("%"):
            name = line[1:].split()[0]
            sections[name] = []
        elif name is None and ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        elif name is not None:
            sections[name].append(raw)
    post = logical_lines("\n".join(sections["post"]))
    assigned = {}
    for line in post:
        match = re.match(r"^([A-Z_]+)=(\S+)$", line)
        if match:
            assigned[match[1]] = match[2]
    files = [line.split() for line in logical_lines("\n".join(sections["files"]))]
    return {"header": header, "files": files, "vars": assigned, "run": commands(post)}


def pip_installs(run: list[list[str]]) -> list[list[str]]:
    return [cmd[2:] for cmd in run if cmd[:2] == ["pip", "install"] or cmd[:4] == ["python", "-m", "pip", "install"]]


def resolve(word: str, variables: dict) -> str:
    """Expand $VAR and a $(grep ... constraints.txt) command substitution the
    way the image build does, in the repository root."""
    word = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: variables[m[1]], word) if "$(" not in word else word
    sub = re.fullmatch(r"\$\((.*)\)", word)
    if sub:
        proc = subprocess.run(["bash", "-c", sub[1]], cwd=ROOT, capture_output=True, text=True, check=True)
        return proc.stdout.strip()
    return word


def check_image_installs(run, variables, where):
    installs = pip_installs(run)
    assert len(installs) == 2, f"{where}: expected two pip installs (torch, then the package): {installs}"
    torch_cmd, package_cmd = ([resolve(w, variables) for w in cmd] for cmd in installs)
    index = torch_cmd[torch_cmd.index("--index-url") + 1]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", index), f"{where}: torch index {index}"
    requirements = [w for w in torch_cmd if not w.startswith("-") and w != index]
    assert requirements == [f"torch=={pins()['torch']}"], f"{where}: torch install {torch_cmd}"
    assert package_cmd == ["-c", "constraints.txt", "."], f"{where}: package install {package_cmd}"
    apt = [cmd for cmd in run if cmd[:2] == ["apt-get", "install"]]
    assert apt and {"ffmpeg", "git"} <= set(apt[0]), f"{where}: ffmpeg and git from apt"
    return index


def test_dockerfile_installs_the_pins():
    docker = dockerfile()
    assert docker["from"] == ["python:3.11-slim-bookworm"]
    copied = {w for line in docker["copy"] for w in line.split()[:-1]}
    assert {"constraints.txt", "pyproject.toml", "README.md", "src"} <= copied
    check_image_installs(docker["run"], docker["args"], "containers/Dockerfile")


def test_apptainer_definition_builds_the_same_environment_as_the_dockerfile():
    docker, sif = dockerfile(), definition()
    assert sif["header"]["Bootstrap"] == "docker"
    assert [sif["header"]["From"]] == docker["from"]
    sources = {parts[0] for parts in sif["files"]}
    assert {"constraints.txt", "pyproject.toml", "README.md", "src"} <= sources
    index = check_image_installs(sif["run"], sif["vars"], "containers/musicsep.def")
    assert index == docker["args"]["TORCH_INDEX"]
    assert pip_installs(sif["run"]) == pip_installs(docker["run"])


def test_docker_build_context_keeps_what_the_dockerfile_copies():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    for path in ["constraints.txt", "pyproject.toml", "README.md", "src/"]:
        assert f"!{path}" in ignore


def test_this_environment_has_the_pinned_versions():
    pinned = pins()
    names = runtime_names() + [canonicalize_name(Requirement(r).name)
                               for r in project()["optional-dependencies"]["test"]]
    wrong = {}
    for name in names:
        installed = Version(metadata.version(name))
        if installed.public != Version(pinned[name]).public:  # torch 2.13.0+cpu is torch 2.13.0
            wrong[name] = (str(installed), pinned[name])
    assert not wrong, f"installed (have, pinned): {wrong}; run pip install -c constraints.txt -e .[test]"
