"""Real-time two-stage video tool: annotate an endoscopy video, time it, smooth it over time, export it to ONNX.

The paper's use case is intraoperative: a video stream with the neural tissue highlighted. This module runs a
trained classifier (the *gate*) and a trained segmenter on every frame of a recording, draws the mask (fill and
contour) on the original-resolution frame and writes an mp4 with the same frame rate and frame count::

    python -m endolib video IN.mp4 --out OUT.mp4 --classifier runs/quick/resnet18 --segmenter runs/quick/unet \
        [--gate 0.5] [--smooth ema:0.6] [--hysteresis 0.4,0.6] [--backend torch|onnxruntime]

It prints the latency of every stage (decode, pre-processing, classifier, segmenter, overlay, encode), the
end-to-end frame rate measured on the run, and the share of frames the gate passed.

Temporal smoothing (EMA of the probability maps, hysteresis on the gate) is :mod:`endolib.deploy.smoothing`.
With ground truth for every frame (the phantom's operation videos) :func:`evaluate_video` scores each frame's
DSC and :func:`flicker` the mean frame-to-frame change of the predicted mask where the ground truth does not
change; :func:`smoothing_table` compares settings with and without smoothing. The stages come from
:mod:`endolib.deploy.stages` (``--backend torch|onnxruntime``); :mod:`endolib.deploy.backends` compares the two.

Example:
    >>> import numpy as np
    >>> flicker(np.zeros((3, 4, 4), bool), np.zeros((3, 4, 4), bool))
    0.0
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from endolib.config import get_profile
from endolib.data.video_io import (
    CODECS,
    VideoWriter,
    count_frames,
    iter_frames,
    video_info,
)
from endolib.deploy.backends import compare_backends
from endolib.deploy.preprocess import preprocess, sigmoid
from endolib.deploy.smoothing import (
    EMA,
    EMA_ALPHA,
    HYSTERESIS,
    Hysteresis,
    Smoothing,
    _check_prob,
    parse_hysteresis,
    parse_smooth,
)
from endolib.deploy.stages import BACKENDS, ONNX_ATOL, run_stage
from endolib.evaluation.metrics import dice, seg_counts
from endolib.training.load import LoadedRun, load_run

__all__ = ["OVERLAY_COLOUR", "OVERLAY_ALPHA", "STAGES", "TwoStagePipeline", "FrameResult", "prob_to_mask",
           "overlay_mask", "annotate_video", "VideoReport", "format_report", "evaluate_video", "flicker",
           "smoothing_table", "video_main"]


#: Mask colour (RGB) drawn on the frames: Okabe-Ito bluish green, visible on reddish tissue.
OVERLAY_COLOUR = (0, 158, 115)
#: Opacity of the mask fill (the contour is opaque).
OVERLAY_ALPHA = 0.4
#: Contour thickness in pixels per 256 pixels of the shorter frame side (at least 1 pixel).
CONTOUR_PX_PER_256 = 2


#: Largest mean |decoded - re-rendered| (grey levels) accepted when pairing a phantom video with its ground truth.
PHANTOM_MAX_DIFF = 10.0
#: Stage names of the per-frame timing columns (milliseconds), in pipeline order.
STAGES = ("decode", "preprocess", "classifier", "segmenter", "overlay", "encode")


# ------------------------------------------------------------------------------------------------ pipeline
@dataclass
class FrameResult:
    """The pipeline's output for one frame.

    Attributes:
        gate_prob: classifier probability of neural tissue.
        gate_open: whether the segmenter ran (after hysteresis, if any).
        prob: segmenter probability map at model resolution, after EMA (None when the gate was closed).
        ms: milliseconds per stage (``preprocess``, ``classifier``, ``segmenter``).
    """

    gate_prob: float
    gate_open: bool
    prob: np.ndarray | None
    ms: dict


class TwoStagePipeline:
    """Classifier gate then segmenter, frame by frame, with optional temporal smoothing (stateful).

    Args:
        classifier: a stage (:mod:`endolib.deploy.stages`) of a classifier run, or the run folder.
        segmenter: a stage of a segmenter run.
        smoothing: gate threshold, EMA and hysteresis settings.

    Example:
        >>> pipe = TwoStagePipeline(run_stage("runs/quick/resnet18"), run_stage("runs/quick/unet"))  # doctest: +SKIP
        >>> pipe(frame).gate_open  # doctest: +SKIP
    """

    def __init__(self, classifier, segmenter, smoothing: Smoothing | None = None):
        for stage, task, role in ((classifier, "cls", "classifier"), (segmenter, "seg", "segmenter")):
            if stage.task != task:
                where = getattr(getattr(stage, "run", None), "run_dir", stage.arch)
                raise ValueError(f"{where}: the {role} stage holds {stage.arch}, a {stage.task!r} model; "
                                 f"expected a {role}")
        self.classifier, self.segmenter = classifier, segmenter
        self.smoothing = smoothing or Smoothing()
        self.reset()

    def reset(self) -> None:
        """Forget the temporal state (start of a new video)."""
        s = self.smoothing
        self._gate = Hysteresis(*s.hysteresis) if s.hysteresis else Hysteresis(s.gate, s.gate)
        self._ema = EMA(s.ema_alpha) if s.ema_alpha is not None else None

    def __call__(self, frame: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        x_cls = preprocess(frame, self.classifier.size)
        t1 = time.perf_counter()
        gate_prob = float(sigmoid(self.classifier(x_cls)).reshape(-1)[0])
        t2 = time.perf_counter()
        ms = {"preprocess": 1e3 * (t1 - t0), "classifier": 1e3 * (t2 - t1), "segmenter": 0.0}
        if not self._gate.update(gate_prob):
            if self._ema is not None:
                self._ema.reset()
            return FrameResult(gate_prob, False, None, ms)
        x_seg = x_cls if self.segmenter.size == self.classifier.size else preprocess(frame, self.segmenter.size)
        t3 = time.perf_counter()
        prob = sigmoid(self.segmenter(x_seg))[0, 0]
        if self._ema is not None:
            prob = self._ema.update(prob)
        t4 = time.perf_counter()
        ms["preprocess"] += 1e3 * (t3 - t2)
        ms["segmenter"] = 1e3 * (t4 - t3)
        return FrameResult(gate_prob, True, prob, ms)


def prob_to_mask(prob: np.ndarray | None, shape: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """A model-resolution probability map as a boolean mask at frame resolution (bilinear upsampling of the
    probabilities, then ``>= threshold``); None (gate closed) gives an empty mask.

    Example:
        >>> prob_to_mask(np.ones((4, 4), np.float32), (6, 8)).shape
        (6, 8)
    """
    if prob is None:
        return np.zeros(shape, dtype=bool)
    p = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32))[None, None]
    if tuple(p.shape[-2:]) != tuple(shape):
        p = F.interpolate(p, size=tuple(shape), mode="bilinear", align_corners=False)
    return (p[0, 0] >= threshold).numpy()


def _contour(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, iterations=px, border_value=1)


def overlay_mask(frame: np.ndarray, mask: np.ndarray, colour: Sequence[int] = OVERLAY_COLOUR,
                 alpha: float = OVERLAY_ALPHA, contour_px: int | None = None) -> np.ndarray:
    """Draw a mask on an RGB frame: translucent fill plus an opaque contour.

    Args:
        frame: RGB ``uint8 (H, W, 3)``.
        mask: boolean ``(H, W)``.
        colour: RGB of fill and contour.
        alpha: fill opacity.
        contour_px: contour thickness (default: :data:`CONTOUR_PX_PER_256` per 256 px of the shorter side).

    Example:
        >>> m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
        >>> out = overlay_mask(np.zeros((8, 8, 3), np.uint8), m, contour_px=1)
        >>> out[3, 3].tolist(), out[2, 2].tolist(), out[0, 0].tolist()
        ([0, 63, 46], [0, 158, 115], [0, 0, 0])
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match frame {frame.shape[:2]}")
    out = frame.copy()
    if not mask.any():
        return out
    if contour_px is None:
        contour_px = max(1, round(CONTOUR_PX_PER_256 * min(mask.shape) / 256))
    col = np.asarray(colour, dtype=np.float32)
    out[mask] = np.round((1.0 - alpha) * out[mask].astype(np.float32) + alpha * col).astype(np.uint8)
    out[_contour(mask, contour_px)] = col.astype(np.uint8)
    return out


