"""Faults a cluster user meets, as functions the SLURM and the tcp tests share: a worker lost in the middle of a
unit (its SLURM job cancelled, its process killed), and a unit that raises."""
from __future__ import annotations

import hashlib
import threading
import time

from endolib.study.distributed import _task_prefix, train_on_dask
from endolib.training.runs import train_seeds
from endolib.training.settings import training_settings
from endolib.training.unit import load_unit, unit_dir

#: long enough to be interrupted: 30 epochs without early stopping on 6 x 40 training frames (about 0.3 s an epoch
#: on one core), so the unit checkpoints resume.pt many times before it is done
LONG = dict(epochs=30, patience=1000)
FILES = ("model.safetensors", "test_summary.json", "predictions.npz")


def fault_runs(root, data_dir) -> list:
    """unet seed 42, one long hold-out unit, and resnet18 seed 42 (1 epoch): one thread each, like serial."""
    unet = training_settings("unet", "smoke", data_dir=data_dir, model_dir=root / "unet",
                             figures_dir=root / "figures", folds=1, num_threads=1, **LONG).for_seed(42)
    cls = training_settings("resnet18", "smoke", data_dir=data_dir, model_dir=root / "resnet18",
                            figures_dir=root / "figures", epochs=1, folds=1, num_threads=1).for_seed(42)
    return [unet, cls]


def serial(runs) -> None:
    for s in runs:
        train_seeds(s, (s.training_seed,), progress=False)


def digests(runs) -> dict:
    return {(s.arch, f): hashlib.sha256((s.run_dir / f).read_bytes()).hexdigest() for s in runs for f in FILES}


def _checkpoint_epoch(ckpt, tries: int = 20) -> int:
    """The epoch of a unit's ``resume.pt`` (written atomically; a read that meets the replacement is retried)."""
    import torch

    for i in range(tries):
        try:
            return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])
        except Exception:  # noqa: BLE001 - replaced between open and read: read the next one
            if i == tries - 1:
                raise
            time.sleep(0.05)


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait (bounded) until process ``pid`` has exited (a zombie counts as exited)."""
    import psutil

    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"the lost worker's process {pid} was still alive {timeout:g} s later")


def lose_worker_mid_unit(client, runs, lose, timeout: float = 240.0):
    """Run ``train_on_dask(client, runs)`` and, once the long unit has checkpointed an epoch (``resume.pt``) and is
    not done, call ``lose(worker_address)`` on the worker running it. Returns (report, what lose returned, the
    checkpoint's epochs (before ``lose``, once the lost worker's process has exited), seconds).

    The retry resumes from a checkpoint between the two: ``lose`` takes a moment (``scancel`` is asynchronous,
    finding the worker's process takes a while on a loaded machine) in which the unit may finish another epoch
    (seen: epoch 1 before ``kill -9``, the retry resumed after epoch 2), and the retry can only have written a
    later one by the second read."""
    import os

    long_run = runs[0]
    ckpt = unit_dir(long_run, 0, 0) / "resume.pt"
    key = f"unit-{_task_prefix(long_run)}-t0_f0"
    out: dict = {}

    def train():
        try:
            out["report"] = train_on_dask(client, runs, retries=1, progress=False)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = e

    t0 = time.monotonic()
    th = threading.Thread(target=train, daemon=True)
    th.start()
    lost, epochs = None, None
    t_end = t0 + timeout
    while time.monotonic() < t_end and th.is_alive():
        if ckpt.exists() and load_unit(long_run, 0, 0) is None:
            where = [w for w, keys in client.processing().items() if key in keys]
            if where:
                pid = client.run(os.getpid, workers=where)[where[0]]  # the worker process training the unit
                before = _checkpoint_epoch(ckpt)
                assert not (unit_dir(long_run, 0, 0) / "unit.json").exists()  # half done is not done
                lost = lose(where[0])
                _wait_gone(pid, 60)
                epochs = (before, _checkpoint_epoch(ckpt))
                break
        time.sleep(0.2)
    th.join(max(1.0, t_end - time.monotonic()))
    assert not th.is_alive(), f"the study did not finish within {timeout:g} s after the worker was lost"
    if "error" in out:
        raise out["error"]
    assert lost is not None, "the long unit finished before it could be interrupted (make LONG longer)"
    return out["report"], lost, epochs, time.monotonic() - t0


def check_resumed(runs, epochs: tuple[int, int]) -> int:
    """The interrupted unit's log shows that the retry resumed from the checkpoint the lost worker left: an epoch
    within ``epochs`` (:func:`lose_worker_mid_unit`), not from scratch; returns that epoch."""
    import re

    log = (unit_dir(runs[0], 0, 0) / "unit.log").read_text()
    found = [int(m.group(1)) for m in re.finditer(r"^resuming .* after epoch (\d+)$", log, re.M)]
    assert len(found) == 1, f"the retried unit did not resume once from resume.pt (checkpoint epochs {epochs}):\n{log}"
    assert epochs[0] <= found[0] <= epochs[1], f"resumed after epoch {found[0]}, not within {epochs}:\n{log}"
    return found[0]


def failed_unit_is_reported(client, make_tiny_dataset, tmp_path) -> None:
    """A unit that raises (one of its training images vanishes after submission): reported with model, seed,
    unit, error and log; the other model finishes; after the file is back the rerun submits only what is missing."""
    import pandas as pd

    good, broken = make_tiny_dataset(), make_tiny_dataset()
    root = tmp_path / "runs"
    runs = [training_settings("unet", "smoke", data_dir=broken, model_dir=root / "unet", figures_dir=root / "f",
                              epochs=1, folds=2, num_threads=1).for_seed(42),
            training_settings("resnet18", "smoke", data_dir=good, model_dir=root / "resnet18", figures_dir=root / "f",
                              epochs=1, folds=1, num_threads=1).for_seed(42)]
    index = pd.read_csv(broken / "index.csv")
    victim = broken / index.loc[(index["split"] == "train") & (index["has_tissue"] == 1), "image"].iloc[0]
    hidden = victim.with_name(victim.name + ".away")
    victim.rename(hidden)
    report = train_on_dask(client, runs, retries=0, progress=False)
    assert not report.ok and report.failed_models == ["unet"], report.summary()
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert {(o.arch, o.training_seed, o.task) for o in failed} == {("unet", 42, "t0_f0"), ("unet", 42, "t0_f1")}
    msg = failed[0].error
    assert "unet training seed 42 unit t0_f0 (trial 0, fold 0) failed" in msg and victim.name in msg, msg
    assert "Traceback" in msg and f"log: {unit_dir(runs[0], 0, 0) / 'unit.log'}" in msg, msg
    assert "Traceback" in (unit_dir(runs[0], 0, 0) / "unit.log").read_text()
    assert {o.status for o in report.outcomes if o.arch == "unet" and o.task in ("final", "finish")} == {"not run"}
    assert all(o.status == "finished" for o in report.outcomes if o.arch == "resnet18")
    assert "FAILED unet seed 42 t0_f0" in report.summary() and "rerun the same command" in report.summary()
    assert load_unit(runs[0], 0, 0) is None  # a failed unit is not done
    hidden.rename(victim)
    again = train_on_dask(client, runs, retries=0, progress=False)
    assert again.ok, again.summary()
    st = {(o.arch, o.task): o.status for o in again.outcomes}
    assert st[("resnet18", "t0_f0")] == "done" and st[("resnet18", "finish")] == "finished"
    assert st[("unet", "t0_f0")] == "finished" and st[("unet", "final")] == "finished"
