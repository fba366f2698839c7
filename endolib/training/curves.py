"""Learning curves: every finished training seed's ``history.csv`` of a model, one figure
``learning_curve_<model>`` (one colour per seed), and the single-run plot with the chosen trial.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from endolib.training.settings import FINAL_FOLD, RUN_FILES, TrainSettings

__all__ = ["FLAT_TOL", "FLAT_EPOCHS", "convergence", "convergence_table", "plot_learning_curve", "plot_run_learning_curve", "save_learning_curves", "load_learning_curves",
           "plot_seed_learning_curves"]


#: a run has *flattened* when its validation metric moved by at most FLAT_TOL over its last FLAT_EPOCHS epochs, or
#: its best validation epoch lies at least FLAT_EPOCHS epochs before its last (issue 24's convergence rule)
FLAT_TOL, FLAT_EPOCHS = 0.01, 3


def convergence(history: pd.DataFrame) -> dict:
    """Whether one run's validation curve had flattened when training ended (:data:`FLAT_TOL`, :data:`FLAT_EPOCHS`).

    Reads the validation rows of ``history.csv`` (the chosen trial's hold-out or first fold; the best epoch is the
    one with the lowest validation loss, as the unit chose it).

    Args:
        history: a run's ``history.csv`` (one trial, or the rows of the chosen trial).

    Returns:
        dict with ``epochs`` (run), ``best_epoch``, ``last_range`` (max - min validation metric over the last
        :data:`FLAT_EPOCHS` epochs) and ``flattened``.

    Example:
        >>> h = pd.DataFrame({"fold": 0, "epoch": [1, 2, 3, 4], "val_loss": [0.5, 0.4, 0.35, 0.34],
        ...                   "val_metric": [0.5, 0.6, 0.705, 0.71]})
        >>> c = convergence(h); c["best_epoch"], round(c["last_range"], 3), c["flattened"]
        (4, 0.11, False)
    """
    h = history[history["val_loss"].notna()]
    if "fold" in h and len(h):
        h = h[h["fold"] == h["fold"].min()]
    if h.empty:
        return {"epochs": 0, "best_epoch": 0, "last_range": np.nan, "flattened": False}
    h = h.sort_values("epoch")
    epochs = int(h["epoch"].max())
    best = int(h.loc[h["val_loss"].idxmin(), "epoch"])
    tail = h["val_metric"].tail(FLAT_EPOCHS).to_numpy(dtype=float)
    last_range = float(np.ptp(tail)) if len(tail) == FLAT_EPOCHS else np.nan
    flat = bool(last_range <= FLAT_TOL) or best <= epochs - FLAT_EPOCHS
    return {"epochs": epochs, "best_epoch": best, "last_range": last_range, "flattened": flat}


def convergence_table(runs_dir: str | Path, models, seeds=None, save_to: str | Path | None = None) -> pd.DataFrame:
    """:func:`convergence` of every finished run ``runs_dir/<model>/seed<s>/`` of ``models`` (chosen trial):
    columns ``model, seed, epochs, best_epoch, last_range, flattened``.

    Args:
        runs_dir: the profile's runs folder (``paths(profile).runs``).
        models: registry names.
        seeds: training seeds to include (None: every finished one).
        save_to: a results folder: also write ``convergence.csv`` there.

    Example:
        >>> convergence_table("/nonexistent", ["unet"]).empty
        True
    """
    rows = []
    for model in models:
        for sd, (history, config) in load_learning_curves(Path(runs_dir) / model, seeds).items():
            chosen = next((t for t in config.get("trials", []) if t.get("chosen")), {"trial": 0})
            rows.append({"model": model, "seed": sd,
                         **convergence(history[history["trial"] == int(chosen["trial"])])})
    table = pd.DataFrame(rows, columns=["model", "seed", "epochs", "best_epoch", "last_range", "flattened"])
    if save_to is not None:
        from endolib.repro import write_table

        write_table(table, Path(save_to) / "convergence.csv")
    return table


def save_learning_curves(settings: TrainSettings, seeds=None) -> Path | None:
    """Draw and save ``learning_curve_<arch>`` with every finished training seed of the model (None if none)."""
    import matplotlib.pyplot as plt

    from endolib.plotting import save_figure

    runs = load_learning_curves(settings.model_dir, _finished_seeds(settings, seeds))
    if not runs:
        return None
    fig = plot_seed_learning_curves(runs)
    png = save_figure(fig, f"learning_curve_{settings.arch}", settings.figures_dir)
    plt.close(fig)
    return png


def load_learning_curves(model_dir: str | Path, seeds=None) -> dict:
    """``{training seed: (history, config)}`` of the finished runs ``model_dir/seed<s>/`` (all when ``seeds`` is
    None), in seed order."""
    model_dir = Path(model_dir)
    if seeds is None:
        seeds = sorted(int(d.name[4:]) for d in model_dir.glob("seed*") if d.name[4:].isdigit())
    out = {}
    for sd in seeds:
        run = model_dir / f"seed{int(sd)}"
        if (run / RUN_FILES["config"]).is_file() and (run / RUN_FILES["history"]).is_file():
            out[int(sd)] = (pd.read_csv(run / RUN_FILES["history"]), json.loads((run / RUN_FILES["config"]).read_text()))
    return out


def plot_seed_learning_curves(runs: dict):
    """Learning curves of every training seed of one model: per seed (one colour each) the chosen trial's
    training loss (solid), validation loss (dotted) and validation metric, drawn faint; the final retraining
    dashed; each seed's final-model epoch marked when it was selected on the hold-out.

    Args:
        runs: ``{training seed: (history DataFrame, config dict)}`` (:func:`load_learning_curves`).

    Example:
        >>> h = pd.DataFrame({"trial": 0, "fold": 0, "epoch": [1, 2], "train_loss": [0.6, 0.5],
        ...                   "val_loss": [0.55, 0.5], "val_metric": [0.6, 0.7], "lr": 1e-3, "seconds": 1.0})
        >>> cfg = {"arch": "unet", "task": "seg", "trials": [{"trial": 0, "chosen": True}],
        ...        "final_model": {"method": "holdout_best", "epochs": 2}}
        >>> len(plot_seed_learning_curves({42: (h, cfg), 43: (h, cfg)}).axes)
        2
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from endolib.plotting import PALETTE, paper_style

    paper_style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    arch = task = None
    alpha = 0.9 if len(runs) == 1 else 0.55
    for i, (sd, (history, config)) in enumerate(runs.items()):
        arch, task = config["arch"], config["task"]
        c = PALETTE[i % len(PALETTE)]
        chosen = next(t for t in config["trials"] if t["chosen"])
        h = history[history["trial"] == int(chosen["trial"])]
        conv = convergence(h)
        for j, (fold, g) in enumerate(h.groupby("fold", sort=True)):
            label = (f"seed {sd} (best {conv['best_epoch']}/{conv['epochs']}, "
                     f"{'flat' if conv['flattened'] else 'still moving'})") if j == 0 else None
            final = fold == FINAL_FOLD
            ax1.plot(g["epoch"], g["train_loss"], color=c, alpha=alpha, lw=1, ls="--" if final else "-",
                     label=(label + " train") if label else None)
            if g["val_loss"].notna().any():
                ax1.plot(g["epoch"], g["val_loss"], color=c, alpha=alpha, lw=1, ls=":", marker="o", ms=2,
                         label=(label + " val") if label else None)
                ax2.plot(g["epoch"], g["val_metric"], color=c, alpha=alpha, lw=1, marker="o", ms=2, label=label)
        fm = config["final_model"]
        if fm["method"] == "holdout_best":
            for ax in (ax1, ax2):
                ax.axvline(int(fm["epochs"]), color=c, lw=0.7, ls="--", alpha=alpha)
    n = len(runs)
    ax1.set(xlabel="epoch", ylabel="BCE loss" if task == "cls" else "Dice loss",
            title=f"{arch}: loss ({n} seed{'s' if n != 1 else ''})")
    ax2.set(xlabel="epoch", ylabel="validation AUROC" if task == "cls" else "validation DSC",
            title=f"{arch}: validation metric")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_run_learning_curve(history: pd.DataFrame, config: dict):
    """:func:`plot_learning_curve` of a run from its ``history.csv`` and ``config.json``: the chosen trial, and
    the final model's epoch marked when it was selected on the hold-out."""
    chosen = next(t for t in config["trials"] if t["chosen"])
    final = config["final_model"]
    return plot_learning_curve(history, config["arch"], config["task"], chosen_trial=int(chosen["trial"]),
                               best_epoch=int(final["epochs"]) if final["method"] == "holdout_best" else None)

