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

* **Training seeds**: every model is trained once per training seed (``profile.training_seeds``); the seed
  changes initialisation, batch order and augmentation. Splits, folds, search trials and the test set use the
  data seed ``profile.seed`` and are the same for every training seed.

**Units.** One *unit* is one training: model x training seed x trial x fold, or the final retraining
(``fold = FINAL_FOLD``). :func:`train_unit` is a plain function of its inputs; its torch seed comes from
(training seed, model, trial, fold) only, it checkpoints ``resume.pt`` in its folder after every epoch and writes
its record atomically, so a finished unit is never recomputed and an interrupted one continues where it stopped
(ending with the same weights as an uninterrupted run). :func:`train_model` (one seed) runs the units in order,
then :func:`finish_run` (choose the trial, predict the test set, write the run files); :func:`train_seeds` does
that for every seed of a model; ``endolib.distributed`` submits the same units to Dask.

Layout (``docs/layout.md``): ``runs/<profile>/<model>/seed<s>/`` holds one run (config.json, model.safetensors,
history.csv, environment.json, predictions.npz, test_summary.json) and ``units/t<trial>_f<fold>/`` (or
``t<trial>_final``) with each unit's ``unit.json``, ``weights.safetensors`` (where needed) and ``resume.pt``
while it runs.

Example:
    >>> s = training_settings("unet", "smoke", data_dir="data/smoke/phantom")   # doctest: +SKIP
    >>> result = train_seeds(s)                                                # doctest: +SKIP
    >>> print(result.headline())                                               # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import functools
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

from .config import CLASSIFIERS, MODELS, SEARCH_SPACE, SEGMENTERS, Profile, get_profile, paths, require
from .models import create_model, input_size, model_kwargs, model_task
from .repro import environment

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "FINAL_FOLD", "TrainSettings", "training_settings", "FrameSet",
    "load_frames", "normalise", "random_affine", "apply_affine", "colour_jitter", "FrameDataset", "dice_loss",
    "bce_loss",
    "patient_folds", "fold_table", "sample_trials", "train_model", "TrainResult", "predict", "load_run",
    "plot_learning_curve", "plot_run_learning_curve", "TrainingData", "prepare_data", "train_unit", "unit_dir",
    "unit_name", "search_units", "load_unit", "unit_fingerprint", "final_unit", "train_final_unit", "finish_run", "train_seeds",
    "SeedResults", "save_learning_curves", "load_learning_curves", "plot_seed_learning_curves", "study_units",
    "bench_epoch", "distillation_loss", "student_name", "student_settings", "train_students",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``fold`` value of the final retraining on all training frames in ``history.csv`` (folds > 1 only).
FINAL_FOLD = -1
#: File names inside a run folder (docs/layout.md).
RUN_FILES = {"config": "config.json", "weights": "model.safetensors", "resume": "units/<unit>/resume.pt",
             "history": "history.csv", "environment": "environment.json", "predictions": "predictions.npz",
             "summary": "test_summary.json"}
HISTORY_COLUMNS = ["trial", "fold", "epoch", "train_loss", "val_loss", "val_metric", "lr", "seconds"]
TRIAL_COLUMNS = ("trial", "lr", "batch_size", "weight_decay", "mean_val_loss", "mean_val_metric", "mean_best_epoch",
                 "chosen")
