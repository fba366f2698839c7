"""Folds and the random search: patient-grouped, tissue-stratified K-fold splits (or a grouped hold-out) inside
the training split, the search trials drawn from :data:`endolib.config.SEARCH_SPACE`, and choosing the trial.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from endolib.config import SEARCH_SPACE, Profile
from endolib.training.settings import FINAL_FOLD, TrainSettings

__all__ = ["patient_folds", "fold_table", "sample_trials"]


# ----------------------------------------------------------------------------------------------------- folds
def patient_folds(patients, labels, folds: int, seed: int, holdout_fraction: float = 0.2
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped (train, validation) frame indices, stratified by label.

    ``folds > 1``: ``StratifiedGroupKFold`` (every patient is in exactly one validation fold). ``folds == 1``:
    one grouped hold-out of about ``holdout_fraction`` of the patients (the first fold of a
    ``round(1 / holdout_fraction)``-fold split).

    Args:
        patients: patient id per frame (N,).
        labels: 0/1 per frame (N,), used for stratification.
        folds: number of folds (1 = hold-out).
        seed: shuffling seed.
        holdout_fraction: validation share of patients when ``folds == 1``.

    Returns:
        A list of ``folds`` pairs of int arrays (train indices, validation indices).

    Example:
        >>> pats = np.repeat(["a", "b", "c", "d"], 2); y = np.tile([0, 1], 4)
        >>> [sorted(set(pats[v].tolist())) for _, v in patient_folds(pats, y, 2, seed=0)]
        [['b', 'c'], ['a', 'd']]
    """
    from sklearn.model_selection import StratifiedGroupKFold

    patients, labels = np.asarray(patients).astype(str), np.asarray(labels).astype(int)
    n_pat = len(np.unique(patients))
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    n_splits = folds if folds > 1 else min(n_pat, max(2, int(round(1.0 / holdout_fraction))))
    if n_pat < max(2, n_splits):
        raise ValueError(f"{folds}-fold patient-grouped validation needs at least {max(2, n_splits)} training "
                         f"patients; the training split has {n_pat}")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        splits = list(splitter.split(np.zeros(len(labels)), labels, groups=patients))
    return [(np.sort(tr), np.sort(va)) for tr, va in splits[:folds]]


def fold_table(frames_patients, frames_labels, splits, task_mask=None) -> pd.DataFrame:
    """One row per fold and part: patients, frames, frames with tissue (``task_mask`` = frames the task uses)."""
    pats, labels = np.asarray(frames_patients), np.asarray(frames_labels)
    use = np.ones(len(pats), bool) if task_mask is None else np.asarray(task_mask, bool)
    rows = []
    for k, (tr, va) in enumerate(splits):
        for part, idx in (("train", tr), ("val", va)):
            idx = idx[use[idx]]
            rows.append({"fold": k, "part": part, "patients": " ".join(sorted(set(pats[idx]))),
                         "n_patients": len(set(pats[idx])), "frames": len(idx), "with_tissue": int(labels[idx].sum())})
    return pd.DataFrame(rows)


def sample_trials(profile: Profile) -> list[dict]:
    """The hyperparameters of each random-search trial (one trial with the profile's values if
    ``search_trials == 0``); learning rate and weight decay log-uniform, batch size from the choices.

    Example:
        >>> from endolib.config import get_profile
        >>> sample_trials(get_profile("smoke"))
        [{'lr': 0.001, 'batch_size': 16, 'weight_decay': 0.0001}]
        >>> len(sample_trials(get_profile("smoke", search_trials=3)))
        3
    """
    if profile.search_trials == 0:
        return [{"lr": float(profile.lr), "batch_size": int(profile.batch_size),
                 "weight_decay": float(profile.weight_decay)}]
    rng = np.random.default_rng([profile.seed, 7919])

    def log_uniform(lo, hi):
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    return [{"lr": log_uniform(*SEARCH_SPACE["lr"]),
             "batch_size": int(rng.choice(SEARCH_SPACE["batch_size"])),
             "weight_decay": log_uniform(*SEARCH_SPACE["weight_decay"])} for _ in range(profile.search_trials)]


def _select_rows(index: pd.DataFrame, settings: TrainSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows (capped by ``max_train_frames``) and test rows, with clear errors when empty."""
    train = index[index["split"] == "train"]
    test = index[index["split"] == "test"]
    if train.empty:
        raise ValueError(f"{settings.data_dir / 'index.csv'}: the training split is empty (no row with "
                         f"split == 'train'); nothing to train {settings.arch} on")
    if test.empty:
        raise ValueError(f"{settings.data_dir / 'index.csv'}: the test split is empty (no row with split == 'test')")
    cap = settings.profile.max_train_frames
    if cap is not None and len(train) > cap:
        train = train.sample(n=int(cap), random_state=settings.data_seed).sort_values("frame_id")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _task_mask(rows: pd.DataFrame, settings: TrainSettings) -> np.ndarray:
    """Which training frames the model learns from: all (classifiers, or include_negatives) or positives."""
    if settings.task == "cls" or settings.profile.include_negatives:
        return np.ones(len(rows), bool)
    return rows["has_tissue"].to_numpy().astype(bool)


def _check_folds(splits, rows: pd.DataFrame, use: np.ndarray, settings: TrainSettings) -> None:
    labels = rows["has_tissue"].to_numpy()
    pats = rows["patient_id"].astype(str).to_numpy()
    for k, (tr, va) in enumerate(splits):
        for part, idx in (("training", tr), ("validation", va)):
            idx = idx[use[idx]]
            need_neg = settings.task == "cls"
            if labels[idx].sum() == 0 or (need_neg and (labels[idx] == 0).sum() == 0):
                what = "frames with tissue" if labels[idx].sum() == 0 else "frames without tissue"
                raise ValueError(
                    f"{settings.data_dir / 'index.csv'}: fold {k} {part} part (patients "
                    f"{', '.join(sorted(set(pats[idx]))) or 'none'}) has no {what}; {settings.arch} cannot be "
                    f"trained/validated on it. Use fewer folds (folds parameter) or more training patients.")


def _trials_table(records: list[dict], trials: list[dict], task: str) -> pd.DataFrame:
    rows = []
    for t, hp in enumerate(trials):
        units = [u for u in records if u["trial"] == t and u["fold"] != FINAL_FOLD]
        rows.append({"trial": t, **hp, "mean_val_loss": float(np.mean([u["best_val_loss"] for u in units])),
                     "mean_val_metric": float(np.nanmean([u["best_val_metric"] for u in units]))
                     if any(np.isfinite(u["best_val_metric"]) for u in units) else math.nan,
                     "mean_best_epoch": float(np.mean([u["best_epoch"] for u in units]))})
    df = pd.DataFrame(rows)
    df["chosen"] = False
    df.loc[_choose(df, task), "chosen"] = True
    return df


def _choose(df: pd.DataFrame, task: str) -> int:
    """Lowest mean validation loss (classifiers) or highest mean validation DSC (segmenters); first on ties."""
    if task == "cls":
        return int(df["mean_val_loss"].to_numpy().argmin())
    metric = df["mean_val_metric"].fillna(-np.inf).to_numpy()
    return int(metric.argmax())
