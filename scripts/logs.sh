#!/usr/bin/env bash
# Shell tool (not a rule script): follows every log of the workflow (rules, Snakemake, SLURM, training) in one terminal.
# Follow every log of the workflow in one terminal: `tail -F` of the rule logs
# (RESULTS/logs, also `musicsep submit` jobs' .out/.err), Snakemake's own logs
# (.snakemake/log), SLURM job logs (.snakemake/slurm_logs) and training logs
# (RESULTS/runs/*: metrics.jsonl, *.log), the most recently modified last, so
# the newest is at the bottom of the screen.
# Usage: scripts/logs.sh [-r RESULTS] [-n LINES] [-C DIR] [--no-follow]
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/logs.sh [-r RESULTS] [-n LINES] [-C DIR] [--no-follow]
  -r, --results RESULTS  the workflow's results folder (default: results)
  -n, --lines LINES      last lines of each file to show first (default: 10)
  -C, --directory DIR    the workflow's working directory (default: .)
  --no-follow            print the files' last lines and exit
Files that appear later are not followed: run it again to pick them up.
USAGE
}

results=results lines=10 dir=. follow=1
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--results|-n|--lines|-C|--directory)
      [ $# -ge 2 ] || { echo "logs.sh: $1 needs a value" >&2; usage >&2; exit 2; }
      case "$1" in
        -r|--results) results=$2 ;;
        -n|--lines) lines=$2 ;;
        *) dir=$2 ;;
      esac
      shift 2 ;;
    --no-follow) follow=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "logs.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$lines" in
  ''|*[!0-9]*) echo "logs.sh: -n needs a number of lines, not '$lines'" >&2; exit 2 ;;
esac
cd "$dir" 2>/dev/null || { echo "logs.sh: no directory $dir" >&2; exit 2; }

# Every log file with its modification time, oldest first.
mapfile -t files < <(
  {
    [ -d "$results/logs" ] && find "$results/logs" -type f \( -name '*.log' -o -name '*.out' -o -name '*.err' \) -printf '%T@ %p\n'
    [ -d .snakemake/log ] && find .snakemake/log -maxdepth 1 -type f -name '*.log' -printf '%T@ %p\n'
    [ -d .snakemake/slurm_logs ] && find .snakemake/slurm_logs -type f -name '*.log' -printf '%T@ %p\n'
    [ -d "$results/runs" ] && find "$results/runs" -mindepth 2 -maxdepth 2 -type f \( -name '*.log' -o -name 'metrics.jsonl' \) -printf '%T@ %p\n'
    true
  } | sort -n -k1,1 | cut -d' ' -f2-
)
if [ ${#files[@]} -eq 0 ]; then
  echo "logs.sh: no log files yet under $results/logs, $results/runs, .snakemake/log or .snakemake/slurm_logs (in $(pwd))" >&2
  exit 1
fi
if [ "$follow" = 1 ]; then
  exec tail -v -n "$lines" -F -- "${files[@]}"
fi
exec tail -v -n "$lines" -- "${files[@]}"
