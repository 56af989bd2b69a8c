"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd
started by hand (no systemd), with one GPU that is a character device made
for the purpose, every file (config, state, spool, logs, sockets) in one
temporary folder, and every daemon stopped by its PID.

    with LocalSlurm() as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env())

- Job status: ``jobcomp/filetxt`` records every finished job and a ``sacct``
  wrapper reads that file (``sacct -c``), which is what the Snakemake SLURM
  executor plugin polls; finished jobs also stay visible to
  ``scontrol show job`` for an hour (``MinJobAge``).
- Wrappers of the SLURM commands that pass this cluster's config come first
  in ``env()["PATH"]``; jobs inherit that PATH, which matters because the
  plugin's job step drops ``SLURM_CONF`` before its inner ``srun``. Each call
  is appended to ``log/commands.log`` (:meth:`LocalSlurm.commands`).
- :func:`ensure_slurm` installs ``slurm-wlm`` and ``munge`` with apt where
  they are missing (as root), and says why when it cannot.

Every command that could hang runs under a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ["munged", "slurmctld", "slurmd"]
COMMANDS = ["sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel", "sacct"]
PACKAGES = ["slurm-wlm", "munge"]


class SlurmUnavailable(RuntimeError):
    """SLURM is missing and cannot be installed here (the reason says why)."""


