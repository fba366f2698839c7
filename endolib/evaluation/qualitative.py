"""Qualitative figures from saved results: Figures 7 and 8 and the two-stage pipeline (Figure 1).

Everything here re-renders from files other notebooks wrote, never retraining anything:

* ``fig7_qualitative``: test frames (input, ground truth, one column per segmenter) with the prediction
  filled and outlined over the frame and the ground-truth contour on top, so boundary differences show.
* ``fig8_failures``: a failure gallery chosen automatically from per-frame scores: the lowest-DSC positive
  frames, the negative frames with the largest false masks, and the frames where the models disagree most.
* ``fig1_pipeline``: the two-stage pipeline (classifier gate, then segmenter) annotated with the latencies
  notebook 05 measured (``results/<profile>/table5_compute.csv``, column ``latency_ms``); "not measured" when
  that table or a model's row is absent.

Table 2 and its figure ``fig_table2_architectures`` are drawn by :mod:`endolib.evaluation.architecture`.

Why one module of this length: Figures 1, 7 and 8 share the frame grid, the contour/fill drawing and the
placeholder panels; split apart they would need those private helpers in a third module of their own.

Bad input never stops the other panels: a requested frame id outside the test split, or a model without
predictions, triggers a :class:`FigureInputWarning` naming the file or id and what is wrong; the frame is left
out or the model's panels show a short placeholder, and every other panel still renders.

Example:
    >>> binarise(np.array([0, 200], np.uint8)).tolist()
    [False, True]
"""
from __future__ import annotations

import itertools
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from endolib.config import CLASSIFIERS, SEGMENTERS, Profile, get_profile, study_paths
from endolib.plotting import PALETTE

__all__ = ["FigureInputWarning", "FigureInputs", "FIGURE_NAMES", "collect_predictions", "load_figure_inputs",
           "choose_frames", "frame_scores", "disagreement", "failure_cases", "qualitative_figure", "failure_figure",
           "read_latencies", "pipeline_example", "pipeline_figure", "binarise"]


#: Stable figure names (``figures/<name>.png`` and ``.pdf``), documented in the README.
FIGURE_NAMES = ("fig1_pipeline", "fig7_qualitative", "fig8_failures", "fig_table2_architectures")

#: Frames in the Figure 7 grid when no frame ids are given.
N_FRAMES = 4
#: Frames per failure category in Figure 8.
N_PER_CATEGORY = 2
#: Height in pixels at which frames are drawn (aspect ratio kept; predictions are resized onto this grid).
DISPLAY_HEIGHT = 160
#: Side of one image panel in inches: ten columns (input, ground truth, eight models) fit a 7-inch page width
#: with the fonts below at their nominal size.
PANEL_INCHES = 0.68
#: Font sizes (points) of the grid: column titles, row labels, the score in each panel.
TITLE_FONT, LABEL_FONT, SCORE_FONT = 7.5, 6.5, 6
#: Column titles longer than this many characters break after their first hyphen ("SegFormer-" / "B0").
TITLE_WRAP = 9
#: Gap between panels as a fraction of a panel's side.
PANEL_GAP = 0.04
#: Space above the grid for the column titles, and below it for the legend (inches).
TITLE_INCHES = 0.25
LEGEND_INCHES = 0.3
#: Opacity of the filled prediction and ground-truth masks.
FILL_ALPHA = 0.35
#: Contour line width in points, and the width of the dark outline under it (visible on pale and dark tissue).
CONTOUR_WIDTH = 1.1
CONTOUR_OUTLINE = 2.3
#: Overlay colours (Okabe-Ito): prediction blue, ground truth orange, a pair every colour vision tells apart
#: and that stands out on reddish, pale and yellow tissue alike.
PRED_COLOUR = PALETTE[0]
GT_COLOUR = PALETTE[1]
#: Background of placeholder panels (missing predictions).
PLACEHOLDER_COLOUR = "#EEEEEE"
#: The pipeline the paper recommends (ResNet-18 gate + U-Net); highlighted in Figure 1.
PIPELINE = ("resnet18", "unet")


class FigureInputWarning(UserWarning):
    """Some requested input (a frame id, a model's predictions, the latency table) is missing or unusable;
    the figure renders without it."""