# ------------------------------------------------------------------------------------------------ annotate
@dataclass
class VideoReport:
    """What :func:`annotate_video` did.

    Attributes:
        frames: one row per frame: ``frame``, ``time_s``, ``gate_prob``, ``gate_open``, ``mask_fraction``
            and ``<stage>_ms`` for each of :data:`STAGES`.
        summary: input/output paths, frame counts, fps of the input, ``fps_end_to_end`` (frames / wall time
            of the whole loop), ``fps_inference`` (frames / time in pre-processing and the two models),
            mean latency per stage (``<stage>_ms``; the segmenter's over the frames it ran on), ``gate_share``.
    """

    frames: pd.DataFrame
    summary: dict


def _as_stage(model, backend: str = "torch"):
    """A run folder or :class:`LoadedRun` becomes a stage of ``backend``; a ready stage (any object with ``task``,
    ``size``, ``arch``, ``backend`` that maps model inputs to logits) is returned as is."""
    return run_stage(model, backend) if isinstance(model, (str, Path, LoadedRun)) else model


def annotate_video(video: str | Path, out: str | Path, classifier, segmenter, smoothing: Smoothing | None = None,
                   backend: str = "torch", threshold: float | None = None, codec: str | None = None,
                   progress: bool = True) -> VideoReport:
    """Run the two-stage pipeline on every frame of a video and write the annotated mp4 (same size, frame rate and
    frame count).

    Args:
        video: input video file.
        out: output ``.mp4``.
        classifier: classifier run folder (or :class:`LoadedRun`, or a ready stage).
        segmenter: segmenter run folder (or :class:`LoadedRun`, or a ready stage).
        smoothing: gate threshold / EMA / hysteresis (default: plain gate at the profile threshold).
        backend: ``"torch"`` or ``"onnxruntime"`` (ignored for ready stages).
        threshold: segmentation probability threshold (default ``Profile.threshold``).
        codec: encoder (default: libx264, else mpeg4).
        progress: tqdm progress bar.

    Returns:
        A :class:`VideoReport`; ``summary["frames_out"]`` is counted from the written file.

    Example:
        >>> cls_run, seg_run = "runs/quick/resnet18", "runs/quick/unet"
        >>> rep = annotate_video("op.mp4", "op_annotated.mp4", cls_run, seg_run)  # doctest: +SKIP
        >>> print(format_report(rep))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    threshold = get_profile().threshold if threshold is None else _check_prob("threshold", threshold)
    cls_stage, seg_stage = _as_stage(classifier, backend), _as_stage(segmenter, backend)
    pipe = TwoStagePipeline(cls_stage, seg_stage, smoothing)
    info = video_info(video)
    out = Path(out)
    if out.resolve() == Path(video).resolve():
        raise ValueError(f"{out}: the output would overwrite the input video")
    rows = []
    frames = iter_frames(video)
    bar = tqdm(total=info.frames or None, desc=f"annotate {Path(video).name}", unit="frame", disable=not progress)
    start = time.perf_counter()
    with VideoWriter(out, info.fps, codec) as writer:
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            t1 = time.perf_counter()
            if frame is None:
                break
            res = pipe(frame)
            t2 = time.perf_counter()
            mask = prob_to_mask(res.prob, frame.shape[:2], threshold)
            drawn = overlay_mask(frame, mask)
            t3 = time.perf_counter()
            writer.write(drawn)
            t4 = time.perf_counter()
            rows.append({"frame": len(rows), "time_s": len(rows) / float(info.fps), "gate_prob": res.gate_prob,
                         "gate_open": res.gate_open, "mask_fraction": float(mask.mean()),
                         "decode_ms": 1e3 * (t1 - t0), **{f"{k}_ms": v for k, v in res.ms.items()},
                         "overlay_ms": 1e3 * (t3 - t2), "encode_ms": 1e3 * (t4 - t3)})
            bar.update(1)
    wall = time.perf_counter() - start
    bar.close()
    df = pd.DataFrame(rows)
    infer_s = df[["preprocess_ms", "classifier_ms", "segmenter_ms"]].to_numpy().sum() / 1e3
    summary = {
        "input": str(video), "output": str(out), "classifier": cls_stage.arch, "segmenter": seg_stage.arch,
        "backend": cls_stage.backend, "smoothing": pipe.smoothing.label, "threshold": threshold,
        "codec": writer.codec, "width": info.width, "height": info.height, "fps_input": float(info.fps),
        "frames_in": len(df), "frames_out": count_frames(out), "gate_share": float(df["gate_open"].mean()),
        "fps_end_to_end": len(df) / wall, "fps_inference": len(df) / infer_s if infer_s > 0 else float("inf"),
        "wall_s": wall,
    }
    for stage in STAGES:
        col = df[f"{stage}_ms"]
        if stage == "segmenter":  # mean over the frames it ran on (NaN when the gate passed none)
            col = col[df["gate_open"]]
        summary[f"{stage}_ms"] = float(col.mean()) if len(col) else float("nan")
    return VideoReport(df, summary)


def format_report(report: VideoReport) -> str:
    """The printed summary of :func:`annotate_video`: per-stage latency, end-to-end FPS, gate share."""
    s = report.summary
    lines = [f"{s['input']} -> {s['output']} ({s['codec']}, {s['width']}x{s['height']} @ {s['fps_input']:g} fps)",
             f"models: {s['classifier']} gate -> {s['segmenter']} ({s['backend']}); smoothing: {s['smoothing']}",
             f"frames: {s['frames_in']} in, {s['frames_out']} out; gate passed {s['gate_share']:.1%} of frames",
             "latency per frame (ms):"]
    for stage in STAGES:
        note = " (frames the gate passed)" if stage == "segmenter" else ""
        value = s[f"{stage}_ms"]
        lines.append(f"  {stage:<11}{value:9.2f}{note}" if np.isfinite(value) else f"  {stage:<11}{'n/a':>9} "
                     f"(the gate passed no frame)")
    lines.append(f"end-to-end: {s['fps_end_to_end']:.1f} FPS (decode to encode, {s['wall_s']:.2f} s wall); "
                 f"inference only: {s['fps_inference']:.1f} FPS")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ evaluation
def flicker(pred_masks: np.ndarray, gt_masks: np.ndarray) -> float:
    """Mean frame-to-frame change of the predicted mask where the ground truth does not change.

    For each pair of consecutive frames, the fraction of pixels whose prediction flips among the pixels whose
    ground truth stays the same; averaged over pairs (pairs where every ground-truth pixel changes are skipped).

    Args:
        pred_masks: boolean ``(T, H, W)``.
        gt_masks: boolean ``(T, H, W)``.

    Returns:
        A fraction in [0, 1] (NaN for fewer than two frames).

    Example:
        >>> p = np.array([[[1, 0]], [[0, 0]], [[0, 0]]], bool); g = np.zeros_like(p)
        >>> flicker(p, g)
        0.25
    """
    pred, gt = np.asarray(pred_masks, dtype=bool), np.asarray(gt_masks, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must both be (T, H, W); got {pred.shape} and {gt.shape}")
    stable = gt[1:] == gt[:-1]
    flips = pred[1:] != pred[:-1]
    n_stable = stable.reshape(len(stable), -1).sum(axis=1)
    n_flip = (flips & stable).reshape(len(stable), -1).sum(axis=1)
    ok = n_stable > 0
    return float(np.mean(n_flip[ok] / n_stable[ok])) if ok.any() else float("nan")


def evaluate_video(frames: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray], pipeline: TwoStagePipeline,
                   threshold: float | None = None, progress: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Run the pipeline over in-memory frames with ground truth and score every frame.

    Args:
        frames: RGB ``uint8 (T, H, W, 3)``.
        gt_masks: ground-truth masks ``(T, H, W)`` (boolean or 0/1 or 0/255).
        pipeline: the two-stage pipeline (reset here, so the video starts fresh).
        threshold: segmentation threshold (default ``Profile.threshold``).
        progress: tqdm progress bar.

    Returns:
        ``(per_frame, pred_masks)``: a DataFrame with ``frame``, ``gate_prob``, ``gate_open``, ``has_tissue``,
        ``dsc`` (empty prediction on an empty ground truth = 1, the project's rule) and the boolean predicted
        masks ``(T, H, W)`` at frame resolution.
    """
    from tqdm.auto import tqdm

    threshold = get_profile().threshold if threshold is None else threshold
    gt = np.asarray(gt_masks) > 0
    if len(frames) != len(gt):
        raise ValueError(f"{len(frames)} frames but {len(gt)} ground-truth masks")
    if len(frames) == 0:
        raise ValueError("no frames to evaluate")
    pipeline.reset()
    preds, rows = np.zeros(gt.shape, dtype=bool), []
    for t in tqdm(range(len(frames)), desc="evaluate", unit="frame", disable=not progress):
        if frames[t].shape[:2] != gt[t].shape:
            raise ValueError(f"frame {t} is {frames[t].shape[:2]} but its mask is {gt[t].shape}")
        res = pipeline(frames[t])
        preds[t] = prob_to_mask(res.prob, gt[t].shape, threshold)
        rows.append({"frame": t, "gate_prob": res.gate_prob, "gate_open": res.gate_open,
                     "has_tissue": bool(gt[t].any())})
    c = seg_counts(preds, gt)
    df = pd.DataFrame(rows)
    df["dsc"] = dice(c.tp, c.fp, c.fn)
    return df, preds


