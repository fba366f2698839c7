"""Agreement and speed of the two backends (:data:`endolib.deploy.stages.BACKENDS`) on trained runs: the
largest probability difference of ONNX Runtime to PyTorch (:func:`compare_backends`) and per-frame timings
(:func:`benchmark_backends`, ``video_backends.csv``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from endolib.config import get_profile
from endolib.deploy.preprocess import sigmoid
from endolib.deploy.stages import ONNX_ATOL, run_stage
from endolib.training.load import LoadedRun, load_run

__all__ = ["compare_backends", "benchmark_backends"]


# ------------------------------------------------------------------------------------------------ ONNX vs torch
def _inputs(size: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def compare_backends(run: LoadedRun | str | Path, inputs: np.ndarray | None = None, n: int = 2,
                     seed: int = 0) -> dict:
    """Run one model under PyTorch and ONNX Runtime on the same inputs and report the largest differences.

    Args:
        run: the run (folder or :class:`LoadedRun`).
        inputs: ``float32 (N, 3, S, S)`` model inputs (default: ``n`` standard-normal inputs from ``seed``).
        n, seed: used when ``inputs`` is None.

    Returns:
        ``{"model", "max_abs_diff_logits", "max_abs_diff_prob", "atol", "agree"}`` with ``agree`` =
        ``max_abs_diff_prob <= ONNX_ATOL``.

    Example:
        >>> compare_backends("runs/quick/unet")["agree"]  # doctest: +SKIP
        True
    """
    torch_stage, onnx_stage = run_stage(run, "torch"), run_stage(run, "onnxruntime")
    x = _inputs(torch_stage.size, n, seed) if inputs is None else np.asarray(inputs, dtype=np.float32)
    a, b = torch_stage(x), onnx_stage(x)
    d_logit = float(np.abs(a - b).max())
    d_prob = float(np.abs(sigmoid(a) - sigmoid(b)).max())
    return {"model": torch_stage.arch, "max_abs_diff_logits": d_logit, "max_abs_diff_prob": d_prob,
            "atol": ONNX_ATOL, "agree": d_prob <= ONNX_ATOL}


def _time_ms(fn, x: np.ndarray, warmup: int, repeats: int) -> np.ndarray:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(1e3 * (time.perf_counter() - t0))
    return np.asarray(times)


def benchmark_backends(runs: Sequence[LoadedRun | str | Path], warmup: int | None = None,
                       repeats: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Batch-1 latency of each model under PyTorch and ONNX Runtime (same thread count).

    Args:
        runs: run folders or :class:`LoadedRun` objects.
        warmup, repeats: untimed and timed calls (default ``Profile.bench_warmup`` / ``bench_repeats``).
        progress: tqdm over models.

    Returns:
        One row per model and backend: ``model``, ``backend``, ``size``, ``ms_mean``, ``ms_std``, ``fps``,
        ``threads``.
    """
    from tqdm.auto import tqdm

    prof = get_profile()
    warmup = prof.bench_warmup if warmup is None else warmup
    repeats = prof.bench_repeats if repeats is None else repeats
    rows = []
    for run in tqdm([load_run(r) for r in runs], desc="benchmark", disable=not progress):
        x = _inputs(run.input_size, 1, 0)
        for stage in (run_stage(run, "torch"), run_stage(run, "onnxruntime")):
            t = _time_ms(stage, x, warmup, repeats)
            rows.append({"model": run.arch, "backend": stage.backend, "size": run.input_size,
                         "ms_mean": float(t.mean()), "ms_std": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
                         "fps": 1e3 / float(t.mean()), "threads": torch.get_num_threads()})
    return pd.DataFrame(rows)