_TASK_MODELS = {"cls": CLASSIFIERS, "seg": SEGMENTERS}
_TASK_NAMES = {"cls": "classifier", "seg": "segmenter"}


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run (one model, one training seed) needs; built by :func:`training_settings`.

    Attributes:
        arch: registry name.
        task: ``"cls"`` or ``"seg"``.
        profile: the profile with the notebook's overrides applied (``profile.seed`` is the data seed).
        data_dir: the prepared dataset.
        model_dir: the model's folder ``runs/<profile>/<arch>/``; the run is ``model_dir/seed<training_seed>``.
        figures_dir: where the learning-curve figure goes.
        size: model input side in pixels.
        model_kwargs: keyword arguments of :func:`endolib.models.create_model`.
        epochs: maximum epochs per training (``cls_epochs`` or ``seg_epochs``).
        training_seed: this run's training seed (initialisation, batch order, augmentation).
        teacher: a finished run folder of a segmenter whose probabilities this model learns from as well
            (knowledge distillation, :func:`distillation_loss` with ``profile.kd_alpha``); None: ground truth only.
    """

    arch: str
    task: str
    profile: Profile
    data_dir: Path
    model_dir: Path
    figures_dir: Path
    size: int
    model_kwargs: dict
    epochs: int
    training_seed: int
    teacher: Path | None = None

    @property
    def seed(self) -> int:
        """The training seed (the data seed is ``profile.seed``)."""
        return self.training_seed

    @property
    def data_seed(self) -> int:
        return self.profile.seed

    @property
    def run_dir(self) -> Path:
        """``model_dir/seed<training_seed>``: this run's files (docs/layout.md)."""
        return self.model_dir / f"seed{int(self.training_seed)}"

    @property
    def seeds(self) -> tuple[int, ...]:
        """The profile's training seeds (``profile.training_seeds``)."""
        return self.profile.training_seeds

    def for_seed(self, training_seed: int) -> "TrainSettings":
        """The same settings for another training seed."""
        return dataclasses.replace(self, training_seed=int(training_seed))

    def to_dict(self) -> dict:
        return {"arch": self.arch, "task": self.task, "profile": self.profile.to_dict(),
                "data_dir": str(self.data_dir), "run_dir": str(self.run_dir), "input_size": self.size,
                "model_kwargs": dict(self.model_kwargs), "epochs": self.epochs, "seed": self.training_seed,
                "training_seed": self.training_seed, "data_seed": self.data_seed,
                **({"teacher": str(self.teacher), "kd_alpha": self.profile.kd_alpha} if self.teacher else {})}

    def describe(self, seeds: tuple[int, ...] | None = None) -> str:
        """A few lines for the notebook: what will be trained, how (``seeds``: the training seeds to run)."""
        p = self.profile
        seeds = tuple(seeds) if seeds is not None else (self.training_seed,)
        search = f"random search, {p.search_trials} trials" if p.search_trials else "no search (profile values)"
        val = (f"{p.folds}-fold patient-grouped CV" if p.folds > 1
               else f"patient-grouped hold-out ({p.holdout_fraction:.0%} of training patients)")
        data = ("all training frames" if self.task == "cls" else
                "training frames with tissue" + (" and without" if p.include_negatives else "")
                + f", expanded {p.expand}x")
        loss = ("binary cross-entropy" if self.task == "cls" else "Dice loss (Eq. 1)" if self.teacher is None else
                f"distillation from {self.teacher}: {p.kd_alpha:g} x Dice loss (Eq. 1) + {1 - p.kd_alpha:g} x BCE "
                f"against the teacher's probabilities (not in the paper)")
        return "\n".join([
            f"model:        {self.arch} ({_TASK_NAMES[self.task]}), input {self.size}x{self.size}, "
            f"kwargs {self.model_kwargs}",
            f"profile:      {p.name}, data seed {p.seed} (split, folds, test set)",
            f"seeds:        training seed(s) {', '.join(map(str, seeds))} (initialisation, batch order, "
            f"augmentation); one run folder each: seed<s>/",
            f"device:       {p.device}, mixed precision {p.amp}, threads {p.num_threads or 'all cores'}",
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
                      model_dir: str | Path | None = None, figures_dir: str | Path | None = None,
                      epochs: int | None = None, task: str | None = None, training_seed: int | None = None,
                      **overrides) -> TrainSettings:
    """Resolve a notebook's parameters into :class:`TrainSettings`.

    Args:
        arch: registry name (``resnet18`` ... ``segformer_b1``).
        profile: ``smoke``, ``quick``, ``paper`` or a Profile.
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        model_dir: the model's folder, holding one ``seed<s>/`` run per training seed
            (default ``paths(profile).run(arch)``).
        figures_dir: figure folder (default ``paths(profile).figures``).
        epochs: overrides ``cls_epochs`` or ``seg_epochs`` (whichever the model uses).
        task: if given (``"cls"``/``"seg"``), require ``arch`` to be of that kind (a notebook trains one kind).
        training_seed: the run's training seed (default: the first of ``profile.training_seeds``).
        **overrides: any Profile field (``lr``, ``batch_size``, ``weight_decay``, ``folds``, ``search_trials``,
            ``include_negatives``, ``seed`` (the data seed), ``seeds``, ``device``, ``amp``, ...); None values
            are ignored. They are applied after the profile's ``per_task`` settings for this model's task.

    Example:
        >>> s = training_settings("unet", "quick", epochs=3)
        >>> s.task, s.size, s.epochs, s.model_kwargs, s.training_seed, s.run_dir.name
        ('seg', 64, 3, {'width_mult': 0.25}, 42, 'seed42')
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
                         model_dir=Path(model_dir) if model_dir is not None else p.run(arch),
                         figures_dir=Path(figures_dir) if figures_dir is not None else p.figures,
                         size=input_size(arch, prof), model_kwargs=model_kwargs(arch, prof),
                         epochs=int(getattr(prof, field_name)),
                         training_seed=int(training_seed) if training_seed is not None else prof.training_seeds[0])

def student_name(teacher: str, width: float) -> str:
    """Model folder name of a distilled student: ``<teacher>_w<width>`` (width relative to the teacher).

    Example:
        >>> student_name("unet", 0.5)
        'unet_w0.5'
    """
    return f"{teacher}_w{float(width):g}"


def student_settings(width: float, profile: str | Profile = "smoke", teacher: str = "unet",
                     training_seed: int | None = None, data_dir: str | Path | None = None,
                     teacher_run: str | Path | None = None, **overrides) -> TrainSettings:
    """Settings of a knowledge-distilled student: the teacher's architecture at ``width`` times its width,
    trained by the one training loop on the teacher's data and protocol, with the loss
    :func:`distillation_loss` against the teacher run of the same training seed. The run folder is
    ``runs/<profile>/<teacher>_w<width>/seed<s>/`` (:func:`student_name`).

    Args:
        width: the student's channel width relative to the teacher, in (0, 1].
        profile, training_seed, data_dir, **overrides: see :func:`training_settings` (``epochs`` defaults to the
            profile's ``student_epochs``).
        teacher: a U-Net-family segmenter (its run of ``training_seed`` must be finished to train).
        teacher_run: the teacher's run folder, if not ``runs/<profile>/<teacher>/seed<training_seed>/``.

    Example:
        >>> s = student_settings(0.5, "quick")
        >>> s.arch, s.model_kwargs, s.run_dir.parent.name, s.teacher.parent.name
        ('unet', {'width_mult': 0.125}, 'unet_w0.5', 'unet')
    """
    if teacher not in _TASK_MODELS["seg"] or teacher.startswith("segformer"):
        raise ValueError(f"teacher must be a U-Net-family segmenter "
                         f"({', '.join(m for m in _TASK_MODELS['seg'] if not m.startswith('segformer'))}), "
                         f"got {teacher!r}")
    if not 0.0 < float(width) <= 1.0:
        raise ValueError(f"width must be in (0, 1] (relative to the teacher), got {width}")
    overrides.setdefault("epochs", get_profile(profile).student_epochs)
    t = training_settings(teacher, profile, data_dir=data_dir, training_seed=training_seed, task="seg", **overrides)
    teacher_run = Path(teacher_run) if teacher_run is not None else t.run_dir
    cfg = teacher_run / RUN_FILES["config"]  # the teacher's own width, once it is trained (else the profile's)
    base = json.loads(cfg.read_text()).get("model_kwargs", t.model_kwargs) if cfg.is_file() else t.model_kwargs
    kwargs = {**base, "width_mult": float(base["width_mult"]) * float(width)}
    return dataclasses.replace(t, model_dir=t.model_dir.parent / student_name(teacher, width), model_kwargs=kwargs,
                               teacher=teacher_run)


def train_students(profile: str | Profile = "smoke", widths=None, teacher: str = "unet",
                   training_seed: int | None = None, data_dir: str | Path | None = None,
                   teacher_run: str | Path | None = None, progress: bool = True) -> list[TrainResult]:
    """Train (or load, when finished with the same settings) the distilled students of one teacher run:
    one :func:`train_model` per width of ``profile.student_widths`` (or ``widths``).

    Raises:
        FileNotFoundError: the teacher run is not finished (names the command that trains it).
    """
    base = student_settings(1.0, profile, teacher, training_seed, data_dir, teacher_run)
    require(base.teacher / RUN_FILES["config"], f"the teacher run ({teacher}, training seed {base.training_seed})",
            f"python -m endolib run --profile {base.profile.name} --only 03 --arch {teacher}")
    widths = base.profile.student_widths if widths is None else widths
    return [train_model(student_settings(w, profile, teacher, training_seed, data_dir, teacher_run), progress=progress,
                        figure=False) for w in widths]


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


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, target: torch.Tensor,
                      alpha: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """Knowledge-distillation loss of a segmentation student: ``alpha * Dice(sigmoid(s), ground truth) +
    (1 - alpha) * BCE(s, teacher probabilities)`` (soft targets; the teacher's probabilities carry its
    uncertainty at the boundaries, which a smaller student learns faster than from the hard mask alone).
    The training loop uses it for runs with a ``teacher`` (:func:`student_settings`).

    Args:
        student_logits: ``(N, 1, H, W)`` logits.
        teacher_probs: ``(N, 1, H, W)`` teacher probabilities in [0, 1] (no gradient).
        target: ``(N, 1, H, W)`` ground-truth mask (0/1).
        alpha: weight of the ground-truth Dice term, in [0, 1] (``Profile.kd_alpha``).
        eps: Dice epsilon (paper Eq. 1).

    Example:
        >>> s = torch.zeros(1, 1, 4, 4); t = torch.full((1, 1, 4, 4), 0.5); g = torch.ones(1, 1, 4, 4)
        >>> round(float(distillation_loss(s, t, g, alpha=0.0)), 4)  # BCE(0.5, 0.5) = ln 2
        0.6931
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_probs.shape or student_logits.shape != target.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)}, teacher probs {tuple(teacher_probs.shape)}"
                         f" and target {tuple(target.shape)} must have the same shape")
    teacher_probs = teacher_probs.detach().float()
    if teacher_probs.min() < 0 or teacher_probs.max() > 1:
        raise ValueError("teacher_probs must be probabilities in [0, 1] (apply sigmoid to the teacher's logits)")
    hard = dice_loss(torch.sigmoid(student_logits), target.float(), eps)
    soft = F.binary_cross_entropy_with_logits(student_logits, teacher_probs)
    return alpha * hard + (1 - alpha) * soft


