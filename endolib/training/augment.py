"""Training-time augmentation, drawn afresh per frame and epoch and applied identically to image and mask:
random rotation, flips and zoom, optional colour jitter; :class:`FrameDataset` serves augmented frames.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from endolib.training.frames import FrameSet, _to_tensor, normalise

__all__ = ["random_affine", "apply_affine", "colour_jitter", "FrameDataset"]


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
