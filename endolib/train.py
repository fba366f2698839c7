"""Training of every classifier and segmenter with one loop (notebooks 02 and 03).

The protocol of the paper (Methods; ``paper_tables.md``), for any registry name:

* **Data**: frames of the training split, resized once to the model input size and kept in memory.
  Classifiers use every frame (label ``has_tissue``); segmenters use frames with tissue (``include_negatives``
  adds the others). ImageNet normalisation.
* **Augmentation** (training only), drawn afresh per frame and epoch and applied identically to image and
  mask: random rotation and horizontal/vertical flips, plus random zoom for classifiers; optionally
  (``colour_jitter`` > 0, not in the paper) random white balance and brightness of the image. The segmentation
  training set is expanded ``expand``-fold (every copy gets its own random draw).
* **Validation**: patient-grouped K-fold CV inside the training split (``folds``; stratified by
  ``has_tissue``, no patient in both parts). With ``folds=1`` a grouped hold-out of ``holdout_fraction`` of
  the training patients is the validation set.
* **Losses**: binary cross-entropy (classifiers); Dice loss of the paper's Eq. 1 (segmenters). Adam,
  reduce-LR-on-plateau and early stopping on the validation loss.
* **Random search** over learning rate, batch size and weight decay (``search_trials`` draws from
  :data:`endolib.config.SEARCH_SPACE`; 0 = the profile's values). The chosen trial has the lowest mean
  validation loss (classifiers) or the highest mean validation DSC (segmenters), both taken at each fold's
  best epoch.
* **Final model**: with ``folds > 1`` it is retrained on all training frames with the chosen
  hyperparameters for the mean best epoch count of the chosen trial's folds; with ``folds = 1`` it is the
  hold-out-selected model (the chosen trial's weights at its best validation epoch). ``config.json`` says which.

Everything a run writes is in ``runs/<profile>/<model>/`` (see ``docs/layout.md``). The run checkpoints
``resume.pt`` after every epoch (weights, optimiser, scheduler, early-stopping state, history and RNG states);
an interrupted run continues from it and ends with the same weights as an uninterrupted one.

Example:
    >>> s = training_settings("unet", "smoke", data_dir="data/smoke/phantom")   # doctest: +SKIP
    >>> result = train_model(s)                                                # doctest: +SKIP
    >>> result.test_summary["dsc"]                                             # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .config import CLASSIFIERS, MODELS, SEARCH_SPACE, SEGMENTERS, Profile, get_profile, paths
from .models import create_model, input_size, model_kwargs, model_task
from .repro import environment, save_json, seed_everything

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "FINAL_FOLD", "TrainSettings", "training_settings", "FrameSet",
    "load_frames", "normalise", "random_affine", "apply_affine", "colour_jitter", "FrameDataset", "dice_loss",
    "bce_loss",
    "patient_folds", "fold_table", "sample_trials", "train_model", "TrainResult", "predict", "load_run",
    "plot_learning_curve", "plot_run_learning_curve",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``fold`` value of the final retraining on all training frames in ``history.csv`` (folds > 1 only).
FINAL_FOLD = -1
#: File names inside a run folder (docs/layout.md).
RUN_FILES = {"config": "config.json", "weights": "model.safetensors", "resume": "resume.pt",
             "history": "history.csv", "environment": "environment.json", "predictions": "predictions.npz",
             "summary": "test_summary.json"}
HISTORY_COLUMNS = ["trial", "fold", "epoch", "train_loss", "val_loss", "val_metric", "lr", "seconds"]
_TASK_MODELS = {"cls": CLASSIFIERS, "seg": SEGMENTERS}
_TASK_NAMES = {"cls": "classifier", "seg": "segmenter"}


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run needs; built by :func:`training_settings`.

    Attributes:
        arch: registry name.
        task: ``"cls"`` or ``"seg"``.
        profile: the profile with the notebook's overrides applied.
        data_dir: the prepared dataset.
        run_dir: ``runs/<profile>/<arch>/``.
        figures_dir: where the learning-curve figure goes.
        size: model input side in pixels.
        model_kwargs: keyword arguments of :func:`endolib.models.create_model`.
        epochs: maximum epochs per training (``cls_epochs`` or ``seg_epochs``).
    """

    arch: str
    task: str
    profile: Profile
    data_dir: Path
    run_dir: Path
    figures_dir: Path
    size: int
    model_kwargs: dict
    epochs: int

    @property
    def seed(self) -> int:
        return self.profile.seed

    def to_dict(self) -> dict:
        return {"arch": self.arch, "task": self.task, "profile": self.profile.to_dict(),
                "data_dir": str(self.data_dir), "run_dir": str(self.run_dir), "input_size": self.size,
                "model_kwargs": dict(self.model_kwargs), "epochs": self.epochs, "seed": self.seed}

    def describe(self) -> str:
        """A few lines for the notebook: what will be trained, how."""
        p = self.profile
        search = f"random search, {p.search_trials} trials" if p.search_trials else "no search (profile values)"
        val = (f"{p.folds}-fold patient-grouped CV" if p.folds > 1
               else f"patient-grouped hold-out ({p.holdout_fraction:.0%} of training patients)")
        data = ("all training frames" if self.task == "cls" else
                "training frames with tissue" + (" and without" if p.include_negatives else "")
                + f", expanded {p.expand}x")
        loss = "binary cross-entropy" if self.task == "cls" else "Dice loss (Eq. 1)"
        return "\n".join([
            f"model:        {self.arch} ({_TASK_NAMES[self.task]}), input {self.size}x{self.size}, "
            f"kwargs {self.model_kwargs}",
            f"profile:      {p.name}, seed {p.seed}",
            f"data:         {data}",
            f"validation:   {val}",
            f"training:     {loss}, Adam, learning rate x{p.lr_factor} after {p.lr_patience + 1} epoch(s) without "
            f"improvement, up to {self.epochs} epochs, early stopping after {p.patience} without improvement",
            f"augmentation: rotation +-{p.rotation_deg:g} deg, flips" + (f", zoom +-{p.zoom:g}" if self.task == "cls"
                                                                        else "")
            + (f", colour jitter +-{p.colour_jitter:g} (not in the paper)" if p.colour_jitter else ""),
            f"search:       {search}; lr {p.lr:g}, batch size {p.batch_size}, weight decay {p.weight_decay:g}",
        ])


