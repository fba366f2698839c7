"""Computational load (Table 5) measured on this machine: parameters, FLOPs, latency, frame rate.

* :func:`count_flops` counts with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs, as
  the paper), including SegFormer's attention matmuls (CPU SDPA kernel registered below).
* :func:`matmul_peak` measures the machine's fp32 matrix-multiply rate (GFLOP/s), the honest ceiling of a CPU.
* Latency is batch 1, fp32, median and interquartile range after warm-up, for PyTorch eager and faster CPU
  paths timed *interleaved in the same run* (:data:`BACKENDS`): ``channels_last``, ``fused`` (BatchNorm
  folded, nearest-upsample + 3x3 conv rewritten exactly as a 4x4 stride-2 transposed convolution, and each
  convolution's kernel chosen by timing: oneDNN NCHW, oneDNN NHWC or NNPACK Winograd) and ``onnxruntime``
  (the same rewritten model exported to ONNX, all graph optimisations). The fastest path whose output agrees
  with eager (:func:`agreement_tolerance`) is reported. Effective GFLOP/s divide the model's *counted* FLOPs
  (Table 5's) by the latency, so algorithms doing fewer multiplies than counted can beat the matmul peak.
* :func:`bench` writes ``results/<profile>/table5_compute.csv``; :func:`bench_main` is
  ``python -m endolib bench compute``.

Example:
    >>> from endolib.deploy.compute import model_counts
    >>> c = model_counts("unet"); round(c["params"] / 1e6, 2), round(c["flops"] / 1e9, 1)
    (3.31, 46.6)
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from tqdm.auto import tqdm

from endolib import paper
from endolib.config import MODELS, Profile, get_profile, paths
from endolib.deploy.fast_cpu import FAST_ATOL, FAST_RTOL, fast_cpu_model
from endolib.deploy.onnx_export import export_onnx
from endolib.deploy.stages import OnnxStage
from endolib.deploy.timing import (
    latency_summary,
    matmul_peak,
    time_runners,
    torch_threads,
)
from endolib.models.factory import count_parameters, create_model, paper_input_size
from endolib.repro import environment, save_json, seed_everything, write_table

__all__ = ["BACKENDS", "TABLE5_FILE", "TABLE5_COLUMNS", "PAPER_TEST_NEGATIVE_SHARE", "count_flops", "model_counts",
           "counts_table", "matches_paper", "matmul_peak", "torch_threads", "make_runner", "time_runners",
           "latency_summary", "max_abs_diff", "agreement_tolerance", "benchmark_model", "pipeline_fps",
           "measure_pipeline", "pipeline_table", "pipeline_report", "plot_flops_latency", "bench", "bench_main"]


#: CPU paths timed side by side; the fastest is reported (``eager`` is the reference).
BACKENDS = ("eager", "channels_last", "fused", "onnxruntime")
#: results file of notebook 05 and its columns (issue 4)
TABLE5_FILE = "table5_compute.csv"
TABLE5_COLUMNS = ("model", "params_m", "gflops", "latency_eager_ms", "latency_ms", "fps", "backend",
                  "peak_fraction", "paper_params_m", "paper_gflops", "paper_latency_ms", "paper_fps")


#: a count reproduces Table 5 when within this relative distance, or equal at the paper's printed precision
MATCH_REL = 0.02
PAPER_DECIMALS = 1


#: ONNX opset of the exported models
#: share of negative frames in the paper's test set (1 - 635 / 1749, Table 1)
PAPER_TEST_NEGATIVE_SHARE = 1 - paper.TABLE1["test"]["images_with_tissue"] / paper.TABLE1["test"]["images"]
#: negative shares of the pipeline-throughput table
PIPELINE_SHARES = (0.0, 0.25, 0.5, round(PAPER_TEST_NEGATIVE_SHARE, 3), 0.75, 0.9)

_ATEN = torch.ops.aten
_MATMUL = "__matmul__"  # name of the matmul timed alongside a model


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: FlopCounterMode has no formula for the CPU flash-attention kernel; without this SegFormer's attention
#: matmuls (2.1 GFLOPs of B0 at 512 px) would be silently left out on CPU.
_FLOP_FORMULAS = {_ATEN._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


# ----------------------------------------------------------------------------------------------- counting
def count_flops(model: nn.Module, input_size: int, batch: int = 1) -> int:
    """FLOPs of one forward pass on a ``(batch, 3, S, S)`` input (a multiply-add counts as 2).

    Runs on the model's device; a model on the ``meta`` device is counted without any arithmetic.

    Args:
        model: the network.
        input_size: the input side S.
        batch: batch size.

    Example:
        >>> count_flops(nn.Conv2d(3, 8, 3, padding=1), 4)  # 2 * 3*9 * 8 * 4*4
        6912
    """
    p = next(model.parameters(), None)
    x = torch.zeros(batch, 3, input_size, input_size, device=p.device if p is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_FLOP_FORMULAS) as fc, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return int(fc.get_total_flops())


def model_counts(name: str, input_size: int | None = None, **kw) -> dict:
    """Trainable parameters and FLOPs of a registry model, built on the ``meta`` device (no memory, ~0.1 s).

    Args:
        name: registry name.
        input_size: input side (default: the paper's, as in Table 5).
        **kw: :func:`endolib.models.factory.create_model` options (e.g. ``width_mult``, ``shared_recurrent_weights``).

    Returns:
        ``{"params": int, "flops": int, "input_size": int}``.
    """
    size = input_size or paper_input_size(name)
    with torch.device("meta"):
        model = create_model(name, **kw)
    return {"params": count_parameters(model), "flops": count_flops(model, size), "input_size": size}


def matches_paper(ours: float, printed: float, rel: float = MATCH_REL, decimals: int = PAPER_DECIMALS) -> bool:
    """Whether our count reproduces a Table 5 value: within ``rel`` of it, or equal to it once rounded as the
    paper prints it (one decimal; e.g. MobileNetV3-L's 0.43 GFLOPs is printed 0.4, 8% away).

    Example:
        >>> matches_paper(0.431, 0.4), matches_paper(3.31, 3.3), matches_paper(2.08, 2.7)
        (True, True, False)
    """
    return bool(abs(ours / printed - 1) <= rel or round(ours, decimals) == round(printed, decimals))


def counts_table(models: Iterable[str] = MODELS) -> pd.DataFrame:
    """Parameters and FLOPs of each model at full width and the paper's input size, beside Table 5.

    Columns: ``model``, ``input_size``, ``params_m``, ``paper_params_m``, ``params_gap_pct``, ``params_match``,
    ``gflops``, ``paper_gflops``, ``gflops_gap_pct``, ``gflops_match`` (gap = ours / paper - 1, in %; match =
    :func:`matches_paper`).
    """
    rows = []
    for name in models:
        c = model_counts(name)
        ref = paper.TABLE5[name]
        rows.append({"model": name, "input_size": c["input_size"], "params_m": c["params"] / 1e6,
                     "paper_params_m": ref["params_m"], "gflops": c["flops"] / 1e9, "paper_gflops": ref["gflops"]})
    df = pd.DataFrame(rows)
    for col in ("params_m", "gflops"):
        df[col.split("_")[0] + "_gap_pct"] = 100 * (df[col] / df["paper_" + col] - 1)
        df[col.split("_")[0] + "_match"] = [matches_paper(a, b) for a, b in zip(df[col], df["paper_" + col])]
    return df[["model", "input_size", "params_m", "paper_params_m", "params_gap_pct", "params_match", "gflops",
               "paper_gflops", "gflops_gap_pct", "gflops_match"]]


# ----------------------------------------------------------------------------------------------- timing


def make_runner(model: nn.Module, backend: str, example: torch.Tensor, progress: bool = False) -> Callable:
    """A callable ``f(x) -> logits tensor`` running ``model`` (eval) on one of :data:`BACKENDS`.

    Args:
        model: the network (not modified).
        backend: ``eager``, ``channels_last``, ``fused`` or ``onnxruntime``.
        example: an input of the shape that will be timed (export/autotune use it).
        progress: tqdm while autotuning.

    Example:
        >>> net = create_model("resnet18").eval(); x = torch.randn(1, 3, 64, 64)
        >>> make_runner(net, "channels_last", x)(x).shape
        torch.Size([1, 1])
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    model = model.eval()
    if backend == "eager":
        return model
    if backend == "channels_last":
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        return lambda x: cl(x.contiguous(memory_format=torch.channels_last))
    if backend == "fused":
        return fast_cpu_model(model, example, progress=progress)
    fused = fast_cpu_model(model, example, autotune=False)
    stage = OnnxStage(export_onnx(fused, None, int(example.shape[-1]), dynamic_batch=False, check=False),
                      int(example.shape[-1]), task="", threads=torch.get_num_threads())
    return lambda x: torch.from_numpy(stage(x.detach().cpu().numpy()))


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest elementwise absolute difference."""
    return float((a.float() - b.float()).abs().max())


def agreement_tolerance(max_abs_ref: float) -> float:
    """Allowed max abs difference of a fast path from eager: ``FAST_ATOL + FAST_RTOL * max|eager|``."""
    return FAST_ATOL + FAST_RTOL * max_abs_ref


def benchmark_model(name: str, backends: Iterable[str] = BACKENDS, warmup: int = 10, repeats: int = 50,
                    input_size: int | None = None, seed: int = 42, progress: bool = False,
                    keep_runner: bool = False, peak_size: int | None = None) -> dict:
    """Time one full-width model (batch 1, fp32) on each backend, interleaved, and check agreement with eager.

    With ``peak_size``, an ``n x n`` matmul is timed in the same interleaved rounds, so the model and the
    matmul peak it is compared with see the same machine load.

    Args:
        name: registry name.
        backends: candidates; ``eager`` is always included (the reference).
        warmup: untimed calls per backend.
        repeats: timed calls per backend.
        input_size: input side (default: the paper's).
        seed: seeds the weights and the input.
        progress: tqdm bars.
        keep_runner: add ``"runner"``, the fastest agreeing backend's callable (e.g. for a pipeline test).
        peak_size: side of the square matmul timed alongside (None = none).

    Returns:
        ``{"model", "input_size", "latency": {backend: latency_summary}, "max_abs_diff": {backend: float},
        "max_abs_ref": float, "agrees": {backend: bool}, "best": fastest backend that agrees with eager,
        "times_ms": {backend: array}, "peak_gflops": matmul GFLOP/s in the same rounds (or None)}``.
    """
    backends = ["eager"] + [b for b in backends if b != "eager"]
    size = input_size or paper_input_size(name)
    seed_everything(seed)
    model = create_model(name).eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    runners = {b: make_runner(model, b, x, progress=progress) for b in backends}
    with torch.inference_mode():
        outs = {b: r(x) for b, r in runners.items()}
    timed = dict(runners)
    if peak_size:
        g = torch.Generator().manual_seed(seed)
        a, b_ = torch.randn(peak_size, peak_size, generator=g), torch.randn(peak_size, peak_size, generator=g)
        timed[_MATMUL] = lambda _: torch.mm(a, b_)
    times = time_runners(timed, x, warmup=warmup, repeats=repeats, progress=progress, desc=name)
    mm_ms = times.pop(_MATMUL, None)
    lat = {b: latency_summary(t) for b, t in times.items()}
    ref = float(outs["eager"].abs().max())
    diff = {b: max_abs_diff(outs[b], outs["eager"]) for b in backends}
    agrees = {b: diff[b] <= agreement_tolerance(ref) for b in backends}
    best = min((b for b in backends if agrees[b]), key=lambda b: lat[b]["median_ms"])
    out = {"model": name, "input_size": size, "latency": lat, "times_ms": times, "max_abs_diff": diff,
           "max_abs_ref": ref, "agrees": agrees, "best": best,
           "peak_gflops": 2 * peak_size**3 / (np.median(mm_ms) / 1e3) / 1e9 if peak_size else None}
    if keep_runner:
        out["runner"] = runners[best]
    return out


# ----------------------------------------------------------------------------------------------- pipeline
def pipeline_fps(cls_ms: float, seg_ms: float, negative_share: float) -> float:
    """Frames per second of the two-stage pipeline when the classifier passes exactly the positive frames:
    every frame costs ``cls_ms``, the share ``1 - negative_share`` also costs ``seg_ms``.

    Example:
        >>> pipeline_fps(10.0, 90.0, 0.5)  # 1000 / (10 + 0.5 * 90)
        18.181818181818183
    """
    if not 0.0 <= negative_share <= 1.0:
        raise ValueError(f"negative_share must be in [0, 1], got {negative_share}")
    return 1000.0 / (cls_ms + (1.0 - negative_share) * seg_ms)


def measure_pipeline(classify: Callable, segment: Callable, negative_share: float, n_frames: int,
                     cls_size: int, seg_size: int, seed: int = 42, progress: bool = False) -> dict:
    """Measured throughput of a stream of ``n_frames`` where a seeded random ``negative_share`` of frames is
    negative: each frame is classified, and the segmenter runs on the positive ones (an oracle gate, so the
    time does not depend on an untrained classifier's decisions).

    Returns:
        ``{"negative_share", "n_frames", "n_segmented", "seconds", "fps"}``.
    """
    rng = np.random.default_rng(seed)
    positive = rng.random(n_frames) >= negative_share
    g = torch.Generator().manual_seed(seed)
    frame_c = torch.randn(1, 3, cls_size, cls_size, generator=g)
    frame_s = torch.randn(1, 3, seg_size, seg_size, generator=g)
    with torch.inference_mode():
        classify(frame_c), segment(frame_s)  # warm-up
        t0 = time.perf_counter()
        for pos in tqdm(positive, desc="pipeline", disable=not progress, leave=False):
            classify(frame_c)
            if pos:
                segment(frame_s)
        seconds = time.perf_counter() - t0
    return {"negative_share": float(negative_share), "n_frames": int(n_frames), "n_segmented": int(positive.sum()),
            "seconds": seconds, "fps": n_frames / seconds}


def pipeline_table(cls_ms: float, seg_ms: float, shares: Iterable[float] = PIPELINE_SHARES) -> pd.DataFrame:
    """Expected two-stage frame rate for each negative share (columns ``negative_share``, ``fps``,
    ``speedup`` over running the segmenter on every frame without a classifier)."""
    shares = list(shares)
    fps = [pipeline_fps(cls_ms, seg_ms, s) for s in shares]
    return pd.DataFrame({"negative_share": shares, "fps": fps, "speedup": np.asarray(fps) * seg_ms / 1000.0})


def pipeline_report(result: dict, classifier: str = "resnet18", segmenter: str = "unet",
                    negative_share: float = PAPER_TEST_NEGATIVE_SHARE, n_frames: int = 20, seed: int = 42,
                    shares: Iterable[float] = PIPELINE_SHARES) -> dict:
    """Two-stage throughput from a :func:`bench` result: the expected frame rate per negative share (from the
    measured latencies of the fastest paths) and one measured stream at ``negative_share``.

    Returns:
        ``{"expected": pipeline_table(...), "measured": measure_pipeline(...) or None, "cls_ms", "seg_ms"}``;
        ``measured`` is None when either model was not timed.
    """
    runs = result["runs"]
    missing = [m for m in (classifier, segmenter) if m not in runs]
    if missing:
        raise ValueError(f"model(s) {missing} were not timed by bench(); time them (bench_models) first")
    cls_ms = runs[classifier]["latency"][runs[classifier]["best"]]["median_ms"]
    seg_ms = runs[segmenter]["latency"][runs[segmenter]["best"]]["median_ms"]
    measured = None
    if "runner" in runs[classifier] and "runner" in runs[segmenter]:
        measured = measure_pipeline(runs[classifier]["runner"], runs[segmenter]["runner"], negative_share,
                                    n_frames, runs[classifier]["input_size"], runs[segmenter]["input_size"], seed)
        measured["expected_fps"] = pipeline_fps(cls_ms, seg_ms, negative_share)
    return {"expected": pipeline_table(cls_ms, seg_ms, shares), "measured": measured, "cls_ms": cls_ms,
            "seg_ms": seg_ms}


def plot_flops_latency(table: pd.DataFrame, peak_gflops: float | None = None):
    """FLOPs vs measured batch-1 latency, one point per timed model (filled: fastest path; hollow: eager), on
    log axes, with the latency a model would have at the matmul peak (dashed). Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from endolib.plotting import model_colour, model_marker, paper_style

    paper_style()
    timed = table.dropna(subset=["latency_ms"])
    if timed.empty:
        raise ValueError("no timed model in the table (latency_ms is empty everywhere)")
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for r in timed.itertuples():
        c, m = model_colour(r.model), model_marker(r.model)
        ax.plot([r.gflops, r.gflops], [r.latency_eager_ms, r.latency_ms], color=c, lw=0.8)
        ax.scatter(r.gflops, r.latency_eager_ms, facecolors="none", edgecolors=c, marker=m, s=30)
        ax.scatter(r.gflops, r.latency_ms, color=c, marker=m, s=30,
                   label=f"{paper.DISPLAY_NAMES[r.model]} ({r.backend})")
    if peak_gflops:
        g = np.geomspace(timed.gflops.min() / 1.5, timed.gflops.max() * 1.5, 50)
        ax.plot(g, 1e3 * g / peak_gflops, "k--", lw=0.8, label=f"at matmul peak ({peak_gflops:.0f} GFLOP/s)")
    ax.scatter([], [], facecolors="none", edgecolors="grey", s=30, label="hollow: PyTorch eager")
    ax.set(xscale="log", yscale="log", xlabel="FLOPs per frame (G, multiply-add = 2)",
           ylabel="latency per frame (ms, batch 1, CPU)", title="Computational load on this machine")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.legend(fontsize=6, loc="upper left", frameon=False)
    return fig


# ----------------------------------------------------------------------------------------------- bench
def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def bench(profile: str | Profile = "smoke", models: Iterable[str] | None = None,
          backends: Iterable[str] | None = None, save: bool = True, progress: bool = True,
          dataset: str | None = None, **overrides) -> dict:
    """Table 5 on this machine: counts for all eleven models, latency for ``models`` (default: the profile's
    ``bench_models``), the matmul peak, and the environment; saves ``results/<profile>/table5_compute.csv``.

    Args:
        profile: profile name or Profile (``bench_warmup``, ``bench_repeats``, ``num_threads``, ``seed``).
        models: models to time (None = ``profile.bench_models``, itself None = all); the others get NaN latency.
        backends: CPU paths to try (None = ``profile.bench_backends``, itself None = :data:`BACKENDS`).
        save: write the CSV and ``table5_compute_environment.json``.
        progress: tqdm bars.
        dataset: the study's dataset name: saves to ``results/<profile>/<dataset>/`` (None: the phantom study's
            ``results/<profile>/``; :func:`endolib.config.paths`).
        **overrides: profile overrides.

    Returns:
        ``{"table": DataFrame (TABLE5_COLUMNS), "counts": counts_table(), "latency": long DataFrame (model,
        backend, median/q1/q3/iqr ms, fps, effective_gflops, matmul_peak_gflops, max_abs_diff, agrees),
        "peak": matmul_peak() plus ``interleaved_gflops`` (median over models of the matmul rate timed in the
        same rounds as each model); ``peak_fraction`` divides by the higher of the peak measured alone and the
        one measured alongside that model (the conservative choice: a load-depressed peak cannot flatter it),
        "runs": benchmark_model() results (with the fastest ``runner``), "environment": dict}``.
    """
    p = get_profile(profile, **overrides)
    timed = list(models) if models is not None else list(p.bench_models or MODELS)
    unknown = sorted(set(timed) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; valid names: {', '.join(MODELS)}")
    backends = tuple(backends if backends is not None else p.bench_backends or BACKENDS)
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; valid: {', '.join(BACKENDS)}")
    load_before = _load()
    counts = counts_table(MODELS)
    with torch_threads(p.num_threads) as threads:
        peak = matmul_peak(threads=threads)
        runs = {}
        for name in tqdm(timed, desc="models", disable=not progress):
            runs[name] = benchmark_model(name, backends, p.bench_warmup, p.bench_repeats, seed=p.seed,
                                         progress=progress, keep_runner=True, peak_size=peak["size"])
    inter = [r["peak_gflops"] for r in runs.values()]
    peak["interleaved_gflops"] = float(np.median(inter)) if inter else None
    env = environment()
    env.update({"bench_threads": threads, "load_average_before": load_before, "load_average_after": _load(),
                "matmul_peak": peak, "profile": p.name, "bench_warmup": p.bench_warmup,
                "bench_repeats": p.bench_repeats, "backends": list(backends)})
    rows, lat_rows = [], []
    for _, c in counts.iterrows():
        run = runs.get(c.model)
        ref = paper.TABLE5[c.model]
        row = {"model": c.model, "params_m": c.params_m, "gflops": c.gflops, "latency_eager_ms": np.nan,
               "latency_ms": np.nan, "fps": np.nan, "backend": "", "peak_fraction": np.nan,
               "paper_params_m": ref["params_m"], "paper_gflops": ref["gflops"],
               "paper_latency_ms": ref["latency_ms"], "paper_fps": ref["fps"]}
        if run is not None:
            best = run["best"]
            ms = run["latency"][best]["median_ms"]
            row.update(latency_eager_ms=run["latency"]["eager"]["median_ms"], latency_ms=ms, fps=1000.0 / ms,
                       backend=best, peak_fraction=c.gflops / (ms / 1e3) / max(peak["gflops"], run["peak_gflops"]))
            for b, s in run["latency"].items():
                lat_rows.append({"model": c.model, "backend": b, **s, "fps": 1000.0 / s["median_ms"],
                                 "effective_gflops": c.gflops / (s["median_ms"] / 1e3),
                                 "matmul_peak_gflops": run["peak_gflops"],
                                 "max_abs_diff": run["max_abs_diff"][b], "agrees": run["agrees"][b]})
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(TABLE5_COLUMNS))
    latency = pd.DataFrame(lat_rows)
    if save:
        out = paths(p, dataset=dataset).results
        write_table(table, out / TABLE5_FILE)
        save_json({"environment": env, "latency": lat_rows}, out / "table5_compute_environment.json")
    return {"table": table, "counts": counts, "latency": latency, "peak": peak, "runs": runs, "environment": env}


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m endolib bench compute",
                                 description="Batch-1 fp32 latency of one model: PyTorch eager vs the faster CPU "
                                             "paths, timed interleaved in one run, against the matmul peak.")
    ap.add_argument("--model", default="unet", choices=list(MODELS))
    ap.add_argument("--size", type=int, default=None, help="input side (default: the paper's for the model)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per backend")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per backend")
    ap.add_argument("--threads", type=int, default=None, help="torch/ORT threads (default: torch's default)")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    return ap.parse_args(argv)


def bench_main(argv: list[str]) -> int:
    """``python -m endolib bench compute [--model unet] [--size 256] [--repeats N]``: prints eager vs fast
    latency, the speedup, the effective GFLOP/s over the measured matmul peak and the max abs difference."""
    argv = list(argv)
    if argv[:1] == ["compute"]:
        argv = argv[1:]
    args = _parse(argv)
    with torch_threads(args.threads) as threads:
        load = _load()
        peak = matmul_peak(threads=threads)
        run = benchmark_model(args.model, args.backends, args.warmup, args.repeats, input_size=args.size,
                              peak_size=peak["size"])
        flops = model_counts(args.model, run["input_size"])["flops"]
    print(f"machine: {environment()['cpu']}, {threads} torch thread(s), load average before {load}, after {_load()}")
    print(f"matmul peak: {peak['gflops']:.1f} GFLOP/s alone (best n={peak['size']} of {list(peak['per_size'])}), "
          f"{run['peak_gflops']:.1f} GFLOP/s timed interleaved with the model; the higher one is used below")
    print(f"{args.model} @ {run['input_size']}x{run['input_size']}, batch 1, fp32: {flops / 1e9:.2f} GFLOPs; "
          f"{args.repeats} timed runs per backend, interleaved")
    eager = run["latency"]["eager"]["median_ms"]
    for b, s in run["latency"].items():
        eff = flops / 1e9 / (s["median_ms"] / 1e3)
        print(f"  {b:14s} median {s['median_ms']:8.1f} ms  IQR {s['iqr_ms']:6.1f} ms  {eff:7.1f} GFLOP/s  "
              f"max|diff| vs eager {run['max_abs_diff'][b]:.2e}{'' if run['agrees'][b] else '  DISAGREES (ignored)'}")
    best = run["best"]
    ms = run["latency"][best]["median_ms"]
    speedup = eager / ms
    ref_peak = max(peak["gflops"], run["peak_gflops"])  # conservative: the best matmul rate measured
    frac = flops / 1e9 / (ms / 1e3) / ref_peak
    tol = agreement_tolerance(run["max_abs_ref"])
    print(f"fastest: {best}: {ms:.1f} ms vs eager {eager:.1f} ms")
    print(f"speedup over eager: {speedup:.2f}x (target >= 1.5)")
    print(f"effective GFLOP/s over matmul peak: {flops / 1e9 / (ms / 1e3):.1f} / {ref_peak:.1f} = {frac:.2f} "
          f"(target >= 1.0)")
    print(f"max abs difference {run['max_abs_diff'][best]:.2e} (tolerance {tol:.1e} = {FAST_ATOL} + {FAST_RTOL} "
          f"x max|eager| {run['max_abs_ref']:.2f})")
    return 0
