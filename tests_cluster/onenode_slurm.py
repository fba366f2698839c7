"""A one-node SLURM cluster on this machine for the cluster tests (``make cluster-test``, ``make slurm``).

:class:`OneNodeSlurm` installs Debian's ``slurm-wlm`` and ``munge`` if they are missing (root and apt-get only),
writes a munge key and a ``slurm.conf`` into a temporary folder (this host as the only node, with the CPUs
``slurmd -C`` reports, one partition), starts the three daemons as root in the foreground (``munged``,
``slurmctld``, ``slurmd``; state, spool, sockets and logs in that folder; ports chosen free on 127.0.0.1), waits
until ``sinfo`` shows the node idle, and on :meth:`OneNodeSlurm.stop` cancels every job of this cluster and stops
exactly the processes it started (their pids; SIGTERM, then SIGKILL after a bounded wait). Every wait is bounded.
Clients (``sinfo``, ``sbatch``, dask-jobqueue) find the cluster through ``SLURM_CONF`` (:attr:`OneNodeSlurm.env`).

As a script, it starts the cluster, prints the ``export SLURM_CONF=...`` line and holds it until Ctrl-C (or SIGTERM)::

    python tests_cluster/onenode_slurm.py          # make slurm

Nothing here touches /etc/slurm or a cluster already running on the machine: the configuration, the munge key and
socket and the ports are this cluster's own.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
#: The partition of the test cluster (the jobqueue settings name it: tests_cluster/jobqueue.yaml).
PARTITION = "endolib"
#: The accounts a job may name (none named is fine). There is no accounting database (slurmdbd) here, so
#: slurmctld's own account check (AccountingStorageEnforce) is not available; a job_submit.lua refuses any other
#: account the way a real cluster does ("Invalid account or account/partition combination specified").
ACCOUNTS = ("endolib",)
JOB_SUBMIT_LUA = """-- tests_cluster/onenode_slurm.py: refuse accounts this cluster does not have
local known = {ACCOUNTS}
function slurm_job_submit(job_desc, part_list, submit_uid)
  if job_desc.account ~= nil and not known[job_desc.account] then
    slurm.log_user("Invalid account or account/partition combination specified: " .. job_desc.account)
    return slurm.ESLURM_INVALID_ACCOUNT or slurm.ERROR
  end
  return slurm.SUCCESS
end
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end
"""


class CannotRun(RuntimeError):
    """The cluster cannot run here (not root, no apt-get, packages not installable); the message says why."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)


