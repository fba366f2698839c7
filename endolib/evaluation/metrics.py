"""Metric definitions that work from per-image statistics (counts and score histograms).

Every metric of Tables 3 and 4 is a function of the confusion counts ``tp, fp, fn, tn`` and works
elementwise (NumPy broadcasting), so the same function scores one image, a vector of images, or a
``(n_boot,)`` vector of bootstrap resamples whose counts were summed (see :mod:`endolib.evaluation.bootstrap`).

Layering: this module is the lower layer and imports nothing from endolib; :mod:`endolib.evaluation.bootstrap` (resampling,
tests, ``python -m endolib bench stats``) builds on it, never the reverse (``tests/test_metrics.py`` checks).

Undefined values (a zero denominator) follow one explicit rule per metric, set by ``empty``:

* ``dice`` / ``iou``: both masks empty (``tp + fp + fn == 0``) -> ``empty`` (default **1.0**: a correct
  "nothing here" answer is a perfect overlap). Pass ``empty=np.nan`` to treat it as undefined instead.
* every other metric (sensitivity, specificity, precision, NPV, FPR, FNR, accuracy, F1): a zero
  denominator is undefined -> ``empty`` (default **NaN**) and an :class:`UndefinedMetricWarning`
  naming the metric and how many entries were undefined. Never a crash, never a silent zero.

Ranking metrics (AUROC, average precision) work from score histograms: for probabilities stored as
``uint8`` (``round(255 * p)``, see ``docs/layout.md``) a 256-bin histogram of positive and negative
pixels per image is exact, so pooled pixel-level AUPRC of any resample is exact from summed histograms.

Example:
    >>> import numpy as np
    >>> pred = np.array([[[1, 1], [0, 0]]]); target = np.array([[[1, 0], [0, 0]]])
    >>> c = seg_counts(pred, target)
    >>> int(c.tp[0]), int(c.fp[0]), int(c.fn[0]), int(c.tn[0])
    (1, 1, 0, 2)
    >>> float(dice(c.tp, c.fp, c.fn)[0])
    0.6666666666666666
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

__all__ = ["UndefinedMetricWarning", "SegCounts", "seg_counts", "counts_from_labels", "dice", "iou", "accuracy",
           "sensitivity", "specificity", "precision", "npv", "fpr", "fnr", "f1", "confusion_metrics",
           "CONFUSION_METRICS", "N_LEVELS", "quantise", "score_histograms", "histograms_from_scores", "auc_from_hist",
           "ap_from_hist", "roc_from_hist", "pr_from_hist", "auroc", "average_precision", "roc_curve", "pr_curve",
           "youden_threshold"]


#: number of levels of a stored uint8 probability (``round(255 * p)`` takes 256 values)
N_LEVELS = 256


class UndefinedMetricWarning(RuntimeWarning):
    """A metric was undefined (zero denominator) on some input and was set to NaN."""


class SegCounts(NamedTuple):
    """Per-image confusion counts, each an int64 array of shape ``(N,)``."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray


