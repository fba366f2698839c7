"""Colour baseline: the best per-pixel colour rule learned on the training split, scored on the test split.

If a pixel's colour alone told neural tissue apart, no network would be needed. The baseline learns, on the
training frames with tissue (the frames the segmenters train on), the single best rule of the form
``lo <= feature(pixel) < hi`` over a set of colour features (channels, brightness, chromaticity, saturation,
hue, channel differences), choosing feature and thresholds that maximise the pooled training DSC. A second,
stronger colour rule is reported beside it: a lookup table over quantised RGB that marks every colour bin
whose share of tissue pixels in training exceeds a threshold (also chosen for the best training DSC) -- the
best any per-pixel colour classifier can do at that quantisation.

Both are scored like the segmenters of Table 4: DSC per test frame with tissue, averaged (``dsc``), at the
profile's U-Net input size.

Example:
    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8); msk = img[..., 0] > 128
    >>> rule = fit_threshold_rule(img, msk); rule.feature, round(rule.train_dsc, 2)
    ('R', 1.0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from endolib.config import get_profile, paths

__all__ = ["COLOUR_FEATURES", "N_THRESHOLDS", "LUT_LEVELS", "TRIVIAL_DSC", "ColourRule", "colour_features",
           "fit_threshold_rule", "fit_lut_rule", "colour_baseline", "baseline_verdict"]


#: Candidate thresholds per feature (quantiles of the training pixels).
N_THRESHOLDS = 64
#: Levels per channel of the colour lookup table (LUT_LEVELS ** 3 colour bins).
LUT_LEVELS = 16
#: A colour threshold scoring above this test DSC would make the data a colour problem, not a segmentation one.
TRIVIAL_DSC = 0.5


def _hue(x: np.ndarray) -> np.ndarray:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, mn = x.max(1), x.min(1)
    d = np.where(mx - mn > 1e-6, mx - mn, 1.0)
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    return np.where(mx - mn > 1e-6, h / 6, 0.0)


#: Per-pixel colour features: name -> function of float RGB pixels (N, 3) in [0, 1].
COLOUR_FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "R": lambda x: x[:, 0], "G": lambda x: x[:, 1], "B": lambda x: x[:, 2],
    "brightness": lambda x: x.mean(1),
    "r_chroma": lambda x: x[:, 0] / (x.sum(1) + 1e-6),
    "g_chroma": lambda x: x[:, 1] / (x.sum(1) + 1e-6),
    "b_chroma": lambda x: x[:, 2] / (x.sum(1) + 1e-6),
    "saturation": lambda x: (x.max(1) - x.min(1)) / (x.max(1) + 1e-6),
    "hue": _hue,
    "R-G": lambda x: x[:, 0] - x[:, 1], "G-B": lambda x: x[:, 1] - x[:, 2], "R-B": lambda x: x[:, 0] - x[:, 2],
}


def colour_features(images: np.ndarray, names=None) -> dict[str, np.ndarray]:
    """Colour features of every pixel: ``{name: (N * H * W,) float32}`` for uint8 images ``(N, H, W, 3)``."""
    x = images.reshape(-1, 3).astype(np.float32) / 255.0
    return {n: COLOUR_FEATURES[n](x).astype(np.float32) for n in (names or COLOUR_FEATURES)}


@dataclass
class ColourRule:
    """A per-pixel colour rule: ``threshold`` (``lo <= feature < hi``) or ``lut`` (tissue colour bins)."""

    kind: str
    feature: str
    lo: float
    hi: float
    train_dsc: float
    lut: np.ndarray | None = field(default=None, repr=False)  # bool (LUT_LEVELS ** 3,) for kind == "lut"

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Boolean masks ``(N, H, W)`` for uint8 images ``(N, H, W, 3)``."""
        shape = images.shape[:-1]
        if self.kind == "lut":
            return self.lut[_lut_index(images)].reshape(shape)
        f = colour_features(images, [self.feature])[self.feature]
        return ((f >= self.lo) & (f < self.hi)).reshape(shape)

    def describe(self) -> str:
        if self.kind == "lut":
            return (f"RGB lookup table ({LUT_LEVELS}^3 bins): {int(self.lut.sum())} bins whose training share of "
                    f"tissue pixels >= {self.lo:.3f} are tissue")
        return f"{self.lo:.3f} <= {self.feature} < {self.hi:.3f}"


def _pooled_dsc(tp, fp, n_pos):
    return 2 * tp / np.maximum(2 * tp + fp + (n_pos - tp), 1)


def fit_threshold_rule(images: np.ndarray, masks: np.ndarray, n_thresholds: int = N_THRESHOLDS) -> ColourRule:
    """The best ``lo <= feature < hi`` rule over :data:`COLOUR_FEATURES` (highest pooled DSC on these pixels).

    Thresholds are ``n_thresholds`` quantiles of each feature plus open ends, so one-sided rules are included.

    Args:
        images: uint8 ``(N, H, W, 3)``.
        masks: ``(N, H, W)``, nonzero = tissue.
        n_thresholds: candidate thresholds per feature.
    """
    y = np.asarray(masks).reshape(-1) > 0
    if not y.any():
        raise ValueError("the training frames contain no tissue pixel; a colour rule cannot be learned")
    n_pos = int(y.sum())
    best = None
    for name, f in colour_features(images).items():
        qs = np.unique(np.quantile(f, np.linspace(0, 1, n_thresholds + 1)[1:-1]))
        edges = np.concatenate([[-np.inf], qs, [np.inf]])
        bins = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 2)
        pos = np.bincount(bins[y], minlength=len(edges) - 1)
        neg = np.bincount(bins[~y], minlength=len(edges) - 1)
        cp, cn = np.concatenate([[0], np.cumsum(pos)]), np.concatenate([[0], np.cumsum(neg)])
        tp = cp[None, :] - cp[:, None]  # [i, j]: pixels in edges[i] <= f < edges[j]
        fp = cn[None, :] - cn[:, None]
        dsc = np.where(np.triu(np.ones_like(tp, bool), 1), _pooled_dsc(tp, fp, n_pos), -1.0)
        i, j = np.unravel_index(int(np.argmax(dsc)), dsc.shape)
        if best is None or dsc[i, j] > best.train_dsc:
            best = ColourRule("threshold", name, float(edges[i]), float(edges[j]), float(dsc[i, j]))
    return best


