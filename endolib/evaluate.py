"""Notebook 04: Tables 3 and 4, pairwise tests, Figures 5 and 6, and what the two-stage gate buys.

Reads ``runs/<profile>/<model>/seed<s>/predictions.npz`` for every training seed ``s`` of the profile
(``docs/layout.md``), checks that each file covers exactly the test split of the prepared dataset in index order
(refuses otherwise), reduces every (model, seed) once to per-frame statistics (:mod:`endolib.stats`) and runs
the two-level bootstrap (training seeds x test frames, frames shared by every model: ``docs/statistics.md``).
A model's number is the mean over its seeds; ``<metric>_seed_sd`` is the across-seed SD.

Definitions (see :func:`metric_definitions`):

* Table 3 (classifiers) is on **all** test frames; a frame is called positive iff ``p >= threshold``
  (0.5, or per classifier Youden's threshold *chosen on the test set itself*, which is optimistic).
* Table 4 (segmenters) is on the test frames **with** neural tissue, as in the paper, at each model's
  input size (masks resized with nearest neighbour). ``<metric>`` is the mean over images,
  ``<metric>_pooled`` pools the pixels of all images; ``auprc`` is the exact pixel-level AUPRC of the
  stored uint8 probabilities (pooled), ``auprc_image`` the mean of per-image AUPRC.
* The two-stage analysis runs on **all** test frames: a frame reaches the segmenter iff the gate
  classifier's probability is ``>= gate threshold``; a gated-out frame counts as an empty prediction.

Example:
    >>> ev = Evaluation("smoke")                                # doctest: +SKIP
    >>> ev.table3(); ev.table4(); ev.pairwise(); ev.two_stage()  # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics as M
from . import paper
from . import stats as S
from .config import CLASSIFIERS, SEGMENTERS, Profile, get_profile, paths

__all__ = [
    "Predictions", "RUN_FILE", "TRAINING_NOTEBOOK", "GATE_SWEEP_POINTS", "ROC_GRID_POINTS", "LATENCY_FILE",
    "SEED_FIGURE_METRICS", "predictions_path", "run_command", "load_predictions", "check_frame_ids", "split_rows",
    "load_test_masks", "resolve_models", "metric_definitions", "gate_metrics", "stage_latencies",
    "mean_roc", "mean_pr", "format_ci", "compact_table", "paper_comparison", "p_matrix", "describe_two_stage",
    "Evaluation",
]

#: file of a run folder holding the test predictions
RUN_FILE = "predictions.npz"
#: notebook that trains each kind of model (named in "missing predictions" errors)
TRAINING_NOTEBOOK = {"cls": "02", "seg": "03"}
#: points of the gate-threshold sweep on [0, 1]
GATE_SWEEP_POINTS = 101
#: false-positive-rate grid of the ROC bootstrap bands
ROC_GRID_POINTS = 201
#: Table 5 as measured by notebook 05 (per-stage latencies for the frame-rate estimate)
LATENCY_FILE = "table5_compute.csv"
#: labelled ticks per decade on the log frame-rate axis of the gate sweep
FPS_TICKS = (1.0, 2.0, 5.0)
#: metrics whose CI widths are compared between frame and patient resampling
CLUSTER_METRICS = {"cls": ("auroc", "accuracy", "f1"), "seg": ("dsc", "iou", "auprc")}
#: panels of the per-seed figures fig_table3_seeds / fig_table4_seeds
SEED_FIGURE_METRICS = CLUSTER_METRICS
#: recall grid of the mean-over-seeds precision-recall curve
PR_GRID_POINTS = 201


# ----------------------------------------------------------------------------------------- predictions
@dataclass
class Predictions:
    """One model's stored test predictions (``predictions.npz``)."""

    model: str
    task: str  # "cls" or "seg"
    seed: int  # training seed of the run
    frame_ids: np.ndarray  # str (N,)
    probs: np.ndarray | None  # cls: float32 (N,); seg: uint8 (N, S, S) (None once Evaluation reduced it)
    size: int
    path: Path


def predictions_path(model: str, profile: str | Profile = "smoke", root=None, seed: int | None = None) -> Path:
    """``runs/<profile>/<model>/seed<s>/predictions.npz``; ``seed=None`` = the profile's first training seed.

    Example:
        >>> predictions_path("unet", "quick", "/r").as_posix(), predictions_path("unet", "quick", "/r", 43).parent.name
        ('/r/runs/quick/unet/seed42/predictions.npz', 'seed43')
    """
    p = get_profile(profile)
    return paths(p, root).run(model, p.training_seeds[0] if seed is None else int(seed)) / RUN_FILE


def run_command(model: str, profile: str | Profile = "smoke") -> str:
    """The command that trains ``model`` and writes its predictions.

    Example:
        >>> run_command("unet", "quick")
        'python -m endolib run --profile quick --only 03 --arch unet'
    """
    name = profile.name if isinstance(profile, Profile) else profile
    task = "cls" if model in CLASSIFIERS else "seg"
    return f"python -m endolib run --profile {name} --only {TRAINING_NOTEBOOK[task]} --arch {model}"


