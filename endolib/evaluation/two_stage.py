"""The two-stage analysis (the paper's gate): what the classifier gate changes for the segmenter
(:func:`gate_metrics`: false masks on tissue-free frames, missed tissue, DSC on tissue frames, latency), the
stage latencies it is priced with (Table 5 measured here, else the paper's) and a one-line description.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from endolib import paper
from endolib.config import Profile, paths
from endolib.evaluation import metrics as M
from endolib.evaluation.bootstrap import (
    SegmenterStats,
    clip_ci,
    combine_seeds,
    percentile_ci,
    resample_weights,
    seed_rng,
    weighted_mean,
)
from endolib.evaluation.tables import format_ci

__all__ = ["GATE_SWEEP_POINTS", "LATENCY_FILE", "gate_metrics", "stage_latencies", "describe_two_stage"]


#: points of the gate-threshold sweep on [0, 1]
GATE_SWEEP_POINTS = 101


#: Table 5 as measured by notebook 05 (per-stage latencies for the frame-rate estimate)
LATENCY_FILE = "table5_compute.csv"


# ----------------------------------------------------------------------------------------- two-stage gate
def gate_metrics(seg: SegmenterStats, has_tissue, passed, weights=None, latency=None) -> dict:
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
        >>> st = SegmenterStats(*[np.array(v) for v in ([5, 0], [1, 3], [0, 0], [10, 13])],
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
        "share_passed": weighted_mean(passed.astype(float), weights),
        "neg_false_mask": weighted_mean(neg_only((tp + fp) > 0), weights),
        "pos_missed": weighted_mean(pos_only(~passed), weights),
        "dsc_pos": weighted_mean(pos_only(M.dice(tp, fp, fn)), weights),
        "iou_pos": weighted_mean(pos_only(M.iou(tp, fp, fn)), weights),
    }
    if latency is not None:
        t_cls, t_seg = latency
        out["latency_ms"] = t_cls + out["share_passed"] * t_seg
        out["fps"] = 1000.0 / out["latency_ms"]
    return {k: (float(v) if weights is None else v) for k, v in out.items()}


def stage_latencies(classifier: str, segmenter: str, profile: str | Profile = "smoke", root=None,
                    dataset: str | None = None) -> dict:
    """Per-frame latencies (ms) of the two stages: measured (notebook 05) if available, else the paper's.

    Reads ``results/<profile>/[<dataset>/]table5_compute.csv`` (columns ``model``, ``latency_ms``; ``dataset``:
    the study's dataset name, None for the phantom study). Without that file
    (or without a row for a model) the paper's Table 5 latency is used and ``source`` says so.

    Returns:
        dict with ``cls_ms``, ``seg_ms`` and ``source``.
    """
    path = paths(profile, root, dataset).results / LATENCY_FILE
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


# ---------------------------------------------------------------- the two-stage analysis of an Evaluation
def gate_models(ev, gate_classifier=None, gate_segmenter=None) -> tuple[str, str]:
    """The gate pair: given names, else the classifier with the highest mean AUROC and segmenter with highest
    mean DSC (means over seeds)."""
    if not ev.classifiers or not ev.segmenters:
        raise ValueError("the two-stage analysis needs at least one classifier and one segmenter")
    if gate_classifier is None:
        est = ev.bootstrap("cls").estimates
        gate_classifier = max(ev.classifiers, key=lambda m: np.nan_to_num(est[m]["auroc"], nan=-1))
    if gate_segmenter is None:
        est = ev.bootstrap("seg").estimates
        gate_segmenter = max(ev.segmenters, key=lambda m: np.nan_to_num(est[m]["dsc"], nan=-1))
    for name, pool in ((gate_classifier, ev.classifiers), (gate_segmenter, ev.segmenters)):
        if name not in pool:
            raise ValueError(f"{name!r} is not among the evaluated models {pool}")
    return gate_classifier, gate_segmenter

def _gate_settings(ev, cls: str, seg: str, gate_threshold, lat: dict, seed: int):
    t_gate = ev.thresholds[cls][seed] if gate_threshold is None else float(gate_threshold)
    score = ev.cls_stats[cls][seed].score
    return [("segmenter alone", "", np.ones_like(ev.has_tissue), (0.0, lat["seg_ms"]), np.nan),
            ("gated", cls, score >= t_gate, (lat["cls_ms"], lat["seg_ms"]), t_gate)]

def gate_runs(ev, gate_classifier=None, gate_segmenter=None, gate_threshold: float | None = None) -> dict:
    """Per-seed outcomes of the segmenter alone and gated (classifier seed k gates segmenter seed k).

    Returns:
        dict with ``classifier``, ``segmenter``, ``latency`` (see :func:`stage_latencies`), ``thresholds``
        (gate threshold per seed) and, for ``"alone"`` and ``"gated"``, ``estimates`` (metric -> ``(K,)``)
        and ``samples`` (metric -> ``(K, B)``, the shared frame resamples).
    """
    cls, seg = gate_models(ev, gate_classifier, gate_segmenter)
    lat = stage_latencies(cls, seg, ev.profile, ev.root, ev.paths.dataset)
    weights = resample_weights(len(ev.test), ev.profile.n_boot, ev.profile.seed,
                                 ev.groups(ev.cluster))
    out = {"classifier": cls, "segmenter": seg, "latency": lat, "thresholds": [],
           "alone": {"estimates": {}, "samples": {}}, "gated": {"estimates": {}, "samples": {}}}
    for s in ev.seeds:
        st = ev.seg_stats[seg][s]
        for (name, _, passed, latency, thr), key in zip(_gate_settings(ev, cls, seg, gate_threshold, lat, s),
                                                        ("alone", "gated")):
            if key == "gated":
                out["thresholds"].append(thr)
            est = gate_metrics(st, ev.has_tissue, passed, None, latency)
            boot = gate_metrics(st, ev.has_tissue, passed, weights, latency)
            for k in est:
                out[key]["estimates"].setdefault(k, []).append(est[k])
                out[key]["samples"].setdefault(k, []).append(boot[k])
    for key in ("alone", "gated"):
        out[key]["estimates"] = {k: np.asarray(v) for k, v in out[key]["estimates"].items()}
        out[key]["samples"] = {k: np.stack(v) for k, v in out[key]["samples"].items()}
    return out

def gate_effect(ev, runs: dict, metric: str = "neg_false_mask") -> tuple[float, np.ndarray]:
    """``alone - gated`` of one two-stage metric: mean over seeds and its two-level bootstrap samples
    (paired on frames and on the segmenter's seed)."""
    a, g = runs["alone"], runs["gated"]
    rng = seed_rng(ev.profile.seed, f"gate:{runs['classifier']}:{runs['segmenter']}:{metric}")
    return combine_seeds(a["estimates"][metric] - g["estimates"][metric],
                           a["samples"][metric] - g["samples"][metric], rng, ev.seed_level)

def two_stage(ev, gate_classifier=None, gate_segmenter=None, gate_threshold: float | None = None,
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
    runs = gate_runs(ev, gate_classifier, gate_segmenter, gate_threshold)
    cls, seg, lat = runs["classifier"], runs["segmenter"], runs["latency"]
    t_gate = float(np.mean(runs["thresholds"]))
    rows = []
    for key, name, gate, thr in (("alone", "segmenter alone", "", np.nan),
                                 ("gated", f"gated by {cls} (p >= {t_gate:.2f})", cls, t_gate)):
        row = {"setting": name, "classifier": gate, "segmenter": seg, "gate_threshold": thr,
               "n_seeds": len(ev.seeds)}
        for k, est in runs[key]["estimates"].items():
            rng = seed_rng(ev.profile.seed, f"two_stage:{key}:{cls}:{seg}:{k}")
            v, samples = combine_seeds(est, runs[key]["samples"][k], rng, ev.seed_level)
            lo, hi = percentile_ci(samples)
            if k not in ("latency_ms", "fps"):
                lo, hi = clip_ci(lo, hi)
            row.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
        rows.append(row)
    comparison = pd.DataFrame(rows)
    comparison["latency_source"] = lat["source"]
    sweep = _gate_sweep(ev, cls, seg, lat)
    if save:
        ev._write(pd.concat([comparison, sweep], ignore_index=True), "two_stage.csv")
    return comparison, sweep

def _gate_sweep(ev, cls: str, seg: str, lat: dict) -> pd.DataFrame:
    rows = []
    for t in np.linspace(0, 1, GATE_SWEEP_POINTS):
        per_seed = [gate_metrics(ev.seg_stats[seg][s], ev.has_tissue, ev.cls_stats[cls][s].score >= t,
                                 None, (lat["cls_ms"], lat["seg_ms"])) for s in ev.seeds]
        mean = {k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]}
        rows.append({"setting": "sweep", "classifier": cls, "segmenter": seg, "gate_threshold": float(t),
                     "n_seeds": len(ev.seeds), **mean})
    out = pd.DataFrame(rows)
    out["latency_source"] = lat["source"]
    return out