def _as_binary(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool:
        return x
    if x.size and not np.isin(np.unique(x), (0, 1)).all():
        raise ValueError(f"{name} must be boolean or 0/1; found values {np.unique(x)[:5].tolist()}...")
    return x.astype(bool)


def seg_counts(pred, target) -> SegCounts:
    """Per-image confusion counts of binary masks.

    Args:
        pred: predicted masks, boolean or 0/1, shape ``(N, H, W)`` (or ``(H, W)`` for one image).
        target: ground-truth masks of the same shape.

    Returns:
        :class:`SegCounts` of int64 arrays of shape ``(N,)``.

    Example:
        >>> c = seg_counts(np.ones((2, 4, 4)), np.zeros((2, 4, 4)))
        >>> c.fp.tolist(), c.tn.tolist()
        ([16, 16], [0, 0])
    """
    pred, target = _as_binary(pred, "pred"), _as_binary(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    if pred.ndim == 2:
        pred, target = pred[None], target[None]
    if pred.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W) or (H, W); got {pred.shape}")
    n = pred.shape[0]
    p, t = pred.reshape(n, -1), target.reshape(n, -1)
    tp = np.count_nonzero(p & t, axis=1).astype(np.int64)
    n_pred = np.count_nonzero(p, axis=1).astype(np.int64)
    n_true = np.count_nonzero(t, axis=1).astype(np.int64)
    total = np.int64(p.shape[1])
    fp, fn = n_pred - tp, n_true - tp
    return SegCounts(tp, fp, fn, total - tp - fp - fn)


def counts_from_labels(y_true, y_pred) -> SegCounts:
    """Per-frame 0/1 confusion counts of a binary classifier (one "pixel" per frame).

    Args:
        y_true: labels, boolean or 0/1, shape ``(N,)``.
        y_pred: predicted labels, same shape.

    Example:
        >>> counts_from_labels([1, 0, 1], [1, 1, 0]).tp.tolist()
        [1, 0, 0]
    """
    t, p = _as_binary(y_true, "y_true").ravel(), _as_binary(y_pred, "y_pred").ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred lengths differ: {t.shape} vs {p.shape}")
    i64 = np.int64
    return SegCounts((t & p).astype(i64), (~t & p).astype(i64), (t & ~p).astype(i64), (~t & ~p).astype(i64))


def _ratio(num, den, empty: float, name: str) -> np.ndarray:
    """``num / den`` elementwise; where ``den == 0`` the value is ``empty`` (warn if that is NaN)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    num, den = np.broadcast_arrays(num, den)
    undefined = den == 0
    out = np.divide(num, den, out=np.full(num.shape, float(empty)), where=~undefined)
    if np.isnan(empty) and undefined.any():
        warnings.warn(f"{name} undefined (zero denominator) for {int(undefined.sum())} of {undefined.size} "
                      f"entries; set to NaN", UndefinedMetricWarning, stacklevel=3)
    return out


def dice(tp, fp, fn, empty: float = 1.0) -> np.ndarray:
    """Dice similarity coefficient ``2tp / (2tp + fp + fn)``, elementwise.

    Args:
        tp, fp, fn: counts (arrays broadcast together).
        empty: value when prediction and target are both empty (default 1.0; ``np.nan`` = undefined + warning).

    Example:
        >>> dice(np.array([0, 2]), np.array([0, 1]), np.array([0, 1])).tolist()
        [1.0, 0.6666666666666666]
    """
    tp = np.asarray(tp, dtype=np.float64)
    return _ratio(2 * tp, 2 * tp + np.asarray(fp) + np.asarray(fn), empty, "dice")


def iou(tp, fp, fn, empty: float = 1.0) -> np.ndarray:
    """Intersection over union (Jaccard) ``tp / (tp + fp + fn)``; same empty rule as :func:`dice`.

    Example:
        >>> iou(np.array([0, 2]), np.array([0, 1]), np.array([0, 1]), empty=0.0).tolist()
        [0.0, 0.5]
    """
    tp = np.asarray(tp, dtype=np.float64)
    return _ratio(tp, tp + np.asarray(fp) + np.asarray(fn), empty, "iou")


def accuracy(tp, fp, fn, tn, empty: float = np.nan) -> np.ndarray:
    """``(tp + tn) / (tp + fp + fn + tn)``; undefined only for zero counts.

    Example:
        >>> accuracy(3, 1, 1, 5).item()
        0.8
    """
    tp, tn = np.asarray(tp, dtype=np.float64), np.asarray(tn, dtype=np.float64)
    return _ratio(tp + tn, tp + tn + np.asarray(fp) + np.asarray(fn), empty, "accuracy")


def sensitivity(tp, fn, empty: float = np.nan) -> np.ndarray:
    """Sensitivity (recall, TPR) ``tp / (tp + fn)``; undefined without positives.

    Example:
        >>> sensitivity(3, 1).item()
        0.75
    """
    tp = np.asarray(tp, dtype=np.float64)
    return _ratio(tp, tp + np.asarray(fn), empty, "sensitivity")


def specificity(tn, fp, empty: float = np.nan) -> np.ndarray:
    """Specificity (TNR) ``tn / (tn + fp)``; undefined without negatives.

    Example:
        >>> specificity(9, 1).item()
        0.9
    """
    tn = np.asarray(tn, dtype=np.float64)
    return _ratio(tn, tn + np.asarray(fp), empty, "specificity")


def precision(tp, fp, empty: float = np.nan) -> np.ndarray:
    """Precision (PPV) ``tp / (tp + fp)``; undefined when nothing is predicted positive.

    Example:
        >>> precision(1, 3).item()
        0.25
    """
    tp = np.asarray(tp, dtype=np.float64)
    return _ratio(tp, tp + np.asarray(fp), empty, "precision")


def npv(tn, fn, empty: float = np.nan) -> np.ndarray:
    """Negative predictive value ``tn / (tn + fn)``; undefined when nothing is predicted negative.

    Example:
        >>> npv(4, 1).item()
        0.8
    """
    tn = np.asarray(tn, dtype=np.float64)
    return _ratio(tn, tn + np.asarray(fn), empty, "npv")


def fpr(fp, tn, empty: float = np.nan) -> np.ndarray:
    """False positive rate ``fp / (fp + tn)`` (= 1 - specificity); undefined without negatives.

    Example:
        >>> fpr(1, 9).item()
        0.1
    """
    fp = np.asarray(fp, dtype=np.float64)
    return _ratio(fp, fp + np.asarray(tn), empty, "fpr")


def fnr(fn, tp, empty: float = np.nan) -> np.ndarray:
    """False negative rate ``fn / (fn + tp)`` (= 1 - sensitivity); undefined without positives.

    Example:
        >>> fnr(1, 3).item()
        0.25
    """
    fn = np.asarray(fn, dtype=np.float64)
    return _ratio(fn, fn + np.asarray(tp), empty, "fnr")


def f1(tp, fp, fn, empty: float = np.nan) -> np.ndarray:
    """F1 score ``2tp / (2tp + fp + fn)`` for classifiers; undefined (NaN) with no positives at all.

    Same formula as :func:`dice`; only the default empty rule differs (a classifier F1 without any
    positive label or prediction is undefined, an empty-vs-empty mask is a perfect match).

    Example:
        >>> f1(2, 1, 1).item()
        0.6666666666666666
    """
    tp = np.asarray(tp, dtype=np.float64)
    return _ratio(2 * tp, 2 * tp + np.asarray(fp) + np.asarray(fn), empty, "f1")


#: metric name -> function of (tp, fp, fn, tn, empty); the columns of Tables 3/4 derived from counts
CONFUSION_METRICS = {
    "dsc": lambda tp, fp, fn, tn, empty: dice(tp, fp, fn, empty),
    "iou": lambda tp, fp, fn, tn, empty: iou(tp, fp, fn, empty),
    "accuracy": lambda tp, fp, fn, tn, empty: accuracy(tp, fp, fn, tn, empty),
    "sensitivity": lambda tp, fp, fn, tn, empty: sensitivity(tp, fn, empty),
    "specificity": lambda tp, fp, fn, tn, empty: specificity(tn, fp, empty),
    "precision": lambda tp, fp, fn, tn, empty: precision(tp, fp, empty),
    "f1": lambda tp, fp, fn, tn, empty: f1(tp, fp, fn, empty),
    "fpr": lambda tp, fp, fn, tn, empty: fpr(fp, tn, empty),
    "fnr": lambda tp, fp, fn, tn, empty: fnr(fn, tp, empty),
    "npv": lambda tp, fp, fn, tn, empty: npv(tn, fn, empty),
}

#: default empty rule per metric: overlap metrics of two empty masks are perfect, the rest undefined
DEFAULT_EMPTY = {"dsc": 1.0, "iou": 1.0}


def confusion_metrics(tp, fp, fn, tn, names=None, empty: dict | None = None) -> dict[str, np.ndarray]:
    """Several count-based metrics at once.

    Args:
        tp, fp, fn, tn: counts (arrays broadcast together).
        names: metric names from :data:`CONFUSION_METRICS` (default: all).
        empty: per-metric override of the empty rule, e.g. ``{"dsc": np.nan}``.

    Example:
        >>> m = confusion_metrics(8, 2, 2, 88, names=["dsc", "specificity"])
        >>> round(float(m["dsc"]), 3), round(float(m["specificity"]), 4)
        (0.8, 0.9778)
    """
    names = list(CONFUSION_METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in CONFUSION_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {list(CONFUSION_METRICS)}")
    rules = {**DEFAULT_EMPTY, **(empty or {})}
    return {n: CONFUSION_METRICS[n](tp, fp, fn, tn, rules.get(n, np.nan)) for n in names}


# ----------------------------------------------------------------------------- ranking metrics
def quantise(prob) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 levels ``round(255 * p)`` (the stored format of segmenter predictions).

    Example:
        >>> quantise(np.array([0.0, 0.5, 1.0])).tolist()
        [0, 128, 255]
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1 or np.isnan(p).any()):
        raise ValueError("probabilities must lie in [0, 1] without NaN")
    return np.rint(p * (N_LEVELS - 1)).astype(np.uint8)


def score_histograms(levels, target) -> tuple[np.ndarray, np.ndarray]:
    """Per-image 256-bin histograms of uint8 scores over positive and negative pixels.

    Args:
        levels: uint8 scores ``(N, H, W)`` (``round(255 * p)``).
        target: ground-truth masks ``(N, H, W)``, boolean or 0/1.

    Returns:
        ``(pos, neg)``: int64 arrays ``(N, 256)``; bin ``k`` counts pixels with score level ``k``.

    Example:
        >>> pos, neg = score_histograms(np.array([[[255, 0]]], np.uint8), np.array([[[1, 0]]]))
        >>> int(pos[0, 255]), int(neg[0, 0])
        (1, 1)
    """
    levels = np.asarray(levels)
    if levels.dtype != np.uint8:
        raise ValueError(f"scores must be uint8 levels (round(255 * p)); got dtype {levels.dtype}")
    target = _as_binary(target, "target")
    if levels.shape != target.shape:
        raise ValueError(f"scores and target shapes differ: {levels.shape} vs {target.shape}")
    if levels.ndim == 2:
        levels, target = levels[None], target[None]
    n = levels.shape[0]
    # one bincount for all images: bin = image * 512 + is_positive * 256 + level
    key = levels.reshape(n, -1).astype(np.int64) + N_LEVELS * target.reshape(n, -1)
    key += (2 * N_LEVELS) * np.arange(n, dtype=np.int64)[:, None]
    h = np.bincount(key.ravel(), minlength=2 * N_LEVELS * n).reshape(n, 2, N_LEVELS)
    return h[:, 1].astype(np.int64), h[:, 0].astype(np.int64)


def histograms_from_scores(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact histograms of arbitrary (float) scores: one bin per distinct score value, ascending.

    Args:
        y_true: labels (N,), boolean or 0/1.
        score: scores (N,), any real values (higher = more positive).

    Returns:
        ``(pos, neg, thresholds)``: counts of positives/negatives per distinct score, and those scores.

    Example:
        >>> pos, neg, thr = histograms_from_scores([0, 1, 1], [0.2, 0.7, 0.2])
        >>> pos.tolist(), neg.tolist(), thr.tolist()
        ([1, 1], [1, 0], [0.2, 0.7])
    """
    y = _as_binary(y_true, "y_true").ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true and score lengths differ: {y.shape} vs {s.shape}")
    if np.isnan(s).any():
        raise ValueError("score contains NaN")
    thresholds, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=thresholds.size).astype(np.int64)
    neg = np.bincount(inverse, minlength=thresholds.size).astype(np.int64) - pos
    return pos, neg, thresholds


def _undefined_warning(name: str, bad: np.ndarray) -> None:
    if np.any(bad):
        warnings.warn(f"{name} undefined for {int(np.sum(bad))} of {np.size(bad)} entries "
                      f"(no positives or no negatives); set to NaN", UndefinedMetricWarning, stacklevel=3)


def auc_from_hist(pos, neg) -> np.ndarray:
    """AUROC from score histograms (bins ascending in score along the last axis); ties count 1/2.

    Works on any leading shape, e.g. ``(n_boot, n_bins)`` resampled histograms. Equals the
    Mann-Whitney statistic, i.e. scikit-learn's ``roc_auc_score`` on the underlying samples.

    Args:
        pos, neg: (weighted) counts of positives and negatives per score bin.

    Example:
        >>> float(auc_from_hist(np.array([0, 1, 1]), np.array([1, 1, 0])))
        0.875
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    n_pos, n_neg = pos.sum(-1), neg.sum(-1)
    neg_below = np.cumsum(neg, axis=-1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(-1)
    bad = (n_pos == 0) | (n_neg == 0)
    _undefined_warning("AUROC", bad)
    return np.divide(num, n_pos * n_neg, out=np.full(np.shape(num), np.nan), where=~bad)


def ap_from_hist(pos, neg) -> np.ndarray:
    """Average precision (area under the step PR curve) from score histograms, exact.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds from high to low, the definition of
    scikit-learn's ``average_precision_score``. Bins ascend in score along the last axis.

    Args:
        pos, neg: (weighted) counts of positives and negatives per score bin.

    Example:
        >>> float(ap_from_hist(np.array([1, 0, 1]), np.array([0, 1, 0])))
        0.8333333333333333
    """
    pos = np.asarray(pos, dtype=np.float64)[..., ::-1]
    neg = np.asarray(neg, dtype=np.float64)[..., ::-1]
    tp, fp = np.cumsum(pos, axis=-1), np.cumsum(neg, axis=-1)
    called = tp + fp
    prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    n_pos = tp[..., -1] if tp.shape[-1] else np.zeros(tp.shape[:-1])
    bad = n_pos == 0
    _undefined_warning("average precision", bad)
    return np.divide((pos * prec).sum(-1), n_pos, out=np.full(np.shape(n_pos), np.nan), where=~bad)


def roc_from_hist(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)`` from (0, 0) to (1, 1), one per bin boundary (thresholds descending).

    Example:
        >>> f, t = roc_from_hist(np.array([0, 1]), np.array([1, 0]))
        >>> f.tolist(), t.tolist()
        ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    """
    pos = np.asarray(pos, dtype=np.float64)[..., ::-1]
    neg = np.asarray(neg, dtype=np.float64)[..., ::-1]
    zero = np.zeros(pos.shape[:-1] + (1,))
    tp = np.concatenate([zero, np.cumsum(pos, -1)], -1)
    fp = np.concatenate([zero, np.cumsum(neg, -1)], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return fp / fp[..., -1:], tp / tp[..., -1:]


def pr_from_hist(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points ``(recall, precision)``, thresholds descending, bins without samples dropped.

    Only 1-D histograms. The first point is (0, precision at the highest threshold).

    Example:
        >>> r, p = pr_from_hist(np.array([1, 0, 1]), np.array([0, 1, 0]))
        >>> r.tolist(), np.round(p, 3).tolist()
        ([0.0, 0.5, 0.5, 1.0], [1.0, 1.0, 0.5, 0.667])
    """
    pos = np.asarray(pos, dtype=np.float64)[::-1]
    neg = np.asarray(neg, dtype=np.float64)[::-1]
    keep = (pos + neg) > 0
    tp, fp = np.cumsum(pos)[keep], np.cumsum(neg)[keep]
    if tp.size == 0 or tp[-1] == 0:
        _undefined_warning("precision-recall curve", np.array([True]))
        return np.array([np.nan]), np.array([np.nan])
    recall, prec = tp / tp[-1], tp / (tp + fp)
    return np.concatenate([[0.0], recall]), np.concatenate([[prec[0]], prec])


def auroc(y_true, score) -> float:
    """Area under the ROC curve (ties count 1/2); NaN + warning if only one class is present.

    Args:
        y_true: labels (N,), boolean or 0/1.
        score: scores (N,), higher = more likely positive.

    Example:
        >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    pos, neg, _ = histograms_from_scores(y_true, score)
    return float(auc_from_hist(pos, neg))


def average_precision(y_true, score) -> float:
    """Average precision (scikit-learn's definition); NaN + warning without positives.

    Example:
        >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
        0.8333
    """
    pos, neg, _ = histograms_from_scores(y_true, score)
    return float(ap_from_hist(pos, neg))


def roc_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``; ``thresholds[0] = inf`` (nothing called positive), then descending.

    Example:
        >>> f, t, thr = roc_curve([0, 1], [0.2, 0.9])
        >>> f.tolist(), t.tolist()
        ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    """
    pos, neg, thr = histograms_from_scores(y_true, score)
    f, t = roc_from_hist(pos, neg)
    return f, t, np.concatenate([[np.inf], thr[::-1]])


def pr_curve(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` of float scores (see :func:`pr_from_hist`).

    Example:
        >>> r, p = pr_curve([0, 1], [0.2, 0.9])
        >>> r.tolist(), p.tolist()
        ([0.0, 1.0, 1.0], [1.0, 1.0, 0.5])
    """
    pos, neg, _ = histograms_from_scores(y_true, score)
    return pr_from_hist(pos, neg)


def youden_threshold(y_true, score) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity - 1 (predict positive if ``score >= t``).

    Ties between thresholds go to the highest one. NaN + warning if only one class is present.

    Example:
        >>> youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.8
    """
    f, t, thr = roc_curve(y_true, score)
    j = t - f
    if np.isnan(j).all():
        return float("nan")
    k = int(np.nanargmax(j[1:])) + 1  # skip the "nothing positive" point at +inf
    return float(thr[k])
