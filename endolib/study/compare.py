"""Two runs of the whole study side by side (``python -m endolib compare``): the same commit under other floating-point
numerics (or on another CPU kind) should reach the same verdicts; this module says whether it did and how far every
estimate moved, in ``results/<profile>/other_numerics.csv`` (per claim) and ``other_numerics.json`` (the summary).

Example:
    >>> a = pd.DataFrame({"claim": ["x"], "verdict": ["reproduced"], "our_estimate": [0.10]})
    >>> compare_claims(a, a.assign(our_estimate=0.12))[["same_verdict", "estimate_moved"]].round(2).values.tolist()
    [[True, 0.02]]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from endolib.repro import save_json, write_table

__all__ = ["compare_claims", "compare_tables", "compare_studies", "compare_main"]

#: ``paper_claims.csv``'s metric of the speed claims: measured on each machine, so their estimates (FPS) are
#: reported beside the statistical claims' moves, not in ``max_estimate_moved``
SPEED_METRIC = "fps"

#: the headline tables and the metrics compared in them
TABLES = {"table3_classifiers.csv": ("auroc", "auprc", "sensitivity", "specificity"),
          "table4_segmenters.csv": ("dsc", "iou", "auprc")}


def compare_claims(ours: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Per claim: our verdict and estimate, the other run's, whether the verdicts agree and how far the estimate moved.

    Args:
        ours, other: two ``paper_claims.csv`` tables (same claims).
    """
    keep = ["claim", "metric"] if "metric" in ours.columns else ["claim"]
    m = ours[keep + ["verdict", "our_estimate"]].merge(
        other[["claim", "verdict", "our_estimate"]], on="claim", how="outer", suffixes=("", "_other"),
        indicator=True)
    missing = m.loc[m["_merge"] != "both", "claim"].tolist()
    if missing:
        raise ValueError(f"the two paper_claims.csv tables do not list the same claims: {missing}")
    m = m.drop(columns="_merge")
    m["same_verdict"] = m["verdict"] == m["verdict_other"]
    m["estimate_moved"] = (m["our_estimate_other"].astype(float) - m["our_estimate"].astype(float)).abs()
    return m


def compare_tables(ours: Path, other: Path) -> pd.DataFrame:
    """Per headline table and metric: the largest move of a model's estimate between the two runs and how many of the
    other run's estimates fall outside our 95% CI."""
    rows = []
    for name, metrics in TABLES.items():
        a, b = (pd.read_csv(d / name).set_index("model") for d in (ours, other))
        common = a.index.intersection(b.index)
        for metric in metrics:
            if metric not in a.columns or metric not in b.columns:
                continue
            x, y = a.loc[common, metric].astype(float), b.loc[common, metric].astype(float)
            lo, hi = a.loc[common, f"{metric}_lo"].astype(float), a.loc[common, f"{metric}_hi"].astype(float)
            moved = (y - x).abs()
            rows.append({"table": name, "metric": metric, "models": len(common),
                         "max_moved": float(moved.max()), "model_max_moved": str(moved.idxmax()),
                         "median_moved": float(moved.median()), "outside_our_ci": int(((y < lo) | (y > hi)).sum())})
    return pd.DataFrame(rows)


