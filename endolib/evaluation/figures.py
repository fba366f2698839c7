"""The evaluation's figures, drawn from an :class:`endolib.evaluation.study.Evaluation`: Fig. 5 (ROC) and Fig. 6
(PR) with one faint curve per training seed, Tables 3/4 as seed figures, and the two-stage gate sweep.

Example:
    >>> ev = Evaluation("quick")  # doctest: +SKIP
    >>> fig = roc_figure(ev)      # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from endolib import paper
from endolib.evaluation.curves import PR_GRID_POINTS, ROC_GRID_POINTS, mean_pr, mean_roc
from endolib.evaluation.study import CLUSTER_METRICS
from endolib.evaluation.tables import format_ci


def roc_figure(ev, save: bool = True):
    """Figure 5: ROC curves, one faint curve per training seed and their mean (bold); saved as ``fig5_roc``."""
    import matplotlib.pyplot as plt

    from endolib.plotting import model_colour, paper_style, save_figure

    paper_style()
    boot = ev.bootstrap("cls")
    grid = np.linspace(0, 1, ROC_GRID_POINTS)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for m, by_seed in ev.cls_stats.items():
        c = model_colour(m)
        mean_tpr, curves = mean_roc(by_seed, grid)
        for tpr in curves:
            ax.step(grid, tpr, where="post", color=c, alpha=0.3, lw=0.7)
        label = (f"{paper.DISPLAY_NAMES[m]}: AUROC {format_ci(boot.estimates[m]['auroc'], *boot.ci(m, 'auroc'))}"
                 f" ({len(by_seed)} seeds)")
        ax.step(grid, mean_tpr, where="post", color=c, lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=f"ROC, test set ({ev.profile.name} phantom); faint: each training seed")
    ax.legend(loc="lower right", fontsize=7)
    if save:
        save_figure(fig, "fig5_roc", ev.paths.figures)
    return fig

def pr_figure(ev, save: bool = True):
    """Figure 6: pixel-level PR curves, one faint curve per training seed and their mean; saved as ``fig6_pr``."""
    import matplotlib.pyplot as plt

    from endolib.plotting import model_colour, paper_style, save_figure

    paper_style()
    boot = ev.bootstrap("seg")
    grid = np.linspace(0, 1, PR_GRID_POINTS)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for m, by_seed in ev.seg_stats.items():
        c = model_colour(m)
        mean_prec, curves = mean_pr(by_seed, ev.has_tissue, grid)
        for recall, prec in curves:
            ax.step(recall, prec, where="pre", color=c, alpha=0.3, lw=0.7)
        label = (f"{paper.DISPLAY_NAMES[m]}: AUPRC {format_ci(boot.estimates[m]['auprc'], *boot.ci(m, 'auprc'))}"
                 f" ({len(by_seed)} seeds)")
        ax.plot(grid, mean_prec, color=c, lw=1.6, label=label)
    ax.set(xlabel="recall (pixels)", ylabel="precision (pixels)", xlim=(0, 1), ylim=(0, 1.01),
           title=f"Precision-recall, test frames with tissue ({ev.profile.name} phantom); faint: each seed")
    ax.legend(loc="lower left", fontsize=6)
    if save:
        save_figure(fig, "fig6_pr", ev.paths.figures)
    return fig

def seed_figure(ev, task: str, save: bool = True):
    """Table 3 (``task="cls"``) or 4 (``"seg"``) as a figure: each seed's value (dots), the mean over seeds with
    its two-level 95% CI (bar) and the paper's value (x, clinical data); ``fig_table3_seeds`` / ``fig_table4_seeds``.
    """
    import matplotlib.pyplot as plt

    from endolib.plotting import model_colour, paper_style, save_figure

    paper_style()
    boot = ev.bootstrap(task)
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
        save_figure(fig, f"fig_table{3 if task == 'cls' else 4}_seeds", ev.paths.figures)
    return fig

def two_stage_figure(ev, comparison: pd.DataFrame, sweep: pd.DataFrame, save: bool = True):
    """Gate-threshold sweep: false masks on tissue-free frames, DSC on tissue frames, expected FPS."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from endolib.plotting import PALETTE, paper_style, save_figure

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
        save_figure(fig, "fig_two_stage_sweep", ev.paths.figures)
    return fig


#: labelled ticks per decade on the log frame-rate axis of the gate sweep
FPS_TICKS = (1.0, 2.0, 5.0)


#: panels of the per-seed figures fig_table3_seeds / fig_table4_seeds
SEED_FIGURE_METRICS = CLUSTER_METRICS
