"""The study on Dask: every training unit of every model and seed as one Dask task (``--scheduler``).

``python -m endolib run --profile paper --scheduler local:4|slurm|tcp://HOST:PORT`` runs notebook 01, then
submits all training units (model x training seed x trial x fold, see :func:`endolib.training.unit.train_unit`) of the
selected models to ``dask.distributed``, with the final retraining and the finish step (test predictions, run
files) of each run as tasks that depend on its units. Notebooks 02/03 then run as usual: they find every unit
done and only load and show the results; 05, 04, 06 and 07 follow serially.

Schedulers (:func:`parse_scheduler`):

* ``serial`` - no Dask; the notebooks train (today's behaviour).
* ``local`` / ``local:N`` - a ``LocalCluster`` of N one-thread worker processes on this machine (default N: the
  cores, or the GPUs when there are any: one training per GPU).
* ``slurm`` / ``slurm:N`` - ``dask_jobqueue.SLURMCluster`` with N worker jobs, configured by a ``jobqueue.yaml``
  (``~/.config/dask/jobqueue.yaml`` or ``$DASK_CONFIG``; example in ``docs/jobqueue.yaml``). The worker job script
  is first checked with ``sbatch --test-only`` (:func:`slurm_preflight`): a partition, account or limit the
  cluster refuses is an error within ``timeout`` seconds, before any job is submitted; a worker job that ends
  (``scancel``, time limit, node failure) is replaced while units are left (:class:`_JobKeeper`).
* ``tcp://HOST:PORT`` - an existing Dask scheduler (workers started with ``dask worker``).

Workers that advertise a ``GPU`` resource (``dask worker --resources GPU=1``) get one training at a time per GPU:
every unit is submitted with ``resources={"GPU": 1}``. A unit that raises is reported with model, seed, trial,
fold, its traceback and its log (``units/<unit>/unit.log``); the other units go on; a unit whose worker died is
retried (``retries``), then reported. A rerun submits only the units that are not done.

Example:
    >>> parse_scheduler("local:2"), parse_scheduler("tcp://10.0.0.1:8786")
    (('local', 2), ('address', 'tcp://10.0.0.1:8786'))
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from endolib.config import CLASSIFIERS, MODELS, SEGMENTERS, get_profile

__all__ = ["parse_scheduler", "connect", "study_runs", "run_unit", "run_final", "run_finish", "train_on_dask",
           "DaskReport", "UnitFailed", "MissingDependency", "SchedulerUnreachable", "SlurmRejected",
           "slurm_preflight", "run_study"]


#: The pip command named by the error when the optional dependency is missing.
PIP_DASK = 'pip install "endolib[dask]"'
PIP_SLURM = 'pip install "endolib[slurm]"'


class MissingDependency(ImportError):
    """An optional dependency (Dask, dask-jobqueue) is not installed; the message names the pip command."""


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler address did not answer within the timeout."""


class SlurmRejected(ValueError):
    """SLURM refuses the worker job script (``sbatch --test-only``: partition, account, QOS, limits), or the worker
    jobs ended before a Dask worker connected; the message has sbatch's own words and the job script."""


class UnitFailed(RuntimeError):
    """A training unit raised on a Dask worker; the message names the unit, the error, its log and traceback."""


def parse_scheduler(spec: str) -> tuple[str, object]:
    """``serial``, ``local[:N]``, ``slurm[:N]`` or ``tcp://HOST:PORT`` -> (kind, N or address).

    Raises:
        ValueError: anything else.
    """
    spec = str(spec).strip()
    if spec == "serial":
        return "serial", None
    for kind in ("local", "slurm"):
        if spec == kind:
            return kind, None
        if spec.startswith(kind + ":"):
            n = spec.split(":", 1)[1]
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"--scheduler {spec!r}: the worker count after '{kind}:' must be a positive integer")
            return kind, int(n)
    if spec.startswith(("tcp://", "tls://", "ucx://")):
        host = spec.split("://", 1)[1]
        if ":" not in host or not host.rsplit(":", 1)[1].isdigit():
            raise ValueError(f"--scheduler {spec!r}: a scheduler address is tcp://HOST:PORT (e.g. tcp://node1:8786)")
        return "address", spec
    raise ValueError(f"unknown scheduler {spec!r}; valid: serial, local, local:N, slurm, slurm:N, tcp://HOST:PORT")