def ensure_packages(timeout: float = 600.0) -> None:
    """Install slurm-wlm and munge from Debian when a daemon is missing (``apt-get update`` + ``install``).

    Raises:
        CannotRun: not root, no apt-get, or the installation failed (its last output lines).
    """
    if all(_which(d) for d in DAEMONS) and _which("sbatch") and _which("mungekey"):
        return
    if os.geteuid() != 0:
        raise CannotRun(f"SLURM is not installed and installing it needs root (apt-get install {' '.join(PACKAGES)})")
    if not shutil.which("apt-get"):
        raise CannotRun(f"SLURM is not installed and there is no apt-get to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.monotonic()
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                *PACKAGES]):
        left = max(1.0, timeout - (time.monotonic() - t0))
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            raise CannotRun(f"`{' '.join(cmd)}` did not finish within {timeout:g} s") from None
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
            raise CannotRun(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{tail}")
    missing = [d for d in (*DAEMONS, "sbatch", "mungekey") if not _which(d)]
    if missing:
        raise CannotRun(f"installed {' '.join(PACKAGES)} but {', '.join(missing)} still not found")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> dict:
    """``slurmd -C``'s description of this host (NodeName, CPUs, sockets, cores, threads, RealMemory)."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
    first = out.strip().splitlines()[0]
    return dict(kv.split("=", 1) for kv in first.split() if "=" in kv)


class OneNodeSlurm:
    """A one-node SLURM cluster of this host (see the module docstring).

    Args:
        root: folder for configuration, state and logs (default: a new temporary folder, removed by :meth:`stop`).
        partition: the one partition's name.
        accounts: the accounts a job may name (job_submit.lua refuses others).

    Example:
        >>> with OneNodeSlurm() as cluster:                              # doctest: +SKIP
        ...     subprocess.run(["sinfo"], env={**os.environ, **cluster.env})
    """

    def __init__(self, root: str | Path | None = None, partition: str = PARTITION, accounts=ACCOUNTS):
        self.accounts = tuple(accounts)
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="endolib-slurm-"))
        self.partition = partition
        self.procs: dict[str, subprocess.Popen] = {}
        self.node: dict = {}
        self.conf = self.root / "slurm.conf"
        self.started_s = 0.0  # seconds from start() to the node showing idle

    # ------------------------------------------------------------------------------------------ set-up
    @property
    def env(self) -> dict:
        """What a client process needs in its environment to use this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r, 0o700)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        if not key.exists():
            subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True,
                           timeout=30)
        os.chmod(key, 0o600)
        self.node = _node_line()
        name = self.node.get("NodeName") or socket.gethostname().split(".")[0]
        self.node["NodeName"] = name
        cpus = self.node.get("CPUs", str(os.cpu_count() or 1))
        hw = " ".join(f"{k}={self.node[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket",
                                                      "ThreadsPerCore", "RealMemory") if k in self.node)
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        self.conf.write_text(f"""# one-node SLURM cluster of tests_cluster/onenode_slurm.py (written {time.ctime()})
ClusterName=endolibtest
SlurmctldHost={name}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r / 'munge' / 'munge.socket'}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=30
SlurmdTimeout=60
PlugStackConfig={r / 'plugstack.conf'}
JobSubmitPlugins=lua
NodeName={name} NodeAddr=127.0.0.1 CPUs={cpus} {hw} State=UNKNOWN
PartitionName={self.partition} Nodes={name} Default=YES MaxTime=INFINITE State=UP
""")
        (r / "plugstack.conf").write_text("")
        (r / "job_submit.lua").write_text(JOB_SUBMIT_LUA.replace("ACCOUNTS", ", ".join(f'["{a}"]=true'
                                                                                     for a in self.accounts)))

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        env = {**os.environ, **self.env}
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True)
        log.close()

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise CannotRun(f"{name} exited with status {p.returncode} while the cluster started:\n"
                                f"{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a daemon's output and log file."""
        out = []
        for f in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if f.exists():
                out += [f"--- {f}"] + f.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def sinfo_state(self) -> str:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=15,
                           env={**os.environ, **self.env})
        return r.stdout.strip() if r.returncode == 0 else f"(sinfo: {r.stderr.strip()})"

    def start(self, timeout: float = 90.0) -> "OneNodeSlurm":
        """Install what is missing, write the configuration, start the daemons, wait for the node to be idle.

        Raises:
            CannotRun: not root, no apt-get, a daemon exited, or the node not idle within ``timeout`` seconds.
        """
        if os.geteuid() != 0:
            raise CannotRun("the one-node SLURM cluster runs its daemons as root (it is not root here)")
        ensure_packages()
        t0 = time.monotonic()
        self._write_config()
        r = self.root
        try:
            m = r / "munge"
            self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={m / 'munge.key'}",
                                   f"--socket={m / 'munge.socket'}", f"--pid-file={m / 'munged.pid'}",
                                   f"--log-file={r / 'log' / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"])
            self._wait(lambda: (r / "munge" / "munge.socket").exists(), 20, "munged's socket")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node["NodeName"]])
            self._wait(lambda: self.sinfo_state() == "idle", timeout, "the node to show idle in sinfo")
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        return self

    def _wait(self, ok, timeout: float, what: str) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            self._check_alive()
            if ok():
                return
            time.sleep(0.5)
        raise CannotRun(f"timed out after {timeout:g} s waiting for {what} (sinfo: {self.sinfo_state()})\n"
                        + "\n".join(self.log_tail(d) for d in self.procs))

    # --------------------------------------------------------------------------------------------- jobs
    def jobs(self) -> list[str]:
        """The ids of this cluster's jobs that are not finished (squeue)."""
        r = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=15,
                           env={**os.environ, **self.env})
        return r.stdout.split() if r.returncode == 0 else []

    def cancel_all(self, timeout: float = 30.0) -> list[str]:
        """scancel every job of this cluster and wait (bounded) until none is left; the ids cancelled."""
        ids = self.jobs()
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=15, env={**os.environ, **self.env})
            t_end = time.monotonic() + timeout
            while self.jobs() and time.monotonic() < t_end:
                time.sleep(0.5)
        return ids

    # ----------------------------------------------------------------------------------------- tear-down
    def stop(self, timeout: float = 20.0) -> None:
        """Cancel this cluster's jobs, stop the daemons this object started (by pid), remove its folder."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):  # reverse order of start
            p = self.procs.pop(name, None)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "OneNodeSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    # SIGTERM and SIGHUP (kill, timeout, a closed terminal) stop the cluster like Ctrl-C: the daemons run in sessions
    # of their own and would outlive this process otherwise
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        cluster = OneNodeSlurm().start()  # stops what it started before it raises
    except CannotRun as e:
        print(f"make slurm: cannot start the one-node SLURM cluster: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"one-node SLURM cluster up in {cluster.started_s:.1f} s (node {cluster.node['NodeName']}, "
          f"{cluster.node.get('CPUs')} CPUs, partition {cluster.partition}); in another shell:\n"
          f"  export SLURM_CONF={cluster.conf}\n  sinfo\nCtrl-C stops it.", flush=True)
    try:
        while all(p.poll() is None for p in cluster.procs.values()):
            time.sleep(1)
        print("a daemon exited:\n" + "\n".join(cluster.log_tail(d) for d in DAEMONS), file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # stop() is bounded: let it finish
            signal.signal(sig, signal.SIG_IGN)
        cluster.stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