def _warn(message: str) -> None:
    warnings.warn(message, FigureInputWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------- predictions
def _row(pred) -> dict[str, int]:
    """frame id -> row of ``pred.probs`` (``pred``: :class:`endolib.evaluation.predictions.Predictions`)."""
    return {f: i for i, f in enumerate(pred.frame_ids)}


def collect_predictions(models=None, profile: str | Profile = "smoke", root=None, test_ids=None,
                        source: str = "index.csv", dataset: str | None = None) -> tuple[dict, dict[str, str]]:
    """Read the segmenters' predictions with :func:`endolib.evaluation.predictions.load_predictions`.

    The qualitative figures draw one instance of each model: its run with the profile's first training seed
    (``runs/<profile>/<model>/seed<profile.training_seeds[0]>/``).

    Args:
        models: registry names to read (default: every segmenter whose first-seed ``predictions.npz`` exists
            under ``runs/<profile>``, in the paper's order). A requested model without usable predictions gives a
            :class:`FigureInputWarning`.
        profile: profile whose ``runs/`` folder to read.
        root: repository root (default :func:`endolib.config.repo_root`).
        test_ids: the dataset's test frame ids in index order; predictions of another test split are refused
            (:func:`endolib.evaluation.predictions.check_frame_ids`).
        source: where ``test_ids`` came from (for the message).
        dataset: the study's dataset name (None: the phantom study; else ``runs/<profile>/<dataset>/``).

    Returns:
        ``(predictions, problems)``: registry name -> :class:`endolib.evaluation.predictions.Predictions` for the usable ones,
        registry name -> message for the requested ones that are missing or unusable.
    """
    from endolib.evaluation.predictions import (
        check_frame_ids,
        load_predictions,
        predictions_path,
    )

    if models is None:
        models = [m for m in SEGMENTERS if predictions_path(m, profile, root, dataset=dataset).is_file()]
    elif isinstance(models, str):
        models = [models]
    preds, problems = {}, {}
    for m in models:
        if m not in SEGMENTERS:
            problems[m] = f"{m!r} is not a segmenter; valid: {', '.join(SEGMENTERS)}"
        else:
            try:
                pred = load_predictions(m, profile, root, dataset=dataset)
                if test_ids is not None:
                    check_frame_ids(pred, test_ids, source, profile)
                preds[m] = pred
            except (FileNotFoundError, ValueError) as e:
                problems[m] = str(e)
        if m in problems:
            _warn(f"{problems[m]}; its panels are left empty")
    return preds, problems


def binarise(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Stored ``uint8`` probabilities -> boolean masks ``p >= threshold`` (``p = probs / 255``), exactly as
    notebook 04 decides a pixel (:func:`endolib.evaluation.bootstrap.level_cut`).

    Example:
        >>> binarise(np.array([127, 128], np.uint8)).tolist()
        [False, True]
    """
    from endolib.evaluation.bootstrap import level_cut

    return np.asarray(probs) >= level_cut(threshold)


@dataclass
class FigureInputs:
    """Everything the qualitative figures read: the prepared dataset and the saved predictions.

    Attributes:
        data_dir: the prepared dataset.
        index: its ``index.csv`` (validated).
        predictions: registry name -> :class:`endolib.evaluation.predictions.Predictions` (usable ones only, paper order).
        problems: registry name -> message for requested models without usable predictions.
        models: the columns to draw: the usable models plus the requested-but-missing ones (placeholders).
        threshold: probability threshold of a predicted pixel.
    """

    data_dir: Path
    index: pd.DataFrame
    predictions: dict
    problems: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    threshold: float = 0.5

    @property
    def test(self) -> pd.DataFrame:
        """The test split in index order."""
        return self.index[self.index["split"] == "test"].reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """One row per column model: test frames predicted, input size, status."""
        rows = []
        for m in self.models:
            p = self.predictions.get(m)
            rows.append({"model": m, "frames": len(p.frame_ids) if p else 0, "size": p.size if p else None,
                         "status": "ok" if p else "no predictions"})
        return pd.DataFrame(rows, columns=["model", "frames", "size", "status"])


def load_figure_inputs(profile: str | Profile = "smoke", data_dir=None, models=None, root=None,
                       dataset: str | None = None) -> FigureInputs:
    """Load the prepared dataset's index and every segmenter's test predictions for the figures.

    Args:
        profile: profile name (sets the default ``data_dir``, the ``runs/`` folder and the threshold).
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        models: segmenters to draw (default: every segmenter with predictions under ``runs/<profile>``).
        root: repository root (default :func:`endolib.config.repo_root`).
        dataset: the study's dataset name (default :func:`endolib.config.dataset_name` of ``data_dir``: None for the
            phantom); predictions are read from ``runs/<profile>/<dataset>/``.

    Raises:
        FileNotFoundError: the prepared dataset is missing, or no model has usable predictions (names the command).

    Example:
        >>> inputs = load_figure_inputs("quick")  # doctest: +SKIP
        >>> inputs.summary()  # doctest: +SKIP
    """
    from endolib.data.dataset import load_index

    prof = get_profile(profile)
    p = study_paths(prof, data_dir, dataset, root)
    data_dir = Path(data_dir) if data_dir is not None else p.phantom
    index = load_index(data_dir)
    test_ids = index.loc[index["split"] == "test", "frame_id"].tolist()
    preds, problems = collect_predictions(models, prof, root, test_ids, str(Path(data_dir) / "index.csv"),
                                          dataset=p.dataset)
    if not preds:
        found = "; ".join(problems.values()) or f"no predictions.npz under {p.runs}"
        where = "" if p.dataset is None else f" --data-dir {data_dir}"
        raise FileNotFoundError(f"{p.runs}: no usable segmenter predictions ({found}); make them with "
                                f"`python -m endolib run --profile {prof.name} --only 03{where}`")
    requested = list(preds) if models is None else ([models] if isinstance(models, str) else list(models))
    return FigureInputs(data_dir, index, preds, problems, requested, prof.threshold)


# ------------------------------------------------------------------------------------------ frame choice
def choose_frames(index: pd.DataFrame, frame_ids=None, n_frames: int = N_FRAMES, seed: int = 0,
                  positives_only: bool = True) -> list[str]:
    """The test frames of Figure 7: the given ids (those in the test split), or ``n_frames`` drawn at random.

    Args:
        index: the dataset's ``index.csv`` (all splits; used to say why an id is rejected).
        frame_ids: explicit frame ids, kept in the given order; ids not in the test split give a
            :class:`FigureInputWarning` and are left out.
        n_frames: frames to draw when ``frame_ids`` is None.
        seed: seed of the random draw (same seed, same frames).
        positives_only: draw among frames with tissue (the figure is about boundaries); all test frames if none.

    Returns:
        Frame ids in drawing order (random draws in index order).

    Raises:
        ValueError: no usable frame is left.

    Example:
        >>> idx = pd.DataFrame({"frame_id": ["a", "b", "c"], "split": ["train", "test", "test"],
        ...                     "has_tissue": [1, 1, 0]})
        >>> choose_frames(idx, n_frames=5, seed=0)
        ['b']
    """
    test = index[index["split"] == "test"]
    if frame_ids is not None:
        frame_ids = [frame_ids] if isinstance(frame_ids, str) else [str(f) for f in frame_ids]
        known, in_test = set(index["frame_id"]), set(test["frame_id"])
        chosen = []
        for f in frame_ids:
            if f not in known:
                _warn(f"frame id {f!r} is not in the dataset's index.csv; left out of the figure")
            elif f not in in_test:
                split = index.loc[index["frame_id"] == f, "split"].iloc[0]
                _warn(f"frame id {f!r} is in the {split} split, not the test split; left out of the figure")
            elif f not in chosen:
                chosen.append(f)
        if not chosen:
            raise ValueError(f"none of the frame ids {frame_ids} is a test frame of the dataset")
        return chosen
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    pool = test[test["has_tissue"] == 1] if positives_only and (test["has_tissue"] == 1).any() else test
    if pool.empty:
        raise ValueError("the dataset has no test frames")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=min(n_frames, len(pool)), replace=False)
    return pool["frame_id"].iloc[np.sort(pick)].tolist()


# ------------------------------------------------------------------------------------------------ scores
def frame_scores(inputs: FigureInputs, frame_ids=None, progress: bool = True) -> pd.DataFrame:
    """Per frame and model: DSC against the ground truth and the predicted area, at the model's input size.

    Args:
        inputs: from :func:`load_figure_inputs`.
        frame_ids: frames to score (default: every test frame).
        progress: tqdm bar over models.

    Returns:
        One row per (frame, model): ``frame_id, model, has_tissue, dsc, pred_fraction`` (``dsc`` = 1 when both
        masks are empty; ``pred_fraction`` = predicted pixels / all pixels).
    """
    from endolib.evaluation.metrics import dice, seg_counts
    from endolib.evaluation.predictions import load_test_masks

    test = inputs.test
    frame_ids = test["frame_id"].tolist() if frame_ids is None else list(frame_ids)
    tissue = dict(zip(test["frame_id"], test["has_tissue"].astype(int)))
    unknown = sorted(set(frame_ids) - set(tissue))
    if unknown:
        raise ValueError(f"frame id(s) {unknown[:5]} are not test frames of {inputs.data_dir / 'index.csv'}")
    position = {f: i for i, f in enumerate(frame_ids)}
    gt: dict[int, np.ndarray] = {}
    rows = []
    for m, pred in inputs.predictions.items():
        if pred.size not in gt:
            gt[pred.size] = load_test_masks(inputs.data_dir, frame_ids, pred.size, progress=progress)
        row = _row(pred)
        ids = [f for f in frame_ids if f in row]
        p = binarise(pred.probs[[row[f] for f in ids]], inputs.threshold)
        t = gt[pred.size][[position[f] for f in ids]]
        c = seg_counts(p, t)
        dsc = dice(c.tp, c.fp, c.fn)
        frac = p.reshape(len(ids), -1).mean(axis=1)
        rows += [{"frame_id": f, "model": m, "has_tissue": tissue.get(f, int(t[i].any())), "dsc": float(dsc[i]),
                  "pred_fraction": float(frac[i])} for i, f in enumerate(ids)]
    return pd.DataFrame(rows, columns=["frame_id", "model", "has_tissue", "dsc", "pred_fraction"])


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127


def disagreement(inputs: FigureInputs, frame_ids=None) -> pd.Series:
    """How much the models disagree on each frame: 1 - mean pairwise DSC between their predicted masks.

    Masks are compared on the grid of the largest model input size (nearest resize, so models at different
    input sizes disagree a little at every boundary); two empty masks agree fully. Needs at least two models
    (otherwise an empty Series); frames some model did not predict are left out.

    Args:
        inputs: from :func:`load_figure_inputs`.
        frame_ids: frames to score (default: every test frame).

    Returns:
        Series indexed by frame id, values in [0, 1] (0 = all models predict the same mask).
    """
    from endolib.evaluation.metrics import dice, seg_counts

    preds = list(inputs.predictions.values())
    frame_ids = inputs.test["frame_id"].tolist() if frame_ids is None else list(frame_ids)
    if len(preds) < 2:
        return pd.Series(dtype=float, name="disagreement")
    size = max(p.size for p in preds)
    rows = [_row(p) for p in preds]
    ids = [f for f in frame_ids if all(f in r for r in rows)]
    out = {}
    for f in ids:
        masks = [_resize_mask(binarise(p.probs[r[f]], inputs.threshold), size) for p, r in zip(preds, rows)]
        pairs = list(itertools.combinations(range(len(masks)), 2))
        c = seg_counts(np.stack([masks[i] for i, _ in pairs]), np.stack([masks[j] for _, j in pairs]))
        out[f] = float(1.0 - dice(c.tp, c.fp, c.fn).mean())
    return pd.Series(out, name="disagreement", dtype=float)


def failure_cases(scores: pd.DataFrame, disagree: pd.Series | None = None, n_per_category: int = N_PER_CATEGORY
                  ) -> pd.DataFrame:
    """Pick the Figure 8 frames: lowest mean DSC among positives, largest mean false mask among negatives, and
    largest disagreement between models. A frame appears once (its first category); ties go to index order.

    Args:
        scores: from :func:`frame_scores`.
        disagree: from :func:`disagreement` (None or empty: that category is skipped).
        n_per_category: frames per category.

    Returns:
        ``category, frame_id, value, label`` rows, categories in the order above; a category with no
        qualifying frame (e.g. no negative frame has a false mask) is absent.

    Example:
        >>> s = pd.DataFrame({"frame_id": ["a", "b", "c"], "model": "unet", "has_tissue": [1, 1, 0],
        ...                   "dsc": [0.9, 0.2, 0.0], "pred_fraction": [0.3, 0.1, 0.05]})
        >>> failure_cases(s, n_per_category=1)[["category", "frame_id"]].values.tolist()
        [['lowest DSC', 'b'], ['false mask', 'c']]
    """
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    order = {f: i for i, f in enumerate(dict.fromkeys(scores["frame_id"]))}
    mean = scores.groupby("frame_id").agg(has_tissue=("has_tissue", "max"), dsc=("dsc", "mean"),
                                          pred_fraction=("pred_fraction", "mean"))
    mean["order"] = [order[f] for f in mean.index]
    pos, neg = mean[mean["has_tissue"] == 1], mean[(mean["has_tissue"] == 0) & (mean["pred_fraction"] > 0)]
    categories = [
        ("lowest DSC", pos["dsc"], True, "mean DSC {:.2f}"),
        ("false mask", neg["pred_fraction"], False, "mean false area {:.1%}"),
    ]
    if disagree is not None and len(disagree):
        d = disagree[disagree > 0]
        categories.append(("models disagree", d, False, "mean pairwise DSC {:.2f}"))
    rows, used = [], set()
    for name, values, ascending, fmt in categories:
        frame = pd.DataFrame({"value": values, "order": [order.get(f, len(order)) for f in values.index]})
        frame = frame.sort_values(["value", "order"], ascending=[ascending, True], kind="mergesort")
        taken = [f for f in frame.index if f not in used][:n_per_category]
        for f in taken:
            v = float(frame.loc[f, "value"])
            shown = 1.0 - v if name == "models disagree" else v
            rows.append({"category": name, "frame_id": f, "value": v, "label": fmt.format(shown)})
            used.add(f)
    return pd.DataFrame(rows, columns=["category", "frame_id", "value", "label"])


# -------------------------------------------------------------------------------------------- rendering
def _display_frame(data_dir: Path, frame_id: str, height: int = DISPLAY_HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """The frame (uint8 RGB) and its ground truth (bool) at ``height`` pixels, aspect ratio kept."""
    from PIL import Image

    from endolib.data.dataset import load_image, load_mask

    image, mask = load_image(data_dir, frame_id), load_mask(data_dir, frame_id)
    h, w = image.shape[:2]
    size = (max(1, round(w * height / h)), height)
    image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    mask = np.asarray(Image.fromarray((mask > 0).astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    return image, mask


def _display_prob(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A model-size probability map resized bilinearly onto the display grid ``shape = (h, w)``."""
    from PIL import Image

    img = Image.fromarray(np.asarray(prob, np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR))


def _blend(image: np.ndarray, mask: np.ndarray, colour: str, alpha: float = FILL_ALPHA) -> np.ndarray:
    """``image`` with ``mask`` tinted in ``colour`` (one raster per panel keeps the PDF small and fast)."""
    from matplotlib.colors import to_rgb

    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * 255.0 * np.asarray(to_rgb(colour), np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _contour(ax, field_: np.ndarray, level: float, colour: str) -> None:
    """Contour of ``field_`` at ``level`` (pixel-centre coordinates, the same as imshow's) with a dark outline;
    none if the field does not cross the level."""
    from matplotlib import patheffects

    if field_.min() < level <= field_.max():
        cs = ax.contour(field_.astype(np.float32), levels=[level], colors=[colour], linewidths=CONTOUR_WIDTH)
        cs.set_path_effects([patheffects.withStroke(linewidth=CONTOUR_OUTLINE, foreground="black")])


def _frame_axes(ax, shape) -> None:
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _corner_text(ax, text: str) -> None:
    ax.text(0.03, 0.04, text, transform=ax.transAxes, fontsize=SCORE_FONT, color="white", va="bottom", ha="left",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.6, "linewidth": 0})


def _placeholder(ax, shape: tuple[int, int], text: str) -> None:
    """A grey panel of the frame's shape saying why there is no prediction."""
    from matplotlib.colors import to_rgb

    ax.imshow(np.broadcast_to(np.asarray(to_rgb(PLACEHOLDER_COLOUR), np.float32), (*shape[:2], 3)))
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(text, 14)), transform=ax.transAxes, ha="center", va="center",
            fontsize=LABEL_FONT, color="#444444")
    _frame_axes(ax, shape)