def _batch_loss(logits: torch.Tensor, target: torch.Tensor, task: str, eps: float,
                teacher_probs: torch.Tensor | None = None, kd_alpha: float = 0.5) -> torch.Tensor:
    if teacher_probs is not None:
        return distillation_loss(logits, teacher_probs, target, kd_alpha, eps)
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
def predict(model: torch.nn.Module, frames: FrameSet, task: str, batch_size: int = 64,
            device: torch.device | str | None = None, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Probabilities for every frame: float32 (N,) for classifiers, float32 (N, S, S) for segmenters.

    Args:
        model: the model (moved to ``device``).
        frames: preloaded frames.
        task: ``"cls"`` or ``"seg"``.
        batch_size: frames per forward pass.
        device: where to run (default: where the model's parameters are).
        amp_dtype: autocast dtype (None: full precision); see :func:`endolib.device.autocast_dtype`.
    """
    from .device import autocast

    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev).eval()
    out = []
    for start in range(0, len(frames), batch_size):
        x = normalise(_to_tensor(frames.images[start:start + batch_size])).to(dev, non_blocking=True)
        with autocast(dev, amp_dtype):
            logits = _forward(model, x, task)
        probs = torch.sigmoid((logits if task == "cls" else logits[:, 0]).float())
        out.append(probs.cpu().numpy().astype(np.float32))
    size = frames.images.shape[1]
    return np.concatenate(out) if out else np.zeros((0,) if task == "cls" else (0, size, size), np.float32)


def _seg_dsc(probs: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """Per-frame DSC of thresholded probabilities (both empty = 1)."""
    from .metrics import dice, seg_counts

    c = seg_counts(probs >= threshold, masks.astype(bool))
    return dice(c.tp, c.fp, c.fn, empty=1.0)


@torch.no_grad()
def _evaluate(model, frames: FrameSet, task: str, p: Profile, device=None, amp_dtype=None) -> tuple[float, float]:
    """Validation loss (BCE mean over frames, or Dice loss over all pixels of the set) and metric
    (AUROC, or mean per-frame DSC)."""
    from .metrics import auroc

    probs = predict(model, frames, task, p.eval_batch_size, device, amp_dtype)
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
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` through ``write(tmp)`` then ``os.replace``: a half-written file never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def _save_checkpoint(state: dict, path: Path) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def _write_json(obj, path: Path) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))


def _cpu(sd: dict) -> dict:
    """A copy of a state dict on the CPU (checkpoints and weights never depend on the training device)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def _save_weights(sd: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    return _atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in _cpu(sd).items()}, str(tmp)))


#: Profile fields that never change a result (how many seeds exist, where and with how many threads it runs).
_NOT_FINGERPRINTED = ("num_threads", "device", "seeds", "bench_warmup", "bench_repeats", "bench_models",
                      "bench_backends", "n_boot")


@functools.lru_cache(maxsize=None)
def code_fingerprint(module: str = "train") -> str:
    """Hash of the source of ``endolib/<module>.py`` and of every endolib module it imports, transitively
    (relative imports anywhere in the file, read statically, so the set does not depend on what else a process
    has loaded). A finished training unit is reused only with the same training code: after a change to the
    loop, the models or the data loading, ``make paper`` retrains instead of reloading stale weights.

    Example:
        >>> len(code_fingerprint("train"))
        64
    """
    import ast

    pkg = Path(__file__).resolve().parent
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or not (pkg / f"{name}.py").exists():
            continue
        seen.add(name)
        tree = ast.parse((pkg / f"{name}.py").read_text())
        todo += [n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module]
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + (pkg / f"{name}.py").read_bytes() + b"\0")
    return digest.hexdigest()


