"""Mean ROC and PR curves over training seeds on fixed grids (Figs 5 and 6).
"""
from __future__ import annotations

import numpy as np

from endolib.evaluation import metrics as M

__all__ = ["ROC_GRID_POINTS", "mean_roc", "mean_pr"]


#: false-positive-rate grid of the ROC bootstrap bands
ROC_GRID_POINTS = 201


#: recall grid of the mean-over-seeds precision-recall curve
PR_GRID_POINTS = 201


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
