#!/bin/sh
# Shell tool (not a rule script): the train rule's command prefix; one process per SLURM task with srun, else the command as it is.
# per-task.sh COMMAND...: run COMMAND once per task of this SLURM job when
# called from the job's batch shell (the plugin's `mpi` path, as in
# profiles/slurm-multinode); otherwise run it as it is (one machine, or a
# job step that the plugin started with `srun -n1`).
#
# The plugin's job step keeps only the job's id of SLURM's variables, so the
# job's layout (tasks, CPUs per task, GPUs per node) comes from scontrol.
# srun then gives every task SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, ...,
# from which each training process takes its rank. srun and scontrol must be
# callable where the rule runs: not inside a container that lacks them.
set -eu
if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${SLURM_STEP_ID:-}" ] && command -v scontrol >/dev/null 2>&1; then
  job=$(scontrol show job -o "$SLURM_JOB_ID")
  field() { printf '%s\n' "$job" | tr ' ' '\n' | sed -n "s|^$1=||p" | head -n 1; }
  tasks=$(field NumTasks)
  if [ "${tasks:-1}" -gt 1 ] 2>/dev/null; then
    cpus=$(field CPUs/Task)
    gres=$(field TresPerNode | sed -n 's|^gres:||p')
    exec srun --ntasks="$tasks" --cpus-per-task="${cpus:-1}" ${gres:+--gres="$gres"} --kill-on-bad-exit=1 "$@"
  fi
fi
exec "$@"
