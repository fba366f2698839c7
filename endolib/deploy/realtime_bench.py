"""``python -m endolib bench realtime``: every deployable variant (student width x precision x backend) timed on
the threaded runtime at paper resolution and scored on the test set for each training seed (DSC drop against
the fp32 pipeline with the two-level bootstrap of Tables 3/4), written to ``realtime.csv`` /
``realtime_by_seed.csv``, with the Pareto figure ``fig_realtime_pareto``.

Why this length: the benchmark's three parts (:func:`time_variants`, :func:`ensure_students`,
:func:`variant_accuracy`) share the variant list, the calibration cache and the table layout they fill; the
reading (:func:`read_realtime`) and the Pareto figure stay beside the columns they check.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from endolib.config import CLASSIFIERS, Profile, get_profile, paths, repo_root, require, study_paths
from endolib.deploy.precision import (
    PRECISIONS,
    _calibration,
    cpu_features,
    machine_label,
    precision_plan,
)
from endolib.deploy.preprocess import frames_to_input, sigmoid
from endolib.deploy.realtime import RealtimeRunner
from endolib.deploy.stages import make_stage, stage_probs
from endolib.evaluation.bootstrap import (
    SegmenterStats,
    combine_seeds,
    percentile_ci,
    resample_weights,
    seed_rng,
)
from endolib.evaluation.predictions import run_command
from endolib.models.factory import paper_input_size

if TYPE_CHECKING:  # the realtime bench reads the training package's records lazily, where it uses them
    from endolib.training.students import StudentCheck

__all__ = ["REALTIME_FILE", "REALTIME_COLUMNS", "REALTIME_SEED_FILE", "REALTIME_SEED_COLUMNS", "WIDTHS",
           "deployable_run", "student_run", "measured_student", "measured_candidate", "evaluate_variant", "dsc_drop_ci",
           "combine_passes", "deployable_seeds", "bench_realtime", "matmul_peaks", "precision_table",
           "plot_realtime_pareto", "pareto_figure", "read_realtime", "bench_main"]


REALTIME_FILE = "realtime.csv"
REALTIME_COLUMNS = ("classifier", "segmenter", "width", "precision", "backend", "dsc", "dsc_drop", "dsc_drop_lo",
                    "dsc_drop_hi", "gate_auroc", "fps", "latency_p50_ms", "latency_p95_ms", "speedup_vs_eager",
                    "machine", "n_seeds", "n_accepted", "dsc_drop_seed_sd", "fps_min", "fps_max",
                    "student_candidates")
#: the long table beside it: one row per variant and training seed (the values the seed level combines; a seed
#: whose students all missed the validation bound is measured with the candidate best on validation,
#: ``student_used``, and has an empty ``student_accepted``)
REALTIME_SEED_FILE = "realtime_by_seed.csv"
REALTIME_SEED_COLUMNS = ("classifier", "segmenter", "width", "precision", "backend", "seed", "dsc", "dsc_drop",
                         "dsc_segmenter", "gate_auroc", "student_candidates", "student_accepted", "student_used")


#: segmenter widths of the deployable variants, relative to the paper model (1.0 = paper width); 1/8 is the
#: width a single AVX2 core without VNNI needs to come near 25 FPS
WIDTHS = (1.0, 0.5, 0.25, 0.125)


#: frames timed per variant by :func:`bench_realtime` (after ``bench_warmup`` untimed ones)
BENCH_FRAMES = {"smoke": 6, "quick": 40, "paper": 100}
#: timed passes over all variants (median reported): two runs of one pass differed by up to 25% in FPS
BENCH_PASSES = {"smoke": 1, "quick": 3, "paper": 5}


#: the frame-rate target of issue 15 (paper: "25-40 FPS, suitable for real-time surgical video streams")
TARGET_FPS = 25.0


# ----------------------------------------------------------------------------------------------- runs
def deployable_run(model: str, profile: str | Profile = "smoke", root=None, seed: int | None = None,
                   dataset: str | None = None) -> Path:
    """The run folder a deployment uses: ``runs/<p>/[<dataset>/]<model>/seed<s>/`` of training seed ``seed`` (default
    the first, CONTRACTS.md), or the pre-seed layout ``runs/<p>/<model>/`` for the first seed while only that exists;
    ``dataset`` None is the phantom study (:func:`endolib.config.dataset_name`).

    Raises:
        FileNotFoundError: neither holds a ``config.json`` (names the training command).

    Example:
        >>> deployable_run("unet", "quick", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/runs/quick/unet/seed42: no trained unet run ...
    """
    p = get_profile(profile)
    seed = p.training_seeds[0] if seed is None else int(seed)
    seeded, flat = paths(p, root, dataset).run(model, seed), paths(p, root, dataset).run(model)
    for cand in (seeded, flat) if seed == p.training_seeds[0] else (seeded,):
        if (cand / "config.json").is_file():
            return cand
    command = run_command(model, p) + (f" --data-dir <the prepared dataset of study {dataset}>" if dataset else "")
    raise FileNotFoundError(f"{seeded}: no trained {model} run (nor {flat}); train it with `{command}`")


def deployable_seeds(models: Sequence[str], profile: str | Profile = "smoke", root=None,
                     dataset: str | None = None) -> dict[int, list[Path]]:
    """Training seed -> the run folders of ``models`` (:func:`deployable_run`, in the study of ``dataset``), for
    every seed of the profile with all of them trained; the accuracy of a deployed variant is averaged over these
    seeds.

    Raises:
        FileNotFoundError: no seed has all of them (the first seed's missing run, with its training command).

    Example:
        >>> deployable_seeds(["resnet18", "unet"], "quick", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/runs/quick/resnet18/seed42: no trained resnet18 run ...
    """
    p = get_profile(profile)
    out = {}
    for s in p.training_seeds:
        try:
            out[s] = [deployable_run(m, p, root, s, dataset) for m in models]
        except FileNotFoundError:
            continue
    if not out:
        for m in models:
            deployable_run(m, p, root, dataset=dataset)  # raises, naming the missing run
    return out


def student_run(width: float, segmenter: str = "unet", profile: str | Profile = "smoke", root=None,
                seed: int | None = None, dataset: str | None = None) -> Path | None:
    """The accepted distilled student of ``width`` (relative to the paper model) for training seed ``seed``
    (default the first): the run folder of the candidate that its acceptance record
    (``runs/<p>/<segmenter>_w<width>/seed<s>/acceptance.json``, :func:`endolib.training.runs.train_students`) accepted,
    e.g. ``runs/<p>/<segmenter>_w<width>/seed<s>/`` or ``runs/<p>/<segmenter>_w<width>_c1/seed<s>/``; None when
    its students were never checked or none came within ``Profile.student_max_val_drop`` of the teacher's
    validation DSC (:func:`endolib.training.students.accepted_student`).

    Example:
        >>> student_run(0.5, profile="quick", root="/nonexistent") is None
        True
    """
    from endolib.training.students import accepted_student

    return accepted_student(width, profile, segmenter, seed, root, dataset)


def measured_student(width: float, segmenter: str = "unet", profile: str | Profile = "smoke", root=None,
                     seed: int | None = None, dataset: str | None = None) -> tuple[Path, int, bool] | None:
    """The distilled student whose test accuracy stands for ``width`` and training seed ``seed``: the accepted one
    (:func:`student_run`), else the candidate with the best validation DSC (chosen on validation frames like the
    accepted one, never on the test set), so that a width whose students all miss the bound is still measured.
    Returns ``(run folder, candidate, accepted)``; None when its students were never checked or the chosen
    candidate's run changed since (another ``config.json`` fingerprint: check them again).

    A variant measured with a student that was not accepted can be shown to *lose* the paper model's accuracy,
    never to keep it (``realtime.csv`` ``n_accepted``; :func:`endolib.evaluation.claims.deployable_accuracy`).

    Example:
        >>> measured_student(0.5, profile="quick", root="/nonexistent") is None
        True
    """
    from endolib.training.students import read_acceptance

    return measured_candidate(read_acceptance(width, profile, segmenter, seed, root, dataset), profile, root,
                              dataset)


def measured_candidate(check: StudentCheck | None, profile: str | Profile = "smoke", root=None,
                       dataset: str | None = None) -> tuple[Path, int, bool] | None:
    """:func:`measured_student` of an acceptance record already read (a
    :class:`endolib.training.students.StudentCheck`, or None when the students were never checked).

    Example:
        >>> measured_candidate(None) is None
        True
    """
    from endolib.training.students import candidate_run

    if check is None:
        return None
    if check.accepted is not None:  # None when the accepted run changed since it was checked
        run = candidate_run(check, check.accepted, profile, root, dataset)
        return None if run is None else (run, int(check.accepted), True)
    vals = [c.get("val_dsc") for c in check.candidates]
    vals = [float("-inf") if v is None or not np.isfinite(v) else float(v) for v in vals]
    if not vals:
        return None
    best = int(np.argmax(vals))
    run = candidate_run(check, best, profile, root, dataset)
    return None if run is None else (run, best, False)


# ----------------------------------------------------------------------------------------------- latency
#: widths notebook 05 times per precision (smoke keeps it to the quarter-width U-Net)
PRECISION_WIDTHS = {"smoke": (0.25,)}


def matmul_peaks(plan: dict | None = None, threads: int | None = 1, repeats: int = 3) -> dict:
    """Measured square-matmul GFLOP/s of fp32 and bf16 (``torch.mm``) on ``threads`` threads: the ceiling each
    precision is compared with. Without bf16 hardware the bf16 rate (emulated) is measured at n = 512 only
    (it is slow); int8 has no comparable torch matmul on CPU and is not measured (None)."""
    from endolib.deploy.timing import MATMUL_SIZES, time_runners, torch_threads

    plan = plan or precision_plan(say=None)
    out = {}
    with torch_threads(threads):
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            sizes = MATMUL_SIZES if prec == "fp32" or plan["bf16"]["available"] else (512,)
            g = torch.Generator().manual_seed(0)
            best = 0.0
            for n in sizes:
                a = torch.randn(n, n, generator=g).to(dtype)
                t = time_runners({"mm": lambda _: torch.mm(a, a)}, a, warmup=1, repeats=repeats)["mm"]
                best = max(best, 2 * n**3 / (np.median(t) / 1e3) / 1e9)
            out[prec] = best
    out["int8"] = None
    return out


def precision_table(profile: str | Profile = "smoke", models: Sequence[str] = ("resnet18", "unet"),
                    widths: Sequence[float] | None = None, data_dir=None, progress: bool = False,
                    say: Callable[[str], None] | None = print) -> tuple[pd.DataFrame, dict]:
    """Batch-1 latency of every precision path the CPU supports beside fp32 eager and fp32 ONNX Runtime, timed
    interleaved in the same run (:func:`endolib.deploy.timing.time_runners`), one thread (the runtime gives each model
    one core), at the paper's input sizes; U-Nets at ``widths`` relative to the paper model.

    Returns:
        ``(table, peaks)``: table columns ``model, width, precision, backend, median_ms, iqr_ms, fps, gflops,
        effective_gflops, peak_gflops, peak_fraction, speedup_vs_eager, max_abs_diff_prob``; ``peaks`` from
        :func:`matmul_peaks` (``peak_gflops`` is the peak of the row's precision; int8: NaN, not measured).
    """
    from endolib.deploy.compute import count_flops
    from endolib.deploy.timing import latency_summary, time_runners, torch_threads
    from endolib.models.factory import create_model, model_task, paper_input_size

    p = get_profile(profile)
    data_dir = Path(data_dir) if data_dir is not None else paths(p).phantom
    widths = tuple(widths or PRECISION_WIDTHS.get(p.name, WIDTHS))
    plan = precision_plan(say=say)
    peaks = matmul_peaks(plan)
    combos = [(q, b) for q, b in (("fp32", "torch"), ("fp32", "onnxruntime"), ("bf16", "torch"),
                                  ("int8", "onnxruntime")) if plan[q]["available"]]
    rows = []
    with torch_threads(1):
        for name in tqdm(models, desc="models", disable=not progress):
            task, size = model_task(name), paper_input_size(name)
            for w in (widths if task == "seg" else (1.0,)):
                torch.manual_seed(p.seed)
                net = create_model(name, width_mult=w).eval()
                flops = count_flops(net, size)
                x = frames_to_input(np.random.default_rng(p.seed).integers(0, 256, (1, size, size, 3), dtype=np.uint8))
                cal = _calibration(p, data_dir, size) if any(q == "int8" for q, _ in combos) else None
                stages = {(q, b): make_stage(net, size, task, q, b, cal) for q, b in combos}
                ref = sigmoid(stages[("fp32", "torch")](x))
                diffs = {k: float(np.abs(sigmoid(st(x)) - ref).max()) for k, st in stages.items()}
                times = time_runners({f"{q}/{b}": (lambda st: lambda _: st(x))(st) for (q, b), st in stages.items()},
                                     x, warmup=p.bench_warmup, repeats=p.bench_repeats)
                eager = np.median(times["fp32/torch"])
                for (q, b) in combos:
                    lat = latency_summary(times[f"{q}/{b}"])
                    eff = flops / 1e9 / (lat["median_ms"] / 1e3)
                    peak = peaks[q] if peaks[q] else np.nan
                    rows.append({"model": name, "width": w, "precision": q, "backend": b,
                                 "median_ms": lat["median_ms"], "iqr_ms": lat["iqr_ms"], "fps": 1e3 / lat["median_ms"],
                                 "gflops": flops / 1e9, "effective_gflops": eff, "peak_gflops": peak,
                                 "peak_fraction": eff / peak, "speedup_vs_eager": eager / lat["median_ms"],
                                 "max_abs_diff_prob": diffs[(q, b)]})
    return pd.DataFrame(rows), peaks


# ----------------------------------------------------------------------------------------------- accuracy


def evaluate_variant(cls_probs: np.ndarray, seg_probs: np.ndarray, masks: np.ndarray, has_tissue: np.ndarray,
                     threshold: float = 0.5) -> dict:
    """The deployed pipeline's accuracy with the Table 3/4 code: ``gate_auroc`` (:func:`endolib.evaluation.metrics.auroc`),
    per-image DSC/IoU from :class:`endolib.evaluation.bootstrap.SegmenterStats`, and the two-stage outcome
    (:func:`endolib.evaluation.two_stage.gate_metrics`: frames the gate closes get an empty mask). ``dsc`` is the two-stage
    per-image DSC over the frames with tissue. Returns the metrics and the ``stats`` for paired bootstraps."""
    from endolib.evaluation import metrics as M
    from endolib.evaluation.two_stage import gate_metrics

    levels = np.round(255 * np.asarray(seg_probs, dtype=np.float32)).astype(np.uint8)
    seg = SegmenterStats.from_levels(levels, np.asarray(masks) > 0, threshold)
    y = np.asarray(has_tissue).astype(bool)
    passed = np.asarray(cls_probs) >= threshold
    two = gate_metrics(seg, y, passed)
    seg_only = seg.subset(y).metrics(names=("dsc", "iou")) if y.any() else {"dsc": np.nan, "iou": np.nan}
    return {"dsc": two["dsc_pos"], "iou": two["iou_pos"], "dsc_segmenter": float(seg_only["dsc"]),
            "iou_segmenter": float(seg_only["iou"]), "gate_auroc": M.auroc(y, cls_probs),
            "share_passed": two["share_passed"], "stats": seg, "passed": passed}


def dsc_drop_ci(refs: dict, variants: dict, has_tissue, groups, n_boot: int, seed: int,
                name: str = "variant") -> tuple[float, float, float, float]:
    """Two-stage DSC drop ``ref - variant`` over training seeds: ``(mean, ci_lo, ci_hi, seed_sd)``.

    Per training seed ``k`` the drop of the variant against the fp32 paper-width pipeline of the same seed, on
    the same patient-cluster resamples for both (paired; :func:`endolib.evaluation.bootstrap.resample_weights`); the seeds are
    combined by the two-level bootstrap of Tables 3/4 (:func:`endolib.evaluation.bootstrap.combine_seeds`, seed level drawn by
    :func:`endolib.evaluation.bootstrap.seed_rng` of ``name``), so the CI holds the seed spread as well as the test frames'. With
    one seed it is the paired frame bootstrap and ``seed_sd`` is NaN.

    Args:
        refs, variants: training seed -> :func:`evaluate_variant` result (the same seeds in both).
        has_tissue, groups: the test frames' labels and patient ids.
        n_boot, seed: resamples and the data seed.
        name: names the variant's seed-level draws.

    Example:
        >>> y = np.r_[np.zeros(4, bool), np.ones(8, bool)]; m = np.zeros((12, 8, 8), bool); m[4:, 2:6, 2:6] = 1
        >>> ref = {42: evaluate_variant(y.astype(float), m.astype(float), m, y)}
        >>> dsc_drop_ci(ref, ref, y, None, n_boot=50, seed=0)[:3]
        (0.0, 0.0, 0.0)
    """
    from endolib.evaluation.two_stage import gate_metrics

    if set(refs) != set(variants) or not refs:
        raise ValueError(f"the variant's training seeds {sorted(variants)} differ from the reference's {sorted(refs)}")
    w = resample_weights(len(has_tissue), n_boot, seed, groups=groups)
    seeds = sorted(refs)
    est = [refs[k]["dsc"] - variants[k]["dsc"] for k in seeds]
    samples = np.stack([gate_metrics(refs[k]["stats"], has_tissue, refs[k]["passed"], weights=w)["dsc_pos"]
                        - gate_metrics(variants[k]["stats"], has_tissue, variants[k]["passed"], weights=w)["dsc_pos"]
                        for k in seeds])
    mean, pooled = combine_seeds(est, samples, seed_rng(seed, name) if len(seeds) > 1 else None)
    lo, hi = percentile_ci(pooled)
    return mean, lo, hi, float(np.std(est, ddof=1)) if len(est) > 1 else float("nan")


# ----------------------------------------------------------------------------------------------- bench
#: the (precision, backend) paths of a deployable variant
PATHS = (("fp32", "torch"), ("fp32", "onnxruntime"), ("bf16", "torch"), ("int8", "onnxruntime"))


def _variants(plan: dict, widths: Sequence[float], precisions: Sequence[str],
              routes: Sequence[tuple[str, str]] = PATHS) -> list[tuple]:
    """(width, precision, backend) of every deployable variant the CPU supports; the reference (paper width,
    fp32 eager) always comes first."""
    out = [(1.0, "fp32", "torch")]
    for w in widths:
        out += [(w, prec, be) for prec, be in routes if prec in precisions and plan[prec]["available"]
                and (w, prec, be) not in out]
    return out


def combine_passes(summaries: Sequence[dict]) -> dict:
    """One variant's timing over several passes: the median of each figure (``fps``, ``latency_p50_ms``,
    ``latency_p95_ms``, the stages' per-frame times), ``fps_min``/``fps_max`` over the passes and ``passes``
    (the FPS of each pass).

    Example:
        >>> s = combine_passes([{"fps": f, "latency_p50_ms": 100 / f} for f in (20.0, 28.0, 25.0)])
        >>> s["fps"], s["fps_min"], s["fps_max"], s["latency_p50_ms"], s["passes"]
        (25.0, 20.0, 28.0, 4.0, [20.0, 28.0, 25.0])
    """
    if not summaries:
        raise ValueError("no timed pass to combine")
    keys = [k for k, v in summaries[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {k: float(np.median([x[k] for x in summaries])) for k in keys}
    fps = [float(x["fps"]) for x in summaries]
    return {**out, "fps_min": min(fps), "fps_max": max(fps), "passes": fps}


def bench_realtime(profile: str | Profile = "smoke", widths: Sequence[float] = WIDTHS,
                   precisions: Sequence[str] = PRECISIONS, classifier: str = "resnet18", segmenter: str = "unet",
                   sizes: tuple[int, int] | None = None, n_frames: int | None = None, data_dir=None,
                   classifier_width: float = 1.0, routes: Sequence[tuple[str, str]] = PATHS,
                   train_students: bool = True, n_passes: int | None = None, save: bool = True,
                   progress: bool = True, say: Callable[[str], None] | None = print,
                   dataset: str | None = None) -> pd.DataFrame:
    """``results/<profile>/realtime.csv``: one row per deployable variant (see :data:`REALTIME_COLUMNS`).

    Speed: paper-size models (``sizes`` = (classifier, segmenter) input sides, default the paper's 224 / 256;
    widths relative to the paper model, seeded random weights: speed does not depend on the weights) run through
    :class:`RealtimeRunner` with the gate forced open (every frame with tissue: the worst case) on a simulated
    live camera at :data:`endolib.deploy.realtime.LIVE_FPS` (latest-frame policy: ``fps`` is at most 30, latency is capture to mask)
    until ``n_frames`` frames were segmented, every variant in the same run, ``n_passes`` times over all variants
    (default :data:`BENCH_PASSES`; :func:`combine_passes`: median FPS and latency, ``fps_min``/``fps_max`` over
    the passes); ``speedup_vs_eager`` is over the fp32 eager paper-width pipeline. Accuracy: for every training seed
    with both trained (:func:`deployable_seeds`), the profile's classifier and segmenter of that seed converted to
    the same precision and evaluated on the test set (:func:`evaluate_variant`); ``dsc`` and ``gate_auroc`` are
    means over the ``n_seeds`` seeds, the DSC drop against the fp32 pipeline of the same seed has a two-level CI
    (training seeds x patient clusters, :func:`dsc_drop_ci`) and ``dsc_drop_seed_sd`` its spread over seeds (per
    seed: :data:`REALTIME_SEED_FILE`; ``dsc_segmenter`` there is the segmenter alone, without the gate). Widths
    below 1.0 use the distilled student of each seed, trained first (or loaded when finished with the same settings
    and teacher) when ``train_students``: the accepted one (:func:`student_run`), else the candidate best on
    validation (:func:`measured_student`; ``n_accepted`` counts the seeds with an accepted one, said); a seed
    without checked students leaves the width's accuracy NaN (said).
    ``classifier_width`` scales the gate for speed (1.0 = paper; tests use less); ``routes`` restricts the
    (precision, backend) paths (default :data:`PATHS`, each where the CPU supports it). ``data_dir`` another
    prepared dataset than the phantom: its own study's runs and results (:func:`endolib.config.study_paths`,
    ``results/<profile>/<dataset>/realtime.csv``; ``dataset`` names that study, default the dataset's folder).
    """
    p = get_profile(profile)
    study = study_paths(p, data_dir, dataset)
    data_dir = Path(data_dir) if data_dir is not None else study.phantom
    require(data_dir / "index.csv", "the prepared dataset", f"python -m endolib run --profile {p.name} --only 01")
    features = cpu_features()
    plan = precision_plan(features, say=say)
    variants = _variants(plan, widths, precisions, routes)
    sizes = sizes or (paper_input_size(classifier), paper_input_size(segmenter))
    calib = _Calibration(p, data_dir)
    n_frames = n_frames or BENCH_FRAMES.get(p.name, 40)
    speed = time_variants(p, variants, classifier, segmenter, sizes, calib, n_frames, classifier_width, n_passes,
                          progress, say)
    try:
        seed_runs = deployable_seeds((classifier, segmenter), p, dataset=study.dataset)
    except FileNotFoundError as e:
        seed_runs = {}
        if say is not None:
            say(f"accuracy not measured (NaN) for every variant: {e}")
    if train_students:
        ensure_students(p, seed_runs, widths, segmenter, data_dir, progress, say, study.dataset)
    acc = variant_accuracy(p, variants, seed_runs, segmenter, data_dir, calib, progress, study.dataset)
    table, by_seed = _realtime_tables(variants, speed, acc, classifier, segmenter, features, plan, p)
    if say is not None and acc["refs"]:
        missing = sorted({r.width for r in table.itertuples() if np.isnan(r.dsc)})
        unaccepted = sorted({r.width for r in table.itertuples() if r.n_seeds and r.n_accepted < r.n_seeds})
        for (w, k), check in sorted(acc["students"].items()):
            if w in missing + unaccepted and check is not None and check.accepted is None:
                used = acc["measured"].get((w, k))
                say(f"no accepted student: {check.describe()}"
                    + (f"; measured with candidate {used[1]} (best on validation)" if used else ""))
        if unaccepted:
            say(f"width(s) {unaccepted}: not every training seed has an accepted student; the seeds without one are "
                f"measured with their candidate best on validation, so these variants can be shown to lose the "
                f"paper model's accuracy but not to keep it (n_accepted < n_seeds)")
        if missing:
            say(f"accuracy not measured (NaN) for width(s) {missing}: a training seed of {sorted(acc['refs'])} has "
                f"no checked student ({_shown(study.runs)}/{segmenter}_w<width>/seed<k>/acceptance.json); "
                f"their speed is measured")
    if save:
        _save_realtime(study.results, table, by_seed, features, plan, sizes, n_frames, speed, acc)
    return table


class _Calibration(dict):
    """int8 calibration frames per input size, loaded on first use (:func:`endolib.deploy.precision._calibration`)."""

    def __init__(self, p: Profile, data_dir: Path):
        super().__init__()
        self.p, self.data_dir = p, data_dir

    def __missing__(self, size: int) -> np.ndarray:
        self[size] = _calibration(self.p, self.data_dir, size)
        return self[size]

    def frames(self, precision: str, size: int) -> np.ndarray | None:
        return self[size] if precision == "int8" else None


def time_variants(p: Profile, variants, classifier: str, segmenter: str, sizes: tuple[int, int], calib: _Calibration,
                  n_frames: int | None = None, classifier_width: float = 1.0, n_passes: int | None = None,
                  progress: bool = True, say: Callable[[str], None] | None = print) -> dict:
    """Speed of every variant at paper size (seeded random weights: speed does not depend on them), on a simulated
    live camera at :data:`endolib.deploy.realtime.LIVE_FPS` with the gate forced open, every variant once per pass, ``n_passes`` passes
    (:func:`combine_passes`). Returns ``{(width, precision, backend): summary}``."""
    from endolib.models.factory import create_model

    cls_size, seg_size = sizes
    n_frames = n_frames or BENCH_FRAMES.get(p.name, 40)
    rng = np.random.default_rng(p.seed)
    stream = rng.integers(0, 256, size=(n_frames + p.bench_warmup, seg_size, seg_size, 3), dtype=np.uint8)
    runners, gates = {}, {}
    for w, prec, be in variants:  # build every variant first, then time them interleaved
        if (prec, be) not in gates:  # the same paper-size gate for every width
            torch.manual_seed(p.seed)
            gates[(prec, be)] = make_stage(create_model(classifier, width_mult=classifier_width), cls_size, "cls",
                                           prec, be, calib.frames(prec, cls_size), arch=classifier)
        torch.manual_seed(p.seed)
        seg_stage = make_stage(create_model(segmenter, width_mult=w), seg_size, "seg", prec, be,
                               calib.frames(prec, seg_size), arch=segmenter)
        runners[(w, prec, be)] = RealtimeRunner(gates[(prec, be)], seg_stage, force_open=True)
    passes = n_passes or BENCH_PASSES.get(p.name, 1)
    timed = {v: [] for v in variants}
    with tqdm(total=passes * len(variants), desc="speed", disable=not progress) as bar:
        for _ in range(passes):  # every pass visits every variant: a slow spell of the machine hits them all
            for v, runner in runners.items():
                if p.bench_warmup:
                    runner.run(stream[:p.bench_warmup])
                # a live 30 FPS source (latest-frame policy) until n_frames were segmented: sustained FPS and
                # latency from capture to mask as a camera would see them
                timed[v].append(runner.run(itertools.cycle(stream[p.bench_warmup:]), pace=True,
                                           stop_after=n_frames).summary)
                bar.update()
    speed = {v: combine_passes(t) for v, t in timed.items()}
    if say is not None:
        for (w, prec, be), s in speed.items():
            say(f"  width {w:g} {prec}/{be}: {s['fps']:.1f} FPS (passes {s['fps_min']:.1f}-{s['fps_max']:.1f}), "
                f"latency p50 {s['latency_p50_ms']:.0f} ms, p95 {s['latency_p95_ms']:.0f} ms (gate "
                f"{s['classifier_ms_p50']:.1f} ms, segmenter {s['segmenter_ms_p50']:.1f} ms per frame)")
    return speed


def ensure_students(p: Profile, seed_runs: dict, widths: Sequence[float], segmenter: str, data_dir: Path,
                    progress: bool = True, say: Callable[[str], None] | None = print,
                    dataset: str | None = None) -> dict:
    """Distil and check the students of widths < 1 from each training seed's segmenter
    (:func:`endolib.training.runs.train_students`: candidates until one is within ``p.student_max_val_drop`` of the
    teacher's validation DSC, at most ``p.student_candidates``; loaded when finished with the same settings and
    teacher). Returns ``{(width, seed): StudentCheck}``."""
    from endolib.training.runs import train_students

    student_widths = [w for w in widths if w < 1.0]
    out = {}
    if not student_widths:
        return out
    for k, (_, seg_dir) in seed_runs.items():
        if say is not None:
            say(f"distilled students of {_shown(seg_dir)} at width(s) {student_widths} (trained unless finished; "
                f"accepted within {p.student_max_val_drop:g} of its validation DSC, at most "
                f"{p.student_candidates} candidates)")
        for check in train_students(p, widths=student_widths, teacher=segmenter, training_seed=k, data_dir=data_dir,
                                    teacher_run=seg_dir, progress=progress, dataset=dataset):
            out[(check.width, k)] = check
            if say is not None and (check.accepted is None or check.tried > 1):
                say(f"  {check.describe()}")
    return out


def variant_accuracy(p: Profile, variants, seed_runs: dict, segmenter: str, data_dir: Path, calib: _Calibration,
                     progress: bool = True, dataset: str | None = None) -> dict:
    """Test-set accuracy of every variant for every training seed (:func:`evaluate_variant`): the seed's classifier
    and segmenter (or its distilled student, :func:`measured_student`: the accepted one, else the candidate best on
    validation; in the study of ``dataset``) converted to the variant's precision.

    Returns:
        dict with ``refs`` (seed -> the fp32 pipeline's accuracy), ``accs`` (variant -> seed -> accuracy),
        ``used`` (seed -> run folders), ``students`` ((width, seed) -> its
        :class:`endolib.training.students.StudentCheck`, None when never checked), ``measured`` ((width, seed) ->
        :func:`measured_student`), ``y`` and ``groups`` (test labels and patients; None without runs).
    """
    from endolib.data.dataset import load_index
    from endolib.training.frames import load_frames
    from endolib.training.load import load_run
    from endolib.training.students import read_acceptance

    out = {"refs": {}, "accs": {v: {} for v in variants}, "used": {}, "students": {}, "measured": {}, "y": None,
           "groups": None}
    frames = None
    for k, (cls_dir, seg_dir) in seed_runs.items():
        cls_run, seg_run = load_run(cls_dir), load_run(seg_dir)
        out["used"][k] = [_shown(cls_run.run_dir), _shown(seg_run.run_dir)]
        if frames is None:  # the test frames, once (every seed's runs have the same input sizes)
            index = load_index(data_dir)
            test = index[index["split"] == "test"].reset_index(drop=True)
            frames = (load_frames(data_dir, test, cls_run.input_size, masks=False, progress=False),
                      load_frames(data_dir, test, seg_run.input_size, masks=True, progress=False))
            out["y"], out["groups"] = frames[0].labels.astype(bool), frames[0].patient_ids
        cls_frames, seg_frames = frames
        if (cls_run.input_size, seg_run.input_size) != (cls_frames.images.shape[1], seg_frames.images.shape[1]):
            raise ValueError(f"{cls_run.run_dir}, {seg_run.run_dir}: input sizes differ from the first training "
                             f"seed's ({cls_frames.images.shape[1]}, {seg_frames.images.shape[1]}); retrain them")

        def accuracy(prec, be, seg_model):
            cs = make_stage(cls_run.model, cls_run.input_size, "cls", prec, be,
                            calib.frames(prec, cls_run.input_size))
            ss = make_stage(seg_model, seg_run.input_size, "seg", prec, be, calib.frames(prec, seg_run.input_size))
            return evaluate_variant(stage_probs(cs, cls_frames.images, "cls"),
                                    stage_probs(ss, seg_frames.images, "seg"), seg_frames.masks, out["y"],
                                    p.threshold)

        out["refs"][k] = ref = accuracy("fp32", "torch", seg_run.model)
        students = {}
        for w in sorted({w for w, _, _ in variants if w < 1.0}):
            out["students"][(w, k)] = check = read_acceptance(w, p, segmenter, k, dataset=dataset)
            out["measured"][(w, k)] = measured_candidate(check, p, dataset=dataset)
            if out["measured"][(w, k)] is not None:
                students[w] = load_run(out["measured"][(w, k)][0]).model
        for (w, prec, be) in tqdm(variants, desc=f"accuracy, seed {k}", disable=not progress):
            if w == 1.0:
                out["accs"][(w, prec, be)][k] = ref if (prec, be) == ("fp32", "torch") else \
                    accuracy(prec, be, seg_run.model)
            elif w in students:
                out["accs"][(w, prec, be)][k] = accuracy(prec, be, students[w])
    return out


def _realtime_tables(variants, speed: dict, acc: dict, classifier: str, segmenter: str, features: dict, plan: dict,
                     p: Profile) -> tuple[pd.DataFrame, list[dict]]:
    """``realtime.csv`` (one row per variant) and the rows of ``realtime_by_seed.csv``; ``student_candidates``
    there: :func:`_candidates_column` (realtime.csv), candidates trained (by seed), ``student_accepted`` the accepted
    candidate (0 = the first; empty when none was accepted and for width 1), ``student_used`` the candidate whose
    accuracy the row holds (:func:`measured_student`); ``n_accepted`` (realtime.csv): how many of the ``n_seeds``
    seeds measured an accepted student (all of them for width 1)."""
    refs, eager = acc["refs"], speed.get((1.0, "fp32", "torch"))
    checks, measured = acc.get("students", {}), acc.get("measured", {})
    rows, by_seed = [], []
    for (w, prec, be) in variants:
        s, per_seed = speed[(w, prec, be)], acc["accs"][(w, prec, be)]
        for k in sorted(refs):  # every seed with a reference; one without a checked student has NaN accuracy
            a, check = per_seed.get(k), checks.get((w, k)) if w < 1.0 else None
            if a is None and check is None:
                continue
            nan = float("nan")
            by_seed.append({"classifier": classifier, "segmenter": segmenter, "width": w, "precision": prec,
                            "backend": be, "seed": k, "dsc": a["dsc"] if a else nan,
                            "dsc_drop": refs[k]["dsc"] - a["dsc"] if a else nan,
                            "dsc_segmenter": a["dsc_segmenter"] if a else nan,
                            "gate_auroc": a["gate_auroc"] if a else nan,
                            "student_candidates": check.tried if check is not None else nan,
                            "student_accepted": check.accepted if check is not None and check.accepted is not None
                            else nan,
                            "student_used": measured[(w, k)][1] if a and measured.get((w, k)) else nan})
        drop = (np.nan,) * 4
        if per_seed and set(per_seed) == set(refs):
            drop = dsc_drop_ci(refs, per_seed, acc["y"], acc["groups"], p.n_boot, p.seed,
                               name=f"realtime/{w:g}/{prec}/{be}")
        elif per_seed:  # a student missing for some seeds: not comparable with the others, said by the caller
            per_seed = {}
        mean = (lambda m: float(np.mean([a[m] for a in per_seed.values()]))) if per_seed else (lambda m: np.nan)
        n_accepted = len(per_seed) if w >= 1.0 else sum(bool(measured.get((w, k)) and measured[(w, k)][2])
                                                        for k in per_seed)
        rows.append({"classifier": classifier, "segmenter": segmenter, "width": w, "precision": prec,
                     "backend": be, "dsc": mean("dsc"), "dsc_drop": drop[0], "dsc_drop_lo": drop[1],
                     "dsc_drop_hi": drop[2], "gate_auroc": mean("gate_auroc"), "fps": s["fps"],
                     "latency_p50_ms": s["latency_p50_ms"], "latency_p95_ms": s["latency_p95_ms"],
                     "speedup_vs_eager": s["fps"] / eager["fps"] if eager else np.nan,
                     "machine": machine_label(features, plan, prec), "n_seeds": len(per_seed),
                     "n_accepted": n_accepted,
                     "dsc_drop_seed_sd": drop[3], "fps_min": s["fps_min"], "fps_max": s["fps_max"],
                     "student_candidates": _candidates_column(w, sorted(refs), checks)})
    return pd.DataFrame(rows, columns=list(REALTIME_COLUMNS)), by_seed


def _candidates_column(width: float, seeds: Sequence[int], checks: dict) -> str:
    """``realtime.csv``'s ``student_candidates`` of one width: the candidates trained for each training seed, in
    seed order, joined by ``/``; ``x`` after a count: none of them was accepted; ``0``: never checked; empty for
    width 1.

    Example:
        >>> from endolib.training.students import StudentCheck
        >>> c = lambda n, ok: StudentCheck(0.25, 42, "t", 0.7, 0.05, 3, [{}] * n, n - 1 if ok else None)
        >>> _candidates_column(0.25, [42, 43, 44], {(0.25, 42): c(1, True), (0.25, 43): c(3, False)})
        '1/3x/0'
    """
    if width >= 1.0:
        return ""
    out = []
    for k in seeds:
        check = checks.get((width, k))
        out.append("0" if check is None else f"{check.tried}" + ("x" if check.accepted is None else ""))
    return "/".join(out)


def _save_realtime(out: Path, table: pd.DataFrame, by_seed: list[dict], features: dict, plan: dict, sizes,
                   n_frames: int, speed: dict, acc: dict) -> None:
    from endolib.repro import save_json, write_table

    write_table(table, out / REALTIME_FILE)
    # integers, empty where not a student
    counts = {"student_candidates": "Int64", "student_accepted": "Int64", "student_used": "Int64"}
    write_table(pd.DataFrame(by_seed, columns=REALTIME_SEED_COLUMNS).astype(counts), out / REALTIME_SEED_FILE)
    save_json({"features": features, "plan": plan, "sizes": list(sizes), "n_frames": n_frames,
               "speed": {f"{w:g}/{prec}/{be}": s for (w, prec, be), s in speed.items()},
               "reference": {str(k): {m: v for m, v in r.items() if m not in ("stats", "passed")}
                             for k, r in acc["refs"].items()},
               "runs": {str(k): {"classifier": c, "segmenter": g} for k, (c, g) in acc["used"].items()}},
              out / "realtime_environment.json")


def read_realtime(path: str | Path) -> pd.DataFrame:
    """``realtime.csv`` as :func:`bench_realtime` writes it (:data:`REALTIME_COLUMNS`, in that order).

    Raises:
        ValueError: a column is missing or extra (e.g. a file from an older endolib: rerun the benchmark).

    Example:
        >>> import tempfile; f = Path(tempfile.mkdtemp()) / REALTIME_FILE; _ = f.write_text("fps\\n3.0\\n")
        >>> read_realtime(f)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../realtime.csv: missing column(s) classifier, ...; rerun ... with this endolib
    """
    t = pd.read_csv(path)
    if tuple(t.columns) != REALTIME_COLUMNS:
        missing = [c for c in REALTIME_COLUMNS if c not in t.columns]
        extra = [c for c in t.columns if c not in REALTIME_COLUMNS]
        what = "; ".join(x for x in (f"missing column(s) {', '.join(missing)}" if missing else "",
                                      f"unknown column(s) {', '.join(extra)}" if extra else "") if x) \
            or f"columns in another order than {', '.join(REALTIME_COLUMNS)}"
        raise ValueError(f"{path}: {what}; rerun `python -m endolib bench realtime --profile "
                         f"{Path(path).parent.name}` with this endolib")
    return t


def _shown(path) -> str:
    """A run folder as saved in committed files: relative to the repository when inside it (no checkout path)."""
    path = Path(path).resolve()
    return str(path.relative_to(repo_root())) if path.is_relative_to(repo_root()) else str(path)


def plot_realtime_pareto(table: pd.DataFrame, target_fps: float = TARGET_FPS,
                         by_seed: pd.DataFrame | None = None):
    """DSC (two-stage, frames with tissue; mean over training seeds) against sustained FPS (median of the timed
    passes, bar from the slowest to the fastest pass), one point per variant; with ``by_seed``
    (:data:`REALTIME_SEED_FILE`) each seed's DSC as a small faint point beside it. Variants measured with a student
    that was not accepted on every seed are drawn hollow; variants without measured accuracy (no trained student)
    hollow on a strip below the axis. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    from endolib.plotting import PALETTE, paper_style

    paper_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    markers = {("fp32", "torch"): ("o", "fp32 eager"), ("fp32", "onnxruntime"): ("D", "fp32 ONNX Runtime"),
               ("bf16", "torch"): ("s", "bf16 autocast"), ("int8", "onnxruntime"): ("^", "int8 ONNX Runtime")}
    widths = sorted(table["width"].unique(), reverse=True)
    colour = {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(widths)}
    known = table.dropna(subset=["dsc"])
    floor = (known["dsc"].min() - 0.05) if len(known) else 0.0
    if by_seed is not None and len(by_seed):
        floor = min(floor, by_seed["dsc"].min() - 0.05)
    key = ["width", "precision", "backend"]
    unaccepted = ((table["n_accepted"] < table["n_seeds"]) if "n_accepted" in table.columns
                  else pd.Series(False, index=table.index))
    for r, partial in zip(table.itertuples(), unaccepted):
        y = r.dsc if not np.isnan(r.dsc) else floor
        marker = markers.get((r.precision, r.backend), ("o", ""))[0]
        ax.scatter(r.fps, y, marker=marker, s=40, zorder=3,
                   facecolors=colour[r.width] if not (np.isnan(r.dsc) or partial) else "none",
                   edgecolors=colour[r.width])
        if {"fps_min", "fps_max"} <= set(table.columns) and np.isfinite([r.fps_min, r.fps_max]).all():
            ax.plot([r.fps_min, r.fps_max], [y, y], color=colour[r.width], lw=0.8, zorder=2)
        if by_seed is not None and not np.isnan(r.dsc):
            seeds = by_seed[(by_seed[key] == [r.width, r.precision, r.backend]).all(axis=1)]
            ax.scatter(np.full(len(seeds), r.fps), seeds["dsc"], marker=marker, s=12, alpha=0.35, lw=0,
                       color=colour[r.width], zorder=1)
    ax.axvline(target_fps, color="grey", ls="--", lw=0.8)
    ax.text(target_fps, ax.get_ylim()[1], f" {target_fps:g} FPS", fontsize=6, va="top", color="grey")
    for w in widths:
        ax.scatter([], [], color=colour[w], label=f"width {w:g}")
    for k, (m, label) in markers.items():
        if ((table["precision"] == k[0]) & (table["backend"] == k[1])).any():
            ax.scatter([], [], color="grey", marker=m, label=label)
    if by_seed is not None and len(by_seed):
        ax.scatter([], [], color="grey", s=12, alpha=0.35, lw=0, label="one training seed")
    if (unaccepted & table["dsc"].notna()).any():
        ax.scatter([], [], facecolors="none", edgecolors="grey", label="student not accepted on every seed\n"
                   "(best on validation measured)")
    if known.shape[0] < len(table):
        ax.axhline(floor, color="lightgrey", lw=0.6)
        ax.scatter([], [], facecolors="none", edgecolors="grey", label="accuracy not measured\n(no trained student)")
    machine = table["machine"].iloc[0].split(" (")[0] if len(table) else ""
    ax.set(xscale="log", xlabel="sustained FPS, frames with tissue (2 threads; bar: range of passes)",
           ylabel="two-stage DSC (frames with tissue)", title=f"Accuracy vs speed of deployable variants\n{machine}")
    ax.xaxis.set_major_locator(FixedLocator([1, 2, 3, 5, 10, 20, 30, 50, 100]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=6, frameon=False, loc="best")
    return fig


def pareto_figure(results_dir: str | Path, target_fps: float = TARGET_FPS):
    """:func:`plot_realtime_pareto` of ``<results_dir>/realtime.csv`` (:func:`read_realtime`), with the seeds of
    :data:`REALTIME_SEED_FILE` when it is there."""
    results_dir = Path(results_dir)
    seed_file = results_dir / REALTIME_SEED_FILE
    return plot_realtime_pareto(read_realtime(results_dir / REALTIME_FILE), target_fps,
                                pd.read_csv(seed_file) if seed_file.is_file() else None)


def bench_main(argv: list[str]) -> int:
    """``python -m endolib bench realtime --profile P [--data-dir D]``: writes ``results/<P>/realtime.csv`` (another
    dataset's study: ``results/<P>/<dataset>/``) and the Pareto figure."""
    ap = argparse.ArgumentParser(prog="python -m endolib bench realtime", description=bench_realtime.__doc__.split(
        "\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--widths", nargs="+", type=float, default=list(WIDTHS))
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--frames", type=int, default=None, help="segmented frames timed per variant and pass")
    ap.add_argument("--passes", type=int, default=None,
                    help=f"timed passes over all variants, median reported (default per profile: {BENCH_PASSES})")
    ap.add_argument("--no-train-students", action="store_true",
                    help="do not train missing distilled students (their accuracy is then NaN)")
    ap.add_argument("--classifier", default="resnet18", choices=CLASSIFIERS,
                    help="the gate (a lighter one: mobilenetv3_large; needs its trained run for accuracy)")
    ap.add_argument("--data-dir", default=None,
                    help="a prepared dataset other than the phantom: its study's runs and results/<profile>/<dataset>/")
    ap.add_argument("--dataset", default=None, help="that study's name (default: the dataset's folder name)")
    argv = argv[1:] if argv[:1] == ["realtime"] else argv
    args = ap.parse_args(argv)
    p = get_profile(args.profile)
    if args.dataset is not None and args.data_dir is None:
        ap.error("--dataset names the study on --data-dir; give --data-dir too")
    study = study_paths(p, args.data_dir, args.dataset)
    load = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    table = bench_realtime(p, widths=args.widths, precisions=args.precisions, n_frames=args.frames,
                           classifier=args.classifier, train_students=not args.no_train_students,
                           n_passes=args.passes, data_dir=args.data_dir, dataset=args.dataset)
    import matplotlib
    matplotlib.use("Agg")
    from endolib.plotting import save_figure

    fig = pareto_figure(study.results) if (study.results / REALTIME_FILE).is_file() else plot_realtime_pareto(table)
    png = save_figure(fig, "fig_realtime_pareto", figures_dir=study.figures)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["machine"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"machine: {table['machine'].iloc[0] if len(table) else '?'}; load average before {load}, after "
          f"{[round(v, 2) for v in os.getloadavg()]}; {time.perf_counter() - t0:.0f} s")
    from endolib.evaluation.claims import DEPLOY_MAX_DSC_DROP, deployable_accuracy

    ok = table[(table.fps >= TARGET_FPS) & deployable_accuracy(table)[0]]  # the rule of the live-stream claim
    print(f"target (>= {TARGET_FPS:g} FPS with DSC drop <= {DEPLOY_MAX_DSC_DROP:g}, upper end of its 95% CI over "
          f"training seeds x test patients): "
          + (", ".join(f"width {r.width:g} {r.precision}/{r.backend} {r.fps:.1f} FPS" for r in ok.itertuples())
             if len(ok) else "not reached by any variant with measured accuracy"))
    print(f"saved {study.results / REALTIME_FILE} and {png}")
    return 0