def missing_programs() -> list[str]:
    return [p for p in DAEMONS + COMMANDS + ["munge", "mknod"]
            if not shutil.which(p, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]


def ensure_slurm(timeout: float = 900) -> None:
    """Install slurm-wlm and munge with apt where missing. Raises
    :class:`SlurmUnavailable` when not root (the daemons and the GPU device
    need it) or without apt-get, and RuntimeError (with apt's output) when apt
    fails."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("a test cluster needs root (slurmd, and mknod for its GPU device)")
    missing = missing_programs()
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise SlurmUnavailable(f"SLURM programs missing ({', '.join(missing)}) and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:          # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], env=env, capture_output=True,
                       timeout=timeout)
        proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or missing_programs():
        raise RuntimeError(f"`{' '.join(install)}` failed (exit {proc.returncode}), still missing "
                           f"{missing_programs()}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return total_kb // 1024


class LocalSlurm:
    """One node (this machine) with ``cpus`` CPUs, most of its memory and
    ``gpus`` fake GPUs, in partition ``debug``."""

    def __init__(self, root: str | Path | None = None, cpus: int | None = None, gpus: int = 1,
                 keep: bool = False):
        self.root = Path(root or tempfile.mkdtemp(prefix="musicsep-slurm-"))
        self.keep = keep
        self.cpus = cpus or os.cpu_count() or 1
        self.gpus = gpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.bin = self.root / "bin"
        self.logs = self.root / "log"
        self.jobcomp = self.logs / "jobcomp.txt"
        self.procs: dict[str, subprocess.Popen] = {}

    # -- set-up --------------------------------------------------------------
    def write_config(self) -> None:
        root = self.root
        for sub in ["etc", "bin", "log", "state", "spool", "run", "dev", "munge"]:
            (root / sub).mkdir(parents=True, exist_ok=True)
        # munged wants its socket folder (and the folders above) open to all
        for path in [root, root / "run"]:
            path.chmod(0o755)
        (root / "munge").chmod(0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        devices = []
        for i in range(self.gpus):
            dev = root / "dev" / f"nvidia{i}"
            if not dev.exists():       # a character device: slurmd drops a GPU whose File= is anything else
                subprocess.run(["mknod", str(dev), "c", "195", str(i)], check=True, timeout=30)
            devices.append(str(dev))
        memory = max(1000, _memory_mb() - 1024)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
ClusterName=musicsep
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/run/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={root}/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
KillWait=30
InactiveLimit=0
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory}{gres} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        (root / "etc" / "plugstack.conf").write_text("")
        (root / "etc" / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"NodeName={self.node} Name=gpu File={d}\n" for d in devices))
        for command in COMMANDS:
            real = shutil.which(command)
            extra = ' -c' if command == "sacct" else ''
            wrapper = self.bin / command
            wrapper.write_text(f'#!/bin/sh\necho "{command} $*" >> {self.logs}/commands.log\n'
                               f'SLURM_CONF={self.conf} exec {real}{extra} "$@"\n')
            wrapper.chmod(0o755)

    def env(self, base: dict | None = None) -> dict:
        """An environment whose SLURM commands talk to this cluster."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        env["SLURM_CONF"] = str(self.conf)
        for key in list(env):          # nothing of an enclosing job leaks in
            if key.startswith("SLURM_") and key != "SLURM_CONF":
                del env[key]
        return env

    def _start(self, name: str, argv: list[str]) -> None:
        out = open(self.logs / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env=self.env())
        out.close()

    def start(self, timeout: float = 90) -> "LocalSlurm":
        self.write_config()
        run = self.root / "run"
        self._start("munged", [shutil.which("munged", path="/usr/sbin:/sbin:" + os.environ["PATH"]), "-F",
                               f"--socket={run}/munge.socket", f"--key-file={self.root}/munge/munge.key",
                               f"--pid-file={run}/munged.pid", f"--log-file={self.logs}/munged.log",
                               f"--seed-file={self.root}/munge/munged.seed"])
        self._wait(lambda: (run / "munge.socket").exists(), timeout, "munged to create its socket")
        sbin = "/usr/sbin:/sbin:" + os.environ["PATH"]
        self._start("slurmctld", [shutil.which("slurmctld", path=sbin), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0, timeout,
                   "slurmctld to answer `scontrol ping`")
        self._start("slurmd", [shutil.which("slurmd", path=sbin), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(self._node_idle, timeout, f"node {self.node} to become idle")
        return self

    def _node_idle(self) -> bool:
        state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
        if state.startswith(("drain", "down", "inval")) or state.endswith("*") and "idle" not in state:
            self.run("scontrol", "update", f"nodename={self.node}", "state=resume", check=False)
        return state == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n"
                                       + self.log_tail())
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}:\n" + self.log_tail())

    # -- use -----------------------------------------------------------------
    def run(self, command: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM command (through its wrapper) against this cluster."""
        proc = subprocess.run([str(self.bin / command), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env())
        if check and proc.returncode != 0:
            raise RuntimeError(f"{command} {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def show_job(self, job_id: str | int) -> dict[str, str]:
        """``scontrol show job -d`` as a dict (finished jobs stay an hour)."""
        text = self.run("scontrol", "show", "job", "-d", "-o", str(job_id)).stdout
        fields = {}
        for token in text.split():
            key, _, value = token.partition("=")
            fields.setdefault(key, value)
        return fields

    def job_ids(self) -> list[str]:
        """Every job this cluster knows of (running and finished), oldest first."""
        text = self.run("squeue", "-h", "-a", "-t", "all", "-o", "%i").stdout
        return sorted(text.split(), key=int)

    def commands(self) -> list[str]:
        """Every SLURM command run through the wrappers so far (jobs included)."""
        path = self.logs / "commands.log"
        return path.read_text().splitlines() if path.exists() else []

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in sorted(self.logs.glob("*")):
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # -- tear-down -----------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by PID."""
        try:
            if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
                self.run("scancel", "--user", str(os.getuid()), check=False, timeout=30)
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    active = self.run("squeue", "-h", "-o", "%i", check=False, timeout=30)
                    if active.returncode != 0 or not active.stdout.strip():
                        break
                    time.sleep(1)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for name in ["slurmd", "slurmctld", "munged"]:
                proc = self.procs.pop(name, None)
                if proc is None or proc.poll() is not None:
                    continue
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
            for pid in self._stray_steps():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def _stray_steps(self) -> list[int]:
        """slurmstepd processes of this cluster still alive (none, normally)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if (proc / "comm").read_text().strip() != "slurmstepd":
                    continue
                if str(self.root) in os.readlink(proc / "cwd") or \
                        str(self.conf).encode() in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    def __enter__(self) -> "LocalSlurm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":          # bring one up by hand: python tests/localslurm.py
    ensure_slurm()
    with LocalSlurm(keep=True) as cluster:
        print(f"export PATH={cluster.bin}:$PATH SLURM_CONF={cluster.conf}   # Ctrl-C stops the cluster")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