def _label(model: str) -> str:
    """The paper's name of a registry model (e.g. ``AU-Net``)."""
    from endolib.paper import DISPLAY_NAMES

    return DISPLAY_NAMES.get(model, model)


def _panel_text(pred: np.ndarray, gt: np.ndarray) -> str:
    """DSC for a positive frame, false-mask share for a negative one (both at the model's input size)."""
    from endolib.evaluation.metrics import dice, seg_counts

    if gt.any():
        c = seg_counts(pred, gt)
        return f"DSC {float(dice(c.tp, c.fp, c.fn)[0]):.2f}"
    return f"false {pred.mean():.0%}"


def _frame_grid(inputs: FigureInputs, rows: list[tuple[str, str]], title: str | None = None):
    """The grid of Figures 7 and 8: one row per ``(frame_id, row label)``; columns input, ground truth, models."""
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from endolib.data.dataset import load_mask

    outside = [f for f, _ in rows if f not in set(inputs.test["frame_id"])]
    if outside:
        raise ValueError(f"frame id(s) {outside} are not test frames of {inputs.data_dir / 'index.csv'}; "
                         f"pick frames with choose_frames")
    frames = [_display_frame(inputs.data_dir, f) for f, _ in rows]
    aspect = frames[0][0].shape[1] / frames[0][0].shape[0]
    ncols, nrows = 2 + len(inputs.models), len(rows)
    width = PANEL_INCHES * aspect * (ncols + (ncols - 1) * PANEL_GAP)
    grid = PANEL_INCHES * (nrows + (nrows - 1) * PANEL_GAP)
    top, bottom = TITLE_INCHES + (TITLE_INCHES if title else 0.0), LEGEND_INCHES
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(width, grid + top + bottom),
                             gridspec_kw={"wspace": PANEL_GAP, "hspace": PANEL_GAP})
    fig.subplots_adjust(left=0, right=1, bottom=bottom / (grid + top + bottom), top=1 - top / (grid + top + bottom))
    for r, ((frame_id, label), (image, gt)) in enumerate(zip(rows, frames)):
        ax = axes[r, 0]
        ax.imshow(image)
        _frame_axes(ax, image.shape)
        ax.set_ylabel(label, fontsize=LABEL_FONT, rotation=0, ha="right", va="center", labelpad=4)
        ax = axes[r, 1]
        ax.imshow(_blend(image, gt, GT_COLOUR))
        _contour(ax, gt, 0.5, GT_COLOUR)
        _frame_axes(ax, image.shape)
        for c, m in enumerate(inputs.models, start=2):
            ax = axes[r, c]
            pred = inputs.predictions.get(m)
            if pred is None:
                _placeholder(ax, image.shape, "no predictions")
                continue
            levels = pred.probs[_row(pred)[frame_id]]
            shown = _display_prob(levels.astype(np.float32) / 255.0, gt.shape)
            ax.imshow(_blend(image, shown >= inputs.threshold, PRED_COLOUR))
            _contour(ax, shown, inputs.threshold, PRED_COLOUR)
            _contour(ax, gt, 0.5, GT_COLOUR)
            _frame_axes(ax, image.shape)
            _corner_text(ax, _panel_text(binarise(levels, inputs.threshold),
                                         load_mask(inputs.data_dir, frame_id, size=pred.size) > 0))
    titles = [_label(m) for m in inputs.models]
    titles = [t.replace("-", "-\n", 1) if len(t) > TITLE_WRAP else t for t in titles]
    for c, name in enumerate(["input", "ground truth"] + titles):
        axes[0, c].set_title(name, fontsize=TITLE_FONT, fontweight="bold" if c >= 2 else "normal", pad=3)
    outline = [patheffects.withStroke(linewidth=CONTOUR_OUTLINE, foreground="black")]
    handles = [Patch(facecolor=GT_COLOUR, alpha=0.6, edgecolor=GT_COLOUR, label="ground truth"),
               Patch(facecolor=PRED_COLOUR, alpha=0.6, edgecolor=PRED_COLOUR, label="prediction"),
               Line2D([], [], color=GT_COLOUR, lw=CONTOUR_WIDTH, label="ground-truth boundary", path_effects=outline),
               Line2D([], [], color=PRED_COLOUR, lw=CONTOUR_WIDTH, label="predicted boundary", path_effects=outline)]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, fontsize=7, bbox_to_anchor=(0.5, 0.0),
               handlelength=1.5, columnspacing=1.2)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.05 / (grid + top + bottom), va="top")
    return fig


