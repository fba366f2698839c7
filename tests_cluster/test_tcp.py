"""Hand-started workers (docs/paper_protocol.md): ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, and ``--scheduler tcp://127.0.0.1:PORT``: identical to serial; a unit that raises; a worker killed
mid-unit. The fixture stops every process it started."""
from __future__ import annotations

import time

import pytest
from conftest import TIMINGS
from scenarios import (
    check_resumed,
    digests,
    failed_unit_is_reported,
    fault_runs,
    lose_worker_mid_unit,
    serial,
)
from study_cli import compare, run_cli


def test_study_on_tcp_workers_is_identical_to_serial(tcp, serial_study, tmp_path):
    res = run_cli(tmp_path / "tcp", tcp.address)
    assert res.rc == 0, res.output
    assert "8 task(s) finished" in res.output, res.output
    assert compare(serial_study, res.root) == []
    TIMINGS.append((f"CLI study, --scheduler {tcp.address} (2 hand-started workers)", res.seconds))


@pytest.fixture
def client(tcp):
    from distributed import Client

    with Client(tcp.address, timeout="10s") as c:
        yield c


def test_unit_that_raises_is_reported_and_the_rerun_submits_only_what_is_missing(client, make_tiny_dataset,
                                                                                 tmp_path):
    failed_unit_is_reported(client, make_tiny_dataset, tmp_path)


def test_worker_killed_mid_unit_resumes_with_the_same_results(tcp, client, make_tiny_dataset, tmp_path):
    """SIGKILL the ``dask worker`` (nanny and worker process) in the middle of a unit: the other worker reruns
    it from the unit's epoch checkpoint; the results are the serial ones, byte for byte."""
    data = make_tiny_dataset(n_patients=8, frames=40)
    ref = fault_runs(tmp_path / "serial", data)
    serial(ref)
    runs = fault_runs(tmp_path / "tcp", data)

    def kill(address):
        port = int(address.rsplit(":", 1)[1])
        import psutil

        for p in tcp.workers:
            if p.poll() is None and any(c.laddr.port == port for q in [psutil.Process(p.pid),
                                                                         *psutil.Process(p.pid).children(True)]
                                        for c in q.net_connections("tcp") if c.status == "LISTEN"):
                tcp.kill(p)
                return p.pid
        raise AssertionError(f"no dask worker process listens on {address}")

    report, pid, epochs, seconds = lose_worker_mid_unit(client, runs, kill)
    assert report.ok, report.summary()
    assert digests(runs) == digests(ref)
    epoch = check_resumed(runs, epochs)
    TIMINGS.append((f"dask worker killed mid-unit (checkpoint epochs {epochs}), resumed after epoch {epoch}: the "
                    f"study on tcp", seconds))
    tcp.add_worker()  # back to two workers for whatever runs next
    tcp.wait_for_workers(2, timeout=60)
