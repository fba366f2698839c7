"""``python -m endolib bench stats``: how fast the bootstrap of Tables 3/4 runs on synthetic predictions of paper
size, against the naive per-resample recomputation it replaces (:func:`naive_segmenter_bootstrap`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from endolib.evaluation import metrics as M
from endolib.evaluation.bootstrap import (
    CHUNK_FRAMES,
    SegmenterStats,
    bootstrap,
    bootstrap_indices,
    level_cut,
    seed_bootstrap,
)

__all__ = ["naive_segmenter_bootstrap", "bench_main"]


# ------------------------------------------------------------------------------------------- benchmark
def naive_segmenter_bootstrap(levels: dict, target, n_boot: int, seed: int, threshold: float = 0.5) -> dict:
    """Reference implementation: for every resample, gather the resampled pixel arrays and recompute.

    Gives the same numbers as :func:`bootstrap` on :class:`SegmenterStats` (same resamples), only slowly;
    used by the tests and the benchmark.

    Args:
        levels: model -> uint8 probability maps ``(N, S, S)``.
        target: masks ``(N, S, S)``.
        n_boot, seed, threshold: as for :func:`bootstrap`.

    Returns:
        model -> metric -> ``(n_boot,)`` samples of ``dsc`` (mean over images), ``dsc_pooled`` and ``auprc``.
    """
    target = np.asarray(target).astype(bool)
    idx = bootstrap_indices(target.shape[0], n_boot, np.random.default_rng(seed))
    cut = level_cut(threshold)
    out = {m: {"dsc": np.empty(n_boot), "dsc_pooled": np.empty(n_boot), "auprc": np.empty(n_boot)} for m in levels}
    for b in range(n_boot):
        t = target[idx[b]]
        for model, lv in levels.items():
            p = lv[idx[b]]
            c = M.seg_counts(p >= cut, t)
            out[model]["dsc"][b] = np.mean(M.dice(c.tp, c.fp, c.fn))
            out[model]["dsc_pooled"][b] = M.dice(c.tp.sum(), c.fp.sum(), c.fn.sum())
            pos = np.bincount(p[t], minlength=M.N_LEVELS)
            neg = np.bincount(p[~t], minlength=M.N_LEVELS)
            out[model]["auprc"][b] = M.ap_from_hist(pos, neg)
    return out


def _synthetic_masks(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Discs of random centre and radius, one per frame (a cheap stand-in for tissue masks)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = rng.uniform(0.2, 0.8, (2, n, 1, 1)).astype(np.float32) * size
    r = rng.uniform(0.08, 0.3, (n, 1, 1)).astype(np.float32) * size
    out = np.empty((n, size, size), dtype=bool)
    for i in range(0, n, CHUNK_FRAMES):
        sl = slice(i, i + CHUNK_FRAMES)
        out[sl] = (yy - cy[sl]) ** 2 + (xx - cx[sl]) ** 2 <= r[sl] ** 2
    return out


def _synthetic_levels(target: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """uint8 scores correlated with ``target`` (higher ``quality`` = better separation)."""
    noise = rng.integers(0, 256, target.shape, dtype=np.uint8)
    shift = np.uint8(int(127 * quality))
    return np.where(target, noise // 2 + shift, noise // 2 + (127 - shift) // 2).astype(np.uint8)


def bench_main(argv: list[str]) -> int:
    """``python -m endolib bench stats``: time the bootstrap of Table 4 on synthetic predictions.

    Prints the time to reduce every model to per-image statistics, the time for all resamples, the time of the
    two-level bootstrap with ``--seeds`` training seeds per model, and the speed-up over
    :func:`naive_segmenter_bootstrap` measured on a subset (same subset for both).
    """
    ap = argparse.ArgumentParser(prog="python -m endolib bench stats", description=bench_main.__doc__)
    ap.add_argument("--frames", type=int, default=1750)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--naive-frames", type=int, default=175, help="frames of the subset timed both ways")
    ap.add_argument("--naive-boot", type=int, default=20, help="resamples of the subset timed both ways")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per model for the two-level bootstrap")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    target = _synthetic_masks(args.frames, args.size, rng)
    print(f"synthetic: {args.models} segmenters x {args.frames} frames of {args.size}x{args.size}, "
          f"{args.n_boot} resamples")
    t_reduce, stats, sub_levels = 0.0, {}, {}
    for k in range(args.models):
        levels = _synthetic_levels(target, rng, quality=0.3 + 0.05 * k)
        t0 = time.perf_counter()
        stats[f"model{k}"] = SegmenterStats.from_levels(levels, target)
        t_reduce += time.perf_counter() - t0
        if k == 0:
            sub_levels["model0"] = levels[: args.naive_frames].copy()
        del levels
    t0 = time.perf_counter()
    boot = bootstrap(stats, args.n_boot, args.seed)
    for model in boot.estimates:
        for m in ("dsc", "iou", "auprc"):
            boot.ci(model, m)
    t_boot = time.perf_counter() - t0
    print(f"per-image statistics (one pass over the pixels): {t_reduce:.2f} s")
    print(f"bootstrap, all metrics of Table 4 (mean-over-images + pooled + exact AUPRC): {t_boot:.2f} s")
    print(f"total: {t_reduce + t_boot:.2f} s")
    if args.seeds > 1:  # the per-seed cost does not depend on the values: each model's statistics stand in per seed
        t0 = time.perf_counter()
        two = seed_bootstrap({m: {k: st for k in range(args.seeds)} for m, st in stats.items()}, args.n_boot,
                             args.seed)
        for model in two.estimates:
            for m in ("dsc", "iou", "auprc"):
                two.ci(model, m)
        print(f"two-level bootstrap ({args.seeds} training seeds per model, seed level t): "
              f"{time.perf_counter() - t0:.2f} s")

    sub_t = target[: args.naive_frames]
    t0 = time.perf_counter()
    naive_segmenter_bootstrap(sub_levels, sub_t, args.naive_boot, args.seed)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = SegmenterStats.from_levels(sub_levels["model0"], sub_t)
    bootstrap({"model0": st}, args.naive_boot, args.seed, names=("dsc", "dsc_pooled", "auprc"))
    t_fast = time.perf_counter() - t0
    per_unit = t_naive / (args.naive_boot * args.naive_frames)
    extrapolated = per_unit * args.n_boot * args.frames * args.models
    print(f"subset ({args.naive_frames} frames, {args.naive_boot} resamples, 1 model; dsc, dsc_pooled, auprc): "
          f"naive recompute-per-resample {t_naive:.2f} s, per-image statistics {t_fast:.3f} s, "
          f"ratio {t_naive / t_fast:.0f}x")
    print(f"naive extrapolated to the full job: ~{extrapolated / 60:.0f} min "
          f"(~{extrapolated / (t_reduce + t_boot):.0f}x the fast total)")
    return 0