def compare_studies(ours: str | Path, other: str | Path, label: str, save: bool = True) -> dict:
    """Compare two results folders of the same study (ours: the committed one). ``max_estimate_moved`` is over the
    statistical claims (metric differences); the speed claims' FPS of both machines are in ``speed_claims``.

    Args:
        ours: our ``results/<profile>/``.
        other: the other run's results folder.
        label: what the other run was (e.g. ``"ATEN_CPU_CAPABILITY=default"``).
        save: write ``other_numerics.csv`` and ``other_numerics.json`` into ``ours``.

    Returns:
        dict with ``claims`` (DataFrame), ``tables`` (DataFrame) and ``summary`` (dict).
    """
    ours, other = Path(ours), Path(other)
    for d in (ours, other):
        if not (d / "paper_claims.csv").is_file():
            raise FileNotFoundError(f"{d / 'paper_claims.csv'}: not a results folder of a finished study")
    claims = compare_claims(pd.read_csv(ours / "paper_claims.csv"), pd.read_csv(other / "paper_claims.csv"))
    tables = compare_tables(ours, other)
    env = {}
    timing_env = other / "table5_compute_environment.json"  # the environment the other run recorded
    if timing_env.is_file():
        e = json.loads(timing_env.read_text()).get("environment", {})
        env = {k: e[k] for k in ("cpu", "cpu_capability", "numerics_env", "torch") if k in e}
    # the speed claims are measured on each machine (FPS, not a metric difference): reported apart
    speed = claims["metric"].eq(SPEED_METRIC) if "metric" in claims.columns else pd.Series(False, index=claims.index)
    stat = claims.loc[~speed, "estimate_moved"]
    summary = {"other": label, "other_environment": env, "claims": len(claims),
               "same_verdicts": int(claims["same_verdict"].sum()),
               "changed": claims.loc[~claims["same_verdict"], "claim"].tolist(),
               "max_estimate_moved": float(np.nanmax(stat)) if stat.notna().any() else float("nan"),
               "speed_claims": [{"claim": r.claim, "fps": r.our_estimate, "fps_other": r.our_estimate_other}
                                for r in claims[speed].itertuples()],
               "tables": tables.to_dict("records")}
    if save:
        write_table(claims, ours / "other_numerics.csv")
        save_json(summary, ours / "other_numerics.json")
    return {"claims": claims, "tables": tables, "summary": summary}


def stale_claims(res: str | Path) -> list[str]:
    """The claims whose verdict or estimate in ``other_numerics.csv`` (our side, as compared) is no longer that of
    ``paper_claims.csv`` in the same results folder: a comparison made against an earlier run of the study.

    Args:
        res: a results folder holding both files.

    Returns:
        Those claims (empty: the comparison is of the current results).

    Example:
        >>> from endolib.config import paths
        >>> stale_claims(paths("quick").results)  # doctest: +SKIP
        []
    """
    res = Path(res)
    compared = pd.read_csv(res / "other_numerics.csv")[["claim", "verdict", "our_estimate"]]
    now = pd.read_csv(res / "paper_claims.csv")[["claim", "verdict", "our_estimate"]]
    m = compared.merge(now, on="claim", how="outer", suffixes=("", "_now"))
    same_estimate = np.isclose(m["our_estimate"].astype(float), m["our_estimate_now"].astype(float), rtol=0,
                               atol=1e-6, equal_nan=True)
    return m.loc[~same_estimate | (m["verdict"] != m["verdict_now"]), "claim"].tolist()


def compare_main(argv: list[str] | None = None) -> int:
    """``python -m endolib compare OTHER_RESULTS --label "ATEN_CPU_CAPABILITY=default"``: verdicts and estimates of
    another run of the study against ``results/<profile>/``; writes ``other_numerics.csv`` / ``.json`` there."""
    import argparse

    from endolib.config import PROFILES, paths

    ap = argparse.ArgumentParser(prog="python -m endolib compare", description=compare_main.__doc__)
    ap.add_argument("other", help="the other run's results folder")
    ap.add_argument("--label", required=True, help="what differed in the other run (numerics, CPU)")
    ap.add_argument("--profile", default="quick", choices=list(PROFILES))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    out = compare_studies(paths(args.profile).results, args.other, args.label, save=not args.no_save)
    s = out["summary"]
    print(f"{s['same_verdicts']} of {s['claims']} verdicts identical under {args.label}"
          + (f"; changed: {s['changed']}" if s["changed"] else ""))
    print(out["claims"][["claim", "verdict", "verdict_other", "estimate_moved"]].round(3).to_string(index=False))
    print(out["tables"].round(3).to_string(index=False))
    return 0 if not s["changed"] else 1