def qualitative_figure(inputs: FigureInputs, frame_ids: list[str], title: str | None = None):
    """Figure 7: one row per test frame; columns input, ground truth, and each model's prediction.

    Each prediction panel shows the frame, the predicted mask (blue fill and boundary), the ground-truth
    boundary (orange) and the frame's DSC (positives) or false-mask share (negatives) at the model's input
    size. Models without predictions get a grey placeholder column.

    Args:
        inputs: from :func:`load_figure_inputs`.
        frame_ids: from :func:`choose_frames` (test frames).
        title: optional figure title.

    Returns:
        The matplotlib Figure.
    """
    if not frame_ids:
        raise ValueError("no frames to draw; choose_frames returns at least one test frame id")
    tissue = dict(zip(inputs.index["frame_id"], inputs.index["has_tissue"]))
    rows = [(f, f"({chr(97 + i)})\n{f}" + ("" if tissue.get(f, 1) else "\n(no tissue)"))
            for i, f in enumerate(frame_ids)]
    return _frame_grid(inputs, rows, title)


def failure_figure(inputs: FigureInputs, cases: pd.DataFrame, title: str | None = None):
    """Figure 8: the frames of :func:`failure_cases`, one row each, labelled with category and value.

    Args:
        inputs: from :func:`load_figure_inputs`.
        cases: from :func:`failure_cases`.
        title: optional figure title.

    Returns:
        The matplotlib Figure.
    """
    if cases.empty:
        raise ValueError("no failure cases to draw (every frame was predicted perfectly by every model)")
    rows = [(r.frame_id, f"({chr(97 + i)}) {r.category}\n{r.label}\n{r.frame_id}")
            for i, r in enumerate(cases.itertuples())]
    return _frame_grid(inputs, rows, title)