def smoothing_table(frames: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray], classifier, segmenter,
                    settings: dict[str, Smoothing], threshold: float | None = None,
                    progress: bool = True) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Flicker and DSC of the same video under several smoothing settings.

    Args:
        frames, gt_masks: the video and its per-frame ground truth (see :func:`evaluate_video`).
        classifier, segmenter: stages (or run folders, loaded with the torch backend).
        settings: name -> :class:`Smoothing`, e.g. ``{"none": Smoothing(), "ema": Smoothing(ema_alpha=0.6)}``.
        threshold: segmentation threshold.
        progress: tqdm over settings.

    Returns:
        ``(table, per_frame)``: one row per setting (``setting``, ``ema_alpha``, ``hysteresis``, ``gate_share``,
        ``dsc`` = mean per-frame DSC, ``dsc_tissue`` = mean over frames with tissue, ``flicker``) and the
        per-frame DataFrame of each setting.
    """
    from tqdm.auto import tqdm

    cls_stage, seg_stage = _as_stage(classifier), _as_stage(segmenter)
    gt = np.asarray(gt_masks) > 0
    rows, per_frame = [], {}
    for name, smoothing in tqdm(settings.items(), desc="smoothing", disable=not progress):
        df, preds = evaluate_video(frames, gt, TwoStagePipeline(cls_stage, seg_stage, smoothing), threshold)
        per_frame[name] = df
        tissue = df["has_tissue"]
        rows.append({"setting": name, "ema_alpha": smoothing.ema_alpha,
                     "hysteresis": ("-".join(f"{v:g}" for v in smoothing.hysteresis) if smoothing.hysteresis
                                    else None),
                     "gate_share": float(df["gate_open"].mean()), "dsc": float(df["dsc"].mean()),
                     "dsc_tissue": float(df.loc[tissue, "dsc"].mean()) if tissue.any() else float("nan"),
                     "flicker": flicker(preds, gt)})
    return pd.DataFrame(rows), per_frame


# ------------------------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m endolib video",
        description="Annotate an endoscopy video with the two-stage pipeline (classifier gate -> segmenter); "
                    "prints per-stage latency, end-to-end FPS and the share of frames the gate passed.")
    ap.add_argument("input", metavar="IN", help="input video file (anything FFmpeg reads: mp4, avi, mov, ...)")
    ap.add_argument("--out", required=True, metavar="OUT.mp4", help="annotated output video")
    ap.add_argument("--classifier", required=True, metavar="RUN", help="classifier run folder runs/<profile>/<model>")
    ap.add_argument("--segmenter", required=True, metavar="RUN", help="segmenter run folder runs/<profile>/<model>")
    ap.add_argument("--gate", type=float, default=None,
                    help=f"classifier threshold (default {get_profile().threshold}); replaced by --hysteresis")
    ap.add_argument("--threshold", type=float, default=None,
                    help=f"segmentation probability threshold (default {get_profile().threshold})")
    ap.add_argument("--smooth", default="none", metavar="none|ema:ALPHA",
                    help=f"EMA of the probability maps, weight ALPHA on the newest frame (e.g. ema:{EMA_ALPHA})")
    ap.add_argument("--hysteresis", default=None, metavar="LOW,HIGH",
                    help=f"gate hysteresis: open at p >= HIGH, close at p < LOW (e.g. "
                         f"{HYSTERESIS[0]},{HYSTERESIS[1]})")
    ap.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend")
    ap.add_argument("--codec", default=None, help=f"video encoder (default: first available of {', '.join(CODECS)})")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for inference (default: torch's)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return ap


def video_main(argv: list[str]) -> int:
    """``python -m endolib video IN --out OUT.mp4 --classifier RUN --segmenter RUN [...]`` (see ``--help``;
    ``python -m endolib video --realtime IN ...`` is the threaded runtime, :func:`endolib.deploy.realtime.realtime_main`).

    Bad input (not a video, zero frames, a run without checkpoint) raises ValueError/FileNotFoundError with a
    message naming the file; ``python -m endolib`` prints it and exits with status 2.

    Returns:
        0 on success.
    """
    args = _parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    gate = get_profile().threshold if args.gate is None else args.gate
    smoothing = Smoothing(gate=gate, ema_alpha=parse_smooth(args.smooth), hysteresis=parse_hysteresis(args.hysteresis))
    video_info(args.input)  # fail on a bad video before loading models
    classifier, segmenter = load_run(args.classifier), load_run(args.segmenter)
    if args.backend == "onnxruntime":
        first = next(iter_frames(args.input))
        for run in (classifier, segmenter):
            c = compare_backends(run, inputs=preprocess(first, run.input_size))
            print(f"ONNX check {c['model']}: max |onnx - torch| = {c['max_abs_diff_logits']:.2e} (logits), "
                  f"{c['max_abs_diff_prob']:.2e} (probabilities; tolerance {ONNX_ATOL:g}) -> "
                  f"{'agree' if c['agree'] else 'DISAGREE'}")
    report = annotate_video(args.input, args.out, classifier, segmenter, smoothing, backend=args.backend,
                            threshold=args.threshold, codec=args.codec, progress=not args.no_progress)
    print(format_report(report))
    if report.summary["frames_out"] != report.summary["frames_in"]:
        print(f"warning: {args.out} holds {report.summary['frames_out']} frames, {report.summary['frames_in']} "
              f"were decoded from {args.input}")
    return 0
