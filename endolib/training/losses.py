"""The losses of the one training loop: binary cross-entropy (classifiers), the paper's Dice loss (Eq. 1,
segmenters) and the distillation loss of the real-time students (teacher probabilities + ground truth).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "bce_loss", "distillation_loss"]


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
    The training loop uses it for runs with a ``teacher`` (:func:`endolib.training.settings.student_settings`).

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
