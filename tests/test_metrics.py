"""Metric definitions: counts, empty rules, agreement with scikit-learn, exact histogram-based AUPRC."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from endolib.evaluation.metrics import (
    UndefinedMetricWarning,
    ap_from_hist,
    auc_from_hist,
    auroc,
    average_precision,
    confusion_metrics,
    counts_from_labels,
    dice,
    iou,
    pr_curve,
    quantise,
    roc_curve,
    score_histograms,
    seg_counts,
    sensitivity,
    specificity,
    youden_threshold,
)


def _labels(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), 2)  # rounded: many ties
    return y, score


def test_seg_counts_match_definitions():
    rng = np.random.default_rng(1)
    pred, target = rng.random((5, 7, 9)) > 0.5, rng.random((5, 7, 9)) > 0.6
    c = seg_counts(pred, target)
    assert all(v.dtype == np.int64 and v.shape == (5,) for v in c)
    assert (c.tp == (pred & target).sum((1, 2))).all()
    assert (c.fp == (pred & ~target).sum((1, 2))).all()
    assert (c.fn == (~pred & target).sum((1, 2))).all()
    assert (c.tn == (~pred & ~target).sum((1, 2))).all()
    one = seg_counts(pred[0].astype(np.uint8), target[0].astype(np.uint8))
    assert one.tp.tolist() == [c.tp[0]]


def test_seg_counts_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        seg_counts(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="boolean or 0/1"):
        seg_counts(np.full((1, 2, 2), 0.7), np.zeros((1, 2, 2)))


def test_dice_iou_empty_rule_is_explicit():
    tp, fp, fn = np.array([0, 3, 0]), np.array([0, 1, 2]), np.array([0, 2, 0])
    assert dice(tp, fp, fn).tolist() == [1.0, 6 / 9, 0.0]
    assert iou(tp, fp, fn).tolist() == [1.0, 0.5, 0.0]
    assert dice(tp, fp, fn, empty=0.0)[0] == 0.0
    with pytest.warns(UndefinedMetricWarning, match="dice undefined .* 1 of 3"):
        d = dice(tp, fp, fn, empty=np.nan)
    assert np.isnan(d[0]) and d[1] == pytest.approx(2 / 3)


def test_confusion_metrics_agree_with_sklearn():
    y, score = _labels()
    pred = score >= 0.5
    c = counts_from_labels(y, pred)
    tp, fp, fn, tn = (v.sum() for v in c)
    m = confusion_metrics(tp, fp, fn, tn)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, ~pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["npv"] == pytest.approx(skm.precision_score(1 - y, ~pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["fpr"] == pytest.approx(1 - m["specificity"])
    assert m["fnr"] == pytest.approx(1 - m["sensitivity"])
    assert m["dsc"] == pytest.approx(m["f1"]) and m["iou"] == pytest.approx(skm.jaccard_score(y, pred))


@pytest.mark.parametrize("name", ["sensitivity", "fnr", "precision", "npv", "specificity", "fpr", "f1"])
def test_undefined_metric_is_nan_with_warning(name):
    # no positives at all and nothing predicted positive; and no negatives for the others
    counts = {"sensitivity": (0, 0, 0, 5), "fnr": (0, 0, 0, 5), "precision": (0, 0, 3, 5), "f1": (0, 0, 0, 5),
              "npv": (4, 2, 0, 0), "specificity": (4, 0, 2, 0), "fpr": (4, 0, 2, 0)}[name]
    with pytest.warns(UndefinedMetricWarning, match=name):
        value = confusion_metrics(*counts, names=[name])[name]
    assert np.isnan(value)


def test_no_warning_when_defined():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        confusion_metrics(3, 1, 1, 5)


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="unknown metric"):
        confusion_metrics(1, 1, 1, 1, names=["dice"])


@pytest.mark.parametrize("seed", range(4))
def test_auroc_and_ap_agree_with_sklearn(seed):
    y, score = _labels(150 + 20 * seed, seed)
    assert auroc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert average_precision(y, score) == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)


def test_roc_curve_points_agree_with_sklearn():
    y, score = _labels(120, 5)
    f, t, thr = roc_curve(y, score)
    sf, st, sthr = skm.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(f, sf)
    np.testing.assert_allclose(t, st)
    np.testing.assert_allclose(thr[1:], sthr[1:])


def test_pr_curve_points_agree_with_sklearn():
    y, score = _labels(120, 6)
    r, p = pr_curve(y, score)
    sp, sr, _ = skm.precision_recall_curve(y, score, drop_intermediate=False)
    # sklearn lists points from low to high threshold and appends (recall 0, precision 1)
    np.testing.assert_allclose(r[1:], sr[::-1][1:])
    np.testing.assert_allclose(p[1:], sp[::-1][1:])


def test_ranking_metrics_undefined_with_one_class():
    with pytest.warns(UndefinedMetricWarning, match="AUROC"):
        assert np.isnan(auroc([1, 1, 1], [0.2, 0.5, 0.9]))
    with pytest.warns(UndefinedMetricWarning, match="average precision"):
        assert np.isnan(average_precision([0, 0], [0.2, 0.5]))


def test_pixel_auprc_from_summed_histograms_is_exact():
    rng = np.random.default_rng(3)
    target = rng.random((6, 16, 16)) > 0.7
    levels = quantise(np.clip(0.35 * target + 0.65 * rng.random(target.shape), 0, 1))
    pos, neg = score_histograms(levels, target)
    assert pos.shape == (6, 256) and pos.sum() == target.sum() and neg.sum() == (~target).sum()
    pooled = float(ap_from_hist(pos.sum(0), neg.sum(0)))
    assert pooled == pytest.approx(skm.average_precision_score(target.ravel(), levels.ravel()), abs=1e-12)
    per_image = ap_from_hist(pos, neg)
    expected = [skm.average_precision_score(t.ravel(), lv.ravel()) for t, lv in zip(target, levels)]
    np.testing.assert_allclose(per_image, expected, atol=1e-12)
    auc = float(auc_from_hist(pos.sum(0), neg.sum(0)))
    assert auc == pytest.approx(skm.roc_auc_score(target.ravel(), levels.ravel()), abs=1e-12)


def test_score_histograms_rejects_float_scores():
    with pytest.raises(ValueError, match="uint8"):
        score_histograms(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2)))


def test_quantise_matches_stored_format():
    p = np.array([0.0, 0.001, 0.4999, 0.5, 0.998, 1.0])
    assert quantise(p).tolist() == np.round(255 * p).astype(int).tolist()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quantise([1.2])


def test_youden_threshold_maximises_j():
    y, score = _labels(200, 7)
    t = youden_threshold(y, score)
    j = lambda thr: (sensitivity(((score >= thr) & (y == 1)).sum(), ((score < thr) & (y == 1)).sum())  # noqa: E731
                     + specificity(((score < thr) & (y == 0)).sum(), ((score >= thr) & (y == 0)).sum()) - 1)
    best = max(float(j(u)) for u in np.unique(score))
    assert float(j(t)) == pytest.approx(best)


def test_metrics_is_the_lower_layer_and_bench_stats_points_at_stats():
    """metrics imports nothing from endolib (stats builds on it, never the reverse); `bench stats` is in stats."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    from endolib.evaluation import metrics

    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.level or 0) > 0]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0]
    assert not [m for m in imported if m.startswith("endolib") or m in ("bootstrap", "study")], imported
    assert not hasattr(metrics, "bench_main")
    code = ("import sys, endolib.evaluation.metrics; print(sorted(m for m in sys.modules if m.startswith('endolib') "
            "and m != 'endolib.evaluation.metrics'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "['endolib', 'endolib.evaluation']"  # the packages only: importing metrics imports no statistics
    from endolib.__main__ import PASS_THROUGH

    assert PASS_THROUGH[("bench", "stats")][1].__module__ == "endolib.evaluation.commands"