def load_predictions(model: str, profile: str | Profile = "smoke", root=None, seed: int | None = None) -> Predictions:
    """Load and validate one training run's ``predictions.npz``.

    Args:
        model: registry name.
        profile: profile whose ``runs/`` folder to read.
        root: repository root (default :func:`endolib.config.repo_root`).
        seed: training seed (default: the profile's first, ``profile.training_seeds[0]``).

    Raises:
        FileNotFoundError: no predictions (the message names the command that makes them).
        ValueError: the file is malformed (message names the file and what is wrong).
    """
    seed = get_profile(profile).training_seeds[0] if seed is None else int(seed)
    path = predictions_path(model, profile, root, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions for {model} (training seed {seed}); train it with "
                                f"`{run_command(model, profile)}`")
    task = "cls" if model in CLASSIFIERS else "seg"
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    missing = sorted({"frame_ids", "probs", "size", "task"} - set(data))
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected frame_ids, probs, size, task")
    stored_task, size = str(data["task"]), int(data["size"])
    probs, ids = data["probs"], data["frame_ids"].astype(str)
    if stored_task != task:
        raise ValueError(f"{path}: task is {stored_task!r} but {model} is a {task!r} model")
    if probs.shape[0] != ids.shape[0]:
        raise ValueError(f"{path}: {ids.shape[0]} frame_ids but {probs.shape[0]} predictions")
    if task == "cls":
        if probs.ndim != 1 or not np.issubdtype(probs.dtype, np.floating):
            raise ValueError(f"{path}: classifier probs must be float (N,); got {probs.dtype} {probs.shape}")
        if np.isnan(probs).any() or probs.min(initial=0) < 0 or probs.max(initial=0) > 1:
            raise ValueError(f"{path}: classifier probs must lie in [0, 1] without NaN")
    elif probs.dtype != np.uint8 or probs.ndim != 3 or probs.shape[1:] != (size, size):
        raise ValueError(f"{path}: segmenter probs must be uint8 (N, {size}, {size}) = round(255 * p); "
                         f"got {probs.dtype} {probs.shape}")
    return Predictions(model, task, seed, ids, probs, size, path)