def training_settings(arch: str, profile: str | Profile = "smoke", data_dir: str | Path | None = None,
                      run_dir: str | Path | None = None, figures_dir: str | Path | None = None,
                      epochs: int | None = None, task: str | None = None, **overrides) -> TrainSettings:
    """Resolve a notebook's parameters into :class:`TrainSettings`.

    Args:
        arch: registry name (``resnet18`` ... ``segformer_b1``).
        profile: ``smoke``, ``quick``, ``paper`` or a Profile.
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        run_dir: output folder (default ``paths(profile).run(arch)``).
        figures_dir: figure folder (default ``paths(profile).figures``).
        epochs: overrides ``cls_epochs`` or ``seg_epochs`` (whichever the model uses).
        task: if given (``"cls"``/``"seg"``), require ``arch`` to be of that kind (a notebook trains one kind).
        **overrides: any Profile field (``lr``, ``batch_size``, ``weight_decay``, ``folds``, ``search_trials``,
            ``include_negatives``, ``seed``, ...); None values are ignored. They are applied after the
            profile's ``per_task`` settings for this model's task.

    Example:
        >>> s = training_settings("unet", "quick", epochs=3)
        >>> s.task, s.size, s.epochs, s.model_kwargs
        ('seg', 64, 3, {'width_mult': 0.25})
    """
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(MODELS)}")
    kind = model_task(arch)
    if task is not None and kind != task:
        raise ValueError(f"{arch} is a {_TASK_NAMES[kind]}, but this notebook trains {_TASK_NAMES[task]}s: "
                         f"{', '.join(_TASK_MODELS[task])}")
    field_name = "cls_epochs" if kind == "cls" else "seg_epochs"
    prof = get_profile(profile).for_task(kind).replace(**{field_name: epochs}, **overrides)
    _check_profile(prof)
    p = paths(prof)
    return TrainSettings(arch=arch, task=kind, profile=prof,
                         data_dir=Path(data_dir) if data_dir is not None else p.phantom,
                         run_dir=Path(run_dir) if run_dir is not None else p.run(arch),
                         figures_dir=Path(figures_dir) if figures_dir is not None else p.figures,
                         size=input_size(arch, prof), model_kwargs=model_kwargs(arch, prof),
                         epochs=int(getattr(prof, field_name)))


def _check_profile(p: Profile) -> None:
    checks = {"folds": p.folds >= 1, "search_trials": p.search_trials >= 0, "expand": p.expand >= 1,
              "batch_size": p.batch_size >= 2, "lr": p.lr > 0, "weight_decay": p.weight_decay >= 0,
              "cls_epochs": p.cls_epochs >= 1, "seg_epochs": p.seg_epochs >= 1, "patience": p.patience >= 1,
              "holdout_fraction": 0 < p.holdout_fraction < 1,
              "colour_jitter": 0 <= p.colour_jitter < 1}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid training setting(s): {', '.join(f'{k}={getattr(p, k)!r}' for k in bad)}")


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

    from .data import load_image, load_mask

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


