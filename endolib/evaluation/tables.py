"""Presentation of the evaluation: metric definitions, ``value [lo, hi]`` CI strings, compact Tables 3/4,
the side-by-side comparison with the paper's numbers and the matrix of pairwise p-values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from endolib import paper

__all__ = ["metric_definitions", "format_ci", "compact_table", "paper_comparison", "p_matrix"]


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
