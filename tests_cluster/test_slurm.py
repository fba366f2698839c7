"""The study through dask-jobqueue on the one-node SLURM cluster (``make cluster-test``): identical to serial, and
the faults a cluster user meets (a job cancelled mid-unit, a partition or account that does not exist, a unit that
raises). Every job a test starts is cancelled by it (the cluster object's close) and none is left at the end."""
from __future__ import annotations

import subprocess
import time

import pytest
from conftest import TIMINGS, public_listeners
from scenarios import (
    check_resumed,
    digests,
    failed_unit_is_reported,
    fault_runs,
    lose_worker_mid_unit,
    serial,
)
from study_cli import compare, run_cli

from endolib.study.distributed import SlurmRejected, _JobKeeper, connect, slurm_preflight


def test_node_is_idle_with_this_hosts_cpus(slurm):
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t %c %P"], capture_output=True, text=True, timeout=15,
                         check=True).stdout.split()
    assert out == [slurm.node["NodeName"], "idle", slurm.node["CPUs"], f"{slurm.partition}*"], out
    assert "to start at" in slurm_preflight(timeout=10)


def test_study_on_slurm_is_identical_to_serial(slurm, serial_study, tmp_path):
    """`python -m endolib run --profile smoke ... --scheduler slurm:2`: every unit in a SLURM job, then the
    notebooks; the same weights, predictions and tables as the serial run; local:2 for the overhead."""
    res = run_cli(tmp_path / "slurm", "slurm:2")
    assert res.rc == 0, res.output
    assert "SLURM: first worker connected" in res.output and "8 task(s) finished" in res.output, res.output
    assert compare(serial_study, res.root) == []
    assert not slurm.jobs(), "the study's worker jobs were not cancelled when it ended"
    local = run_cli(tmp_path / "local", "local:2")
    assert local.rc == 0, local.output
    assert compare(serial_study, local.root) == []
    first = res.number(r"first worker connected ([\d.]+) s")
    t_slurm = res.number(r"Dask training: .* in ([\d.]+) s")
    t_local = local.number(r"Dask training: .* in ([\d.]+) s")
    TIMINGS.extend([("CLI study, slurm:2 (whole command)", res.seconds),
                    ("slurm:2: submitting the 2 worker jobs -> first worker connected", first),
                    ("slurm:2: Dask training of the 8 tasks (after the first worker)", t_slurm),
                    ("CLI study, local:2 (whole command)", local.seconds),
                    ("local:2: Dask training of the 8 tasks", t_local),
                    ("per-task overhead of slurm:2 vs local:2 ((slurm - local) / 8 tasks)", (t_slurm - t_local) / 8)])


def test_unknown_partition_is_a_clear_error_before_anything_runs(slurm, tmp_path):
    """What the user sees: exit status 2 and sbatch's own words within seconds; no job submitted, no notebook run."""
    res = run_cli(tmp_path / "badq", "slurm:2", env={"DASK_JOBQUEUE__SLURM__QUEUE": "gpu_does_not_exist"},
                  timeout=60)
    assert res.rc == 2, res.output
    assert "error: --scheduler slurm: SLURM refuses the worker job" in res.output, res.output
    assert "invalid partition specified: gpu_does_not_exist" in res.output, res.output
    assert "#SBATCH -p gpu_does_not_exist" in res.output and "01_data_preparation" not in res.output, res.output
    assert not slurm.jobs()
    TIMINGS.append(("unknown partition: the command's exit with the error", res.seconds))


def test_unknown_account_is_a_clear_error(slurm):
    import dask.config

    t0 = time.monotonic()
    with dask.config.set({"jobqueue.slurm.account": "no_such_account"}):
        with pytest.raises(SlurmRejected, match="Invalid account or account/partition combination specified"):
            with connect("slurm:2", timeout=10):
                pass
    assert time.monotonic() - t0 < 10 and not slurm.jobs()


@pytest.fixture(scope="module")
def client(slurm):
    t0 = time.monotonic()
    with connect("slurm:2", timeout=10, start_timeout=120) as c:
        c.wait_for_workers(2, timeout=120)
        TIMINGS.append(("in-process slurm:2: both worker jobs connected", time.monotonic() - t0))
        public = public_listeners(c.scheduler.address)  # the worker jobs (their command names the scheduler)
        assert not public, f"the SLURM worker jobs listen beyond 127.0.0.1: {public}"
        yield c
    t_end = time.monotonic() + 30
    while slurm.jobs() and time.monotonic() < t_end:
        time.sleep(0.5)
    assert not slurm.jobs(), f"worker jobs {slurm.jobs()} left after the cluster closed"


def test_unit_that_raises_is_reported_and_the_rerun_submits_only_what_is_missing(client, make_tiny_dataset,
                                                                                 tmp_path):
    failed_unit_is_reported(client, make_tiny_dataset, tmp_path)


def test_job_cancelled_mid_unit_resumes_with_the_same_results(slurm, client, make_tiny_dataset, tmp_path):
    """scancel the SLURM job whose worker is in the middle of a unit: Dask reruns the unit on the other worker,
    which resumes from the unit's epoch checkpoint; a new job replaces the cancelled one; the results are the
    serial ones, byte for byte."""
    data = make_tiny_dataset(n_patients=8, frames=40)
    ref = fault_runs(tmp_path / "serial", data)
    t0 = time.monotonic()
    serial(ref)
    t_serial = time.monotonic() - t0
    runs = fault_runs(tmp_path / "slurm", data)
    cluster = client.cluster

    def scancel(address):
        name = client.scheduler_info()["workers"][address]["name"]
        job = cluster.workers[name].job_id
        subprocess.run(["scancel", str(job)], check=True, timeout=15)
        return str(job)

    report, job, epochs, seconds = lose_worker_mid_unit(client, runs, scancel)
    assert report.ok, report.summary()
    assert digests(runs) == digests(ref)
    epoch = check_resumed(runs, epochs)
    assert job not in slurm.jobs()
    # while units are left, train_on_dask replaces a lost job (_JobKeeper, every 2 s); here the study ended
    # before Dask gave the lost worker up (distributed.deploy.lost-worker-timeout), so do what it does then
    t_end = time.monotonic() + 60
    while len(cluster.workers) > 1 and time.monotonic() < t_end:
        time.sleep(0.5)
    keep = _JobKeeper(client)
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < t_end:
        keep()
        time.sleep(1)
    assert len(client.scheduler_info()["workers"]) == 2, "the cancelled worker job was not replaced"
    assert job not in [str(j.job_id) for j in cluster.workers.values()]
    TIMINGS.extend([(f"scancel mid-unit (checkpoint epochs {epochs}), resumed after epoch {epoch}: the study on "
                     f"slurm:2", seconds),
                    ("the same two runs serially", t_serial)])
