"""Dask execution of training units (endolib.study.distributed): identical to serial, failures, resubmission, bad input."""
from __future__ import annotations

import hashlib
import os
import sys

import pytest

from endolib.study.distributed import (
    MissingDependency,
    SchedulerUnreachable,
    connect,
    parse_scheduler,
    train_on_dask,
)
from endolib.training.runs import train_seeds
from endolib.training.settings import FINAL_FOLD, training_settings
from endolib.training.unit import unit_dir

distributed = pytest.importorskip("distributed", reason='Dask is optional: pip install "endolib[dask]"')

SEEDS = (42, 43)
#: unet: one seed, 2 folds (two search units, then the final retraining); resnet18: two seeds, a hold-out
PLAN = (("unet", 2, (42,)), ("resnet18", 1, SEEDS))
RUN_FILES = ("model.safetensors", "test_summary.json", "predictions.npz")


def _runs(root, data_dirs: dict):
    out = []
    for arch, folds, seeds in PLAN:
        s = training_settings(arch, "smoke", data_dir=data_dirs[arch], model_dir=root / arch,
                              figures_dir=root / "figures", epochs=1, folds=folds, num_threads=1)
        out += [s.for_seed(seed) for seed in seeds]
    return out


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: this process's environment before the cluster started
ENV_BEFORE: dict = {}


@pytest.fixture(scope="module")
def client():
    ENV_BEFORE.update(os.environ)
    with connect("local:2") as c:
        yield c


def test_cluster_leaves_this_process_environment_alone(client):
    """Dask's nanny wrote OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_=65536 into the runner's environment, so the
    notebook kernels after the Dask phase ran on one thread (Table 5 timed 2x slower than serial)."""
    def env(e):
        return {k: v for k, v in e.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own, per test

    assert env(os.environ) == env(ENV_BEFORE)


def test_parse_scheduler():
    assert parse_scheduler("serial") == ("serial", None)
    assert parse_scheduler("local") == ("local", None) and parse_scheduler("slurm:4") == ("slurm", 4)
    for bad, msg in (("local:0", "positive integer"), ("tcp://host", "tcp://HOST:PORT"), ("mpi", "unknown scheduler")):
        with pytest.raises(ValueError, match=msg):
            parse_scheduler(bad)


def test_dask_units_are_byte_identical_to_serial(client, tiny_dataset, tmp_path):
    data = {"unet": tiny_dataset, "resnet18": tiny_dataset}
    serial = _runs(tmp_path / "serial", data)
    for arch, _, seeds in PLAN:  # what notebooks 02/03 do: all seeds of a model in one process
        train_seeds(next(s for s in serial if s.arch == arch), seeds, progress=False)
    dask_runs = _runs(tmp_path / "dask", data)
    report = train_on_dask(client, dask_runs, progress=False)
    assert report.ok, report.summary()
    assert sum(o.status == "finished" for o in report.outcomes) == (2 + 1 + 1) + 2 * (1 + 1)
    for a, b in zip(serial, dask_runs):
        assert (b.run_dir / "config.json").exists()
        for f in RUN_FILES:
            assert _digest(a.run_dir / f) == _digest(b.run_dir / f), (a.arch, a.training_seed, f)
    assert (unit_dir(dask_runs[0], 0, FINAL_FOLD) / "unit.log").exists()
    # the seeds differ (initialisation, batches, augmentation): different weights
    assert _digest(serial[1].run_dir / "model.safetensors") != _digest(serial[2].run_dir / "model.safetensors")
    # a rerun submits nothing but finds everything done; the notebooks then only load
    again = train_on_dask(client, dask_runs, progress=False)
    assert {o.status for o in again.outcomes if o.task.startswith("t")} == {"done"}
    res = train_seeds(dask_runs[1], SEEDS, progress=False)
    assert [r.training_seed for r in res.runs] == list(SEEDS) and res.figure.exists()
    assert "mean +- SD over 2 seeds" in res.headline()


def test_failed_unit_is_reported_and_only_it_is_resubmitted(client, make_tiny_dataset, tmp_path):
    good, broken = make_tiny_dataset(), make_tiny_dataset()
    runs = _runs(tmp_path / "runs", {"unet": broken, "resnet18": good})
    # inputs vanish between submission and execution: one training image of the unet dataset is deleted
    import pandas as pd

    index = pd.read_csv(broken / "index.csv")
    victim = broken / index.loc[(index["split"] == "train") & (index["has_tissue"] == 1), "image"].iloc[0]
    hidden = victim.with_name(victim.name + ".away")
    victim.rename(hidden)
    report = train_on_dask(client, runs, retries=0, progress=False)
    assert not report.ok and report.failed_models == ["unet"]
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert {(o.arch, o.training_seed, o.task) for o in failed} == {("unet", 42, "t0_f0"), ("unet", 42, "t0_f1")}
    msg = failed[0].error
    assert "unet training seed 42 unit t0_f0 (trial 0, fold 0) failed" in msg and victim.name in msg
    assert "Traceback" in msg and "log: " in msg
    log = unit_dir(runs[0], 0, 0) / "unit.log"
    assert log.exists() and "Traceback" in log.read_text()
    assert {o.status for o in report.outcomes if o.arch == "unet" and o.task in ("final", "finish")} == {"not run"}
    assert all(o.status == "finished" for o in report.outcomes if o.arch == "resnet18")
    assert "FAILED unet seed 42 t0_f0" in report.summary()
    # the file is back: a rerun submits only what failed (resnet18's units are done)
    hidden.rename(victim)
    again = train_on_dask(client, runs, retries=0, progress=False)
    assert again.ok, again.summary()
    statuses = {(o.arch, o.task): o.status for o in again.outcomes}
    assert statuses[("resnet18", "t0_f0")] == "done" and statuses[("unet", "t0_f0")] == "finished"


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(SchedulerUnreachable, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 "):
        with connect("tcp://127.0.0.1:9", timeout=2):
            pass


def test_missing_dask_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependency, match=r'pip install "endolib\[dask\]"'):
        with connect("local:1"):
            pass
