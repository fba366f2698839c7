"""Training frames in memory: the prepared dataset's frames resized once to the model size
(:func:`load_frames`), ImageNet normalisation, and :class:`TrainingData`, the inputs every unit of a model shares
(the same for all training seeds).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from endolib.training.fingerprint import _fingerprint
from endolib.training.folds import (
    _check_folds,
    _select_rows,
    _task_mask,
    fold_table,
    patient_folds,
    sample_trials,
)
from endolib.training.settings import TrainSettings

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FrameSet", "load_frames", "normalise", "TrainingData", "prepare_data"]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class FrameSet:
    """Frames preloaded at model resolution.

    Attributes:
        frame_ids, patient_ids: str arrays (N,).
        labels: int64 ``has_tissue`` (N,).
        images: uint8 (N, S, S, 3).
        masks: uint8 (N, S, S) in {0, 1}, or None (classifiers).
    """

    frame_ids: np.ndarray
    patient_ids: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    masks: np.ndarray | None

    def __len__(self) -> int:
        return len(self.frame_ids)

    def subset(self, idx) -> "FrameSet":
        idx = np.asarray(idx, dtype=np.int64)
        return FrameSet(self.frame_ids[idx], self.patient_ids[idx], self.labels[idx], self.images[idx],
                        None if self.masks is None else self.masks[idx])


def load_frames(data_dir: str | Path, rows: pd.DataFrame, size: int, masks: bool = True,
                progress: bool = True) -> FrameSet:
    """Load the frames of ``rows`` (rows of ``index.csv``) resized to ``size`` x ``size``.

    Args:
        data_dir: prepared dataset.
        rows: the index rows to load, in the wanted order.
        size: output side in pixels.
        masks: also load the masks (segmenters).
        progress: tqdm bar.

    Example:
        >>> from endolib.data import load_index                         # doctest: +SKIP
        >>> fs = load_frames(d, load_index(d).head(4), 32); fs.images.shape  # doctest: +SKIP
        (4, 32, 32, 3)
    """
    from tqdm.auto import tqdm

    from endolib.data.dataset import load_image, load_mask

    n = len(rows)
    images = np.empty((n, size, size, 3), np.uint8)
    mask_arr = np.empty((n, size, size), np.uint8) if masks else None
    ids = rows["frame_id"].astype(str).to_numpy()
    for i, fid in enumerate(tqdm(ids, desc=f"loading {n} frames at {size}px", disable=not progress or n == 0,
                                 leave=False)):
        images[i] = load_image(data_dir, fid, size=size)
        if masks:
            mask_arr[i] = load_mask(data_dir, fid, size=size)
    return FrameSet(ids, rows["patient_id"].astype(str).to_numpy(),
                    rows["has_tissue"].astype(np.int64).to_numpy(), images, mask_arr)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of float images in [0, 1], shape (..., 3, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype).view(3, 1, 1)
    return (images - mean) / std


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, -3).float().div_(255.0)


# ------------------------------------------------------------------------------------------- training data
@dataclass
class TrainingData:
    """The inputs every unit of a model shares (the same for all training seeds: they use the data seed).

    Built by :func:`prepare_data`; training frames are loaded on first use (a finish-only call never loads them).
    """

    settings: TrainSettings
    index: pd.DataFrame
    train_rows: pd.DataFrame
    test_rows: pd.DataFrame
    use: np.ndarray
    splits: list
    folds_df: pd.DataFrame
    trials: list
    progress: bool = True
    _frames: FrameSet | None = None

    @property
    def frames(self) -> FrameSet:
        """Every training frame the task uses, at model resolution."""
        if self._frames is None:
            s = self.settings
            pool = np.flatnonzero(self.use)
            self._frames = load_frames(s.data_dir, self.train_rows.iloc[pool], s.size, masks=s.task == "seg",
                                       progress=self.progress)
        return self._frames

    def part(self, idx) -> FrameSet:
        """The training frames of row indices ``idx`` (of ``train_rows``) that the task uses."""
        pos = np.cumsum(self.use) - 1
        return self.frames.subset([int(pos[i]) for i in idx if self.use[i]])

    def fingerprint(self, settings: TrainSettings) -> str:
        return _fingerprint(settings, self.index)


def prepare_data(settings: TrainSettings, progress: bool = True) -> TrainingData:
    """Read the index, select rows, make the patient folds and the search trials of ``settings``' model.

    Raises:
        FileNotFoundError: the dataset (``index.csv``) is missing.
        ValueError: empty training/test split, too few patients for the folds, a fold without positives.
    """
    from endolib.data.dataset import load_index

    s, p = settings, settings.profile
    index = load_index(s.data_dir)
    train_rows, test_rows = _select_rows(index, s)
    use = _task_mask(train_rows, s)
    splits = patient_folds(train_rows["patient_id"], train_rows["has_tissue"], p.folds, p.seed, p.holdout_fraction)
    _check_folds(splits, train_rows, use, s)
    folds_df = fold_table(train_rows["patient_id"], train_rows["has_tissue"], splits, use)
    return TrainingData(s, index, train_rows, test_rows, use, splits, folds_df, sample_trials(p), progress)