# ---------------------------------------------------------------------------------------------- Figure 1
def read_latencies(path: str | Path) -> dict[str, float]:
    """Measured latency per model from notebook 05's ``table5_compute.csv`` (columns ``model``, ``latency_ms``).

    A missing file, or a file without those columns, gives a :class:`FigureInputWarning` and an empty dict
    (the pipeline figure then says "not measured"); rows with an empty latency are left out.

    Example:
        >>> read_latencies("/nonexistent/table5_compute.csv")  # doctest: +SKIP
        {}
    """
    path = Path(path)
    if not path.is_file():
        _warn(f"{path}: latency table not found (made by notebook 05: `python -m endolib run --only 05`); "
              f"the pipeline figure says 'not measured'")
        return {}
    try:
        df = pd.read_csv(path)
    except Exception as e:  # an empty or foreign file
        _warn(f"{path}: cannot read the latency table ({type(e).__name__}: {e}); latencies 'not measured'")
        return {}
    missing = [c for c in ("model", "latency_ms") if c not in df.columns]
    if missing:
        _warn(f"{path}: missing column(s) {missing} (found {list(df.columns)}); latencies 'not measured'")
        return {}
    lat = pd.to_numeric(df["latency_ms"], errors="coerce")
    return {str(m): float(v) for m, v in zip(df["model"], lat) if np.isfinite(v)}