def plot_learning_curve(history: pd.DataFrame, arch: str, task: str, chosen_trial: int | None = None,
                        best_epoch: int | None = None):
    """Training and validation loss (left) and the validation metric (right) per epoch of the chosen trial,
    one colour per fold (the final retraining dashed).

    Args:
        history: ``history.csv`` as a DataFrame.
        arch: model name (title).
        task: ``"cls"`` or ``"seg"`` (metric label).
        chosen_trial: trial to show (default: trial 0).
        best_epoch: epoch of the final model, marked by a dashed line (None: no mark).

    Example:
        >>> h = pd.DataFrame({"trial": 0, "fold": 0, "epoch": [1, 2], "train_loss": [0.6, 0.5],
        ...                   "val_loss": [0.55, 0.5], "val_metric": [0.6, 0.7], "lr": 1e-3, "seconds": 1.0})
        >>> len(plot_learning_curve(h, "unet", "seg", best_epoch=2).axes)
        2
    """
    import matplotlib.pyplot as plt

    from endolib.plotting import PALETTE, paper_style

    paper_style()

    h = history[history["trial"] == (0 if chosen_trial is None else chosen_trial)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    for i, (fold, g) in enumerate(h.groupby("fold", sort=True)):
        c = PALETTE[i % len(PALETTE)]
        name = "final (all training data)" if fold == FINAL_FOLD else f"fold {fold}"
        ax1.plot(g["epoch"], g["train_loss"], color=c, ls="--" if fold == FINAL_FOLD else "-",
                 label=f"{name} train")
        if g["val_loss"].notna().any():
            ax1.plot(g["epoch"], g["val_loss"], color=c, ls=":", marker="o", ms=3, label=f"{name} val")
            ax2.plot(g["epoch"], g["val_metric"], color=c, marker="o", ms=3, label=name)
    ax1.set(xlabel="epoch", ylabel="BCE loss" if task == "cls" else "Dice loss", title=f"{arch}: loss")
    ax2.set(xlabel="epoch", ylabel="validation AUROC" if task == "cls" else "validation DSC",
            title=f"{arch}: validation metric")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.5", lw=0.8, ls="--", label=f"final model (epoch {best_epoch})")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _finished_seeds(settings: TrainSettings, seeds=None) -> list[int]:
    seeds = settings.profile.training_seeds if seeds is None else seeds
    return [int(x) for x in seeds if (settings.for_seed(x).run_dir / RUN_FILES["config"]).is_file()]
