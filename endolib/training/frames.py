"""Training frames in memory: the prepared dataset's frames resized once to the model size
(:func:`load_frames`, kept in the dataset's ``cache/`` folder for the next run), ImageNet normalisation, and
:class:`TrainingData`, the inputs every unit of a model shares (the same for all training seeds).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
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
                progress: bool = True, cache: bool = True) -> FrameSet:
    """Load the frames of ``rows`` (rows of ``index.csv``) resized to ``size`` x ``size``.

    Every run of a study loads the same test frames, and resizing 1750 PNG frames costs about 2.5 s, so the arrays
    are kept in ``<data_dir>/cache/`` (:data:`endolib.data.dataset.FRAME_CACHE`) and reused while the files they
    came from (size and modification time of every image and mask) and the reading code (``endolib.data.dataset``,
    ``endolib.data.readers``) are unchanged; otherwise (or when the cache file cannot be read) they are resized
    again and the cache file replaced. A cached load returns exactly the arrays an uncached one does.

    Args:
        data_dir: prepared dataset.
        rows: the index rows to load, in the wanted order.
        size: output side in pixels.
        masks: also load the masks (segmenters).
        progress: tqdm bar.
        cache: read and write the cache (False: always resize; a dataset folder that cannot be written is read
            without the cache, with a warning).

    Example:
        >>> from endolib.data import load_index                         # doctest: +SKIP
        >>> fs = load_frames(d, load_index(d).head(4), 32); fs.images.shape  # doctest: +SKIP
        (4, 32, 32, 3)
    """
    ids = rows["frame_id"].astype(str).to_numpy()
    path, stamp = _cache_entry(Path(data_dir), ids, size, masks) if cache else (None, None)
    arrays = _read_cache(path, stamp) if path is not None else None
    if arrays is None:
        arrays = _resize_frames(data_dir, ids, size, masks, progress)
        if path is not None:
            _write_cache(path, stamp, arrays)
    return FrameSet(ids, rows["patient_id"].astype(str).to_numpy(),
                    rows["has_tissue"].astype(np.int64).to_numpy(), arrays["images"], arrays.get("masks"))


def _resize_frames(data_dir: str | Path, ids: np.ndarray, size: int, masks: bool, progress: bool) -> dict:
    """The frames ``ids`` (and their masks) read from the dataset and resized: ``{"images", "masks"?}``."""
    from tqdm.auto import tqdm

    from endolib.data.dataset import load_image, load_mask

    n = len(ids)
    out = {"images": np.empty((n, size, size, 3), np.uint8)}
    if masks:
        out["masks"] = np.empty((n, size, size), np.uint8)
    for i, fid in enumerate(tqdm(ids, desc=f"loading {n} frames at {size}px", disable=not progress or n == 0,
                                 leave=False)):
        out["images"][i] = load_image(data_dir, fid, size=size)
        if masks:
            out["masks"][i] = load_mask(data_dir, fid, size=size)
    return out


def _cache_entry(data_dir: Path, ids: np.ndarray, size: int, masks: bool) -> tuple[Path, str]:
    """The cache file of these frames at this size (named by what it holds) and the stamp its content must carry
    (the source files' sizes and modification times, and the source of the code that reads and resizes them)."""
    from endolib.data import dataset, readers
    from endolib.data.dataset import FRAME_CACHE

    what = hashlib.sha256("\n".join([str(size), str(masks), *ids]).encode()).hexdigest()[:16]
    stamp = hashlib.sha256()
    for module in (dataset, readers):
        stamp.update(Path(module.__file__).read_bytes())
    for fid in ids:
        for sub in ("images", "masks") if masks else ("images",):
            try:
                st = os.stat(data_dir / sub / f"{fid}.png")
                stamp.update(f"{fid}/{sub}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            except OSError:  # the reader raises with the file's name
                stamp.update(f"{fid}/{sub}:missing\n".encode())
    kind = "masks" if masks else "images"
    return data_dir / FRAME_CACHE / f"frames_{size}px_{kind}_{len(ids)}_{what}.npz", stamp.hexdigest()


def _read_cache(path: Path, stamp: str) -> dict | None:
    """The cached arrays when ``path`` holds them with ``stamp``; None when it is missing, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["stamp"]) != stamp:
                return None
            return {k: z[k] for k in z.files if k != "stamp"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing, truncated or not an .npz
        return None


def _write_cache(path: Path, stamp: str, arrays: dict) -> None:
    """Write the cache file through a temporary file of its own and ``os.replace`` (two processes that resize the
    same frames at once each write a whole file; the last one stays)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, stamp=np.array(stamp), **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"{path}: cannot keep the resized frames ({exc}); they are resized again on every load",
                      stacklevel=3)


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