def _latency_text(latencies: dict, model: str) -> str:
    v = latencies.get(model)
    return f"{v:.1f} ms" if v is not None else "not measured"


def _box(ax, xy, w, h, text, colour, fontsize=8, weight="normal"):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="black", linewidth=0.8, alpha=0.9))
    if text:
        ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=fontsize, fontweight=weight)


def _arrow(ax, start, end, text="", colour="black", text_offset=(0.0, 0.12), fontsize=8):
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.0,
                                                      "shrinkA": 0, "shrinkB": 0})
    if text:
        mid = ((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1])
        ax.text(*mid, text, ha="center", va="center", fontsize=fontsize)


def _stage_lines(models, chosen: str, latencies: dict) -> list[tuple[str, bool]]:
    return [(f"{_label(m)}: {_latency_text(latencies, m)}", m == chosen) for m in models]


def pipeline_example(inputs: FigureInputs, frame_id: str | None = None, model: str = PIPELINE[1]
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """The thumbnails of Figure 1: a test frame and one segmenter's probability map on the display grid.

    Args:
        inputs: from :func:`load_figure_inputs`.
        frame_id: a test frame (default: the first test frame with tissue).
        model: the segmenter (default U-Net; falls back to the first model with predictions).

    Returns:
        ``(image uint8 HxWx3, probability float32 HxW)``, or None when there is no test frame.
    """
    test = inputs.test
    if frame_id is None:
        pos = test[test["has_tissue"] == 1]
        if (pos if len(pos) else test).empty:
            return None
        frame_id = (pos if len(pos) else test)["frame_id"].iloc[0]
    pred = inputs.predictions.get(model) or next(iter(inputs.predictions.values()))
    image, _ = _display_frame(inputs.data_dir, frame_id)
    levels = pred.probs[_row(pred)[frame_id]]
    return image, _display_prob(levels.astype(np.float32) / 255.0, image.shape[:2])


def pipeline_figure(latencies: dict[str, float], classifier: str = PIPELINE[0], segmenter: str = PIPELINE[1],
                    classifiers=CLASSIFIERS, segmenters=SEGMENTERS, sizes: dict[str, int] | None = None,
                    example: tuple[np.ndarray, np.ndarray] | None = None, source: str = "", threshold: float = 0.5):
    """Figure 1: the two-stage pipeline with the measured latency of every candidate model of each stage.

    Args:
        latencies: registry name -> milliseconds per frame (from :func:`read_latencies`); absent = "not measured".
        classifier: the stage-1 model of the highlighted pipeline.
        segmenter: the stage-2 model of the highlighted pipeline.
        classifiers: candidates listed in the stage-1 box.
        segmenters: candidates listed in the stage-2 box.
        sizes: registry name -> input side shown in the boxes (default: the paper's input sizes).
        example: optional ``(image uint8 HxWx3, probability map in [0, 1] of the same HxW)`` drawn as the input
            and output thumbnails.
        source: a line naming where the latencies come from (printed under the diagram).
        threshold: probability threshold of the example's mask.

    Returns:
        The matplotlib Figure.

    Example:
        >>> fig = pipeline_figure({"resnet18": 1.2, "unet": 27.0})
        >>> len(fig.axes) >= 1
        True
    """
    import matplotlib.pyplot as plt

    from endolib.models.factory import paper_input_size

    sizes = sizes or {m: paper_input_size(m) for m in [*classifiers, *segmenters, classifier, segmenter]}
    width, height, yc, line = 12.0, 6.0, 3.7, 0.3
    fig = plt.figure(figsize=(7.2, 3.6))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    stages = {}
    for x, colour, title, models, chosen in ((3.85, "#D6E9F5", "Stage 1: classifier", classifiers, classifier),
                                             (8.15, "#FBE3CC", "Stage 2: segmenter", segmenters, segmenter)):
        lines = _stage_lines(models, chosen, latencies)
        h = 0.85 + line * len(lines)
        stages[title] = yc - h / 2
        _box(ax, (x, yc), 3.0, h, "", colour)
        size_set = sorted({sizes[m] for m in models if m in sizes})
        ax.text(x, yc + h / 2 - 0.15, title, ha="center", va="top", fontsize=9, fontweight="bold")
        ax.text(x, yc + h / 2 - 0.48, "input " + " / ".join(f"{s}\u00d7{s}" for s in size_set), ha="center",
                va="top", fontsize=7, color="#333333")
        for i, (text, bold) in enumerate(lines):
            ax.text(x, yc + h / 2 - 0.82 - line * i, text, ha="center", va="top", fontsize=7.5,
                    fontweight="bold" if bold else "normal")
    for x, name in ((0.95, "input frame"), (11.05, "tissue overlay")):
        _box(ax, (x, yc), 1.6, 1.6, "" if example is not None else name.replace(" ", "\n"), "#FFFFFF")
        if example is not None:
            ax.text(x, yc - 0.9, name, ha="center", va="top", fontsize=8)
    if example is not None:
        image, prob = example
        for x, overlay in ((0.95, False), (11.05, True)):
            sub = fig.add_axes([(x - 0.72) / width, (yc - 0.72) / height, 1.44 / width, 1.44 / height])
            sub.imshow(_blend(image, prob >= threshold, PRED_COLOUR) if overlay else image)
            if overlay:
                _contour(sub, prob, threshold, PRED_COLOUR)
            _frame_axes(sub, image.shape)
    _arrow(ax, (1.75, yc), (2.35, yc))
    _arrow(ax, (5.35, yc), (6.65, yc), "tissue\npresent", text_offset=(0, 0.3), fontsize=7.5)
    _arrow(ax, (9.65, yc), (10.25, yc))
    bottom = stages["Stage 1: classifier"]
    _arrow(ax, (3.85, bottom), (3.85, 1.45))
    ax.text(3.95, (bottom + 1.45) / 2, "no tissue", ha="left", va="center", fontsize=7.5)
    ax.text(3.85, 1.3, "frame shown without a mask", ha="center", va="top", fontsize=7.5)
    lat_c, lat_s = latencies.get(classifier), latencies.get(segmenter)
    pair = f"{_label(classifier)} + {_label(segmenter)}"
    if lat_c is not None and lat_s is not None:
        total = lat_c + lat_s
        fps = 1000 / total
        summary = (f"{pair}: {lat_c:.1f} + {lat_s:.1f} = {total:.1f} ms per frame with tissue "
                   f"({fps:.{0 if fps >= 10 else 1}f} FPS), {lat_c:.1f} ms per frame without")
    else:
        summary = f"{pair}: latency not measured (notebook 05 writes results/<profile>/table5_compute.csv)"
    ax.text(width / 2, 0.55, summary, ha="center", va="center", fontsize=8, fontweight="bold")
    if source:
        ax.text(width / 2, 0.18, source, ha="center", va="center", fontsize=6.5, color="#555555")
    return fig
