"""Timing on the CPU, shared by Table 5, the conv autotuner and the real-time benchmark: threads for a measurement,
interleaved repeated timing of several callables, latency summaries and the matmul peak that puts a model's
FLOP rate in proportion.

Example:
    >>> import torch
    >>> t = time_runners({"id": lambda x: x}, torch.zeros(1), warmup=1, repeats=3)
    >>> sorted(t), t["id"].shape
    (['id'], (3,))
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

#: square sizes of the matmul-peak measurement (the best one is the peak)
MATMUL_SIZES = (512, 1024, 2048)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Temporarily set torch's intra-op threads (None = leave unchanged)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def time_runners(runners: dict[str, Callable], x: torch.Tensor, warmup: int = 10, repeats: int = 50,
                 progress: bool = False, desc: str = "timing") -> dict[str, np.ndarray]:
    """Wall-clock milliseconds of each runner on ``x``, interleaved round by round so that every runner sees
    the same machine load (the order rotates each round).

    Args:
        runners: name -> callable ``f(x)``.
        x: the input.
        warmup: untimed calls of each runner first.
        repeats: timed calls of each runner.
        progress: show a tqdm bar over rounds.
        desc: the bar's label.

    Returns:
        name -> array of ``repeats`` latencies in ms.

    Example:
        >>> t = time_runners({"id": lambda x: x}, torch.zeros(1), warmup=1, repeats=3)
        >>> t["id"].shape
        (3,)
    """
    names = list(runners)
    times = {n: [] for n in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                runners[n](x)
        for r in tqdm(range(repeats), desc=desc, disable=not progress, leave=False):
            for n in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                runners[n](x)
                times[n].append(1e3 * (time.perf_counter() - t0))
    return {n: np.asarray(v) for n, v in times.items()}


def latency_summary(times_ms: np.ndarray) -> dict:
    """Median, quartiles and IQR (ms) of a latency sample.

    Example:
        >>> latency_summary(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))["median_ms"]
        3.0
    """
    q1, med, q3 = np.percentile(np.asarray(times_ms, dtype=float), [25, 50, 75])
    return {"median_ms": float(med), "q1_ms": float(q1), "q3_ms": float(q3), "iqr_ms": float(q3 - q1)}


def matmul_peak(sizes: Iterable[int] | None = None, warmup: int = 1, repeats: int = 5,
                threads: int | None = None, seed: int = 0) -> dict:
    """The machine's measured fp32 matrix-multiply rate: for each square size n, ``2 n^3`` FLOPs over the
    median time of ``torch.mm``; the peak is the best size.

    Args:
        sizes: matrix sides to try (None = :data:`MATMUL_SIZES`).
        warmup: untimed multiplications per size.
        repeats: timed multiplications per size.
        threads: torch threads (None = current setting).
        seed: seed of the random matrices.

    Returns:
        ``{"gflops": peak, "size": best n, "per_size": {n: GFLOP/s}, "threads": int}``.
    """
    g = torch.Generator().manual_seed(seed)
    per_size = {}
    with torch_threads(threads) as n_threads:
        for n in sizes or MATMUL_SIZES:
            a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
            t = time_runners({"mm": lambda _: torch.mm(a, b)}, a, warmup=warmup, repeats=repeats)["mm"]
            per_size[int(n)] = 2 * n**3 / (np.median(t) / 1e3) / 1e9
    best = max(per_size, key=per_size.get)
    return {"gflops": per_size[best], "size": best, "per_size": per_size, "threads": n_threads}