def _require(module: str, pip: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise MissingDependency(f"the Dask scheduler needs the optional dependency {module!r} ({e}); install it "
                                f"with `{pip}`") from None


@contextlib.contextmanager
def connect(spec: str, timeout: float = 10.0, quiet: bool = True, start_timeout: float | None = None):
    """A ``dask.distributed.Client`` for a scheduler spec (closed, with its cluster, on exit).

    Args:
        spec: see :func:`parse_scheduler` (not ``serial``).
        timeout: seconds to wait for a scheduler address to answer; for ``slurm``, for ``sbatch --test-only`` and
            for sbatch to submit the worker jobs.
        quiet: keep Dask's own log lines out of the output.
        start_timeout: ``slurm``: seconds to wait for the first worker job to run and connect (None: as long as
            the queue takes; the jobs' state is printed every minute).

    Raises:
        MissingDependency: Dask (or dask-jobqueue for ``slurm``) is not installed.
        SchedulerUnreachable: a ``tcp://`` address does not answer within ``timeout``; ``slurm``: no sbatch, no
            answer from SLURM, or no worker within ``start_timeout``.
        SlurmRejected: SLURM refuses the worker job (partition, account, limits), or its jobs ended before a
            worker connected.
    """
    kind, arg = parse_scheduler(spec)
    if kind == "serial":
        raise ValueError("connect() needs a Dask scheduler, not 'serial'")
    _require("distributed", PIP_DASK)
    import logging

    from distributed import Client, LocalCluster

    # Dask's nanny writes its workers' pre-spawn environment (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_=65536, ...)
    # into this process's os.environ and leaves it there: every notebook kernel started afterwards (05 times the
    # models) would run on one thread with a 64 KiB trim threshold. Put the environment back once workers exist.
    environ = dict(os.environ)
    cluster = None
    if kind == "local":
        import torch

        from endolib.device import default_threads

        gpus = torch.cuda.device_count()
        n = arg or (gpus or default_threads())
        resources = {"GPU": 1} if gpus else None
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               resources=resources, silence_logs=logging.ERROR if quiet else logging.INFO)
        client = Client(cluster)
    elif kind == "slurm":
        _require("dask_jobqueue", PIP_SLURM)
        from dask_jobqueue import SLURMCluster

        slurm_preflight(timeout)  # a partition/account SLURM refuses: an error now, not a cluster that never starts
        cluster = SLURMCluster()  # every setting from jobqueue.yaml (docs/jobqueue.yaml)
        try:
            t0 = time.monotonic()
            cluster.scale(jobs=arg or 1)
            client = Client(cluster)
            _wait_for_slurm_worker(client, cluster, t0, timeout, start_timeout)
        except BaseException:
            cluster.close()
            raise
    else:
        try:
            client = Client(arg, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as e:
            raise SchedulerUnreachable(
                f"cannot reach the Dask scheduler at {arg} within {timeout:g} s ({type(e).__name__}: {e}); start one "
                f"with `dask scheduler` and workers with `dask worker {arg} --nthreads 1`, or use --scheduler "
                f"local:N") from None
    _restore_environ(environ)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        _restore_environ(environ)


def _sbatch(args: list[str], timeout: float, what: str):
    import shutil
    import subprocess

    if not shutil.which("sbatch"):
        raise SchedulerUnreachable(f"--scheduler slurm: there is no `sbatch` here ({what}); run the study on a "
                                   f"SLURM login node, or use --scheduler local:N or tcp://HOST:PORT")
    try:
        return subprocess.run(["sbatch", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SchedulerUnreachable(f"--scheduler slurm: `sbatch {' '.join(args)}` ({what}) did not answer within "
                                   f"{timeout:g} s; is slurmctld reachable (`sinfo`)? (--timeout)") from None


def slurm_preflight(timeout: float = 10.0) -> str:
    """``sbatch --test-only`` of the worker job script dask-jobqueue would submit (jobqueue.yaml), before any
    cluster object or job exists: what SLURM would refuse (an unknown partition or account, a QOS, a time or
    memory limit) is a :class:`SlurmRejected` naming sbatch's words, instead of jobs that never start.

    Returns:
        sbatch's answer (``Job N to start at ... on nodes ...``).

    Raises:
        SlurmRejected: sbatch refused the job script.
        SchedulerUnreachable: no sbatch, or no answer within ``timeout`` seconds.
    """
    import tempfile

    from dask_jobqueue.slurm import SLURMJob

    job = SLURMJob(scheduler="tcp://127.0.0.1:1", name="endolib-preflight")
    header = job.job_header  # the #SBATCH lines of jobqueue.yaml; the worker command is not needed to test
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="endolib-preflight-", delete=False) as fh:
        fh.write(f"#!/usr/bin/env bash\n{header}\ntrue\n")
    try:
        r = _sbatch(["--test-only", fh.name], timeout, "checking the worker job with --test-only")
    finally:
        os.unlink(fh.name)
    answer = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        raise SlurmRejected(f"--scheduler slurm: SLURM refuses the worker job of jobqueue.yaml (`sbatch --test-only`"
                            f", exit {r.returncode}):\n    {answer}\nits #SBATCH lines:\n{header}\nfix queue/account/"
                            f"walltime/memory/job-extra-directives in jobqueue.yaml ($DASK_CONFIG or "
                            f"~/.config/dask/; docs/jobqueue.yaml)")
    return answer


def _slurm_states(ids: list[str]) -> dict:
    """{job id: (state, reason)} from squeue for the jobs still known to SLURM."""
    import subprocess

    if not ids:
        return {}
    try:
        r = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return out


def _job_ids(cluster) -> list[str]:
    return [str(j.job_id) for j in list(cluster.workers.values()) if getattr(j, "job_id", None)]


def _wait_for_slurm_worker(client, cluster, t0: float, timeout: float, start_timeout: float | None) -> None:
    """Wait (bounded by ``start_timeout``) for the first worker job to connect; fail clearly when sbatch submitted
    nothing within ``timeout`` or every job ended without a worker."""
    ever, last_print = set(), time.monotonic()
    while True:
        if client.scheduler_info()["workers"]:
            ids = _job_ids(cluster)
            print(f"SLURM: first worker connected {time.monotonic() - t0:.1f} s after submitting "
                  f"{len(cluster.worker_spec)} worker job(s) (job ids {', '.join(ids)})", flush=True)
            return
        ids = _job_ids(cluster)
        ever.update(ids)
        waited = time.monotonic() - t0
        if not ever and waited > timeout:
            raise SchedulerUnreachable(f"--scheduler slurm: sbatch submitted no worker job within {timeout:g} s "
                                       f"(--timeout)")
        if ever and waited > 5 and not _slurm_states(sorted(ever)) and not client.scheduler_info()["workers"]:
            log_dir = getattr(cluster, "_dummy_job", None)
            log_dir = getattr(log_dir, "log_directory", None) or "(no log-directory in jobqueue.yaml: slurm-<id>.out)"
            raise SlurmRejected(f"--scheduler slurm: worker job(s) {', '.join(sorted(ever))} ended before their Dask "
                                f"worker connected; see the job logs in {log_dir} and the job-script-prologue / "
                                f"python of jobqueue.yaml")
        if start_timeout is not None and waited > start_timeout:
            states = _slurm_states(sorted(ever))
            raise SchedulerUnreachable(f"--scheduler slurm: no worker job running after {start_timeout:g} s "
                                       f"(--start-timeout): " + ("; ".join(f"job {i} {st} ({why})" for i, (st, why)
                                                                          in states.items()) or "no job queued"))
        if time.monotonic() - last_print > 60:
            last_print = time.monotonic()
            states = _slurm_states(sorted(ever))
            print("SLURM: waiting for a worker job: " + ("; ".join(f"job {i} {st} ({why})" for i, (st, why)
                                                                  in states.items()) or "submitting"), flush=True)
        time.sleep(0.5)


class _JobKeeper:
    """While tasks are left, replace the worker jobs of a dask-jobqueue cluster that ended (scancel, time limit,
    node failure): Dask reschedules the lost worker's tasks on the others, and ``cluster.scale`` submits a new job
    for the lost one (SpecCluster starts a job for every spec that has none). Other clusters: nothing to do."""

    def __init__(self, client):
        cluster = getattr(client, "cluster", None)
        self.cluster = cluster if cluster is not None and hasattr(cluster, "job_cls") else None
        self.ids = set(_job_ids(self.cluster)) if self.cluster is not None else set()

    def __call__(self) -> None:
        if self.cluster is None:
            return
        self.cluster.scale(jobs=len(self.cluster.worker_spec))
        ids = set(_job_ids(self.cluster))
        gone, new = self.ids - ids, ids - self.ids
        if gone or new:
            print(f"SLURM: worker job(s) {', '.join(sorted(gone)) or '-'} ended; "
                  f"{', '.join(sorted(new)) or 'a replacement is being'} submitted", flush=True)
        self.ids = ids


def _restore_environ(environ: dict) -> None:
    """Make ``os.environ`` equal to ``environ`` again (see :func:`connect`)."""
    for k in set(os.environ) - set(environ):
        del os.environ[k]
    os.environ.update(environ)


def study_runs(profile: str, archs=None, data_dir: str | Path | None = None, seeds=None,
               dataset: str | None = None) -> list:
    """The :class:`endolib.training.settings.TrainSettings` of every (model, training seed) the study trains.

    Args:
        profile: profile name.
        archs: models (default: all eleven, in the paper's order).
        data_dir: prepared dataset (default the profile's phantom).
        seeds: training seeds (default the profile's ``training_seeds``).
        dataset: the study's dataset name (default: :func:`endolib.config.dataset_name` of ``data_dir``); its runs
            go to ``runs/<profile>/<dataset>/``.
    """
    from endolib.training.settings import training_settings

    archs = [a for a in MODELS if a in archs] if archs else list(MODELS)
    seeds = tuple(seeds) if seeds is not None else get_profile(profile).training_seeds
    return [training_settings(a, profile, data_dir=data_dir, training_seed=s, dataset=dataset)
            for a in archs for s in seeds]


# ------------------------------------------------------------------------------------------------- tasks
def _worker_settings(settings):
    """The settings a worker trains with: the worker's threads when the profile leaves threads unset (the workers
    share the cores; a profile's ``train_threads``, e.g. quick's 1, still decides a unit's threads, so a worker of
    any size trains the same numbers), and on a local multi-GPU cluster the GPU of this worker (worker i: GPU i)."""
    import torch

    prof = settings.profile
    changes = {}
    if not prof.num_threads:
        try:
            from distributed import get_worker

            changes["num_threads"] = max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            changes["num_threads"] = 1
    if prof.device in ("auto", "cuda") and torch.cuda.device_count() > 1:
        try:
            from distributed import get_worker

            name = get_worker().name
            if isinstance(name, int):
                changes["device"] = f"cuda:{name % torch.cuda.device_count()}"
        except (ImportError, ValueError):
            pass
    if not changes:
        return settings
    import dataclasses

    return dataclasses.replace(settings, profile=prof.replace(**changes))


def _logged(settings, what: str, log: Path, fn):
    """Run ``fn()`` with its output in ``log``; a raise becomes :class:`UnitFailed` naming the unit and log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            out = fn()
    except Exception as e:  # noqa: BLE001 - reported with its traceback; the other units go on
        tb = traceback.format_exc()
        log.write_text(buf.getvalue() + tb)
        raise UnitFailed(f"{settings.arch} training seed {settings.training_seed} {what} failed: "
                         f"{type(e).__name__}: {e}\n    log: {log}\n{tb}") from None
    log.write_text(buf.getvalue() + f"done in {time.perf_counter() - t0:.1f} s\n")
    return out


def _relax_malloc() -> None:
    """endolib.study.runner.relax_malloc in this worker (idempotent; workers may be started by Dask's nanny with a
    64 KiB trim threshold, or by SLURM or a user)."""
    from endolib.study.runner import relax_malloc

    relax_malloc()


def run_unit(settings, trial: int, fold: int) -> dict:
    """Dask task: :func:`endolib.training.unit.train_unit` (search unit) with its output in ``unit.log``."""
    from endolib.training.unit import train_unit, unit_dir, unit_name

    _relax_malloc()
    s = _worker_settings(settings)
    log = unit_dir(s, trial, fold) / "unit.log"
    rec = _logged(s, f"unit {unit_name(trial, fold)} (trial {trial}, fold {fold})", log,
                  lambda: train_unit(s, trial, fold, progress=False))
    return {k: rec[k] for k in ("arch", "training_seed", "trial", "fold", "best_epoch")}


def run_final(settings, *units) -> dict | None:
    """Dask task: the final retraining of a ``folds > 1`` run, after its search ``units``."""
    from endolib.training.runs import final_unit, train_final_unit
    from endolib.training.settings import FINAL_FOLD
    from endolib.training.unit import unit_dir

    _relax_malloc()
    s = _worker_settings(settings)
    fin = _logged(s, "final retraining (choosing the trial)", s.run_dir / "final.log", lambda: final_unit(s))
    log = unit_dir(s, fin[0], FINAL_FOLD) / "unit.log"
    rec = _logged(s, f"final retraining (trial {fin[0]}, {fin[1]} epochs)", log,
                  lambda: train_final_unit(s, progress=False))
    return {k: rec[k] for k in ("arch", "training_seed", "trial", "fold", "best_epoch")}


def run_finish(settings, *units) -> dict:
    """Dask task: :func:`endolib.training.runs.finish_run` (test predictions and run files; no figure)."""
    from endolib.training.runs import finish_run

    _relax_malloc()
    s = _worker_settings(settings)
    res = _logged(s, "finish step", s.run_dir / "finish.log", lambda: finish_run(s, progress=False, figure=False))
    return dict(res.test_summary)


# ------------------------------------------------------------------------------------------------ report
@dataclass
class TaskOutcome:
    arch: str
    training_seed: int
    task: str  # unit name, "final" or "finish"
    status: str  # "done" (before this run), "finished", "failed", "not run"
    error: str = ""


@dataclass
class DaskReport:
    """What :func:`train_on_dask` did: one row per task, and the failed models."""

    outcomes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed_models(self) -> list[str]:
        return sorted({o.arch for o in self.outcomes if o.status in ("failed", "not run")},
                      key=MODELS.index)

    @property
    def ok(self) -> bool:
        return not self.failed_models

    def summary(self) -> str:
        from collections import Counter

        c = Counter(o.status for o in self.outcomes)
        lines = [f"Dask training: {c['finished']} task(s) finished, {c['done']} already done, {c['failed']} failed, "
                 f"{c['not run']} not run (depend on a failure) in {self.seconds:.1f} s"]
        for o in self.outcomes:
            if o.status == "failed":
                lines.append(f"  FAILED {o.arch} seed {o.training_seed} {o.task}: {o.error}")
        if self.failed_models:
            lines.append(f"  rerun the same command to resubmit only what is not done ({', '.join(self.failed_models)})")
        return "\n".join(lines)


def train_on_dask(client, runs: list, retries: int = 1, progress: bool = True) -> DaskReport:
    """Submit every unit of ``runs`` (TrainSettings, one per model and seed) that is not done, with the final
    retraining and finish step of each run depending on its units; wait; report.

    Args:
        client: a ``dask.distributed.Client`` (:func:`connect`).
        runs: :func:`study_runs`.
        retries: extra attempts per task after a failure (a dead worker, a raise).
        progress: a tqdm bar over the tasks.

    Raises:
        FileNotFoundError, ValueError: a model's inputs are missing or unusable (checked before submitting).
    """
    from tqdm.auto import tqdm

    from endolib.training.frames import prepare_data
    from endolib.training.unit import (
        load_unit,
        search_units,
        unit_fingerprint,
        unit_name,
    )

    t0 = time.perf_counter()
    report = DaskReport()
    resources = {"GPU": 1} if _workers_have_gpus(client) else None
    tasks, data_cache, cost = [], {}, {}  # (future, settings, task name, dependency futures), in submission order
    for s in runs:  # bad input fails here, before anything is submitted; every cost is known before the first
        key = (s.arch, str(s.data_dir))  # submission (a unit submitted to an idle worker starts at once)
        if key not in data_cache:
            data_cache[key] = prepare_data(s, progress=False)
            cost[key] = unit_priority(s, data_cache[key])
    try:
        for s in sorted(runs, key=lambda r: -cost[(r.arch, str(r.data_dir))]):
            key = (s.arch, str(s.data_dir))
            data = data_cache[key]
            name = _task_prefix(s)
            deps = []
            for t, k in search_units(s):
                if load_unit(s, t, k, unit_fingerprint(s, data, t, k)) is not None:
                    report.outcomes.append(TaskOutcome(s.arch, s.training_seed, unit_name(t, k), "done"))
                    continue
                f = client.submit(run_unit, s, t, k, key=f"unit-{name}-{unit_name(t, k)}", retries=retries,
                                  resources=resources, pure=False, priority=cost[key])
                tasks.append((f, s, unit_name(t, k), []))
                deps.append(f)
            if s.profile.folds > 1:
                f = client.submit(run_final, s, *deps, key=f"final-{name}", retries=retries, resources=resources,
                                  pure=False)
                tasks.append((f, s, "final", deps))
                deps = [f]
            f = client.submit(run_finish, s, *deps, key=f"finish-{name}", retries=retries, resources=resources,
                              pure=False)
            tasks.append((f, s, "finish", deps))
        from distributed import wait

        keep = _JobKeeper(client)
        pending = [t[0] for t in tasks]
        with tqdm(total=len(tasks), desc="Dask training tasks", disable=not progress) as bar:
            while pending:
                try:
                    done, pending = wait(pending, timeout=2, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = ()
                bar.update(len(done))
                keep()
        bad = set()
        for f, s, what, deps in tasks:  # dependencies come first: a task after a failure is "not run"
            if f.status == "finished":
                report.outcomes.append(TaskOutcome(s.arch, s.training_seed, what, "finished"))
            elif any(d.key in bad for d in deps):
                bad.add(f.key)
                report.outcomes.append(TaskOutcome(s.arch, s.training_seed, what, "not run",
                                                   "depends on a failed task"))
            else:
                bad.add(f.key)
                exc = f.exception()
                text = str(exc) if isinstance(exc, UnitFailed) else (
                    f"{type(exc).__name__}: {exc} (the worker running it died or was lost; tried {retries + 1} "
                    f"time(s); see the worker logs)")
                report.outcomes.append(TaskOutcome(s.arch, s.training_seed, what, "failed", text))
    finally:
        _release(client, [t[0] for t in tasks])
    report.seconds = time.perf_counter() - t0
    return report


def _task_prefix(settings) -> str:
    """The part of a run's task keys that names the run: model, training seed and a digest of its folder, so that
    the same model and seed of another run (another dataset, profile or model folder) on the same client is
    another task, never the other run's result."""
    import hashlib

    digest = hashlib.sha256(str(Path(settings.run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{settings.arch}-seed{settings.training_seed}-{digest}"


def _release(client, futures: list, timeout: float = 10.0) -> None:
    """Release this call's futures and wait (bounded) until the client has forgotten their keys.

    A key the client still holds is not run again: ``client.submit`` with that key returns the held future, a
    failed one included. Futures are released asynchronously (on the client's event loop; the ones a traceback
    keeps alive only when the garbage collector runs), so without this a rerun in the same process right after a
    failure, after the missing file is back, reported the old failure again without running anything (measured
    with tests_cluster: ``Dask training: ... 2 failed ... in 0.2 s``)."""
    keys = {f.key for f in futures}
    for f in futures:
        f.release()
    t_end = time.monotonic() + timeout
    while any(k in client.futures for k in keys) and time.monotonic() < t_end:
        time.sleep(0.02)


def _workers_have_gpus(client) -> bool:
    """Do the workers advertise a ``GPU`` resource (``dask worker --resources GPU=1``)?"""
    import inspect

    kw = {"n_workers": -1} if "n_workers" in inspect.signature(client.scheduler_info).parameters else {}
    workers = client.scheduler_info(**kw)["workers"].values()
    return any("GPU" in (w.get("resources") or {}) for w in workers)


# --------------------------------------------------------------------------------------------- the study
def unit_priority(settings, data, batch: int = 4) -> int:
    """Dask priority of a model's units: their estimated cost in milliseconds (one timed training step on ``batch``
    frames here, scaled to the samples of an epoch and the epochs), so the longest units start first and the cheap
    ones fill the gaps at the end (longest-processing-time first; in FIFO order the R2U-Nets and SegFormers, last
    in the paper's order, leave a worker idle at the end). FLOPs do not do: at the quick sizes the small models
    are bound by memory traffic, not arithmetic. Only the order changes, never a result (a unit's seed is its own).
    """
    import torch

    from endolib.deploy.timing import torch_threads
    from endolib.models.factory import create_model

    torch.manual_seed(0)
    model = create_model(settings.arch, **settings.model_kwargs).train()
    x = torch.randn(batch, 3, settings.size, settings.size)
    with torch_threads(1):
        model(x).float().mean().backward()  # warm-up
        t0 = time.perf_counter()
        model(x).float().mean().backward()
        step = time.perf_counter() - t0
    p = settings.profile
    samples = int(data.use.sum()) * (p.expand if settings.task == "seg" else 1)
    return int(1000 * step / batch * samples * settings.epochs)


def run_study(profile: str, scheduler: str, only=None, archs=None, extra: dict | None = None, progress: bool = True,
              retries: int = 1, timeout: float = 10.0, notebooks_dir=None, output_dir=None, execute=None,
              force: bool = False, dataset: str | None = None, start_timeout: float | None = None) -> list:
    """``python -m endolib run --scheduler ...``: notebook 01, all training units on Dask, then the notebooks.

    ``extra["data_dir"]`` (and ``dataset``) make it the study on another prepared dataset, in its own folders
    (:func:`endolib.study.runner.study_of`).

    Returns the runner's results (:class:`endolib.study.runner.Result`), with a failed entry for every model whose
    training failed on Dask (its notebook is not run).
    """
    from endolib.study.plan import Job, plan
    from endolib.study.runner import Result, _save_summary, run, study_of

    study, extra = study_of(profile, extra, dataset)
    jobs = plan(profile, only, archs, extra)
    names = [j.notebook for j in jobs]
    kind, _ = parse_scheduler(scheduler)  # a bad spec fails before anything runs
    if kind == "slurm":  # so does a partition or account SLURM refuses (connect checks again)
        _require("dask_jobqueue", PIP_SLURM)
        slurm_preflight(timeout)
    kw = dict(extra=extra, progress=progress, notebooks_dir=notebooks_dir, output_dir=output_dir, execute=execute,
              force=force)
    results = []
    if "01_data_preparation" in names:
        results += run(profile, only=["01"], **kw)
        if not results[-1].ok:
            print("notebook 01 failed: no training submitted")
    train_archs = [j.parameters["arch"] for j in jobs if "arch" in j.parameters]
    failed = []
    if train_archs and all(r.ok for r in results):
        runs = study_runs(profile, train_archs, extra.get("data_dir"), dataset=study.dataset)
        print(f"submitting the training units of {len(train_archs)} model(s) x {len(runs) // len(train_archs)} "
              f"seed(s) to Dask ({scheduler})", flush=True)
        with connect(scheduler, timeout=timeout, start_timeout=start_timeout) as client:
            report = train_on_dask(client, runs, retries=retries, progress=progress)
        print(report.summary(), flush=True)
        failed = report.failed_models
        for a in failed:
            nb = "02_classifier_training" if a in CLASSIFIERS else "03_segmentation_training"
            errs = [o.error.splitlines()[0] for o in report.outcomes if o.arch == a and o.status == "failed"]
            results.append(Result(Job(nb, {"profile": profile, **extra, "arch": a}), False, 0.0,
                                  f"training on Dask failed: {errs[0] if errs else 'see above'}"))
    elif train_archs:
        failed = list(train_archs)
    ok_cls = [a for a in train_archs if a in CLASSIFIERS and a not in failed]
    ok_seg = [a for a in train_archs if a in SEGMENTERS and a not in failed]
    if ok_cls:
        results += run(profile, only=["02"], archs=ok_cls, **kw)
    if ok_seg:
        results += run(profile, only=["03"], archs=ok_seg, **kw)
    rest = [n for n in dict.fromkeys(names) if n not in ("01_data_preparation", "02_classifier_training",
                                                         "03_segmentation_training")]
    if rest:
        results += run(profile, only=rest, archs=archs, **kw)
    order = {n: i for i, n in enumerate(names)}
    results.sort(key=lambda r: order.get(r.job.notebook, 99))
    _save_summary(results, (Path(output_dir) if output_dir else study.runs) / "summary.csv")
    return results