def random_affine(rng: np.random.Generator, rotation_deg: float, zoom: float = 0.0, flip: bool = True) -> dict:
    """Draw augmentation parameters: rotation angle (degrees), zoom scale, horizontal and vertical flips.

    Example:
        >>> sorted(random_affine(np.random.default_rng(0), 20.0, 0.1))
        ['angle', 'hflip', 'scale', 'vflip']
    """
    return {"angle": float(rng.uniform(-rotation_deg, rotation_deg)) if rotation_deg else 0.0,
            "scale": float(rng.uniform(1.0 - zoom, 1.0 + zoom)) if zoom else 1.0,
            "hflip": bool(flip and rng.random() < 0.5), "vflip": bool(flip and rng.random() < 0.5)}


def apply_affine(image: torch.Tensor, mask: torch.Tensor | None, angle: float = 0.0, scale: float = 1.0,
                 hflip: bool = False, vflip: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate/zoom/flip an image (bilinear) and its mask (nearest) with the same transform.

    Pixels moved in from outside the frame are black (image) and background (mask); the identity transform
    returns the input unchanged.

    Args:
        image: float (C, H, W).
        mask: float (1, H, W) or None.
        angle: rotation in degrees (counter-clockwise).
        scale: zoom factor (> 1 magnifies).
        hflip, vflip: mirror left-right / top-bottom.

    Example:
        >>> img = torch.arange(16.).view(1, 4, 4)
        >>> torch.equal(apply_affine(img, None, hflip=True)[0], img.flip(-1))
        True
    """
    a = math.radians(angle)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float32)
    flips = torch.diag(torch.tensor([-1.0 if hflip else 1.0, -1.0 if vflip else 1.0]))
    theta = torch.zeros(1, 2, 3)
    theta[0, :, :2] = flips @ rot / scale
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    out = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if mask is None:
        return out, None
    out_mask = F.grid_sample(mask[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return out, out_mask


def colour_jitter(image: torch.Tensor, rng: np.random.Generator, amount: float) -> torch.Tensor:
    """Multiply a float image (3, H, W) in [0, 1] by random per-channel gains (white balance) and a brightness
    factor, each uniform in [1 - amount, 1 + amount]; clip to [0, 1]. Masks are not touched.

    Example:
        >>> x = torch.full((3, 2, 2), 0.5)
        >>> y = colour_jitter(x, np.random.default_rng(0), 0.1)
        >>> bool(((y - 0.5).abs() <= 0.5 * (1.1 * 1.1 - 1) + 1e-6).all())
        True
    """
    gains = rng.uniform(1 - amount, 1 + amount, 3) * rng.uniform(1 - amount, 1 + amount)
    return (image * torch.as_tensor(gains, dtype=image.dtype).view(3, 1, 1)).clamp_(0.0, 1.0)


class FrameDataset(Dataset):
    """A torch Dataset over a :class:`FrameSet`: normalised image tensors and targets, optionally augmented.

    Item ``i`` is frame ``i % len(frames)`` (``expand`` copies of every frame). Augmentation parameters are
    drawn from a generator seeded by ``(seed, epoch, i)``, so an epoch is reproducible on its own (which makes
    resuming exact); call :meth:`set_epoch` before each epoch.

    Args:
        frames: preloaded frames.
        task: ``"cls"`` (target: float label) or ``"seg"`` (target: float mask (1, S, S)).
        augment: apply random rotation and flips (and zoom if ``zoom > 0``).
        expand: copies of each frame per epoch.
        rotation_deg: rotation range in degrees.
        zoom: zoom range (scale in [1 - zoom, 1 + zoom]).
        colour_jitter: image-only colour augmentation: per-channel gains and a brightness factor, each uniform
            in [1 - colour_jitter, 1 + colour_jitter], clipped to [0, 1] (0 = off).
        seed: augmentation seed.

    Example:
        >>> fs = FrameSet(np.array(["a"]), np.array(["p"]), np.array([1]), np.zeros((1, 8, 8, 3), np.uint8),
        ...               np.zeros((1, 8, 8), np.uint8))
        >>> x, y = FrameDataset(fs, "seg", augment=True, expand=3)[2]
        >>> len(FrameDataset(fs, "seg", expand=3)), tuple(x.shape), tuple(y.shape)
        (3, (3, 8, 8), (1, 8, 8))
    """

    def __init__(self, frames: FrameSet, task: str, augment: bool = False, expand: int = 1,
                 rotation_deg: float = 0.0, zoom: float = 0.0, colour_jitter: float = 0.0, seed: int = 0):
        if task not in ("cls", "seg"):
            raise ValueError(f"task must be 'cls' or 'seg', got {task!r}")
        if task == "seg" and frames.masks is None:
            raise ValueError("a segmentation dataset needs masks (load_frames(..., masks=True))")
        self.frames, self.task, self.augment, self.expand = frames, task, augment, int(expand)
        if not 0 <= colour_jitter < 1:
            raise ValueError(f"colour_jitter must be in [0, 1), got {colour_jitter}")
        self.rotation_deg, self.zoom, self.seed, self.epoch = rotation_deg, zoom, seed, 0
        self.colour_jitter = float(colour_jitter)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.frames) * self.expand

    def __getitem__(self, i: int):
        j = i % len(self.frames)
        image = _to_tensor(self.frames.images[j])
        mask = torch.from_numpy(self.frames.masks[j]).float()[None] if self.task == "seg" else None
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, mask = apply_affine(image, mask, **random_affine(rng, self.rotation_deg, self.zoom))
            if self.colour_jitter:
                image = colour_jitter(image, rng, self.colour_jitter)
        target = mask if self.task == "seg" else torch.tensor(float(self.frames.labels[j]))
        return normalise(image), target


# ---------------------------------------------------------------------------------------------------- losses
def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dice loss of the paper's Eq. 1: ``1 - 2 sum(y * p) / (sum(y + p) + eps)``.

    The sums run over every pixel of the batch (with one image this is Eq. 1 exactly); so frames without
    tissue, when included, still push their predicted area down.

    Args:
        probs: predicted probabilities (N, 1, H, W) (the sigmoid of the logits).
        target: ground truth in {0, 1}, same shape.
        eps: the epsilon of Eq. 1.

    Example:
        >>> p = torch.tensor([[[[0.5, 1.0], [0.0, 0.0]]]]); y = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
        >>> round(float(dice_loss(p, y, eps=0.0)), 4)   # 1 - 2 * 1.5 / (2 + 1.5)
        0.1429
    """
    if probs.shape != target.shape:
        raise ValueError(f"dice_loss: probs and target shapes differ: {tuple(probs.shape)} vs {tuple(target.shape)}")
    inter = (probs * target).sum()
    return 1.0 - 2.0 * inter / ((probs + target).sum() + eps)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits (mean over the batch)."""
    return F.binary_cross_entropy_with_logits(logits, target)


def _forward(model: torch.nn.Module, x: torch.Tensor, task: str) -> torch.Tensor:
    """Logits (N,) for classifiers, (N, 1, S, S) for segmenters."""
    out = model(x)
    if task == "cls":
        return out.reshape(out.shape[0])
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def _batch_loss(logits: torch.Tensor, target: torch.Tensor, task: str, eps: float) -> torch.Tensor:
    return bce_loss(logits, target) if task == "cls" else dice_loss(torch.sigmoid(logits), target, eps)


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


# ------------------------------------------------------------------------------------------------ prediction
@torch.no_grad()
def predict(model: torch.nn.Module, frames: FrameSet, task: str, batch_size: int = 64) -> np.ndarray:
    """Probabilities for every frame: float32 (N,) for classifiers, float32 (N, S, S) for segmenters."""
    model.eval()
    out = []
    for start in range(0, len(frames), batch_size):
        x = normalise(_to_tensor(frames.images[start:start + batch_size]))
        logits = _forward(model, x, task)
        out.append(torch.sigmoid(logits if task == "cls" else logits[:, 0]).numpy().astype(np.float32))
    size = frames.images.shape[1]
    return np.concatenate(out) if out else np.zeros((0,) if task == "cls" else (0, size, size), np.float32)


def _seg_dsc(probs: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """Per-frame DSC of thresholded probabilities (both empty = 1)."""
    from .metrics import dice, seg_counts

    c = seg_counts(probs >= threshold, masks.astype(bool))
    return dice(c.tp, c.fp, c.fn, empty=1.0)


@torch.no_grad()
def _evaluate(model, frames: FrameSet, task: str, p: Profile) -> tuple[float, float]:
    """Validation loss (BCE mean over frames, or Dice loss over all pixels of the set) and metric
    (AUROC, or mean per-frame DSC)."""
    from .metrics import auroc

    probs = predict(model, frames, task, p.eval_batch_size)
    if task == "cls":
        y = torch.from_numpy(frames.labels.astype(np.float32))
        pr = torch.from_numpy(probs).double().clamp(1e-7, 1 - 1e-7)
        loss = float(F.binary_cross_entropy(pr, y.double()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric = auroc(frames.labels, probs) if len(np.unique(frames.labels)) == 2 else float("nan")
        return loss, float(metric)
    pt, yt = torch.from_numpy(probs).double(), torch.from_numpy(frames.masks).double()
    loss = float(dice_loss(pt, yt, p.dice_eps))
    return loss, float(_seg_dsc(probs, frames.masks, p.threshold).mean())


# ----------------------------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def _save_checkpoint(state: dict, path: Path) -> None:
    """Atomic write: a half-written checkpoint never replaces a good one."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _clone(sd: dict) -> dict:
    return {k: v.detach().clone() for k, v in sd.items()}


def _fingerprint(settings: TrainSettings, index: pd.DataFrame) -> str:
    """What must match for a checkpoint to be resumed (everything that changes results; not the thread count)."""
    prof = {k: v for k, v in settings.profile.to_dict().items() if k not in ("num_threads",)}
    cols = index[["frame_id", "patient_id", "split", "has_tissue"]].astype(str)
    blob = json.dumps({"arch": settings.arch, "profile": prof, "size": settings.size,
                       "model_kwargs": settings.model_kwargs, "epochs": settings.epochs,
                       "index": hashlib.sha256(cols.to_csv(index=False).encode()).hexdigest()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ the loop
def _unit_seed(seed: int, trial: int, fold: int) -> int:
    return int(np.random.default_rng([seed, trial, fold + 1]).integers(2**31 - 1))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches; a trailing batch of one item joins the previous one (BatchNorm needs two)."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] += batches.pop()
    return batches


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the last good checkpoint was kept."""


class _Run:
    """One training run: search units (trial, fold), the final model, checkpointing after every epoch."""

    def __init__(self, settings: TrainSettings, progress: bool, on_epoch_end: Callable | None):
        self.s, self.p = settings, settings.profile
        self.progress, self.on_epoch_end = progress, on_epoch_end
        self.ckpt = settings.run_dir / RUN_FILES["resume"]
        self.state: dict = {}

    # ---- checkpoint
    def save(self) -> None:
        self.state["rng"] = _rng_state()
        _save_checkpoint(self.state, self.ckpt)

    def load_or_start(self, fingerprint: str, resume: bool) -> bool:
        """Load ``resume.pt`` when it matches these settings; returns True when resuming."""
        fresh = {"fingerprint": fingerprint, "done": {}, "history": [], "selected": None, "current": None}
        if resume and self.ckpt.exists():
            try:
                state = torch.load(self.ckpt, map_location="cpu", weights_only=True)
            except Exception as e:  # a corrupt checkpoint: say so and start again
                print(f"{self.ckpt}: cannot read the checkpoint ({type(e).__name__}: {e}); starting afresh")
                state = None
            if state is not None and state.get("fingerprint") == fingerprint:
                self.state = state
                return True
            if state is not None:
                print(f"{self.ckpt}: checkpoint was made with other settings or data; starting afresh")
        self.state = fresh
        return False

    # ---- one (trial, fold) unit
    def fit(self, trial: int, fold: int, hp: dict, train: FrameSet, val: FrameSet | None, epochs: int) -> dict:
        """Train one model; early stopping on validation loss (no validation: all ``epochs``, last weights)."""
        s, p = self.s, self.p
        torch.manual_seed(_unit_seed(p.seed, trial, fold))
        model = create_model(s.arch, **s.model_kwargs)
        opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=p.lr_factor,
                                                           patience=p.lr_patience)
        stop = {"best_loss": math.inf, "best_epoch": 0, "best_metric": math.nan, "bad": 0, "stopped": False}
        best, start = None, 1
        cur = self.state.get("current")
        if cur is not None and (cur["trial"], cur["fold"]) == (trial, fold):
            model.load_state_dict(cur["model"])
            opt.load_state_dict(cur["optimizer"])
            sched.load_state_dict(cur["scheduler"])
            stop, best, start = dict(cur["stop"]), cur["best"], cur["epoch"] + 1
            _set_rng_state(self.state["rng"])  # as it was at the end of that epoch (dropout, drop-path)
        ds = FrameDataset(train, s.task, augment=True, expand=p.expand if s.task == "seg" else 1,
                          rotation_deg=p.rotation_deg, zoom=p.zoom if s.task == "cls" else 0.0,
                          colour_jitter=p.colour_jitter,
                          seed=_unit_seed(p.seed, trial, fold))
        from tqdm.auto import tqdm

        label = f"{s.arch} trial {trial} " + ("final" if fold == FINAL_FOLD else f"fold {fold}")
        bar = tqdm(range(start, epochs + 1), desc=label, disable=not self.progress, leave=False,
                   initial=start - 1, total=epochs)
        for epoch in bar:
            if stop["stopped"]:
                break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(model, opt, ds, hp, trial, fold, epoch)
            val_loss, val_metric = _evaluate(model, val, s.task, p) if val is not None else (math.nan, math.nan)
            if val is not None and not math.isfinite(val_loss):
                self._nan_error(trial, fold, epoch, "validation", hp)
            monitor = val_loss if val is not None else train_loss
            lr_now = opt.param_groups[0]["lr"]
            sched.step(monitor)
            if val is None:
                best, stop["best_epoch"] = None, epoch
            elif monitor < stop["best_loss"]:
                stop.update(best_loss=monitor, best_epoch=epoch, best_metric=val_metric, bad=0)
                best = _clone(model.state_dict())
            else:
                stop["bad"] += 1
                stop["stopped"] = stop["bad"] >= p.patience
            row = {"trial": trial, "fold": fold, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "val_metric": val_metric, "lr": lr_now, "seconds": time.perf_counter() - t0}
            self.state["history"].append(row)
            self.state["current"] = {"trial": trial, "fold": fold, "epoch": epoch, "model": model.state_dict(),
                                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                     "stop": dict(stop), "best": best}
            self.save()
            bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", metric=f"{val_metric:.3f}")
            if self.on_epoch_end is not None:
                self.on_epoch_end(dict(row))
        bar.close()
        weights = best if val is not None else _clone(model.state_dict())
        return {"trial": trial, "fold": fold, "best_epoch": stop["best_epoch"],
                "best_val_loss": stop["best_loss"] if val is not None else math.nan,
                "best_val_metric": stop["best_metric"], "weights": weights}

    def _train_epoch(self, model, opt, ds: FrameDataset, hp: dict, trial: int, fold: int, epoch: int) -> float:
        from tqdm.auto import tqdm

        ds.set_epoch(epoch)
        gen = torch.Generator().manual_seed(_unit_seed(self.p.seed, trial, fold) + epoch)
        loader = DataLoader(ds, batch_sampler=_batches(len(ds), hp["batch_size"], gen), num_workers=0)
        model.train()
        total, n = 0.0, 0
        for b, (x, y) in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=not self.progress, leave=False)):
            loss = _batch_loss(_forward(model, x, self.s.task), y, self.s.task, self.p.dice_eps)
            if not torch.isfinite(loss):
                self._nan_error(trial, fold, epoch, f"training (batch {b})", hp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
            n += len(x)
        return total / max(n, 1)

    def _nan_error(self, trial, fold, epoch, where, hp) -> None:
        cur = self.state.get("current")
        if not self.ckpt.exists():
            kept = f"no epoch had finished, so there is no checkpoint in {self.ckpt}"
        elif cur is not None:
            kept = (f"the last good checkpoint (trial {cur['trial']}, fold {cur['fold']}, epoch {cur['epoch']}) is "
                    f"kept in {self.ckpt}")
        else:
            kept = (f"the last good checkpoint (after {len(self.state['done'])} finished training(s)) is kept in "
                    f"{self.ckpt}")
        raise NonFiniteLossError(
            f"{self.s.arch}: non-finite {where} loss at trial {trial}, fold {fold}, epoch {epoch} "
            f"(lr {hp['lr']:g}, batch size {hp['batch_size']}, weight decay {hp['weight_decay']:g}); training "
            f"stopped and {kept}. Lower the learning rate (parameter lr) and run again with resume=False.")


# ---------------------------------------------------------------------------------------------- top level
@dataclass
class TrainResult:
    """What :func:`train_model` returns (also on disk in ``run_dir``).

    Attributes:
        settings: the run's settings.
        config: the saved ``config.json``.
        history: per-epoch history (``history.csv``).
        trials: one row per search trial: hyperparameters, mean validation loss/metric, mean best epoch, chosen.
        folds: the fold table (patients and frames per fold and part).
        test_summary: the headline test metric (``test_summary.json``).
        figure: path of the learning-curve PNG.
        seconds: wall time of this call.
    """

    settings: TrainSettings
    config: dict
    history: pd.DataFrame
    trials: pd.DataFrame
    folds: pd.DataFrame
    test_summary: dict
    figure: Path
    seconds: float

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    @property
    def final_model(self) -> str:
        return self.config["final_model"]["description"]

    def headline(self, digits: int = 2) -> str:
        """The printed test result, e.g. ``unet: test DSC 0.81 (mean over 24 test frames with tissue)``."""
        t = self.test_summary
        if t["metric"] == "auroc":
            return (f"{t['model']}: test AUROC {t['auroc']:.{digits}f} ({t['n_test_frames']} test frames, "
                    f"{t['n_test_positive']} with tissue)")
        return (f"{t['model']}: test DSC {t['dsc']:.{digits}f} (mean over the {t['n_test_positive']} test frames "
                f"with tissue; predictions saved for all {t['n_test_frames']})")

    def chosen(self, digits: int = 2) -> pd.DataFrame:
        """The search table for display: hyperparameters (3 significant digits), mean validation loss and
        metric rounded to ``digits``, mean best epoch, and the chosen flag."""
        df = self.trials.copy()
        for col in ("lr", "weight_decay"):
            df[col] = [float(f"{v:.3g}") for v in df[col]]
        return df.round({"mean_val_loss": digits, "mean_val_metric": digits, "mean_best_epoch": 1})


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
        train = train.sample(n=int(cap), random_state=settings.seed).sort_values("frame_id")
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


def _trials_table(done: dict, trials: list[dict], task: str) -> pd.DataFrame:
    rows = []
    for t, hp in enumerate(trials):
        units = [u for u in done.values() if u["trial"] == t and u["fold"] != FINAL_FOLD]
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


def train_model(settings: TrainSettings, resume: bool = True, progress: bool = True,
                on_epoch_end: Callable[[dict], None] | None = None) -> TrainResult:
    """Run the whole protocol for one model and write the run folder (docs/layout.md).

    Args:
        settings: from :func:`training_settings`.
        resume: continue from ``run_dir/resume.pt`` when it exists and matches the settings and data
            (False: start afresh and overwrite it).
        progress: tqdm bars for loading, epochs and batches.
        on_epoch_end: called with the history row after every epoch, once the checkpoint is written
            (e.g. to stop a run in a test; an exception raised there interrupts the run like a kill would).

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: empty training/test split, too few patients for the folds, a fold without positives.
        NonFiniteLossError: a NaN/inf loss (the last good checkpoint ``resume.pt`` is kept).
    """
    from .data import load_index

    t_start = time.perf_counter()
    s, p = settings, settings.profile
    if p.num_threads:
        torch.set_num_threads(int(p.num_threads))
    seed_everything(p.seed)
    index = load_index(s.data_dir)
    train_rows, test_rows = _select_rows(index, s)
    use = _task_mask(train_rows, s)
    splits = patient_folds(train_rows["patient_id"], train_rows["has_tissue"], p.folds, p.seed, p.holdout_fraction)
    _check_folds(splits, train_rows, use, s)
    folds_df = fold_table(train_rows["patient_id"], train_rows["has_tissue"], splits, use)
    trials = sample_trials(p)

    s.run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(s, progress, on_epoch_end)
    resumed = run.load_or_start(_fingerprint(s, index), resume)
    if resumed:
        done = len(run.state["done"])
        print(f"resuming {s.arch} from {run.ckpt}: {done} finished training(s), "
              f"{len(run.state['history'])} epochs in the history")

    pool = np.flatnonzero(use)
    frames = load_frames(s.data_dir, train_rows.iloc[pool], s.size, masks=s.task == "seg", progress=progress)
    pos_in_pool = {int(i): k for k, i in enumerate(pool)}

    def part(idx):
        return frames.subset([pos_in_pool[int(i)] for i in idx if use[i]])

    for t, hp in enumerate(trials):
        for k, (tr, va) in enumerate(splits):
            key = f"{t}:{k}"
            if key in run.state["done"]:
                continue
            unit = run.fit(t, k, hp, part(tr), part(va), s.epochs)
            weights = unit.pop("weights")
            run.state["done"][key] = unit
            sel = run.state["selected"]
            if p.folds == 1 and (sel is None or _better(unit, sel["unit"], s.task)):
                run.state["selected"] = {"unit": unit, "weights": weights}
            run.state["current"] = None
            run.save()

    trials_df = _trials_table(run.state["done"], trials, s.task)
    chosen = int(trials_df.index[trials_df["chosen"]][0])
    if p.folds > 1:
        final_epochs = max(1, int(round(trials_df.loc[chosen, "mean_best_epoch"])))
        key = f"{chosen}:{FINAL_FOLD}"
        if key not in run.state["done"]:
            unit = run.fit(chosen, FINAL_FOLD, trials[chosen], frames, None, final_epochs)
            run.state["final_weights"] = unit.pop("weights")
            run.state["done"][key] = unit
            run.state["current"] = None
            run.save()
        weights = run.state["final_weights"]
        final = {"method": "retrain_all",
                 "description": f"retrained on all {len(frames)} training frames ({len(set(frames.patient_ids))} "
                                f"patients) with trial {chosen}'s hyperparameters for {final_epochs} epochs (the "
                                f"mean best epoch over its {p.folds} validation folds); no validation data, the "
                                f"learning-rate schedule follows the training loss",
                 "trial": chosen, "epochs": final_epochs}
    else:
        sel = run.state["selected"]["unit"]
        weights = run.state["selected"]["weights"]
        val_pats = sorted(set(train_rows["patient_id"].astype(str).to_numpy()[splits[0][1]]))
        final = {"method": "holdout_best",
                 "description": f"the hold-out-selected model: trial {sel['trial']} at its best validation epoch "
                                f"{sel['best_epoch']} (lowest validation loss), trained on the training patients "
                                f"except the {len(val_pats)} held-out validation patient(s) {', '.join(val_pats)}",
                 "trial": int(sel["trial"]), "epochs": int(sel["best_epoch"])}

    model = create_model(s.arch, **s.model_kwargs)
    model.load_state_dict(weights)
    result = _finish(s, model, run, trials_df, folds_df, final, test_rows, index, progress)
    run.ckpt.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - t_start
    return result


def _better(unit: dict, other: dict, task: str) -> bool:
    """Is ``unit`` a better hold-out result than ``other`` under the selection rule (strictly)?"""
    if task == "cls":
        return unit["best_val_loss"] < other["best_val_loss"]
    a, b = unit["best_val_metric"], other["best_val_metric"]
    return (a if np.isfinite(a) else -np.inf) > (b if np.isfinite(b) else -np.inf)


def _finish(s: TrainSettings, model, run: _Run, trials_df, folds_df, final: dict, test_rows: pd.DataFrame,
            index: pd.DataFrame, progress: bool) -> TrainResult:
    """Write weights, config, history, environment, test predictions, summary and the learning curve."""
    from safetensors.torch import save_file

    from .metrics import auroc, quantise

    p = s.profile
    history = pd.DataFrame(run.state["history"], columns=HISTORY_COLUMNS)
    history.to_csv(s.run_dir / RUN_FILES["history"], index=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(s.run_dir / RUN_FILES["weights"]))

    test = load_frames(s.data_dir, test_rows, s.size, masks=s.task == "seg", progress=progress)
    probs = predict(model, test, s.task, p.eval_batch_size)
    ids = test.frame_ids
    if s.task == "cls":
        stored = probs.astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = auroc(test.labels, stored)
        summary = {"metric": "auroc", "auroc": round(float(value), 6)}
    else:
        stored = quantise(probs)
        pos = test.labels.astype(bool)
        dsc = _seg_dsc(stored.astype(np.float64) / 255.0, test.masks, p.threshold)
        summary = {"metric": "dsc", "dsc": round(float(dsc[pos].mean()), 6) if pos.any() else math.nan,
                   "dsc_definition": f"mean per-frame DSC over the {int(pos.sum())} test frames with tissue, "
                                     f"probability >= {p.threshold}, at {s.size}x{s.size}"}
    summary.update({"model": s.arch, "task": s.task, "profile": p.name, "n_test_frames": int(len(ids)),
                    "n_test_positive": int(test.labels.sum()), "input_size": s.size})
    np.savez_compressed(s.run_dir / RUN_FILES["predictions"], frame_ids=ids.astype(str), probs=stored,
                        size=np.int64(s.size), task=np.array(s.task))
    save_json(summary, s.run_dir / RUN_FILES["summary"])
    save_json(environment(), s.run_dir / RUN_FILES["environment"])

    chosen = trials_df[trials_df["chosen"]].iloc[0]
    config = {**s.to_dict(),
              "chosen_hyperparameters": {"lr": float(chosen["lr"]), "batch_size": int(chosen["batch_size"]),
                                         "weight_decay": float(chosen["weight_decay"])},
              "selection_rule": "lowest mean validation loss" if s.task == "cls" else "highest mean validation DSC",
              "final_model": final, "trials": trials_df.to_dict(orient="records"),
              "folds": folds_df.to_dict(orient="records"),
              "n_train_frames": int(folds_df.query("fold == 0")["frames"].sum()),
              "test_frame_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
              "loss": "binary cross-entropy" if s.task == "cls" else "Dice loss, paper Eq. 1 (sums over the batch)",
              "files": dict(RUN_FILES)}
    save_json(config, s.run_dir / RUN_FILES["config"])
    fig = plot_run_learning_curve(history, config)
    from .plotting import save_figure

    png = save_figure(fig, f"learning_curve_{s.arch}", s.figures_dir)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return TrainResult(s, json.loads((s.run_dir / RUN_FILES["config"]).read_text()), history, trials_df,
                       folds_df, summary, png, 0.0)


def plot_run_learning_curve(history: pd.DataFrame, config: dict):
    """:func:`plot_learning_curve` of a run from its ``history.csv`` and ``config.json``: the chosen trial, and
    the final model's epoch marked when it was selected on the hold-out (training and ``make figures`` both
    draw it this way)."""
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

    from .plotting import PALETTE, paper_style

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


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """The trained model (eval mode) and ``config.json`` of a finished run folder.

    Example:
        >>> model, cfg = load_run("runs/quick/unet")    # doctest: +SKIP
        >>> cfg["input_size"]                          # doctest: +SKIP
        64
    """
    from .models import load_weights
    from .repro import load_json

    run_dir = Path(run_dir)
    cfg_path = run_dir / RUN_FILES["config"]
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: no finished training run here; train it with notebook "
                                f"02/03 (`python -m endolib run --only 02 03`)")
    cfg = load_json(cfg_path)
    model = create_model(cfg["arch"], **cfg["model_kwargs"])
    load_weights(model, run_dir / RUN_FILES["weights"], strict=True)
    return model.eval(), cfg