def split_rows(index: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The rows of one split (default the test split) of a prepared dataset's index, in index order."""
    return index[index["split"] == split].reset_index(drop=True)


def check_frame_ids(pred: Predictions, test_ids, source: str = "index.csv",
                    profile: str | Profile = "smoke") -> None:
    """Refuse predictions that do not cover exactly the dataset's test split, in index order.

    Args:
        pred: loaded predictions.
        test_ids: the test split's frame ids in index order.
        source: where ``test_ids`` came from (for the message).
        profile: the profile (for the re-run command in the message).

    Example:
        >>> p = Predictions("unet", "seg", 42, np.array(["a", "b"]), None, 8, Path("x.npz"))
        >>> check_frame_ids(p, ["a", "c"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x.npz: predictions are for a different test split than index.csv: 1 test frame(s) without ...
    """
    ids, want = np.asarray(pred.frame_ids).astype(str), np.asarray(test_ids).astype(str)
    if ids.shape == want.shape and (ids == want).all():
        return
    missing, extra = sorted(set(want.tolist()) - set(ids.tolist())), sorted(set(ids.tolist()) - set(want.tolist()))
    problems = []
    if missing:
        problems.append(f"{len(missing)} test frame(s) without a prediction (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} prediction(s) for frames not in the test split (e.g. {extra[:3]})")
    if not problems:
        n_dup = ids.size - np.unique(ids).size
        problems.append(f"{n_dup} duplicated frame id(s)" if n_dup else "frames are not in index order")
    raise ValueError(f"{pred.path}: predictions are for a different test split than {source}: "
                     f"{', '.join(problems)}; re-run `{run_command(pred.model, profile)}`")


def load_test_masks(data_dir, frame_ids, size: int, progress: bool = True) -> np.ndarray:
    """Ground-truth masks of the given frames at ``size x size`` (nearest resize) -> bool ``(N, S, S)``."""
    from tqdm.auto import tqdm

    from .data import load_mask

    out = np.zeros((len(frame_ids), size, size), dtype=bool)
    for i, fid in enumerate(tqdm(frame_ids, desc=f"masks {size}x{size}", disable=not progress, leave=False)):
        out[i] = load_mask(data_dir, fid, size=size) > 0
    return out


def resolve_models(kind: str, names) -> tuple[str, ...]:
    """``None`` -> every registry model of ``kind`` (``"cls"``/``"seg"``); else validated names.

    Example:
        >>> resolve_models("seg", ["unet"]), len(resolve_models("cls", None))
        (('unet',), 3)
    """
    registry = CLASSIFIERS if kind == "cls" else SEGMENTERS
    if names is None:
        return tuple(registry)
    names = (names,) if isinstance(names, str) else tuple(names)
    bad = [n for n in names if n not in registry]
    if bad:
        raise ValueError(f"unknown {'classifier' if kind == 'cls' else 'segmenter'}(s) {bad}; "
                         f"valid: {', '.join(registry)}")
    return names


def metric_definitions() -> pd.DataFrame:
    """What each column of Tables 3/4 and two_stage.csv means: frames, aggregation, empty rule."""
    rows = [
        ("table3", "auroc", "all test frames", "frame-level ranking (ties count 1/2)", "NaN if one class only"),
        ("table3", "accuracy ... npv, f1", "all test frames", "frame counts at the threshold",
         "NaN + warning on a zero denominator"),
        ("table4", "dsc, iou", "test frames with tissue", "mean over images", "both masks empty -> 1.0"),
        ("table4", "accuracy, sensitivity, specificity, precision, fpr, fnr", "test frames with tissue",
         "mean over images", "undefined images (e.g. precision of an empty prediction) left out, with a warning"),
        ("table4", "<metric>_pooled", "test frames with tissue", "pixels of all images pooled",
         "NaN + warning on a zero denominator"),
        ("table4", "auprc", "test frames with tissue", "pixels pooled; exact for the uint8 probabilities",
         "NaN if no positive pixel"),
        ("table4", "auprc_image", "test frames with tissue", "mean over images of per-image AUPRC",
         "images without positive pixels left out"),
        ("two_stage", "neg_false_mask", "test frames without tissue", "share of frames with >= 1 predicted pixel",
         "gated-out frame = empty prediction"),
        ("two_stage", "dsc_pos, iou_pos", "test frames with tissue", "mean over images",
         "gated-out frame = empty prediction (DSC 0)"),
        ("two_stage", "fps", "all test frames", "1000 / (t_cls + share_passed * t_seg)",
         "latencies from table5_compute.csv, else the paper's Table 5"),
        ("all", "<metric> (tables 3, 4, two_stage)", "as above", "mean over training seeds of the per-seed value",
         "undefined on a seed -> NaN"),
        ("all", "<metric>_seed_sd", "as above", "SD over training seeds (ddof 1)", "NaN with one seed"),
        ("all", "<metric>_lo, <metric>_hi", "as above",
         "95% two-level bootstrap (seeds x frames; docs/statistics.md)", "one seed: the frame bootstrap"),
    ]
    return pd.DataFrame(rows, columns=["table", "metric", "frames", "aggregation", "undefined / empty rule"])


# ----------------------------------------------------------------------------------------- two-stage gate
def gate_metrics(seg: S.SegmenterStats, has_tissue, passed, weights=None, latency=None) -> dict:
    """Outcome of gating a segmenter: the frames with ``passed == False`` get an empty prediction.

    Args:
        seg: the segmenter's per-frame statistics on all test frames.
        has_tissue: ``(N,)`` frame labels.
        passed: ``(N,)`` boolean, frame reaches the segmenter.
        weights: ``(B, N)`` resample weights (arrays out) or None (floats out).
        latency: optional ``(t_cls_ms, t_seg_ms)``: adds ``latency_ms`` and ``fps`` (``t_cls = 0`` = no gate).

    Returns:
        dict with ``share_passed``, ``neg_false_mask``, ``pos_missed`` (share of tissue frames gated out),
        ``dsc_pos``, ``iou_pos`` (means over tissue frames) and, with ``latency``, ``latency_ms``, ``fps``.

    Example:
        >>> st = S.SegmenterStats(*[np.array(v) for v in ([5, 0], [1, 3], [0, 0], [10, 13])],
        ...                       np.zeros((2, 256)), np.zeros((2, 256)))
        >>> r = gate_metrics(st, [1, 0], [True, False])
        >>> r["neg_false_mask"], round(r["dsc_pos"], 3)
        (0.0, 0.909)
    """
    y = np.asarray(has_tissue).astype(bool)
    passed = np.asarray(passed).astype(bool)
    tp, fp, fn = seg.tp * passed, seg.fp * passed, seg.fn + seg.tp * ~passed
    pos_only = lambda v: np.where(y, v, np.nan)  # noqa: E731 - NaN = left out of the weighted mean
    neg_only = lambda v: np.where(~y, v, np.nan)  # noqa: E731
    out = {
        "share_passed": S.weighted_mean(passed.astype(float), weights),
        "neg_false_mask": S.weighted_mean(neg_only((tp + fp) > 0), weights),
        "pos_missed": S.weighted_mean(pos_only(~passed), weights),
        "dsc_pos": S.weighted_mean(pos_only(M.dice(tp, fp, fn)), weights),
        "iou_pos": S.weighted_mean(pos_only(M.iou(tp, fp, fn)), weights),
    }
    if latency is not None:
        t_cls, t_seg = latency
        out["latency_ms"] = t_cls + out["share_passed"] * t_seg
        out["fps"] = 1000.0 / out["latency_ms"]
    return {k: (float(v) if weights is None else v) for k, v in out.items()}


def stage_latencies(classifier: str, segmenter: str, profile: str | Profile = "smoke", root=None) -> dict:
    """Per-frame latencies (ms) of the two stages: measured (notebook 05) if available, else the paper's.

    Reads ``results/<profile>/table5_compute.csv`` (columns ``model``, ``latency_ms``). Without that file
    (or without a row for a model) the paper's Table 5 latency is used and ``source`` says so.

    Returns:
        dict with ``cls_ms``, ``seg_ms`` and ``source``.
    """
    path = paths(profile, root).results / LATENCY_FILE
    measured = {}
    if path.exists():
        table = pd.read_csv(path)
        if not {"model", "latency_ms"} <= set(table.columns):
            raise ValueError(f"{path}: needs columns 'model' and 'latency_ms'; found {list(table.columns)}")
        measured = dict(zip(table["model"], table["latency_ms"].astype(float)))
    out, sources = {}, []
    for key, model in (("cls_ms", classifier), ("seg_ms", segmenter)):
        if model in measured and np.isfinite(measured[model]):
            out[key] = float(measured[model])
            sources.append(f"{model}: measured ({path.name})")
        else:
            out[key] = float(paper.TABLE5[model]["latency_ms"])
            sources.append(f"{model}: assumed = paper Table 5 (RTX 4090), not measured here")
    out["source"] = "; ".join(sources)
    return out


# ---------------------------------------------------------------------------------------------- curves
def mean_roc(stats_by_seed: dict, grid) -> tuple[np.ndarray, list[np.ndarray]]:
    """ROC curves of one classifier's training seeds on an FPR ``grid`` and their mean (vertical averaging).

    The TPR at FPR ``x`` is the highest TPR reached with FPR <= ``x`` (the ROC step curve).

    Returns:
        ``(mean_tpr, [tpr of each seed])`` on ``grid``.
    """
    grid = np.asarray(grid, dtype=np.float64)
    curves = []
    for st in stats_by_seed.values():
        f, t = M.roc_from_hist(*st.histograms())
        curves.append(t[np.clip(np.searchsorted(f, grid, side="right") - 1, 0, None)])
    return np.mean(curves, axis=0), curves


def mean_pr(stats_by_seed: dict, keep, grid) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Pixel-level PR curves of one segmenter's training seeds (frames ``keep`` pooled) and their mean precision
    on a recall ``grid`` (the precision of the first curve point reaching each recall).

    Returns:
        ``(mean_precision on grid, [(recall, precision) of each seed])``.
    """
    grid = np.asarray(grid, dtype=np.float64)
    curves, on_grid = [], []
    for st in stats_by_seed.values():
        recall, prec = M.pr_from_hist(st.pos_hist[keep].sum(0), st.neg_hist[keep].sum(0))
        curves.append((recall, prec))
        on_grid.append(prec[np.clip(np.searchsorted(recall, grid, side="left"), 0, recall.size - 1)])
    return np.mean(on_grid, axis=0), curves


def format_ci(value, lo, hi, digits: int = 2) -> str:
    """``"0.92 (0.91–0.93)"``.

    Example:
        >>> format_ci(0.9213, 0.91, 0.934)
        '0.92 (0.91–0.93)'
    """
    if value is None or not np.isfinite(value):
        return "n/a"
    if lo is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def compact_table(table: pd.DataFrame, metrics, digits: int = 2) -> pd.DataFrame:
    """One ``"value (lo–hi)"`` string column per metric, one row per model (for reading, not for files).

    Example:
        >>> t = pd.DataFrame({"model": ["unet"], "dsc": [0.8], "dsc_lo": [0.78], "dsc_hi": [0.81]})
        >>> compact_table(t, ["dsc"]).iloc[0].tolist()
        ['unet', '0.80 (0.78–0.81)']
    """
    out = pd.DataFrame({"model": table["model"]})
    for m in metrics:
        lo, hi = table.get(f"{m}_lo"), table.get(f"{m}_hi")
        out[m] = [format_ci(v, None if lo is None else lo.iloc[i], None if hi is None else hi.iloc[i], digits)
                  for i, v in enumerate(table[m])]
    return out


def paper_comparison(ours: pd.DataFrame, which: str, digits: int = 2) -> pd.DataFrame:
    """Our table next to the paper's: two rows per model, labelled phantom (ours) vs clinical (paper) data.

    Args:
        ours: our ``table3`` or ``table4`` DataFrame (``model``, ``<metric>``, ``_lo``, ``_hi``).
        which: ``"table3"`` or ``"table4"``.
        digits: decimals shown.
    """
    if which not in ("table3", "table4"):
        raise ValueError(f"which must be 'table3' or 'table4', got {which!r}")
    metrics = paper.TABLE3_METRICS if which == "table3" else paper.TABLE4_METRICS
    ref = paper.table(which).set_index("model")
    mine = compact_table(ours, metrics, digits).set_index("model")
    theirs = compact_table(ref.loc[list(ours["model"])].reset_index(), metrics, digits).set_index("model")
    rows = []
    for model in ours["model"]:
        rows.append({"model": paper.DISPLAY_NAMES[model], "data": "phantom (ours)", **mine.loc[model].to_dict()})
        rows.append({"model": paper.DISPLAY_NAMES[model], "data": "clinical (paper)", **theirs.loc[model].to_dict()})
    return pd.DataFrame(rows)


def p_matrix(pairwise: pd.DataFrame, metric: str, test: str = "paired bootstrap", column: str = "p_holm"):
    """Square model x model table of (Holm-adjusted) p-values of one metric and test, for reading.

    Example:
        >>> t = pd.DataFrame({"metric": ["dsc"], "test": ["paired bootstrap"], "model_a": ["a"], "model_b": ["b"],
        ...                   "p_holm": [0.01]})
        >>> float(p_matrix(t, "dsc").loc["a", "b"])
        0.01
    """
    rows = pairwise[(pairwise["metric"] == metric) & (pairwise["test"] == test)]
    models = list(dict.fromkeys(list(rows["model_a"]) + list(rows["model_b"])))
    out = pd.DataFrame(np.nan, index=models, columns=models)
    for _, r in rows.iterrows():
        out.loc[r["model_a"], r["model_b"]] = out.loc[r["model_b"], r["model_a"]] = r[column]
    return out


def describe_two_stage(comparison: pd.DataFrame) -> str:
    """One paragraph stating what the gate changed (from :meth:`Evaluation.two_stage`'s comparison table)."""
    a, g = comparison.iloc[0], comparison.iloc[1]

    def pct(row, key):
        return f"{100 * row[key]:.0f}% ({100 * row[key + '_lo']:.0f}–{100 * row[key + '_hi']:.0f}%)"

    return (f"Gating {g['segmenter']} with {g['classifier']} at p >= {g['gate_threshold']:.2f}: tissue-free frames "
            f"with a false mask {pct(a, 'neg_false_mask')} -> {pct(g, 'neg_false_mask')}; DSC on tissue frames "
            f"{format_ci(a['dsc_pos'], a['dsc_pos_lo'], a['dsc_pos_hi'])} -> "
            f"{format_ci(g['dsc_pos'], g['dsc_pos_lo'], g['dsc_pos_hi'])} ({pct(g, 'pos_missed')} of tissue frames "
            f"gated out); {pct(g, 'share_passed')} of frames reach the segmenter, so the expected frame rate goes "
            f"from {a['fps']:.0f} to {g['fps']:.0f} FPS. Latencies: {g['latency_source']}.")


# -------------------------------------------------------------------------------------------- evaluation
class Evaluation:
    """Everything notebook 04 computes, from the saved predictions of every training seed of one profile.

    Args:
        profile: ``smoke``, ``quick`` or ``paper`` (or a Profile).
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        classifiers, segmenters: registry names (None = all; each must have predictions; ``[]`` = none).
        threshold: decision threshold (default: the profile's).
        youden: use each classifier's Youden threshold (per seed, chosen on the test set: optimistic) instead.
        n_boot: bootstrap resamples (default: the profile's).
        cluster_bootstrap: resample patients instead of frames for the tables' CIs and tests.
        seeds: training seeds to read (default ``profile.training_seeds``).
        seed_level: seed level of the two-level bootstrap, ``"t"`` (default) or ``"resample"``
            (:func:`endolib.stats.combine_seeds`).
        root: repository root (default :func:`endolib.config.repo_root`).
        progress: show progress bars while loading masks.

    Example:
        >>> ev = Evaluation("smoke", classifiers=["resnet18"], segmenters=["unet"])  # doctest: +SKIP
        >>> ev.summary()                                                            # doctest: +SKIP
    """

    def __init__(self, profile: str | Profile = "smoke", data_dir=None, classifiers=None, segmenters=None,
                 threshold: float | None = None, youden: bool = False, n_boot: int | None = None,
                 cluster_bootstrap: bool = False, seeds=None, seed_level: str = "t", root=None,
                 progress: bool = True):
        from .data import load_index

        self.profile = get_profile(profile, threshold=threshold, n_boot=n_boot)
        self.paths = paths(self.profile, root)
        self.root = self.paths.root
        self.data_dir = Path(data_dir) if data_dir is not None else self.paths.phantom
        self.youden, self.cluster, self.progress = bool(youden), bool(cluster_bootstrap), progress
        self.seeds = tuple(int(s) for s in (self.profile.training_seeds if seeds is None else seeds))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct training seeds, at least one; got {self.seeds}")
        if seed_level not in S.SEED_LEVELS:
            raise ValueError(f"seed_level must be one of {S.SEED_LEVELS}; got {seed_level!r}")
        self.seed_level = seed_level
        self.test = split_rows(load_index(self.data_dir))
        if self.test.empty:
            raise ValueError(f"{self.data_dir / 'index.csv'}: no frames in the test split")
        self.has_tissue = self.test["has_tissue"].to_numpy().astype(bool)
        self.patients = self.test["patient_id"].astype(str).to_numpy()
        names = resolve_models("cls", classifiers) + resolve_models("seg", segmenters)
        self.predictions = self._load_all(names)
        self.classifiers = [m for m in names if m in CLASSIFIERS]
        self.segmenters = [m for m in names if m in SEGMENTERS]
        self.thresholds = {m: {s: self._threshold(m, s) for s in self.seeds} for m in self.classifiers}
        self.cls_stats = {m: {s: S.ClassifierStats(self.has_tissue, self.predictions[m][s].probs,
                                                   self.thresholds[m][s]) for s in self.seeds}
                          for m in self.classifiers}
        self._boot = {}

    # ------------------------------------------------------------------ loading
    def missing_runs(self, names) -> list[tuple[str, int]]:
        """(model, seed) pairs among ``names`` x :attr:`seeds` without a ``predictions.npz``."""
        return [(m, s) for m in names for s in self.seeds
                if not predictions_path(m, self.profile, self.root, s).exists()]

    def _load_all(self, names) -> dict[str, dict[int, Predictions]]:
        """Load every (model, seed)'s predictions (all missing runs reported at once) and check their frame ids.

        Every seed's file must cover exactly the test split (so all seeds share the frame ids). Segmenters are
        reduced to per-image statistics (``self.seg_stats[model][seed]``) one run at a time and their
        probability maps released (``probs`` becomes None), so memory holds one run's maps at most.
        """
        missing = self.missing_runs(names)
        if missing:
            models = list(dict.fromkeys(m for m, _ in missing))
            lines = "\n".join(f"  {m} seed {s}: {predictions_path(m, self.profile, self.root, s).relative_to(self.root)}"
                              for m, s in missing)
            cmds = "\n".join(f"  {run_command(m, self.profile)}" for m in models)
            raise FileNotFoundError(f"{self.paths.runs}: no predictions.npz for {len(missing)} training run(s) of "
                                    f"{len(models)} model(s) (training seeds {list(self.seeds)}):\n{lines}\n"
                                    f"make them with:\n{cmds}")
        preds, masks, self.seg_stats = {}, {}, {}
        for m in names:
            preds[m] = {}
            for s in self.seeds:
                pred = load_predictions(m, self.profile, self.root, s)
                check_frame_ids(pred, self.test["frame_id"], str(self.data_dir / "index.csv"), self.profile)
                if pred.task == "seg":
                    if pred.size not in masks:
                        masks[pred.size] = load_test_masks(self.data_dir, self.test["frame_id"], pred.size,
                                                           self.progress)
                    self.seg_stats.setdefault(m, {})[s] = S.SegmenterStats.from_levels(
                        pred.probs, masks[pred.size], self.profile.threshold)
                    pred.probs = None
                preds[m][s] = pred
            sizes = {p.size for p in preds[m].values()}
            if len(sizes) != 1:
                raise ValueError(f"{self.paths.run(m)}: the training seeds of {m} predict at different sizes {sizes}")
        return preds

    def _threshold(self, model: str, seed: int) -> float:
        if not self.youden:
            return float(self.profile.threshold)
        return M.youden_threshold(self.has_tissue, self.predictions[model][seed].probs)

    def size(self, model: str) -> int:
        """Input size of a model's predictions (the same for all its seeds)."""
        return next(iter(self.predictions[model].values())).size

    # ------------------------------------------------------------------ summaries
    def summary(self) -> pd.DataFrame:
        """What is evaluated: one row per model (task, input size, seeds, test frames, with tissue, threshold)."""
        rows = [{"model": m, "task": next(iter(by_seed.values())).task, "size": self.size(m),
                 "n_seeds": len(by_seed), "seeds": " ".join(str(s) for s in by_seed),
                 "test_frames": len(self.test), "with_tissue": int(self.has_tissue.sum()),
                 "threshold": "youden per seed" if self.youden and m in self.thresholds
                 else round(float(self.profile.threshold), 4)}
                for m, by_seed in self.predictions.items()]
        return pd.DataFrame(rows)

    def _groups(self, cluster: bool, keep=None):
        if not cluster:
            return None
        return self.patients if keep is None else self.patients[keep]

    def bootstrap(self, task: str, cluster: bool | None = None) -> S.SeedBootstrapResult:
        """Two-level bootstrap (seeds x frames, frames shared by all models) of all classifiers (all frames) or
        segmenters (frames with tissue)."""
        cluster = self.cluster if cluster is None else cluster
        key = (task, cluster)
        if key not in self._boot:
            if task == "cls":
                stats, groups = self.cls_stats, self._groups(cluster)
            else:
                stats = {m: {s: st.subset(self.has_tissue) for s, st in by_seed.items()}
                         for m, by_seed in self.seg_stats.items()}
                groups = self._groups(cluster, self.has_tissue)
            if not stats:
                raise ValueError(f"no {'classifiers' if task == 'cls' else 'segmenters'} selected")
            self._boot[key] = S.seed_bootstrap(stats, self.profile.n_boot, self.profile.seed, groups,
                                               seed_level=self.seed_level)
        return self._boot[key]

    def _resampling(self) -> str:
        return "patients" if self.cluster else "frames"

    def _annotate(self, t: pd.DataFrame) -> pd.DataFrame:
        t["resampling"], t["n_boot"] = self._resampling(), self.profile.n_boot
        t["seed_level"] = self.seed_level if len(self.seeds) > 1 else "none (one seed)"
        return t

    # ------------------------------------------------------------------ tables
    def table3(self, save: bool = True) -> pd.DataFrame:
        """Table 3: classifier metrics, mean over seeds, across-seed SD and two-level 95% CIs
        -> ``results/<profile>/table3_classifiers.csv``."""
        t = self.bootstrap("cls").table(S.CLS_METRICS)
        t.insert(2, "threshold", [float(np.mean(list(self.thresholds[m].values()))) for m in t["model"]])
        t.insert(3, "threshold_rule", "youden per seed (test set)" if self.youden else "fixed")
        t.insert(4, "n_frames", len(self.test))
        t.insert(5, "n_positive", int(self.has_tissue.sum()))
        t = self._annotate(t)
        if save:
            self._write(t, "table3_classifiers.csv")
        return t

    def table3_by_seed(self, save: bool = True) -> pd.DataFrame:
        """Table 3 per training seed (frame-bootstrap CIs) -> ``table3_classifiers_by_seed.csv``."""
        t = self.bootstrap("cls").seed_table(S.CLS_METRICS)
        t.insert(2, "threshold", [self.thresholds[m][s] for m, s in zip(t["model"], t["seed"])])
        t.insert(3, "n_frames", len(self.test))
        t["resampling"], t["n_boot"] = self._resampling(), self.profile.n_boot
        if save:
            self._write(t, "table3_classifiers_by_seed.csv")
        return t

    def table4(self, save: bool = True) -> pd.DataFrame:
        """Table 4: segmenter metrics (mean over images and pooled), mean over seeds, across-seed SD and two-level
        95% CIs -> ``table4_segmenters.csv``."""
        t = self.bootstrap("seg").table(S.SEG_IMAGE_METRICS + S.SEG_POOLED_METRICS)
        t.insert(2, "size", [self.size(m) for m in t["model"]])
        t.insert(3, "n_frames", int(self.has_tissue.sum()))
        t.insert(4, "threshold", float(self.profile.threshold))
        t = self._annotate(t)
        if save:
            self._write(t, "table4_segmenters.csv")
        return t

    def table4_by_seed(self, save: bool = True) -> pd.DataFrame:
        """Table 4 per training seed (frame-bootstrap CIs) -> ``table4_segmenters_by_seed.csv``."""
        t = self.bootstrap("seg").seed_table(S.SEG_IMAGE_METRICS + S.SEG_POOLED_METRICS)
        t.insert(2, "size", [self.size(m) for m in t["model"]])
        t.insert(3, "n_frames", int(self.has_tissue.sum()))
        t["resampling"], t["n_boot"] = self._resampling(), self.profile.n_boot
        if save:
            self._write(t, "table4_segmenters_by_seed.csv")
        return t

    def pairwise(self, save: bool = True) -> pd.DataFrame:
        """Two-level paired bootstrap tests (Holm per metric) for every model pair; DeLong per seed for AUROC."""
        parts = []
        if len(self.classifiers) > 1:
            parts.append(S.pairwise_tests(self.bootstrap("cls"), S.PAIRED_TESTS["cls"], "cls", self.cls_stats))
        if len(self.segmenters) > 1:
            parts.append(S.pairwise_tests(self.bootstrap("seg"), S.PAIRED_TESTS["seg"], "seg"))
        t = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=S.PAIRWISE_COLUMNS)
        t["resampling"] = self._resampling()
        if save:
            self._write(t, "pairwise_tests.csv")
        return t

    def cluster_comparison(self) -> pd.DataFrame:
        """Two-level CI widths with frames vs patients resampled (the cluster bootstrap), for the primary metrics."""
        parts = []
        for task, models in (("cls", self.classifiers), ("seg", self.segmenters)):
            if models:
                t = S.ci_width_comparison(self.bootstrap(task, False), self.bootstrap(task, True),
                                          CLUSTER_METRICS[task])
                parts.append(t)
        out = pd.concat(parts, ignore_index=True)
        out.insert(2, "n_patients", len(np.unique(self.patients)))
        return out

    def paper_comparison(self, which: str) -> pd.DataFrame:
        """Our Table 3 or 4 beside the paper's (phantom vs clinical data)."""
        ours = self.table3(save=False) if which == "table3" else self.table4(save=False)
        return paper_comparison(ours, which)

    def _write(self, table: pd.DataFrame, name: str) -> Path:
        from .repro import write_table

        return write_table(table, self.paths.results / name)

    # ------------------------------------------------------------------ figures
    def figure_roc(self, save: bool = True):
        """Figure 5: ROC curves, one faint curve per training seed and their mean (bold); saved as ``fig5_roc``."""
        import matplotlib.pyplot as plt

        from .plotting import model_colour, paper_style, save_figure

        paper_style()
        boot = self.bootstrap("cls")
        grid = np.linspace(0, 1, ROC_GRID_POINTS)
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        for m, by_seed in self.cls_stats.items():
            c = model_colour(m)
            mean_tpr, curves = mean_roc(by_seed, grid)
            for tpr in curves:
                ax.step(grid, tpr, where="post", color=c, alpha=0.3, lw=0.7)
            label = (f"{paper.DISPLAY_NAMES[m]}: AUROC {format_ci(boot.estimates[m]['auroc'], *boot.ci(m, 'auroc'))}"
                     f" ({len(by_seed)} seeds)")
            ax.step(grid, mean_tpr, where="post", color=c, lw=1.6, label=label)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
               title=f"ROC, test set ({self.profile.name} phantom); faint: each training seed")
        ax.legend(loc="lower right", fontsize=7)
        if save:
            save_figure(fig, "fig5_roc", self.paths.figures)
        return fig

    def figure_pr(self, save: bool = True):
        """Figure 6: pixel-level PR curves, one faint curve per training seed and their mean; saved as ``fig6_pr``."""
        import matplotlib.pyplot as plt

        from .plotting import model_colour, paper_style, save_figure

        paper_style()
        boot = self.bootstrap("seg")
        grid = np.linspace(0, 1, PR_GRID_POINTS)
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        for m, by_seed in self.seg_stats.items():
            c = model_colour(m)
            mean_prec, curves = mean_pr(by_seed, self.has_tissue, grid)
            for recall, prec in curves:
                ax.step(recall, prec, where="pre", color=c, alpha=0.3, lw=0.7)
            label = (f"{paper.DISPLAY_NAMES[m]}: AUPRC {format_ci(boot.estimates[m]['auprc'], *boot.ci(m, 'auprc'))}"
                     f" ({len(by_seed)} seeds)")
            ax.plot(grid, mean_prec, color=c, lw=1.6, label=label)
        ax.set(xlabel="recall (pixels)", ylabel="precision (pixels)", xlim=(0, 1), ylim=(0, 1.01),
               title=f"Precision-recall, test frames with tissue ({self.profile.name} phantom); faint: each seed")
        ax.legend(loc="lower left", fontsize=6)
        if save:
            save_figure(fig, "fig6_pr", self.paths.figures)
        return fig

    def figure_seeds(self, task: str, save: bool = True):
        """Table 3 (``task="cls"``) or 4 (``"seg"``) as a figure: each seed's value (dots), the mean over seeds with
        its two-level 95% CI (bar) and the paper's value (x, clinical data); ``fig_table3_seeds`` / ``fig_table4_seeds``.
        """
        import matplotlib.pyplot as plt

        from .plotting import model_colour, paper_style, save_figure

        paper_style()
        boot = self.bootstrap(task)
        metrics = SEED_FIGURE_METRICS[task]
        ref = paper.TABLE3 if task == "cls" else paper.TABLE4
        models = list(boot.estimates)
        fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 1.2, 0.42 * len(models) + 1.3),
                                 sharey=True, squeeze=False)
        y = np.arange(len(models))[::-1]
        for ax, metric in zip(axes[0], metrics):
            for yi, m in zip(y, models):
                c = model_colour(m)
                seed_vals = [e[metric] for e in boot.seed_estimates[m].values()]
                ax.plot(seed_vals, np.full(len(seed_vals), yi + 0.18), "o", ms=3.5, color=c, alpha=0.6, mec="none")
                est, (lo, hi) = boot.estimates[m][metric], boot.ci(m, metric)
                ax.errorbar([est], [yi], xerr=[[max(est - lo, 0)], [max(hi - est, 0)]], fmt="D", ms=4, color=c,
                            capsize=2, lw=1.2)
                if m in ref and metric in ref[m]:
                    ax.plot([ref[m][metric][0]], [yi - 0.2], "x", color="black", ms=4, mew=0.9)
            ax.set(title=metric.upper() if len(metric) <= 5 else metric, xlim=(-0.02, 1.02))
            ax.grid(axis="x", lw=0.3, alpha=0.5)
        axes[0][0].set_yticks(y, [paper.DISPLAY_NAMES.get(m, m) for m in models])
        what = "Table 3, classifiers" if task == "cls" else "Table 4, segmenters (frames with tissue)"
        fig.suptitle(f"{what}: dots = training seeds, diamond + bar = mean and two-level 95% CI, "
                     f"x = paper (clinical)", fontsize=8)
        fig.tight_layout()
        if save:
            save_figure(fig, f"fig_table{3 if task == 'cls' else 4}_seeds", self.paths.figures)
        return fig

    # ------------------------------------------------------------------ two-stage
    def gate_models(self, gate_classifier=None, gate_segmenter=None) -> tuple[str, str]:
        """The gate pair: given names, else the classifier with the highest mean AUROC and segmenter with highest
        mean DSC (means over seeds)."""
        if not self.classifiers or not self.segmenters:
            raise ValueError("the two-stage analysis needs at least one classifier and one segmenter")
        if gate_classifier is None:
            est = self.bootstrap("cls").estimates
            gate_classifier = max(self.classifiers, key=lambda m: np.nan_to_num(est[m]["auroc"], nan=-1))
        if gate_segmenter is None:
            est = self.bootstrap("seg").estimates
            gate_segmenter = max(self.segmenters, key=lambda m: np.nan_to_num(est[m]["dsc"], nan=-1))
        for name, pool in ((gate_classifier, self.classifiers), (gate_segmenter, self.segmenters)):
            if name not in pool:
                raise ValueError(f"{name!r} is not among the evaluated models {pool}")
        return gate_classifier, gate_segmenter

    def _gate_settings(self, cls: str, seg: str, gate_threshold, lat: dict, seed: int):
        t_gate = self.thresholds[cls][seed] if gate_threshold is None else float(gate_threshold)
        score = self.cls_stats[cls][seed].score
        return [("segmenter alone", "", np.ones_like(self.has_tissue), (0.0, lat["seg_ms"]), np.nan),
                ("gated", cls, score >= t_gate, (lat["cls_ms"], lat["seg_ms"]), t_gate)]

    def gate_runs(self, gate_classifier=None, gate_segmenter=None, gate_threshold: float | None = None) -> dict:
        """Per-seed outcomes of the segmenter alone and gated (classifier seed k gates segmenter seed k).

        Returns:
            dict with ``classifier``, ``segmenter``, ``latency`` (see :func:`stage_latencies`), ``thresholds``
            (gate threshold per seed) and, for ``"alone"`` and ``"gated"``, ``estimates`` (metric -> ``(K,)``)
            and ``samples`` (metric -> ``(K, B)``, the shared frame resamples).
        """
        cls, seg = self.gate_models(gate_classifier, gate_segmenter)
        lat = stage_latencies(cls, seg, self.profile, self.root)
        weights = S.resample_weights(len(self.test), self.profile.n_boot, self.profile.seed,
                                     self._groups(self.cluster))
        out = {"classifier": cls, "segmenter": seg, "latency": lat, "thresholds": [],
               "alone": {"estimates": {}, "samples": {}}, "gated": {"estimates": {}, "samples": {}}}
        for s in self.seeds:
            st = self.seg_stats[seg][s]
            for (name, _, passed, latency, thr), key in zip(self._gate_settings(cls, seg, gate_threshold, lat, s),
                                                            ("alone", "gated")):
                if key == "gated":
                    out["thresholds"].append(thr)
                est = gate_metrics(st, self.has_tissue, passed, None, latency)
                boot = gate_metrics(st, self.has_tissue, passed, weights, latency)
                for k in est:
                    out[key]["estimates"].setdefault(k, []).append(est[k])
                    out[key]["samples"].setdefault(k, []).append(boot[k])
        for key in ("alone", "gated"):
            out[key]["estimates"] = {k: np.asarray(v) for k, v in out[key]["estimates"].items()}
            out[key]["samples"] = {k: np.stack(v) for k, v in out[key]["samples"].items()}
        return out

    def gate_effect(self, runs: dict, metric: str = "neg_false_mask") -> tuple[float, np.ndarray]:
        """``alone - gated`` of one two-stage metric: mean over seeds and its two-level bootstrap samples
        (paired on frames and on the segmenter's seed)."""
        a, g = runs["alone"], runs["gated"]
        rng = S.seed_rng(self.profile.seed, f"gate:{runs['classifier']}:{runs['segmenter']}:{metric}")
        return S.combine_seeds(a["estimates"][metric] - g["estimates"][metric],
                               a["samples"][metric] - g["samples"][metric], rng, self.seed_level)

    def two_stage(self, gate_classifier=None, gate_segmenter=None, gate_threshold: float | None = None,
                  save: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Segmenter alone vs classifier-gated segmenter on all test frames: means over seeds with two-level 95%
        CIs, and a threshold sweep (means over seeds).

        Args:
            gate_classifier, gate_segmenter: the pair (default: see :meth:`gate_models`).
            gate_threshold: gate probability threshold (default: the classifier's threshold of Table 3).
            save: write ``results/<profile>/two_stage.csv`` (comparison rows, then ``setting == "sweep"`` rows).

        Returns:
            ``(comparison, sweep)`` DataFrames.
        """
        runs = self.gate_runs(gate_classifier, gate_segmenter, gate_threshold)
        cls, seg, lat = runs["classifier"], runs["segmenter"], runs["latency"]
        t_gate = float(np.mean(runs["thresholds"]))
        rows = []
        for key, name, gate, thr in (("alone", "segmenter alone", "", np.nan),
                                     ("gated", f"gated by {cls} (p >= {t_gate:.2f})", cls, t_gate)):
            row = {"setting": name, "classifier": gate, "segmenter": seg, "gate_threshold": thr,
                   "n_seeds": len(self.seeds)}
            for k, est in runs[key]["estimates"].items():
                rng = S.seed_rng(self.profile.seed, f"two_stage:{key}:{cls}:{seg}:{k}")
                v, samples = S.combine_seeds(est, runs[key]["samples"][k], rng, self.seed_level)
                lo, hi = S.percentile_ci(samples)
                if k not in ("latency_ms", "fps"):
                    lo, hi = S.clip_ci(lo, hi)
                row.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
            rows.append(row)
        comparison = pd.DataFrame(rows)
        comparison["latency_source"] = lat["source"]
        sweep = self._gate_sweep(cls, seg, lat)
        if save:
            self._write(pd.concat([comparison, sweep], ignore_index=True), "two_stage.csv")
        return comparison, sweep

    def _gate_sweep(self, cls: str, seg: str, lat: dict) -> pd.DataFrame:
        rows = []
        for t in np.linspace(0, 1, GATE_SWEEP_POINTS):
            per_seed = [gate_metrics(self.seg_stats[seg][s], self.has_tissue, self.cls_stats[cls][s].score >= t,
                                     None, (lat["cls_ms"], lat["seg_ms"])) for s in self.seeds]
            mean = {k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]}
            rows.append({"setting": "sweep", "classifier": cls, "segmenter": seg, "gate_threshold": float(t),
                         "n_seeds": len(self.seeds), **mean})
        out = pd.DataFrame(rows)
        out["latency_source"] = lat["source"]
        return out

    def figure_two_stage(self, comparison: pd.DataFrame, sweep: pd.DataFrame, save: bool = True):
        """Gate-threshold sweep: false masks on tissue-free frames, DSC on tissue frames, expected FPS."""
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        from .plotting import PALETTE, paper_style, save_figure

        paper_style()
        alone, gated = comparison.iloc[0], comparison.iloc[1]
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        x = sweep["gate_threshold"]
        series = (("neg_false_mask", "tissue-free frames with a false mask", PALETTE[3]),
                  ("dsc_pos", "DSC on tissue frames (gated out = empty)", PALETTE[0]),
                  ("share_passed", "share of frames passed to the segmenter", PALETTE[8]))
        for key, label, colour in series:
            ax.plot(x, sweep[key], color=colour, label=label)
            ax.axhline(alone[key], color=colour, ls=":", lw=0.8)
        ax.axvline(gated["gate_threshold"], color="black", lw=0.6, ls="--")
        ax.set(xlabel=f"gate threshold on p({gated['classifier']})", ylabel="share / DSC", ylim=(0, 1.02),
               title=f"Two-stage gate: {gated['classifier']} -> {gated['segmenter']} (dotted: segmenter alone)")
        ax2 = ax.twinx()
        ax2.plot(x, sweep["fps"], color=PALETTE[2], ls="--", label="expected frame rate (FPS)")
        ax2.set_yscale("log")
        ax2.yaxis.set_major_locator(LogLocator(subs=FPS_TICKS))
        ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax2.yaxis.set_minor_formatter(NullFormatter())
        ax2.set_ylabel("expected FPS (log scale)")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=2, fontsize=7, frameon=False)
        if save:
            save_figure(fig, "fig_two_stage_sweep", self.paths.figures)
        return fig
