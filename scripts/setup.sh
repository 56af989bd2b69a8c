#!/usr/bin/env bash
# Shell tool (not a rule script): sets up the virtual environment, torch, the package and ffmpeg (make setup).
# Set up musicsep on a fresh machine: a virtual environment with torch 2.13.0
# installed first (so no CUDA build is pulled where a CPU build is wanted), the
# package and its pinned dependencies, and ffmpeg (apt) where it is missing.
# Usage: scripts/setup.sh [VENV]   (default .venv; PYTHON=python3.11 to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" - <<'PY' || { echo "musicsep needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=..." >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 11))
PY

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  echo "setup: ffmpeg is missing; installing it with apt" >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  else
    echo "setup: cannot install ffmpeg here (needs root and apt-get). Install ffmpeg yourself" >&2
    echo "       (e.g. 'conda install -c conda-forge ffmpeg' or your cluster's 'module load ffmpeg')," >&2
    echo "       put ffmpeg and ffprobe on PATH, and run this again." >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip setuptools >/dev/null
# torch first and pinned: with it in place, the package's torch range adds nothing.
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install -c constraints.txt -e ".[test]"
# The tests' reference implementations (the reference extra), without their dependencies:
# openunmix requires torchaudio, which has no release for torch 2.13.0 and would replace it.
"${pip[@]}" install --no-deps -c constraints.txt openunmix
"$venv/bin/python" -m musicsep --version
