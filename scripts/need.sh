#!/usr/bin/env bash
# Shell tool (not a rule script): installs a missing program with apt (make dag: graphviz), else says how.
# Make sure PROGRAM is on PATH: install the Debian package PACKAGE with apt
# where it is missing (as root, or with passwordless sudo), else say how to get
# it and fail. Usage: scripts/need.sh PROGRAM PACKAGE
set -euo pipefail
program=$1 package=$2
command -v "$program" >/dev/null && exit 0
echo "$program is missing; installing $package with apt" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "$package" >/dev/null
elif command -v sudo >/dev/null && command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
else
  echo "cannot install $package here (needs root and apt-get): install it yourself" >&2
  echo "(e.g. 'conda install -c conda-forge $package' or your cluster's 'module load $package') and run this again." >&2
  exit 1
fi
command -v "$program" >/dev/null || { echo "$package is installed but $program is not on PATH" >&2; exit 1; }
