"""The demo videos of notebook 07: the phantom's operation videos and 30 FPS clips with ground truth for every
frame (re-rendered from the phantom's scene), or a user's video; and the figures of annotated frames and the
per-frame timeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from endolib.data.phantom import operation_scene
from endolib.data.video_io import read_video
from endolib.deploy.smoothing import Smoothing
from endolib.deploy.video import PHANTOM_MAX_DIFF, _contour

__all__ = ["OperationVideo", "phantom_video", "phantom_clip", "dataset_clip", "demo_video", "frame_indices",
           "plot_video_frames",
           "plot_video_timeline"]


# ------------------------------------------------------------------------------------------------ phantom video
@dataclass
class OperationVideo:
    """A phantom operation video with its ground truth for every frame.

    Attributes:
        path: the mp4 under ``phantom_raw/videos/``.
        operation_id: e.g. ``OP23``.
        fps: frame rate.
        frames: RGB ``uint8 (T, H, W, 3)``, decoded from the mp4 (what the video tool sees).
        masks: boolean ``(T, H, W)`` ground truth (visible neural tissue, the phantom's 0.5 level); None for a
            video without ground truth.
        split: the operation's split (``train``/``test``; empty when unknown).
    """

    path: Path
    operation_id: str
    fps: Fraction
    frames: np.ndarray = field(repr=False)
    masks: np.ndarray | None = field(repr=False)
    split: str = ""


def phantom_video(profile: str = "smoke", operation_id: str | None = None, raw_dir: str | Path | None = None,
                  max_diff: float = PHANTOM_MAX_DIFF, progress: bool = False) -> OperationVideo:
    """An operation video of the phantom with per-frame ground truth (re-rendered from the phantom's scene).

    The frames come from the mp4 on disk; the ground truth is rendered from the same scene. Each frame is
    checked against its re-rendering (mean absolute difference at most ``max_diff`` grey levels, i.e. codec
    loss only), so a phantom generated differently can never be paired with the wrong ground truth.

    Args:
        profile: whose phantom (``paths(profile).phantom_raw``).
        operation_id: e.g. ``"OP23"`` (default: the first test operation of the manifest).
        raw_dir: the phantom folder (default ``paths(profile).phantom_raw``).
        max_diff: largest accepted mean |decoded - rendered| per frame.
        progress: tqdm bar over frames.

    Example:
        >>> v = phantom_video("smoke")  # doctest: +SKIP
        >>> v.frames.shape[0] == v.masks.shape[0]  # doctest: +SKIP
        True
    """
    from tqdm.auto import tqdm

    from endolib.config import paths
    from endolib.data.phantom_render import render_frame
    from endolib.repro import load_json

    raw = Path(raw_dir) if raw_dir is not None else paths(profile).phantom_raw
    meta = raw / "phantom.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: no phantom here; generate it with notebook 01 "
                                f"(`python -m endolib run --profile {profile} --only 01`)")
    params = load_json(meta).get("params", {})
    missing = [k for k in ("seed", "size", "frames_per_operation", "interval_s", "video_fps") if k not in params]
    if missing:
        raise ValueError(f"{meta}: params lack {missing}")
    manifest = pd.read_csv(raw / "manifest.csv")
    if operation_id is None:
        test_ops = sorted(manifest.loc[manifest["split"] == "test", "operation_id"].astype(str))
        if not test_ops:
            raise ValueError(f"{raw / 'manifest.csv'}: no test operation")
        operation_id = test_ops[0]
    path = raw / "videos" / f"{operation_id}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no video for operation {operation_id} (was the phantom generated with "
                                f"videos=False?)")
    frames, fps = read_video(path)
    scene = operation_scene(params, operation_id)
    masks = np.zeros(frames.shape[:3], dtype=bool)
    for k in tqdm(range(len(frames)), desc=f"ground truth {operation_id}", disable=not progress):
        img, soft = render_frame(scene, k / float(params["video_fps"]))
        diff = (float(np.abs(img.astype(np.float32) - frames[k].astype(np.float32)).mean())
                if img.shape == frames[k].shape else float("inf"))
        if diff > max_diff:
            raise ValueError(f"{path}: frame {k} does not match the phantom's re-rendering (mean |diff| {diff:.1f} > "
                             f"{max_diff}); the video was not made by this version of the phantom generator with seed "
                             f"{params['seed']}: regenerate the phantom (notebook 01, overwrite)")
        masks[k] = soft > 0.5
    split = manifest.loc[manifest["operation_id"].astype(str) == operation_id, "split"]
    return OperationVideo(path, operation_id, fps, frames, masks, str(split.iloc[0]) if len(split) else "")


def phantom_clip(profile: str = "smoke", operation_id: str | None = None, raw_dir: str | Path | None = None
                 ) -> OperationVideo:
    """A 30 FPS phantom clip of an operation with per-frame ground truth (:func:`endolib.data.phantom.write_clip`:
    continuous camera motion, tissue entering and leaving; rendered on first use into ``phantom_raw/clips/``).

    Example:
        >>> clip = phantom_clip("smoke")  # doctest: +SKIP
        >>> float(clip.fps), clip.frames.shape[0] == clip.masks.shape[0]  # doctest: +SKIP
        (30.0, True)
    """
    from endolib.data.phantom import read_clip_masks, write_clip

    path = write_clip(profile, operation_id, raw_dir=raw_dir)
    frames, fps = read_video(path)
    masks = read_clip_masks(path)
    if masks.shape != frames.shape[:3]:
        raise ValueError(f"{path}: {len(frames)} frames of {frames.shape[1:3]} but ground truth {masks.shape}; "
                         f"re-render it (endolib.data.phantom.write_clip(overwrite=True))")
    op = path.stem.split("_")[0]
    return OperationVideo(path, op, fps, frames, masks, "test" if operation_id is None else "")


#: Frame rate of :func:`dataset_clip` (its frames are stills sampled from an operation, not a continuous video).
DATASET_CLIP_FPS = 2
#: Longest side of :func:`dataset_clip`'s frames (larger frames are scaled down, keeping their aspect ratio).
DATASET_CLIP_MAX_SIDE = 480


def dataset_clip(data_dir: str | Path, out_dir: str | Path, operation_id: str | None = None,
                 fps: float = DATASET_CLIP_FPS, max_frames: int | None = None) -> OperationVideo:
    """A video of one test operation of a prepared dataset that is not the phantom: its frames in index order,
    written as an mp4 at ``fps`` with their masks as per-frame ground truth (a slideshow of stills: flicker
    numbers compare smoothing settings on it, not on continuous motion).

    Args:
        data_dir: the prepared dataset.
        out_dir: where the mp4 is written (``<operation>_frames.mp4``; notebook 07: the study's ``runs/.../video``).
        operation_id: which operation (default: the first test operation, sorted ids).
        fps: frame rate of the written video.
        max_frames: at most this many frames (the first ones; None: all).

    Returns:
        An :class:`OperationVideo` whose frames are decoded from the written mp4 (what the video tool sees) and
        whose masks are the dataset's, resized (nearest) to the video's size.

    Example:
        >>> clip = dataset_clip("data/mine", "runs/quick/mine/video")  # doctest: +SKIP
        >>> clip.frames.shape[0] == clip.masks.shape[0]  # doctest: +SKIP
        True
    """
    from endolib.data.dataset import load_image, load_index, load_mask
    from endolib.data.video_io import write_video

    data_dir = Path(data_dir)
    index = load_index(data_dir)
    test = index[index["split"] == "test"]
    ops = sorted(test["operation_id"].astype(str).unique())
    if not ops:
        raise ValueError(f"{data_dir}: the prepared dataset has no test operation")
    op = ops[0] if operation_id is None else str(operation_id)
    if op not in ops:
        raise ValueError(f"{data_dir}: {op!r} is not a test operation; test operations: {', '.join(ops[:10])}")
    ids = test.loc[test["operation_id"].astype(str) == op, "frame_id"].tolist()[:max_frames]
    h, w = load_image(data_dir, ids[0]).shape[:2]
    scale = min(1.0, DATASET_CLIP_MAX_SIDE / max(h, w))
    size = (max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2))  # even sides for the codec
    path = Path(out_dir) / f"{op}_frames.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, (load_image(data_dir, f, size=size) for f in ids), fps=fps)
    frames, rate = read_video(path)
    masks = np.stack([load_mask(data_dir, f, size=size) > 0 for f in ids])
    if len(frames) != len(masks):
        raise ValueError(f"{path}: decoded {len(frames)} frames but wrote {len(masks)}")
    return OperationVideo(path, op, rate, frames, masks, "test")


def demo_video(profile: str = "smoke", data_dir: str | Path | None = None, video: str | Path | None = None,
               progress: bool = False, clip: bool = True, out_dir: str | Path | None = None) -> OperationVideo:
    """The video of notebook 07: a user's file (no ground truth); for the phantom an operation with ground truth:
    its 30 FPS clip (``clip=True``, :func:`phantom_clip`) or its time-lapse operation video (:func:`phantom_video`);
    for another prepared dataset (:func:`endolib.config.dataset_name` not None) its first test operation's frames
    as a video (:func:`dataset_clip`, written into ``out_dir``).

    Args:
        profile: whose phantom.
        data_dir: a prepared dataset whose first test operation (sorted ids) names the phantom video (default:
            the first test operation of the phantom's manifest, the same operation for the phantom).
        video: a video file; when given, ``data_dir`` is not used and ``masks`` is None.
        progress: tqdm bar while rendering the ground truth.
        clip: the 30 FPS clip (default) instead of the operation's time-lapse video.
        out_dir: where :func:`dataset_clip` writes the video of a dataset that is not the phantom (default: the
            study's ``runs/<profile>/<dataset>/video``).

    Example:
        >>> clip = demo_video("smoke")  # doctest: +SKIP
        >>> clip.operation_id, clip.split  # doctest: +SKIP
        ('OP23', 'test')
    """
    if video is not None:
        frames, fps = read_video(video)
        return OperationVideo(Path(video), Path(video).stem, fps, frames, None)
    operation_id = None
    if data_dir is not None:
        from endolib.config import study_paths
        from endolib.data.dataset import load_index

        study = study_paths(profile, data_dir)
        if study.dataset is not None:  # not the phantom: no operation video, its test frames make one
            return dataset_clip(data_dir, out_dir if out_dir is not None else study.runs / "video")

        index = load_index(data_dir)
        test_ops = sorted(index.loc[index["split"] == "test", "operation_id"].astype(str).unique())
        if not test_ops:
            raise ValueError(f"{data_dir}: the prepared dataset has no test operation")
        operation_id = test_ops[0]
    if clip:
        return phantom_clip(profile, operation_id)
    return phantom_video(profile, operation_id=operation_id, progress=progress)


# ------------------------------------------------------------------------------------------------ figures
def frame_indices(n_frames: int, n: int) -> list[int]:
    """``n`` evenly spaced frame indices of a video (first and last included).

    Example:
        >>> frame_indices(80, 4)
        [0, 26, 53, 79]
    """
    if n_frames < 1 or n < 1:
        raise ValueError(f"need at least one frame and one index, got n_frames={n_frames}, n={n}")
    return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, min(n, n_frames))})


def plot_video_frames(frames: np.ndarray, annotated: np.ndarray, gt_masks: np.ndarray | None = None,
                      per_frame: pd.DataFrame | None = None, indices: Sequence[int] | None = None,
                      fps: float | None = None, n: int = 4):
    """Sample frames: the input with the ground-truth contour (top) and the annotated output (bottom).

    Args:
        frames: input RGB ``(T, H, W, 3)``.
        annotated: output RGB ``(T, H, W, 3)`` (e.g. :func:`read_video` of the annotated file).
        gt_masks: ground truth ``(T, H, W)`` (contour drawn in white), optional.
        per_frame: :attr:`VideoReport.frames` or an :func:`endolib.deploy.video.evaluate_video` table (titles show gate probability
            and, if present, DSC).
        indices: frames to show (default :func:`frame_indices`).
        fps: frame rate for the time in the titles.
        n: number of frames when ``indices`` is None.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if len(frames) != len(annotated):
        raise ValueError(f"{len(frames)} input frames but {len(annotated)} annotated frames")
    idx = list(indices) if indices is not None else frame_indices(len(frames), n)
    fig, axes = plt.subplots(2, len(idx), figsize=(2.2 * len(idx), 4.6), squeeze=False)
    for j, t in enumerate(idx):
        top = frames[t]
        if gt_masks is not None:
            top = top.copy()
            top[_contour(np.asarray(gt_masks[t]) > 0, 1)] = 255
        axes[0, j].imshow(top)
        axes[1, j].imshow(annotated[t])
        title = f"frame {t}" + (f" ({t / fps:.1f} s)" if fps else "")
        if per_frame is not None:
            row = per_frame.iloc[t]
            title += f"\ngate p={row['gate_prob']:.2f} {'open' if row['gate_open'] else 'closed'}"
            if "dsc" in row:
                title += f", DSC {row['dsc']:.2f}"
        axes[0, j].set_title(title, fontsize=7)
    axes[0, 0].set_ylabel("input + ground truth" if gt_masks is not None else "input", fontsize=8)
    axes[1, 0].set_ylabel("annotated output", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_video_timeline(per_frame: dict[str, pd.DataFrame], fps: float, settings: dict[str, Smoothing] | None = None):
    """Per frame: the gate probability with its thresholds and each setting's gate state (top) and DSC (bottom);
    frames whose ground truth shows tissue are shaded.

    Args:
        per_frame: setting name -> :func:`endolib.deploy.video.evaluate_video` table (all of the same video).
        fps: frame rate (x axis in seconds).
        settings: the :class:`Smoothing` of each name (draws the gate threshold / hysteresis band).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from endolib.plotting import PALETTE

    names = list(per_frame)
    first = per_frame[names[0]]
    t = first["frame"].to_numpy() / float(fps)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True)
    tissue = first["has_tissue"].to_numpy(bool)
    for ax in (ax1, ax2):
        ax.fill_between(t, 0, 1, where=tissue, step="mid", color="0.9", label="ground truth has tissue")
    ax1.plot(t, first["gate_prob"], color="0.2", lw=1.2, label="gate probability")
    for i, name in enumerate(names):
        c = PALETTE[i % len(PALETTE)]
        df = per_frame[name]
        ax1.plot(t, np.where(df["gate_open"], 1.02 + 0.03 * i, np.nan), "s", ms=2, color=c, label=f"open: {name}")
        ax2.plot(t, df["dsc"], color=c, lw=1.0, label=name)
        s = (settings or {}).get(name)
        for y in (() if s is None else s.hysteresis or ((s.gate,) if 0.0 < s.gate < 1.0 else ())):
            ax1.axhline(y, color=c, ls=":", lw=0.8)
    ax1.set(ylabel="probability", ylim=(-0.02, 1.05 + 0.03 * len(names)), title="gate (classifier)")
    ax2.set(xlabel="time (s)", ylabel="DSC", ylim=(-0.02, 1.02), title="segmentation per frame")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig
