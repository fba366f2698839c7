"""Pairwise model comparisons of Tables 3/4 (the paper's significance tests): paired bootstrap p-values of
every model pair on every metric, per training seed and over seeds, DeLong's test for classifier AUROC, Holm's
correction, the percentile-bootstrap p-values of the paper-claims rule (:func:`tail_pvalues`, used by
:mod:`endolib.evaluation.claims` and :mod:`endolib.evaluation.power`), and the frame- vs patient-cluster CI width
comparison.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from endolib.evaluation import metrics as M
from endolib.evaluation.bootstrap import (
    BootstrapResult,
    SeedBootstrapResult,
    clip_ci,
    percentile_ci,
)

__all__ = ["PAIRED_TESTS", "paired_pvalue", "holm", "tail_pvalues", "PAIRWISE_COLUMNS", "delong_covariance",
           "delong_test", "pairwise_tests", "ci_width_comparison"]


#: metrics compared pairwise between models (each metric is one family for Holm's correction)
PAIRED_TESTS = {"cls": ("auroc", "accuracy", "sensitivity", "specificity", "f1"), "seg": ("dsc", "iou", "auprc")}


# ------------------------------------------------------------------------------------ model comparisons
def paired_pvalue(samples_a, samples_b, estimate_a: float, estimate_b: float) -> float:
    """Two-sided paired bootstrap p-value of ``H0: metric_a == metric_b``.

    The bootstrap distribution of the difference is centred at zero (the null) and compared with the
    observed difference: ``p = (1 + #{|d_b - d| >= |d|}) / (B + 1)``. Resamples where either metric is
    undefined are dropped. Identical models give p = 1.

    Example:
        >>> a = np.array([0.8, 0.82, 0.79, 0.81]); paired_pvalue(a, a, 0.8, 0.8)
        1.0
    """
    d = np.asarray(samples_a, dtype=np.float64) - np.asarray(samples_b, dtype=np.float64)
    d = d[~np.isnan(d)]
    observed = float(estimate_a) - float(estimate_b)
    if d.size == 0 or np.isnan(observed):
        warnings.warn("paired bootstrap test undefined (metric undefined on every resample); p set to NaN",
                      M.UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = np.abs(d - observed) >= abs(observed) - tol
    return float((1 + extreme.sum()) / (d.size + 1))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count as tests).

    Example:
        >>> holm([0.01, 0.04, 0.03]).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def tail_pvalues(samples, kind: str, margin: float = 0.0) -> tuple[float, float]:
    """Percentile-bootstrap p-values ``(p_reproduced, p_contradicted)`` of one comparison ``d = A - B``.

    ``p = 2 #{resamples on the wrong side} / B``, so ``p < 0.05`` <=> the 95% percentile CI lies on that side
    (``p = 0``: no resample on the wrong side, the Monte-Carlo resolution of ``B`` resamples).

    * ``"above"``: reproduced = ``d > 0``, contradicted = ``d < 0``.
    * ``"equivalent"``: reproduced = ``-margin < d < margin``, contradicted = ``d > margin`` or ``d < -margin``.

    Example:
        >>> tail_pvalues(np.linspace(0.01, 0.03, 100), "equivalent", 0.05)
        (0.0, 1.0)
        >>> tail_pvalues(np.r_[-1.0, np.ones(99)], "above")
        (0.02, 1.0)
    """
    d = np.asarray(samples, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan"), float("nan")

    def p(n_wrong):
        return float(min(1.0, 2 * n_wrong / d.size))

    if kind == "above":
        return p(np.sum(d <= 0)), p(np.sum(d >= 0))
    if kind == "equivalent":
        return (max(p(np.sum(d <= -margin)), p(np.sum(d >= margin))),
                min(p(np.sum(d <= margin)), p(np.sum(d >= -margin))))
    raise ValueError(f"kind must be 'above' or 'equivalent'; got {kind!r}")


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of ``k`` models on the same frames and their DeLong covariance (fast midrank algorithm).

    Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas under correlated
    receiver operating characteristic curves", IEEE Signal Processing Letters 21(11): O(N log N) per model.

    Args:
        y_true: ``(N,)`` 0/1 labels.
        scores: ``(k, N)`` scores of ``k`` models.

    Returns:
        ``(aucs (k,), covariance (k, k))``.

    Example:
        >>> aucs, cov = delong_covariance([0, 0, 1, 1], [[0.1, 0.4, 0.35, 0.8]])
        >>> aucs.tolist()
        [0.75]
    """
    from scipy.stats import rankdata

    y = M._as_binary(y_true, "y_true").ravel()
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != y.size:
        raise ValueError(f"scores have {s.shape[1]} frames, labels {y.size}")
    x, z = s[:, y], s[:, ~y]
    m, n = x.shape[1], z.shape[1]
    if m < 2 or n < 2:
        warnings.warn(f"DeLong undefined with {m} positives and {n} negatives (need >= 2 each); NaN",
                      M.UndefinedMetricWarning, stacklevel=2)
        k = s.shape[0]
        return np.full(k, np.nan), np.full((k, k), np.nan)
    tx, tz = rankdata(x, axis=1), rankdata(z, axis=1)
    t_all = rankdata(np.concatenate([x, z], axis=1), axis=1)
    aucs = t_all[:, :m].sum(1) / (m * n) - (m + 1) / (2 * n)
    v_pos = (t_all[:, :m] - tx) / n  # placement of each positive among negatives
    v_neg = 1 - (t_all[:, m:] - tz) / m  # placement of each negative among positives
    cov = np.atleast_2d(np.cov(v_pos)) / m + np.atleast_2d(np.cov(v_neg)) / n
    return aucs, cov


def delong_test(y_true, score_a, score_b) -> dict:
    """DeLong's test of equal AUROC for two models scored on the same frames.

    Returns:
        dict with ``auc_a``, ``auc_b``, ``z`` and two-sided ``p`` (p = 1 for identical AUROCs with zero variance).

    Example:
        >>> r = delong_test([0, 0, 0, 1, 1, 1], [.1, .2, .3, .4, .5, .6], [.1, .2, .3, .4, .5, .6])
        >>> r["p"]
        1.0
    """
    from scipy.stats import norm

    aucs, cov = delong_covariance(y_true, np.vstack([score_a, score_b]))
    diff = aucs[0] - aucs[1]
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if np.isnan(var):
        z = p = float("nan")
    elif var <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-12 else (float("inf"), 0.0)
    else:
        z = float(diff / np.sqrt(var))
        p = float(2 * norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": z, "p": p}


#: columns of ``pairwise_tests.csv`` (``seed`` = "all" for the two-level bootstrap, else the training seed)
PAIRWISE_COLUMNS = ["task", "metric", "test", "seed", "model_a", "model_b", "value_a", "value_b", "diff", "diff_lo",
                    "diff_hi", "p", "p_holm"]


def _by_seed(classifiers: dict) -> dict:
    """model -> ClassifierStats or model -> seed -> ClassifierStats  ->  model -> seed -> ClassifierStats."""
    return {m: (c if isinstance(c, dict) else {"all": c}) for m, c in classifiers.items()}


def pairwise_tests(boot: BootstrapResult, metrics, task: str, classifiers: dict | None = None):
    """Paired bootstrap tests for every pair of models on each metric (+ DeLong for AUROC pairs).

    The bootstrap rows use ``boot``'s samples: with a :class:`SeedBootstrapResult` the two-level ones (frames
    paired, seeds independent per model), so the test accounts for the training seeds. DeLong's test is
    conditional on the trained networks: one row per training seed (models paired by seed), Holm within
    each (metric, test, seed) family. Holm's correction is applied within each family.

    Args:
        boot: a :func:`endolib.evaluation.bootstrap.bootstrap` or :func:`endolib.evaluation.bootstrap.seed_bootstrap` result over all models of one task.
        metrics: metric names to compare.
        task: ``"cls"`` or ``"seg"`` (written in the ``task`` column).
        classifiers: model -> :class:`endolib.evaluation.bootstrap.ClassifierStats` (or model -> seed -> ClassifierStats); when given,
            DeLong's test is added for ``auroc``.

    Returns:
        DataFrame with the columns :data:`PAIRWISE_COLUMNS`.
    """
    import pandas as pd

    models = list(boot.estimates)
    clip = isinstance(boot, SeedBootstrapResult)
    rows = []
    for metric in metrics:
        family = []
        for a, b in itertools.combinations(models, 2):
            ea, eb = boot.estimates[a][metric], boot.estimates[b][metric]
            sa, sb = boot.samples[a][metric], boot.samples[b][metric]
            lo, hi = percentile_ci(sa - sb, boot.level)
            if clip:
                lo, hi = clip_ci(lo, hi, (-1.0, 1.0))
            family.append({"task": task, "metric": metric, "test": "paired bootstrap", "seed": "all", "model_a": a,
                           "model_b": b, "value_a": ea, "value_b": eb, "diff": ea - eb, "diff_lo": lo,
                           "diff_hi": hi, "p": paired_pvalue(sa, sb, ea, eb)})
        if metric == "auroc" and classifiers:
            by_seed = _by_seed(classifiers)
            for a, b in itertools.combinations(models, 2):
                for s in [s for s in by_seed[a] if s in by_seed[b]]:
                    ca, cb = by_seed[a][s], by_seed[b][s]
                    r = delong_test(ca.y_true, ca.score, cb.score)
                    family.append({"task": task, "metric": metric, "test": "DeLong", "seed": str(s), "model_a": a,
                                   "model_b": b, "value_a": r["auc_a"], "value_b": r["auc_b"],
                                   "diff": r["auc_a"] - r["auc_b"], "diff_lo": np.nan, "diff_hi": np.nan,
                                   "p": r["p"]})
        for key in dict.fromkeys((r["test"], r["seed"]) for r in family):
            rows_t = [r for r in family if (r["test"], r["seed"]) == key]
            for r, adj in zip(rows_t, holm([r["p"] for r in rows_t])):
                r["p_holm"] = adj
        rows += family
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)


def ci_width_comparison(frame_boot: BootstrapResult, cluster_boot: BootstrapResult, metrics):
    """CI widths under frame vs patient (cluster) resampling, and their ratio, per model and metric."""
    import pandas as pd

    rows = []
    for model in frame_boot.estimates:
        for m in metrics:
            f_lo, f_hi = frame_boot.ci(model, m)
            c_lo, c_hi = cluster_boot.ci(model, m)
            fw, cw = f_hi - f_lo, c_hi - c_lo
            rows.append({"model": model, "metric": m, "estimate": frame_boot.estimates[model][m],
                         "frame_lo": f_lo, "frame_hi": f_hi, "patient_lo": c_lo, "patient_hi": c_hi,
                         "frame_width": fw, "patient_width": cw,
                         "width_ratio": cw / fw if fw > 0 else np.nan})
    return pd.DataFrame(rows)
