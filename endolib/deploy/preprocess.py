"""What a deployed model is fed and what it returns, the same for every backend: camera frames turned into the
input the models saw in training (:func:`preprocess` for one frame, :func:`frames_to_input` for a batch of
prepared frames) and logits turned into probabilities (:func:`sigmoid`, in float64 then float32 so that every
backend's output is compared on the same footing).

Example:
    >>> preprocess(np.zeros((48, 64, 3), np.uint8), 32).shape
    (1, 3, 32, 32)
    >>> float(sigmoid(np.zeros(1))[0])
    0.5
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from endolib.training.frames import normalise

__all__ = ["preprocess", "frames_to_input", "sigmoid"]


def preprocess(frame: np.ndarray, size: int) -> np.ndarray:
    """An RGB ``uint8 (H, W, 3)`` frame as the models saw frames in training: resized to ``size x size`` exactly like
    :func:`endolib.data.dataset.load_image` (PIL antialiased bilinear, uint8), scaled to [0, 1] and
    ImageNet-normalised (:func:`endolib.training.frames.normalise`); ``float32 (1, 3, size, size)``.

    Args:
        frame: the RGB frame.
        size: the model's input side.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if frame.shape[:2] != (size, size):
        frame = np.array(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
    x = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)[None].div_(255.0)
    return normalise(x).numpy()


def frames_to_input(images: np.ndarray) -> np.ndarray:
    """Frames already at the model size, ``uint8 (N, S, S, 3)`` (e.g. :func:`endolib.training.frames.load_frames`),
    as model input ``float32 (N, 3, S, S)``, normalised like :func:`preprocess`.

    Example:
        >>> frames_to_input(np.zeros((2, 8, 8, 3), np.uint8)).shape
        (2, 3, 8, 8)
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return normalise(x).numpy()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Probabilities from logits, computed in float64, returned as float32."""
    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))).astype(np.float32)
