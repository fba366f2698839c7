"""Batch runner: execute the numbered notebooks in order with papermill, one executed copy per run.

``python -m endolib run --profile quick`` runs the whole study; ``--only 03 --arch unet`` runs a part;
``--scheduler local:2`` (or ``slurm``, ``tcp://HOST:PORT``) trains every unit on Dask first (endolib.study.distributed).
Notebooks 02 and 03 run once per architecture (the ``arch`` papermill parameter). A failed run is reported
and the runner goes on with the others; the summary says what passed, failed and how long each took,
and is saved as ``runs/<profile>/summary.csv``. A job whose inputs are unchanged since its last successful run is
skipped (``endolib.study.incremental``; ``force=True`` reruns everything) and each executed job's tables and figures are
recorded in ``results/<profile>/provenance.json`` (``endolib.study.provenance``).

A study on another prepared dataset (``--data-dir data/mine``, optionally ``--dataset NAME``) is kept apart from
the phantom study's (:func:`endolib.config.study_paths`): its executed notebooks, ``summary.csv`` and
``build_state.json`` go to ``runs/<profile>/<dataset>/``, its tables, figures and ``provenance.json`` to
``results/<profile>/<dataset>/``; every notebook gets ``data_dir`` and ``dataset`` (:func:`study_of`).

Example:
    >>> [j.output_name for j in plan("smoke", only=["03"], archs=["unet", "aunet"])]
    ['03_segmentation_training__unet.ipynb', '03_segmentation_training__aunet.ipynb']
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from endolib.config import Paths, require, study_paths
from endolib.study.incremental import Tracker
from endolib.study.plan import PER_ARCH, Job, plan

__all__ = ["Result", "run", "format_summary", "study_of", "where_outputs_are"]


@dataclass
class Result:
    job: Job
    ok: bool
    seconds: float
    error: str = ""
    skipped: str = ""  # why the job was skipped (incremental rebuild); empty when it ran


def _error_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def study_of(profile: str, extra: dict | None = None, dataset: str | None = None) -> tuple[Paths, dict]:
    """The study a run belongs to and the parameters every notebook gets: the phantom study without a
    ``data_dir``; else ``data_dir`` made absolute (the notebooks run in ``notebooks/``) and checked, and its
    ``dataset`` name (:func:`endolib.config.dataset_name`: ``dataset`` if given, else the folder's name).

    Args:
        profile: the profile.
        extra: the papermill parameters given to every notebook (``data_dir`` among them, or not).
        dataset: the study's name (``--dataset``, else ``extra["dataset"]``); needs a ``data_dir`` in ``extra``.

    Returns:
        ``(paths, extra)``: :func:`endolib.config.study_paths` of the study and the parameters to pass on.

    Raises:
        ValueError: ``dataset`` without a ``data_dir``, or a name that cannot key a study.
        FileNotFoundError: ``data_dir`` holds no prepared dataset (the message names how to import one).

    Example:
        >>> study_of("smoke")[0].dataset is None
        True
        >>> study_of("smoke", {"data_dir": "/nonexistent/mine"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/mine/index.csv: the prepared dataset is missing; make it with `papermill ...
    """
    extra = dict(extra or {})
    dataset = extra.get("dataset") if dataset is None else dataset
    data_dir = extra.get("data_dir")
    if data_dir is None:
        if dataset is not None:
            raise ValueError(f"dataset {dataset!r} names the study on another prepared dataset: give its --data-dir")
        return study_paths(profile), extra
    data_dir = Path(data_dir).expanduser().resolve()
    study = study_paths(profile, data_dir, dataset)
    if study.dataset is None:  # the profile's own phantom, named by its path
        return study, {**extra, "data_dir": str(data_dir)}
    require(data_dir / "index.csv", "the prepared dataset",
            f"papermill notebooks/01_data_preparation.ipynb runs/import01.ipynb -p source folders ... "
            f"-p output_dir {data_dir} -p profile {profile}")
    return study, {**extra, "data_dir": str(data_dir), "dataset": study.dataset}


def where_outputs_are(study: Paths) -> str:
    """Where a study's tables, figures and executed notebooks are, relative to the repository root.

    Example:
        >>> from endolib.config import paths
        >>> print(where_outputs_are(paths("smoke", root="/r", dataset="mine")))
        study 'mine' (profile smoke): tables in results/smoke/mine/, figures in results/smoke/mine/figures/, executed notebooks and run folders in runs/smoke/mine/
    """
    def rel(path: Path) -> str:
        try:
            return path.relative_to(study.root).as_posix() + "/"
        except ValueError:
            return f"{path}/"
    name = "the phantom study" if study.dataset is None else f"study {study.dataset!r}"
    return (f"{name} (profile {study.profile}): tables in {rel(study.results)}, figures in {rel(study.figures)}, "
            f"executed notebooks and run folders in {rel(study.runs)}")


def run(profile: str, only: list[str] | None = None, archs: list[str] | None = None, extra: dict | None = None,
        notebooks_dir: str | Path | None = None, output_dir: str | Path | None = None,
        progress: bool = True, execute=None, force: bool = False, track: bool = True,
        dataset: str | None = None) -> list[Result]:
    """Execute the planned notebooks with papermill, one after another; go on past failures. The notebooks train
    what is not trained yet (serial); with a Dask scheduler, :func:`endolib.study.distributed.run_study` trains
    every unit on Dask first and then calls this (``python -m endolib run`` chooses).

    Args:
        profile, only, archs, extra: see :func:`plan`; with ``extra["data_dir"]`` another prepared dataset's
            study (:func:`study_of`).
        notebooks_dir: where the numbered notebooks are (default ``notebooks/``).
        output_dir: where executed copies go (default ``runs/<profile>/``, or ``runs/<profile>/<dataset>/``).
        progress: show papermill's per-cell progress bar.
        execute: the executor, ``execute(input_path, output_path, parameters, cwd)``; default papermill.
        force: rerun every job even if its inputs are unchanged.
        track: skip up-to-date jobs and record build state and provenance (:class:`endolib.study.incremental.Tracker`).
        dataset: the name of the study on ``extra["data_dir"]`` (default: the prepared dataset's folder name).

    Returns:
        One :class:`Result` per job, in order.
    """
    p, extra = study_of(profile, extra, dataset)
    nb_dir = Path(notebooks_dir) if notebooks_dir else p.notebooks
    out_dir = Path(output_dir) if output_dir else p.runs
    jobs = plan(profile, only, archs, extra)
    missing = [j.notebook for j in jobs if not (nb_dir / f"{j.notebook}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"{nb_dir}: notebook(s) not found: {', '.join(sorted(set(missing)))}.ipynb")
    if execute is None:
        execute = _papermill_executor(progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    tracker = Tracker(profile, nb_dir, out_dir, force=force, dataset=p.dataset) if track else None
    for i, job in enumerate(jobs, 1):
        if tracker is not None:  # incremental rebuild: skip a job whose inputs and outputs are unchanged
            decision = tracker.decide(job)
            if decision.skip:
                print(f"[{i}/{len(jobs)}] {job.output_name}: skipped, {decision.reason}", flush=True)
                results.append(Result(job, True, 0.0, skipped=decision.reason))
                continue
            print(f"[{i}/{len(jobs)}] {job.output_name} ... (runs: {decision.reason})", flush=True)
            tracker.started(job)
        else:
            print(f"[{i}/{len(jobs)}] {job.output_name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            execute(nb_dir / f"{job.notebook}.ipynb", out_dir / job.output_name, job.parameters, nb_dir)
            results.append(Result(job, True, time.perf_counter() - t0))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed notebook is reported, the others still run
            results.append(Result(job, False, time.perf_counter() - t0, _error_line(exc)))
            print(f"    FAILED: {results[-1].error}", flush=True)
        if tracker is not None:
            tracker.finished(job, results[-1].ok, results[-1].seconds, out_dir / job.output_name)
    _save_summary(results, out_dir / "summary.csv")
    return results


#: glibc malloc thresholds for the processes that train (notebook kernels, Dask workers: endolib.study.distributed).
#: Training allocates and frees activation buffers of 0.1-30 MB every step; with glibc's defaults (or the 64 KiB
#: trim threshold Dask's nanny sets), many of them go back to the kernel and are page-faulted in again (measured:
#: 3.3 M page faults and 7 s of system time in an 18 s quick U-Net unit on a Dask worker; 0.19 M and 0.7 s with
#: these, 10.3 s). They change where memory comes from, never a result.
MALLOC_THRESHOLDS = {"MALLOC_TRIM_THRESHOLD_": 64 << 20, "MALLOC_MMAP_THRESHOLD_": 32 << 20}


def training_environ() -> dict:
    """The environment for a process that trains: ``os.environ`` with :data:`MALLOC_THRESHOLDS` added where the
    user set no value of their own.

    Example:
        >>> int(training_environ()["MALLOC_MMAP_THRESHOLD_"]) >= 1 << 20
        True
    """
    import os

    return {**{k: str(v) for k, v in MALLOC_THRESHOLDS.items()}, **os.environ}


def relax_malloc() -> bool:
    """Apply :data:`MALLOC_THRESHOLDS` to this running process (``mallopt``; a Dask worker started by someone else,
    e.g. with Dask's 64 KiB trim threshold). True when applied; False off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_trim_threshold, MALLOC_THRESHOLDS["MALLOC_TRIM_THRESHOLD_"])
                    and libc.mallopt(m_mmap_threshold, MALLOC_THRESHOLDS["MALLOC_MMAP_THRESHOLD_"]))
    except (OSError, AttributeError):
        return False


def _papermill_executor(progress: bool):
    import os

    import papermill as pm

    os.environ.update(training_environ())  # inherited by the kernels papermill starts

    def execute(src: Path, dst: Path, parameters: dict, cwd: Path) -> None:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, cwd=str(cwd), progress_bar=progress,
                            kernel_name="python3", language="python", log_output=False)

    return execute


def _save_summary(results: list[Result], path: Path) -> None:
    import pandas as pd

    cols = ["notebook", "status", "seconds", "error"]
    rows = pd.DataFrame([{"notebook": r.job.output_name,
                          "status": "skipped" if r.skipped else "passed" if r.ok else "failed",
                          "seconds": round(r.seconds, 1), "error": r.error} for r in results], columns=cols)
    if path.exists():  # a partial run (--only) updates its own rows and keeps the others
        old = pd.read_csv(path, keep_default_na=False)
        rows = pd.concat([old[~old["notebook"].isin(rows["notebook"])], rows], ignore_index=True)
    rows.sort_values("notebook", kind="stable").to_csv(path, index=False)


def format_summary(results: list[Result]) -> str:
    """A plain-text table of the runs and their total time."""
    width = max([len(r.job.output_name) for r in results] + [8])
    lines = [f"{'notebook':<{width}}  status   seconds", "-" * (width + 19)]
    for r in results:
        status = "skipped" if r.skipped else "passed" if r.ok else "FAILED"
        lines.append(f"{r.job.output_name:<{width}}  {status:<7} {r.seconds:8.1f}"
                     + (f"   {r.error}" if r.error else ""))
    n_fail = sum(not r.ok for r in results)
    n_skip = sum(bool(r.skipped) for r in results)
    total = sum(r.seconds for r in results)
    train = sum(r.seconds for r in results if r.job.notebook in PER_ARCH)
    lines.append("-" * (width + 19))
    lines.append(f"{len(results) - n_fail - n_skip} passed, {n_fail} failed" + (f", {n_skip} skipped" if n_skip else "")
                 + f" in {total:.1f} s "
                 f"(training notebooks 02/03: {train:.1f} s)")
    return "\n".join(lines)