def _fingerprint(settings: TrainSettings, index: pd.DataFrame) -> str:
    """What must match for a finished unit or a checkpoint to be reused (everything that changes results,
    the training code included: :func:`code_fingerprint`)."""
    prof = {k: v for k, v in settings.profile.to_dict().items() if k not in _NOT_FINGERPRINTED}
    cols = index[["frame_id", "patient_id", "split", "has_tissue"]].astype(str)
    blob = json.dumps({"arch": settings.arch, "profile": prof, "size": settings.size,
                       "model_kwargs": settings.model_kwargs, "epochs": settings.epochs,
                       "training_seed": settings.training_seed, "code": code_fingerprint("train"),
                       "teacher": _teacher_fingerprint(settings.teacher),
                       "index": hashlib.sha256(cols.to_csv(index=False).encode()).hexdigest()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _teacher_fingerprint(teacher: Path | None) -> str | None:
    """sha256 of a teacher run's weights (a retrained teacher retrains its students), None without a teacher."""
    if teacher is None:
        return None
    weights = Path(teacher) / RUN_FILES["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: the teacher's weights are missing; train the teacher first "
                                f"(`python -m endolib run --only 03 --arch {Path(teacher).parent.name}`)")
    return hashlib.sha256(weights.read_bytes()).hexdigest()


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
    from .data import load_index

    s, p = settings, settings.profile
    index = load_index(s.data_dir)
    train_rows, test_rows = _select_rows(index, s)
    use = _task_mask(train_rows, s)
    splits = patient_folds(train_rows["patient_id"], train_rows["has_tissue"], p.folds, p.seed, p.holdout_fraction)
    _check_folds(splits, train_rows, use, s)
    folds_df = fold_table(train_rows["patient_id"], train_rows["has_tissue"], splits, use)
    return TrainingData(s, index, train_rows, test_rows, use, splits, folds_df, sample_trials(p), progress)


# ----------------------------------------------------------------------------------------------- the units
def _name_key(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def _unit_seed(training_seed: int, arch: str, trial: int, fold: int) -> int:
    """The torch seed of one unit: a function of (training seed, model, trial, fold) only, never of the worker
    or the order in which units run."""
    return int(np.random.default_rng([int(training_seed), _name_key(arch), trial, fold + 1]).integers(2**31 - 1))


def unit_name(trial: int, fold: int) -> str:
    """``t<trial>_f<fold>``, or ``t<trial>_final`` for the final retraining."""
    return f"t{trial}_final" if fold == FINAL_FOLD else f"t{trial}_f{fold}"


def unit_dir(settings: TrainSettings, trial: int, fold: int) -> Path:
    """``<run_dir>/units/t<trial>_f<fold>/``: one unit's record, weights, epoch checkpoint and log."""
    return settings.run_dir / "units" / unit_name(trial, fold)


def search_units(settings: TrainSettings) -> list[tuple[int, int]]:
    """The (trial, fold) pairs of the search: ``max(1, search_trials)`` x ``folds``."""
    p = settings.profile
    return [(t, k) for t in range(max(1, p.search_trials)) for k in range(p.folds)]


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches; a trailing batch of one item joins the previous one (BatchNorm needs two)."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] += batches.pop()
    return batches


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the last good checkpoint was kept."""


def load_unit(settings: TrainSettings, trial: int, fold: int, fingerprint: str | None = None) -> dict | None:
    """The record (``unit.json``) of a finished unit, or None when it is not done (or was made with other
    settings or data, when ``fingerprint`` is given)."""
    path = unit_dir(settings, trial, fold) / "unit.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if fingerprint is not None and rec.get("fingerprint") != fingerprint:
        return None
    return rec


def unit_fingerprint(settings: TrainSettings, data: TrainingData, trial: int, fold: int,
                     epochs: int | None = None) -> str:
    """What a finished unit must match to be reused: the run's settings and data, the unit and its epochs."""
    epochs = settings.epochs if epochs is None else epochs
    return hashlib.sha256(json.dumps([data.fingerprint(settings), trial, fold, int(epochs), data.trials[trial]],
                                     sort_keys=True, default=str).encode()).hexdigest()


def train_unit(settings: TrainSettings, trial: int, fold: int, epochs: int | None = None,
               data: TrainingData | None = None, progress: bool = True,
               on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train one unit (model x training seed x trial x fold, or the final retraining with ``fold=FINAL_FOLD``)
    and write it atomically into :func:`unit_dir`; a finished unit is loaded, never recomputed.

    The unit checkpoints ``resume.pt`` in its folder after every epoch and continues from it; its record
    ``unit.json`` (best epoch, validation loss/metric, the epoch history) is written last, so a unit is either
    done or not. Weights (``weights.safetensors``) are kept where a later step needs them: every hold-out unit
    (``folds == 1``; the chosen one becomes the model) and the final retraining.

    Args:
        settings: the run (model, training seed, profile, data).
        trial, fold: which unit; ``fold=FINAL_FOLD`` trains on all training frames without validation.
        epochs: epochs of the final retraining (search units use ``settings.epochs``).
        data: :func:`prepare_data` of these settings (made when None).
        progress: tqdm bars.
        on_epoch_end: called with the history row after every epoch, once the checkpoint is written.

    Returns:
        The unit record (dict).

    Example:
        >>> rec = train_unit(training_settings("unet", "smoke"), 0, 0)      # doctest: +SKIP
        >>> rec["best_epoch"], rec["done"]                                  # doctest: +SKIP
        (1, True)
    """
    from .device import autocast_dtype, resolve_device, set_threads
    from .repro import seed_everything

    s, p = settings, settings.profile
    data = data if data is not None else prepare_data(s, progress)
    hp = data.trials[trial]
    if fold == FINAL_FOLD:
        if epochs is None:
            raise ValueError("the final retraining needs its epoch count (the mean best epoch of the chosen trial)")
        train, val = data.frames, None
    else:
        if not 0 <= fold < len(data.splits):
            raise ValueError(f"fold {fold} does not exist: {s.arch} has {len(data.splits)} fold(s)")
        tr, va = data.splits[fold]
        train, val, epochs = data.part(tr), data.part(va), s.epochs
    fp = unit_fingerprint(s, data, trial, fold, epochs)
    done = load_unit(s, trial, fold, fp)
    if done is not None:
        return done
    set_threads(p.num_threads)
    seed_everything(p.seed)  # deterministic algorithms; the unit's own seed follows
    device = resolve_device(p.device)
    trainer = _UnitTrainer(s, trial, fold, hp, device, autocast_dtype(p.amp, device), progress, on_epoch_end)
    record = trainer.fit(train, val, int(epochs), fp)
    return record


class _UnitTrainer:
    """One unit's training loop: early stopping on validation loss, an epoch checkpoint in the unit folder."""

    def __init__(self, settings: TrainSettings, trial: int, fold: int, hp: dict, device: torch.device,
                 amp_dtype, progress: bool, on_epoch_end: Callable | None):
        self.s, self.p, self.trial, self.fold, self.hp = settings, settings.profile, trial, fold, hp
        self.device, self.amp_dtype = device, amp_dtype
        self.progress, self.on_epoch_end = progress, on_epoch_end
        self.dir = unit_dir(settings, trial, fold)
        self.ckpt = self.dir / "resume.pt"
        self.seed = _unit_seed(settings.training_seed, settings.arch, trial, fold)

    def _load(self, fingerprint: str) -> dict | None:
        if not self.ckpt.exists():
            return None
        try:
            state = torch.load(self.ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # a corrupt checkpoint: say so and start again
            print(f"{self.ckpt}: cannot read the checkpoint ({type(e).__name__}: {e}); starting this unit afresh")
            return None
        if state.get("fingerprint") != fingerprint:
            print(f"{self.ckpt}: checkpoint was made with other settings or data; starting this unit afresh")
            return None
        return state

    def fit(self, train: FrameSet, val: FrameSet | None, epochs: int, fingerprint: str) -> dict:
        """Train; no validation (final retraining): all ``epochs``, last weights."""
        from tqdm.auto import tqdm

        from .device import grad_scaler

        s, p, trial, fold = self.s, self.p, self.trial, self.fold
        torch.manual_seed(self.seed)
        model = create_model(s.arch, **s.model_kwargs).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=self.hp["lr"], weight_decay=self.hp["weight_decay"])
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=p.lr_factor,
                                                           patience=p.lr_patience)
        scaler = grad_scaler(self.device, self.amp_dtype)
        self.teacher = None if s.teacher is None else load_run(s.teacher)[0].to(self.device)
        stop = {"best_loss": math.inf, "best_epoch": 0, "best_metric": math.nan, "bad": 0, "stopped": False}
        best, start, history = None, 1, []
        state = self._load(fingerprint)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            stop, best, start, history = dict(state["stop"]), state["best"], state["epoch"] + 1, state["history"]
            _set_rng_state(state["rng"])  # as it was at the end of that epoch (dropout, drop-path)
            print(f"resuming {s.model_dir.name} seed {s.training_seed} {unit_name(trial, fold)} from {self.ckpt} "
                  f"after epoch {state['epoch']}")
        ds = FrameDataset(train, s.task, augment=True, expand=p.expand if s.task == "seg" else 1,
                          rotation_deg=p.rotation_deg, zoom=p.zoom if s.task == "cls" else 0.0,
                          colour_jitter=p.colour_jitter, seed=self.seed)
        # the run's folder name: a distilled student shows as unet_w0.25, not as its architecture
        label = f"{s.model_dir.name} seed {s.training_seed} trial {trial} " + (
            "final" if fold == FINAL_FOLD else f"fold {fold}")
        bar = tqdm(range(start, epochs + 1), desc=label, disable=not self.progress, leave=False,
                   initial=start - 1, total=epochs)
        for epoch in bar:
            if stop["stopped"]:
                break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(model, opt, scaler, ds, epoch, history)
            val_loss, val_metric = ((math.nan, math.nan) if val is None else
                                    _evaluate(model, val, s.task, p, self.device, self.amp_dtype))
            if val is not None and not math.isfinite(val_loss):
                self._nan_error(epoch, "validation", history)
            monitor = val_loss if val is not None else train_loss
            lr_now = opt.param_groups[0]["lr"]
            sched.step(monitor)
            if val is None:
                best, stop["best_epoch"] = None, epoch
            elif monitor < stop["best_loss"]:
                stop.update(best_loss=monitor, best_epoch=epoch, best_metric=val_metric, bad=0)
                best = _cpu(model.state_dict())
            else:
                stop["bad"] += 1
                stop["stopped"] = stop["bad"] >= p.patience
            row = {"trial": trial, "fold": fold, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "val_metric": val_metric, "lr": lr_now, "seconds": time.perf_counter() - t0}
            history.append(row)
            _save_checkpoint({"fingerprint": fingerprint, "epoch": epoch, "model": _cpu(model.state_dict()),
                              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "scaler": scaler.state_dict() if scaler is not None else None,
                              "stop": dict(stop), "best": best, "history": history, "rng": _rng_state()},
                             self.ckpt)
            bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", metric=f"{val_metric:.3f}")
            if self.on_epoch_end is not None:
                self.on_epoch_end(dict(row))
        bar.close()
        keep = self.p.folds == 1 or fold == FINAL_FOLD
        if keep:
            _save_weights(best if val is not None else model.state_dict(), self.dir / "weights.safetensors")
        record = {"arch": s.arch, "training_seed": s.training_seed, "trial": trial, "fold": fold,
                  "epochs": epochs, "hyperparameters": dict(self.hp), "unit_seed": self.seed,
                  "best_epoch": stop["best_epoch"],
                  "best_val_loss": stop["best_loss"] if val is not None else math.nan,
                  "best_val_metric": stop["best_metric"], "weights": "weights.safetensors" if keep else None,
                  "history": history, "fingerprint": fingerprint, "device": str(self.device),
                  "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off", "done": True}
        _write_json(record, self.dir / "unit.json")
        self.ckpt.unlink(missing_ok=True)
        return record

    def _train_epoch(self, model, opt, scaler, ds: FrameDataset, epoch: int, history: list) -> float:
        from tqdm.auto import tqdm

        from .device import autocast, loader_options

        ds.set_epoch(epoch)
        gen = torch.Generator().manual_seed(self.seed + epoch)
        loader = DataLoader(ds, batch_sampler=_batches(len(ds), self.hp["batch_size"], gen),
                            **loader_options(self.device))
        model.train()
        total, n = 0.0, 0
        for b, (x, y) in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=not self.progress, leave=False)):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            teacher_probs = None
            if self.teacher is not None:  # the teacher sees the same augmented batch, in eval mode
                with torch.no_grad(), autocast(self.device, self.amp_dtype):
                    teacher_probs = torch.sigmoid(_forward(self.teacher, x, self.s.task).float())
            with autocast(self.device, self.amp_dtype):
                logits = _forward(model, x, self.s.task)
            loss = _batch_loss(logits.float(), y, self.s.task, self.p.dice_eps, teacher_probs, self.p.kd_alpha)
            if not torch.isfinite(loss):
                self._nan_error(epoch, f"training (batch {b})", history)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += float(loss.detach()) * len(x)
            n += len(x)
        return total / max(n, 1)

    def _nan_error(self, epoch, where, history) -> None:
        hp = self.hp
        if not self.ckpt.exists() or not history:
            kept = f"no epoch had finished, so there is no checkpoint in {self.ckpt}"
        else:
            kept = (f"the last good checkpoint (trial {self.trial}, fold {self.fold}, epoch {history[-1]['epoch']}) "
                    f"is kept in {self.ckpt}")
        raise NonFiniteLossError(
            f"{self.s.arch} (training seed {self.s.training_seed}): non-finite {where} loss at trial {self.trial}, "
            f"fold {self.fold}, epoch {epoch} (lr {hp['lr']:g}, batch size {hp['batch_size']}, weight decay "
            f"{hp['weight_decay']:g}); training stopped and {kept}. Lower the learning rate (parameter lr) and run "
            f"again with resume=False.")

# ---------------------------------------------------------------------------------------------- top level
@dataclass
class TrainResult:
    """What :func:`train_model` returns for one training seed (also on disk in ``run_dir``).

    Attributes:
        settings: the run's settings.
        config: the saved ``config.json``.
        history: per-epoch history (``history.csv``).
        trials: one row per search trial: hyperparameters, mean validation loss/metric, mean best epoch, chosen.
        folds: the fold table (patients and frames per fold and part).
        test_summary: the headline test metric (``test_summary.json``).
        figure: path of the learning-curve PNG (all finished seeds of the model; None when not drawn).
        seconds: wall time of this call.
    """

    settings: TrainSettings
    config: dict
    history: pd.DataFrame
    trials: pd.DataFrame
    folds: pd.DataFrame
    test_summary: dict
    figure: Path | None
    seconds: float

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    @property
    def training_seed(self) -> int:
        return self.settings.training_seed

    @property
    def final_model(self) -> str:
        return self.config["final_model"]["description"]

    @property
    def value(self) -> float:
        """The headline test metric (AUROC for classifiers, DSC for segmenters)."""
        return float(self.test_summary[self.test_summary["metric"]])

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


@dataclass
class SeedResults:
    """The runs of one model over its training seeds (what :func:`train_seeds` returns).

    Attributes:
        runs: one :class:`TrainResult` per training seed, in seed order.
        figure: the learning-curve PNG with every seed.
        seconds: wall time of the call.
    """

    runs: list
    figure: Path | None
    seconds: float

    @property
    def arch(self) -> str:
        return self.runs[0].settings.arch

    @property
    def seeds(self) -> list[int]:
        return [r.training_seed for r in self.runs]

    @property
    def folds(self) -> pd.DataFrame:
        """The fold table (the same for every seed: folds use the data seed)."""
        return self.runs[0].folds

    @property
    def metric(self) -> str:
        return self.runs[0].test_summary["metric"]

    def final_models(self) -> str:
        """One line per seed: how its final model was obtained."""
        return "\n".join(f"seed {r.training_seed}: {r.final_model}" for r in self.runs)

    def chosen(self, digits: int = 2) -> pd.DataFrame:
        """The search tables of all seeds, with a ``training_seed`` column."""
        return pd.concat([r.chosen(digits).assign(training_seed=r.training_seed) for r in self.runs],
                         ignore_index=True)[["training_seed", *self.runs[0].trials.columns]]

    def table(self) -> pd.DataFrame:
        """One row per seed: the test metric and the final model's trial and epochs."""
        return pd.DataFrame([{"model": r.settings.arch, "training_seed": r.training_seed, self.metric: r.value,
                              "final_trial": r.config["final_model"]["trial"],
                              "final_epochs": r.config["final_model"]["epochs"]} for r in self.runs])

    def mean_sd(self) -> tuple[float, float]:
        """Mean and across-seed SD (ddof=1; NaN with one seed) of the headline test metric."""
        v = np.array([r.value for r in self.runs], float)
        return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan

    def headline(self, digits: int = 2) -> str:
        """Per-seed test results and their mean +- SD, e.g. ``unet: test DSC 0.80 +- 0.02 (mean +- SD over 3
        seeds: 0.78, 0.80, 0.82)``."""
        name = "AUROC" if self.metric == "auroc" else "DSC"
        mean, sd = self.mean_sd()
        per = ", ".join(f"seed {r.training_seed}: {r.value:.{digits}f}" for r in self.runs)
        spread = f" +- {sd:.{digits}f} (mean +- SD over {len(self.runs)} seeds)" if len(self.runs) > 1 else ""
        t = self.runs[0].test_summary
        frames = (f"{t['n_test_frames']} test frames, {t['n_test_positive']} with tissue" if self.metric == "auroc"
                  else f"mean over the {t['n_test_positive']} test frames with tissue")
        return f"{self.arch}: test {name} {mean:.{digits}f}{spread} ({frames})\nper seed: {per}"


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


def _search_records(settings: TrainSettings, data: TrainingData) -> list[dict]:
    """The records of every search unit; a clear error naming the units that are not done."""
    records, missing = [], []
    for t, k in search_units(settings):
        rec = load_unit(settings, t, k)
        (records.append(rec) if rec is not None else missing.append(unit_name(t, k)))
    if missing:
        raise FileNotFoundError(f"{settings.run_dir / 'units'}: unit(s) {', '.join(missing)} of {settings.arch} "
                                f"(training seed {settings.training_seed}) are not finished; train them with "
                                f"train_model or `python -m endolib run --only 02 03 --arch {settings.arch}`")
    return records


def final_unit(settings: TrainSettings, data: TrainingData | None = None) -> tuple[int, int] | None:
    """(chosen trial, epochs) of the final retraining once every search unit is done (``folds > 1``), else None."""
    if settings.profile.folds == 1:
        return None
    data = data if data is not None else prepare_data(settings, progress=False)
    trials_df = _trials_table(_search_records(settings, data), data.trials, settings.task)
    chosen = int(trials_df.index[trials_df["chosen"]][0])
    return chosen, max(1, int(round(trials_df.loc[chosen, "mean_best_epoch"])))


def train_final_unit(settings: TrainSettings, data: TrainingData | None = None, progress: bool = True,
                     on_epoch_end: Callable | None = None) -> dict | None:
    """Train (or load) the final retraining unit of a ``folds > 1`` run; None with ``folds == 1``."""
    data = data if data is not None else prepare_data(settings, progress)
    fin = final_unit(settings, data)
    if fin is None:
        return None
    return train_unit(settings, fin[0], FINAL_FOLD, epochs=fin[1], data=data, progress=progress,
                      on_epoch_end=on_epoch_end)


def train_model(settings: TrainSettings, resume: bool = True, progress: bool = True,
                on_epoch_end: Callable[[dict], None] | None = None, data: TrainingData | None = None,
                figure: bool = True) -> TrainResult:
    """Run the whole protocol for one model and one training seed and write its run folder (docs/layout.md).

    It calls exactly the unit functions the distributed runner calls: :func:`train_unit` for every search
    unit, :func:`train_final_unit` (``folds > 1``), then :func:`finish_run`. Units already done (for example
    by ``python -m endolib run --scheduler local:2``) are loaded, not retrained.

    Args:
        settings: from :func:`training_settings` (``settings.for_seed(s)`` for another seed).
        resume: continue interrupted units from their ``resume.pt`` and reuse finished units (False: delete
            this seed's units and outputs first and train afresh).
        progress: tqdm bars for loading, epochs and batches.
        on_epoch_end: called with the history row after every epoch, once the checkpoint is written
            (e.g. to stop a run in a test; an exception raised there interrupts the run like a kill would).
        data: :func:`prepare_data` of these settings (shared across the seeds of a model).
        figure: draw the learning-curve figure of the model's finished seeds.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: empty training/test split, too few patients for the folds, a fold without positives.
        NonFiniteLossError: a NaN/inf loss (the unit's last good checkpoint ``resume.pt`` is kept).
    """
    t_start = time.perf_counter()
    if not resume:
        _clear_run(settings)
    data = data if data is not None else prepare_data(settings, progress)
    for t, k in search_units(settings):
        train_unit(settings, t, k, data=data, progress=progress, on_epoch_end=on_epoch_end)
    train_final_unit(settings, data, progress, on_epoch_end)
    result = finish_run(settings, data, progress=progress, figure=figure)
    result.seconds = time.perf_counter() - t_start
    return result


def _clear_run(settings: TrainSettings) -> None:
    import shutil

    if (settings.run_dir / "units").exists():
        shutil.rmtree(settings.run_dir / "units")
    for name in RUN_FILES.values():
        (settings.run_dir / name).unlink(missing_ok=True)


def train_seeds(settings: TrainSettings, seeds=None, resume: bool = True, progress: bool = True,
                on_epoch_end: Callable[[dict], None] | None = None) -> SeedResults:
    """Train one model with each of its training seeds (one run folder each), in one process.

    Args:
        settings: from :func:`training_settings` (any seed).
        seeds: training seeds (default ``settings.profile.training_seeds``); an int is one seed.
        resume, progress, on_epoch_end: see :func:`train_model`.

    Returns:
        :class:`SeedResults` (per-seed results, mean +- SD, and the learning-curve figure of all seeds).
    """
    t_start = time.perf_counter()
    seeds = settings.profile.training_seeds if seeds is None else (
        (int(seeds),) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds))
    if not seeds:
        raise ValueError("seeds is empty: give at least one training seed")
    data = prepare_data(settings, progress)
    runs = [train_model(settings.for_seed(s), resume, progress, on_epoch_end, data=data, figure=False)
            for s in seeds]
    fig = save_learning_curves(settings, seeds)
    return SeedResults(runs, fig, time.perf_counter() - t_start)


