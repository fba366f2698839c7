"""Fixtures of the cluster tests (``make cluster-test``; not collected by ``make test``).

* ``slurm``: the one-node SLURM cluster of :mod:`onenode_slurm` for the session, with this process's environment
  pointing at it (``SLURM_CONF``), the project's jobqueue settings for it (``DASK_CONFIG=tests_cluster/jobqueue.yaml``,
  job logs in a temporary folder) and ``PYTHONPATH`` naming this checkout, so that every SLURM job and Dask worker
  imports this checkout's endolib. Skipped with the reason where it cannot run (not root, no apt-get); with
  ``ENDOLIB_CLUSTER_REQUIRED=1`` (``.ci/run``) such a skip is a failure instead.
* ``tcp``: ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, as docs/paper_protocol.md tells users.
* ``serial_study``: the reference: ``python -m endolib run --profile smoke --only 01 02 03 --arch resnet18 unet``
  serially in a temporary ``ENDOLIB_ROOT``.

Every wait is bounded; every process, daemon and job a fixture starts, it stops, also when the session is ended by
SIGTERM or SIGHUP (a CI timeout, ``timeout``, a closed terminal): :func:`_stop_cleanly_on_sigterm`. The Dask
processes listen on 127.0.0.1 only (their HTTP servers too). The measured times are collected in :data:`TIMINGS`
and printed at the end of the session.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from onenode_slurm import CannotRun, OneNodeSlurm  # noqa: E402
from study_cli import run_cli  # noqa: E402

#: (what, seconds) measured by the tests; printed by pytest_terminal_summary.
TIMINGS: list[tuple[str, float]] = []


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("cluster-test timings")
        for what, sec in TIMINGS:
            terminalreporter.write_line(f"{sec:8.1f} s  {what}")


@pytest.fixture(scope="session", autouse=True)
def _stop_cleanly_on_sigterm():
    """SIGTERM or SIGHUP ends the session the way Ctrl-C does (KeyboardInterrupt): pytest then tears the fixtures
    down, which cancels the jobs and stops the daemons and Dask processes. Without it a CI timeout kills pytest
    outright and leaves munged, slurmctld, slurmd and the dask processes running: they are in sessions of their
    own, out of reach of a signal sent to pytest's process group. Further signals are ignored while the fixtures
    are torn down (every wait there is bounded); the handlers are put back at the end."""
    def interrupt(signum, frame):
        for s in caught:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: stopping the cluster fixtures")

    caught = (signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.signal(s, interrupt) for s in caught}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def _skip_or_fail(reason: str):
    if os.environ.get("ENDOLIB_CLUSTER_REQUIRED") == "1":
        pytest.fail(f"ENDOLIB_CLUSTER_REQUIRED=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _repo_env() -> dict:
    """PYTHONPATH with this checkout first: the SLURM jobs and Dask workers import this checkout's endolib."""
    pp = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": str(REPO) + (os.pathsep + pp if pp and pp.split(os.pathsep)[0] != str(REPO) else "")}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        _skip_or_fail("the one-node SLURM cluster runs munged, slurmctld and slurmd as root; this is not root")
    pytest.importorskip("dask_jobqueue", reason='pip install "endolib[slurm]"')
    try:
        from onenode_slurm import ensure_packages

        t0 = time.monotonic()
        ensure_packages()
        TIMINGS.append(("slurm-wlm and munge present or installed", time.monotonic() - t0))
    except CannotRun as e:
        _skip_or_fail(f"SLURM cannot be installed here: {e}")
    cluster = OneNodeSlurm()
    cluster.start()  # a daemon that will not start is a failure, not a skip
    TIMINGS.append(("one-node SLURM cluster up (three daemons, node idle)", cluster.started_s))
    logs = tmp_path_factory.mktemp("slurm-jobs")  # pytest's temporary folder: kept for the last 3 sessions
    env = {**cluster.env, **_repo_env(), "DASK_CONFIG": str(HERE / "jobqueue.yaml"),
           "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(logs)}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import dask.config

    added = env["DASK_CONFIG"] not in dask.config.paths  # dask read $DASK_CONFIG when it was imported
    if added:
        dask.config.paths.append(env["DASK_CONFIG"])
    dask.config.refresh()
    try:
        yield cluster
    finally:
        left = cluster.cancel_all()
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if added:
            dask.config.paths.remove(env["DASK_CONFIG"])
        dask.config.refresh()
        cluster.stop()
        assert not left, f"jobs {left} were still queued or running at the end of the session (cancelled)"


def public_listeners(*markers: str) -> list[str]:
    """The listening TCP sockets not on a loopback address of the processes (and their children) whose command
    line contains one of ``markers``: ``"pid command: address:port"``."""
    import ipaddress

    import psutil

    out = []
    roots = [p for p in psutil.process_iter(["cmdline"])
             if any(m in " ".join(p.info["cmdline"] or ()) for m in markers)]
    for p in {q for r in roots for q in [r, *r.children(recursive=True)]}:
        try:
            conns = p.net_connections("tcp")
            name = " ".join(p.cmdline())[:80]
        except psutil.Error:
            continue
        out += [f"{p.pid} {name}: {c.laddr.ip}:{c.laddr.port}" for c in conns
                if c.status == psutil.CONN_LISTEN and not ipaddress.ip_address(c.laddr.ip).is_loopback]
    return out


class TcpCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (each in its own process group)."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.address = ""
        self.dask = str(Path(sys.executable).with_name("dask"))

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        p = subprocess.Popen([self.dask, *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **_repo_env()}, cwd=REPO, start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def start(self, workers: int = 2, timeout: float = 60.0) -> "TcpCluster":
        from onenode_slurm import _free_port

        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                     "--dashboard-address", "127.0.0.1:0"], "scheduler")
        for _ in range(workers):
            self.add_worker()
        self.wait_for_workers(workers, timeout)
        return self

    def add_worker(self) -> subprocess.Popen:
        p = self._spawn(["worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                        "--dashboard-address", "127.0.0.1:0"], f"worker{len(self.workers)}")
        self.workers.append(p)
        return p

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout="10s") as c:
            return len(c.scheduler_info()["workers"])

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            dead = [p for p in self.procs if p.poll() is not None and p not in self.killed]
            if dead:
                raise RuntimeError(f"a dask process exited (status {dead[0].returncode}); logs in {self.root}")
            try:
                if self.n_workers() >= n:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{n} dask workers did not connect to {self.address} within {timeout:g} s")

    killed: list = []

    def kill(self, p: subprocess.Popen) -> None:
        """SIGKILL a ``dask worker`` with its nanny and worker process (its process group)."""
        self.killed = [*self.killed, p]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        for p in reversed(self.procs):  # workers first, the scheduler last
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
                except ProcessLookupError:
                    pass
            try:  # a worker process its nanny left behind in the group
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def tcp(tmp_path_factory):
    pytest.importorskip("distributed", reason='pip install "endolib[dask]"')
    t0 = time.monotonic()
    cluster = TcpCluster(tmp_path_factory.mktemp("dask-tcp"))
    try:
        cluster.start()
        TIMINGS.append(("tcp: dask scheduler + 2 dask workers connected", time.monotonic() - t0))
        public = public_listeners(f"--port {cluster.address.rsplit(':', 1)[1]}", cluster.address)
        assert not public, f"dask processes listen beyond 127.0.0.1: {public}"
        yield cluster
    finally:
        cluster.stop()
        alive = [p.pid for p in cluster.procs if p.poll() is None]
        assert not alive, f"dask processes {alive} still alive"


@pytest.fixture(scope="session")
def serial_study(tmp_path_factory):
    """The reference study (serial; the notebooks train) in a temporary ENDOLIB_ROOT."""
    root = tmp_path_factory.mktemp("study-serial")
    out = run_cli(root, "serial")
    TIMINGS.append(("CLI study, serial (01 02 03, resnet18 unet, 2 seeds)", out.seconds))
    return root


@pytest.fixture
def make_tiny_dataset(tmp_path):
    """tests/conftest.py's tiny dataset factory."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("endolib_tests_conftest", REPO / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    write_tiny_dataset = mod.write_tiny_dataset
    counter = iter(range(10**6))

    def make(**kw) -> Path:
        return write_tiny_dataset(tmp_path / f"tiny_dataset_{next(counter)}", **kw)

    return make