def _lut_index(images: np.ndarray) -> np.ndarray:
    q = (images.reshape(-1, 3).astype(np.int32) * LUT_LEVELS) // 256
    return (q[:, 0] * LUT_LEVELS + q[:, 1]) * LUT_LEVELS + q[:, 2]


def fit_lut_rule(images: np.ndarray, masks: np.ndarray) -> ColourRule:
    """The best per-pixel colour classifier at ``LUT_LEVELS`` levels per channel.

    Colour bins are ranked by their share of tissue pixels in training; the bins above the share threshold that
    maximises the pooled training DSC are called tissue.
    """
    y = np.asarray(masks).reshape(-1) > 0
    if not y.any():
        raise ValueError("the training frames contain no tissue pixel; a colour rule cannot be learned")
    idx = _lut_index(images)
    n_bins = LUT_LEVELS ** 3
    pos = np.bincount(idx[y], minlength=n_bins)
    tot = np.bincount(idx, minlength=n_bins)
    share = pos / np.maximum(tot, 1)
    order = np.argsort(-share, kind="stable")
    dsc = _pooled_dsc(np.cumsum(pos[order]), np.cumsum(tot[order] - pos[order]), int(y.sum()))
    k = int(np.argmax(dsc))
    tau = float(share[order[k]])
    return ColourRule("lut", "RGB", tau, 1.0, float(dsc[k]), lut=share >= tau)


def colour_baseline(data_dir: str | Path | None = None, profile="smoke", size: int | None = None,
                    progress: bool = False) -> tuple[pd.DataFrame, dict[str, ColourRule]]:
    """Learn both colour rules on the training frames with tissue and score them on the test frames with tissue.

    Args:
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        profile: sets the default ``size`` (the U-Net input size, ``seg_size``).
        size: side in pixels at which frames are scored (as the segmenters see them).
        progress: tqdm bar while loading frames.

    Returns:
        ``(table, rules)``: one row per rule (``rule, feature, lo, hi, train_dsc, dsc, dsc_pooled, iou,
        n_train_frames, n_test_frames, size, description``; ``dsc`` = mean DSC over test frames with tissue)
        and the fitted rules by name (``threshold``, ``colour_lut``).
    """
    from tqdm.auto import tqdm

    from endolib.data.dataset import load_image, load_index, load_mask
    from endolib.evaluation.metrics import dice, iou, seg_counts

    prof = get_profile(profile)
    data_dir = Path(data_dir) if data_dir is not None else paths(prof).phantom
    size = int(size or prof.seg_size)
    index = load_index(data_dir)
    pos = index[index["has_tissue"] == 1]
    sets = {}
    for split in ("train", "test"):
        rows = pos[pos["split"] == split]
        if rows.empty:
            raise ValueError(f"{data_dir}: no {split} frame with tissue; the colour baseline needs both splits")
        ids = rows["frame_id"].tolist()
        imgs = np.stack([load_image(data_dir, f, size) for f in tqdm(ids, desc=f"loading {split}",
                                                                     disable=not progress, leave=False)])
        msks = np.stack([load_mask(data_dir, f, size) for f in ids]).astype(bool)
        sets[split] = (imgs, msks)
    rules = {"threshold": fit_threshold_rule(*sets["train"]), "colour_lut": fit_lut_rule(*sets["train"])}
    test_imgs, test_masks = sets["test"]
    rows = []
    for name, rule in rules.items():
        c = seg_counts(rule.predict(test_imgs), test_masks)
        rows.append({"rule": name, "feature": rule.feature, "lo": rule.lo, "hi": rule.hi,
                     "train_dsc": rule.train_dsc, "dsc": float(np.mean(dice(c.tp, c.fp, c.fn))),
                     "dsc_pooled": float(dice(c.tp.sum(), c.fp.sum(), c.fn.sum())),
                     "iou": float(np.mean(iou(c.tp, c.fp, c.fn))), "n_train_frames": len(sets["train"][0]),
                     "n_test_frames": len(test_imgs), "size": size, "description": rule.describe()})
    return pd.DataFrame(rows), rules


def baseline_verdict(table: pd.DataFrame, limit: float = TRIVIAL_DSC) -> str:
    """One line per rule: its test DSC, and whether the data are beyond a per-pixel colour rule (``<= limit``).

    Example:
        >>> t = pd.DataFrame({"rule": ["threshold"], "dsc": [0.42], "description": ["0.1 <= R < 0.5"]})
        >>> print(baseline_verdict(t))
        threshold (0.1 <= R < 0.5): test DSC 0.42 <= 0.5 -- colour alone does not find the tissue
    """
    lines = []
    for row in table.itertuples(index=False):
        ok = row.dsc <= limit
        lines.append(f"{row.rule} ({row.description}): test DSC {row.dsc:.2f} "
                     + (f"<= {limit} -- colour alone does not find the tissue" if ok
                        else f"> {limit} -- colour alone finds much of the tissue"))
    return "\n".join(lines)