def _finished(settings: TrainSettings, fingerprint: str) -> bool:
    cfg = settings.run_dir / RUN_FILES["config"]
    if not cfg.is_file() or not all((settings.run_dir / RUN_FILES[k]).is_file()
                                    for k in ("weights", "history", "predictions", "summary")):
        return False
    return json.loads(cfg.read_text()).get("fingerprint") == fingerprint


def finish_run(settings: TrainSettings, data: TrainingData | None = None, progress: bool = True,
               figure: bool = True) -> TrainResult:
    """The step after the units: choose the trial, take the final model's weights, predict the test set and
    write the run folder (weights, history, predictions, summary, environment, then ``config.json`` last).

    A run that is already finished with the same settings and data is loaded, not recomputed.

    Raises:
        FileNotFoundError: a unit is not done (the message names it).
    """
    from .metrics import auroc, quantise
    from .models import load_weights

    s, p = settings, settings.profile
    data = data if data is not None else prepare_data(s, progress)
    fp = data.fingerprint(s)
    if _finished(s, fp):  # also when the units folder was deleted afterwards to save space
        trials = pd.DataFrame(json.loads((s.run_dir / RUN_FILES["config"]).read_text())["trials"])
        return _load_result(s, data.folds_df, trials[list(TRIAL_COLUMNS)], figure)
    records = _search_records(s, data)
    trials_df = _trials_table(records, data.trials, s.task)
    chosen = int(trials_df.index[trials_df["chosen"]][0])
    if p.folds > 1:
        _, final_epochs = final_unit(s, data)
        final_rec = load_unit(s, chosen, FINAL_FOLD)
        if final_rec is None:
            raise FileNotFoundError(f"{unit_dir(s, chosen, FINAL_FOLD)}: the final retraining of {s.arch} "
                                    f"(training seed {s.training_seed}) is not finished; run train_final_unit")
        records = records + [final_rec]
        n_frames, n_pats = int(data.use.sum()), len(set(data.train_rows["patient_id"].astype(str)[data.use]))
        weights_path = unit_dir(s, chosen, FINAL_FOLD) / "weights.safetensors"
        final = {"method": "retrain_all",
                 "description": f"retrained on all {n_frames} training frames ({n_pats} "
                                f"patients) with trial {chosen}'s hyperparameters for {final_epochs} epochs (the "
                                f"mean best epoch over its {p.folds} validation folds); no validation data, the "
                                f"learning-rate schedule follows the training loss",
                 "trial": chosen, "epochs": final_epochs}
    else:
        sel = next(r for r in records if r["trial"] == chosen)
        weights_path = unit_dir(s, chosen, 0) / "weights.safetensors"
        val_pats = sorted(set(data.train_rows["patient_id"].astype(str).to_numpy()[data.splits[0][1]]))
        final = {"method": "holdout_best",
                 "description": f"the hold-out-selected model: trial {sel['trial']} at its best validation epoch "
                                f"{sel['best_epoch']} (lowest validation loss), trained on the training patients "
                                f"except the {len(val_pats)} held-out validation patient(s) {', '.join(val_pats)}",
                 "trial": int(sel["trial"]), "epochs": int(sel["best_epoch"])}
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: the final model's weights are missing; rerun the unit "
                                f"(delete {weights_path.parent} and train again)")
    from .device import autocast_dtype, resolve_device, set_threads

    set_threads(p.num_threads)
    device = resolve_device(p.device)
    model = create_model(s.arch, **s.model_kwargs)
    load_weights(model, weights_path, strict=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    history = pd.DataFrame([row for r in records for row in r["history"]], columns=HISTORY_COLUMNS)
    _atomic(s.run_dir / RUN_FILES["history"], lambda tmp: history.to_csv(tmp, index=False))
    _save_weights(model.state_dict(), s.run_dir / RUN_FILES["weights"])

    test = load_frames(s.data_dir, data.test_rows, s.size, masks=s.task == "seg", progress=progress)
    probs = predict(model, test, s.task, p.eval_batch_size, device, autocast_dtype(p.amp, device))
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
    summary.update({"model": s.arch, "task": s.task, "profile": p.name, "training_seed": s.training_seed,
                    "n_test_frames": int(len(ids)), "n_test_positive": int(test.labels.sum()), "input_size": s.size})
    def write_predictions(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, frame_ids=ids.astype(str), probs=stored, size=np.int64(s.size),
                                task=np.array(s.task))

    _atomic(s.run_dir / RUN_FILES["predictions"], write_predictions)
    _write_json(summary, s.run_dir / RUN_FILES["summary"])
    _write_json(environment(), s.run_dir / RUN_FILES["environment"])

    row = trials_df.loc[chosen]
    config = {**s.to_dict(),
              "chosen_hyperparameters": {"lr": float(row["lr"]), "batch_size": int(row["batch_size"]),
                                         "weight_decay": float(row["weight_decay"])},
              "selection_rule": "lowest mean validation loss" if s.task == "cls" else "highest mean validation DSC",
              "final_model": final, "trials": trials_df.to_dict(orient="records"),
              "folds": data.folds_df.to_dict(orient="records"),
              "n_train_frames": int(data.folds_df.query("fold == 0")["frames"].sum()),
              "test_frame_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
              "loss": ("binary cross-entropy" if s.task == "cls" else "Dice loss, paper Eq. 1 (sums over the batch)"
                       if s.teacher is None else f"distillation: {p.kd_alpha:g} x Dice loss (paper Eq. 1) + "
                                                 f"{1 - p.kd_alpha:g} x BCE against the teacher's probabilities"),
              "units": {unit_name(r["trial"], r["fold"]): {"best_epoch": r["best_epoch"], "device": r.get("device"),
                                                             "amp": r.get("amp")} for r in records},
              "fingerprint": fp, "files": dict(RUN_FILES)}
    _write_json(config, s.run_dir / RUN_FILES["config"])  # last: the run is finished when config.json is there
    return _load_result(s, data.folds_df, trials_df, figure)


def _load_result(s: TrainSettings, folds_df, trials_df, figure: bool) -> TrainResult:
    config = json.loads((s.run_dir / RUN_FILES["config"]).read_text())
    history = pd.read_csv(s.run_dir / RUN_FILES["history"])
    summary = json.loads((s.run_dir / RUN_FILES["summary"]).read_text())
    png = save_learning_curves(s) if figure else None
    return TrainResult(s, config, history, trials_df, folds_df, summary, png, 0.0)


def _finished_seeds(settings: TrainSettings, seeds=None) -> list[int]:
    seeds = settings.profile.training_seeds if seeds is None else seeds
    return [int(x) for x in seeds if (settings.for_seed(x).run_dir / RUN_FILES["config"]).is_file()]


def save_learning_curves(settings: TrainSettings, seeds=None) -> Path | None:
    """Draw and save ``learning_curve_<arch>`` with every finished training seed of the model (None if none)."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

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

    from .plotting import PALETTE, paper_style

    paper_style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    arch = task = None
    alpha = 0.9 if len(runs) == 1 else 0.55
    for i, (sd, (history, config)) in enumerate(runs.items()):
        arch, task = config["arch"], config["task"]
        c = PALETTE[i % len(PALETTE)]
        chosen = next(t for t in config["trials"] if t["chosen"])
        h = history[history["trial"] == int(chosen["trial"])]
        for j, (fold, g) in enumerate(h.groupby("fold", sort=True)):
            label = f"seed {sd}" if j == 0 else None
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
    """The trained model (eval mode, on the CPU) and ``config.json`` of a finished run folder: one training seed's
    ``runs/<profile>/<model>/seed<s>/`` (``paths(p).run(model, s)``).

    Example:
        >>> model, cfg = load_run(paths("quick").run("unet", 42))    # doctest: +SKIP
        >>> cfg["input_size"]                          # doctest: +SKIP
        64
    """
    from .models import load_weights
    from .repro import load_json

    run_dir = Path(run_dir)
    cfg_path = run_dir / RUN_FILES["config"]
    if not cfg_path.exists():
        seeds = sorted(d.name for d in run_dir.glob("seed*") if (d / RUN_FILES["config"]).is_file())
        if seeds:
            raise FileNotFoundError(f"{run_dir}: this is a model folder with one run per training seed "
                                    f"({', '.join(seeds)}); load one of them, e.g. {run_dir / seeds[0]}")
        raise FileNotFoundError(f"{cfg_path}: no finished training run here; train it with notebook "
                                f"02/03 (`python -m endolib run --only 02 03`)")
    cfg = load_json(cfg_path)
    model = create_model(cfg["arch"], **cfg["model_kwargs"])
    load_weights(model, run_dir / RUN_FILES["weights"], strict=True)
    return model.eval(), cfg


# ------------------------------------------------------------------------------------------------ benchmark
#: The paper's training-validation set (Table 1): frames and frames with neural tissue. ``bench epoch`` sizes an
#: epoch with these numbers, so the estimate is for the paper's data, not the phantom.
PAPER_TRAIN_FRAMES, PAPER_TRAIN_POSITIVE = 4661, 2307


def study_units(profile: Profile) -> dict:
    """Units per model and training seed, and for the whole study, of a profile: ``max(1, search_trials)`` x
    ``folds`` search units, plus one final retraining when ``folds > 1``.

    Example:
        >>> study_units(get_profile("paper"))
        {'per_seed': 31, 'per_model': 93, 'study': 1023}
    """
    per_seed = max(1, profile.search_trials) * profile.folds + (1 if profile.folds > 1 else 0)
    return {"per_seed": per_seed, "per_model": per_seed * profile.seeds, "study": per_seed * profile.seeds * len(MODELS)}


def bench_epoch(arch: str, profile: str | Profile = "paper", batches: int = 3, warmup: int = 1,
                device: str | None = None, num_threads: int | None = None) -> dict:
    """Seconds per training epoch of ``arch`` at ``profile`` size on this machine, and the study's cost.

    Times ``batches`` training steps (forward, Dice/BCE loss, backward, Adam) on random frames at the profile's
    input size and batch size after ``warmup`` steps; an epoch has as many batches as the paper's training data
    give one search unit (a ``(folds - 1) / folds`` share of the training frames, the frames with tissue x
    ``expand`` for segmenters). Validation passes are not timed (a forward pass over a third as many frames).

    Returns:
        dict with ``s_per_batch``, ``batches_per_epoch``, ``s_per_epoch``, ``units`` (per model, all seeds),
        ``max_epochs`` and ``hours_per_model`` = units x max_epochs x s_per_epoch / 3600 (an upper bound:
        early stopping ends many units sooner).
    """
    from .device import autocast, autocast_dtype, grad_scaler, resolve_device, set_threads

    s = training_settings(arch, profile, device=device, num_threads=num_threads)
    p = s.profile
    threads = set_threads(p.num_threads)
    dev = resolve_device(p.device)
    amp = autocast_dtype(p.amp, dev)
    torch.manual_seed(0)
    model = create_model(arch, **s.model_kwargs).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    scaler = grad_scaler(dev, amp)
    x = torch.randn(p.batch_size, 3, s.size, s.size, device=dev)
    y = (torch.rand(p.batch_size, 1, s.size, s.size, device=dev) > 0.5).float() if s.task == "seg" else \
        torch.randint(0, 2, (p.batch_size,), device=dev).float()

    def step():
        with autocast(dev, amp):
            logits = _forward(model, x, s.task)
        loss = _batch_loss(logits.float(), y, s.task, p.dice_eps)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    per_batch = (time.perf_counter() - t0) / batches
    share = (p.folds - 1) / p.folds if p.folds > 1 else 1 - p.holdout_fraction
    frames = PAPER_TRAIN_FRAMES if s.task == "cls" else PAPER_TRAIN_POSITIVE * p.expand
    n_batches = math.ceil(frames * share / p.batch_size)
    units = study_units(p)["per_model"]
    return {"model": arch, "profile": p.name, "input_size": s.size, "batch_size": p.batch_size,
            "device": str(dev), "amp": str(amp).replace("torch.", "") if amp else "off", "threads": threads,
            "s_per_batch": per_batch, "batches_per_epoch": n_batches, "s_per_epoch": per_batch * n_batches,
            "units": units, "max_epochs": s.epochs,
            "hours_per_model": units * s.epochs * per_batch * n_batches / 3600}


def bench_epoch_main(argv: list[str] | None = None) -> int:
    """``python -m endolib bench epoch --model unet resnet18 --profile paper``: seconds per training epoch and
    the study's compute estimate (units x epochs x seconds per epoch) on this machine."""
    import argparse

    from .config import PROFILES
    from .repro import _cpu_name

    ap = argparse.ArgumentParser(prog="python -m endolib bench epoch", description=bench_epoch_main.__doc__)
    ap.add_argument("--model", nargs="+", default=["resnet18", "unet"], choices=list(MODELS))
    ap.add_argument("--profile", default="paper", choices=list(PROFILES))
    ap.add_argument("--batches", type=int, default=3, help="timed training steps per model")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default=None, help="auto, cpu, cuda (default: the profile's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's or all cores)")
    args = ap.parse_args(argv)
    if args.batches < 1:
        raise ValueError("--batches must be >= 1")
    from tqdm.auto import tqdm

    rows = [bench_epoch(m, args.profile, args.batches, args.warmup, args.device, args.threads)
            for m in tqdm(args.model, desc="bench epoch", leave=False)]
    df = pd.DataFrame(rows)
    u = study_units(get_profile(args.profile))
    print(f"training cost at profile {args.profile} on {_cpu_name()} ({rows[0]['device']}, {rows[0]['threads']} "
          f"thread(s)); epochs sized for the paper's {PAPER_TRAIN_FRAMES} training frames "
          f"({PAPER_TRAIN_POSITIVE} with tissue)")
    print(df.round({"s_per_batch": 3, "s_per_epoch": 1, "hours_per_model": 1}).to_string(index=False))
    print(f"units: {u['per_seed']} per model and seed, {u['per_model']} per model, {u['study']} for the study; "
          f"hours_per_model = units x max_epochs x s_per_epoch / 3600 (upper bound: early stopping and the "
          f"shorter final retraining end many units sooner; validation passes not included)")
    return 0
