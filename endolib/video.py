"""Real-time two-stage video tool: annotate an endoscopy video, time it, smooth it over time, export it to ONNX.

The paper's use case is intraoperative: a video stream with the neural tissue highlighted. This module runs a
trained classifier (the *gate*) and a trained segmenter on every frame of a recording, draws the mask (fill and
contour) on the original-resolution frame and writes an mp4 with the same frame rate and frame count::

    python -m endolib video IN.mp4 --out OUT.mp4 --classifier runs/quick/resnet18 --segmenter runs/quick/unet \\
        [--gate 0.5] [--smooth ema:0.6] [--hysteresis 0.4,0.6] [--backend torch|onnx]

It prints the latency of every stage (decode, pre-processing, classifier, segmenter, overlay, encode), the
end-to-end frame rate measured on the run, and the share of frames the gate passed.

Temporal smoothing (the paper names temporal context as future work; this is its simplest useful form):

* **EMA** of the segmenter's probability maps: ``s_t = alpha * p_t + (1 - alpha) * s_{t-1}`` with ``s`` reset
  to ``p_t`` on the first frame after the gate (re)opens, so a re-opened gate does not fade in from zero.
  ``alpha = 1`` is no smoothing; smaller ``alpha`` smooths more (and lags more).
* **Hysteresis** on the gate decision: a closed gate opens when the classifier probability reaches ``high``,
  an open gate closes when it falls below ``low``. The gate starts closed. Without hysteresis the gate is open
  iff ``p >= gate``.

With ground truth for every frame (the phantom's operation videos) :func:`evaluate_video` scores each frame's
DSC and :func:`flicker` the mean frame-to-frame change of the predicted mask where the ground truth does not
change; :func:`smoothing_table` compares settings with and without smoothing.

Both stages export to ONNX (:func:`export_onnx`, opset :data:`ONNX_OPSET`, checked with ``onnx.checker``) and
run under ONNX Runtime (:class:`OnnxStage`); :func:`compare_backends` reports the largest difference to PyTorch
and :func:`benchmark_backends` times both.

Example:
    >>> import numpy as np
    >>> hysteresis_gate([0.3, 0.7, 0.5, 0.35, 0.5], low=0.4, high=0.6).tolist()
    [False, True, True, False, False]
    >>> ema_filter(np.array([0.0, 1.0, 1.0]), alpha=0.5).tolist()
    [0.0, 0.5, 0.75]
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import get_profile
from .metrics import dice, seg_counts
from .models import model_task
from .train import normalise

__all__ = [
    "ONNX_OPSET", "ONNX_ATOL", "EMA_ALPHA", "HYSTERESIS", "OVERLAY_COLOUR", "OVERLAY_ALPHA", "BACKENDS", "STAGES",
    "LoadedRun", "load_run", "VideoInfo", "video_info", "iter_frames", "read_video", "write_video", "count_frames",
    "VideoWriter", "Smoothing", "parse_smooth", "parse_hysteresis", "Hysteresis", "EMA", "hysteresis_gate",
    "ema_filter", "preprocess", "TorchStage", "OnnxStage", "make_stage", "export_onnx", "onnx_path",
    "TwoStagePipeline", "FrameResult", "prob_to_mask", "overlay_mask", "annotate_video", "VideoReport",
    "format_report", "OperationVideo", "phantom_video", "phantom_clip", "demo_video", "evaluate_video", "flicker",
    "smoothing_table",
    "smoothing_settings",
    "frame_indices", "plot_video_frames", "plot_video_timeline", "compare_backends", "benchmark_backends",
    "video_main",
]

# ------------------------------------------------------------------------------------------------ defaults
#: ONNX opset used by :func:`export_onnx`.
ONNX_OPSET = 17
#: Largest accepted |ONNX Runtime - PyTorch| on output probabilities (sigmoid of the logits).
ONNX_ATOL = 1e-4
#: Default EMA weight of the newest probability map (``--smooth ema:0.6``).
EMA_ALPHA = 0.6
#: Default gate hysteresis thresholds (low, high) (``--hysteresis 0.4,0.6``).
HYSTERESIS = (0.4, 0.6)
#: Mask colour (RGB) drawn on the frames: Okabe-Ito bluish green, visible on reddish tissue.
OVERLAY_COLOUR = (0, 158, 115)
#: Opacity of the mask fill (the contour is opaque).
OVERLAY_ALPHA = 0.4
#: Contour thickness in pixels per 256 pixels of the shorter frame side (at least 1 pixel).
CONTOUR_PX_PER_256 = 2
#: Preferred encoders, first available wins.
CODECS = ("libx264", "mpeg4")
#: Inference backends.
BACKENDS = ("torch", "onnx")
#: Largest mean |decoded - re-rendered| (grey levels) accepted when pairing a phantom video with its ground truth.
PHANTOM_MAX_DIFF = 10.0
#: Stage names of the per-frame timing columns (milliseconds), in pipeline order.
STAGES = ("decode", "preprocess", "classifier", "segmenter", "overlay", "encode")


# ------------------------------------------------------------------------------------------------ runs
@dataclass
class LoadedRun:
    """A trained model read from a run folder (``runs/<profile>/<model>/``, see docs/layout.md).

    Attributes:
        run_dir: the folder.
        arch: registry name (``resnet18``, ``unet``, ...).
        task: ``"cls"`` or ``"seg"``.
        input_size: the square side the model was trained at.
        model: the network in eval mode, on CPU.
        config: the run's ``config.json``.
    """

    run_dir: Path
    arch: str
    task: str
    input_size: int
    model: nn.Module
    config: dict = field(repr=False)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "model.safetensors"


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a trained model from its run folder (``config.json`` + ``model.safetensors``) with
    :func:`endolib.train.load_run`, after checking that the checkpoint is there.

    Args:
        run_dir: ``runs/<profile>/<model>/`` (or a :class:`LoadedRun`, returned unchanged).

    Returns:
        A :class:`LoadedRun` with the model in eval mode.

    Raises:
        FileNotFoundError: the folder, its config.json or its checkpoint is missing.
        ValueError: the config or the weights do not fit the architecture.

    Example:
        >>> run = load_run("runs/quick/unet")  # doctest: +SKIP
        >>> run.arch, run.input_size  # doctest: +SKIP
        ('unet', 64)
    """
    from .train import load_run as train_load_run

    if isinstance(run_dir, LoadedRun):
        return run_dir
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    if not (run_dir / "model.safetensors").is_file():
        state = "training was interrupted (resume.pt is there)" if (run_dir / "resume.pt").is_file() else \
            "the run has not been trained"
        raise FileNotFoundError(f"{run_dir}: no checkpoint (model.safetensors); {state}: train it with notebook "
                                f"02/03 (`python -m endolib run --only 02 03`)")
    model, cfg = train_load_run(run_dir)
    missing = [k for k in ("arch", "input_size") if k not in cfg]
    if missing:
        raise ValueError(f"{run_dir / 'config.json'}: missing key(s) {missing}")
    arch = str(cfg["arch"])
    return LoadedRun(run_dir, arch, model_task(arch), int(cfg["input_size"]), model.eval(), cfg)


# ------------------------------------------------------------------------------------------------ video I/O
@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds (``frames`` is the container's count, 0 when the container does not say)."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    codec: str


def _open_input(path: str | Path):
    """Open a video for reading: ``(container, stream)``; clear errors for missing/unreadable/stream-less files."""
    import av

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, EOFError) as e:
        raise ValueError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: contains no video stream (zero frames or not a video; streams: "
                         f"{[s.type for s in container.streams] or 'none'})")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        container.close()
        raise ValueError(f"{path}: the video stream has no frame rate")
    return container, stream


def video_info(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count and codec of a video file.

    Example:
        >>> video_info("data/smoke/phantom_raw/videos/op01.mp4").fps  # doctest: +SKIP
        Fraction(2, 1)
    """
    container, stream = _open_input(path)
    with container:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(Path(path), stream.codec_context.width, stream.codec_context.height, Fraction(rate),
                         int(stream.frames or 0), stream.codec_context.name)


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as RGB ``uint8 (H, W, 3)`` arrays.

    Raises:
        ValueError: not a video, no video stream, zero frames, or a decoding error (naming the frame).

    Example:
        >>> for frame in iter_frames("op01.mp4"):  # doctest: +SKIP
        ...     print(frame.shape)
    """
    import av

    container, stream = _open_input(path)
    n = 0
    with container:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
        except av.FFmpegError as e:
            raise ValueError(f"{path}: decoding failed after frame {n} ({type(e).__name__}: {e})") from None
    if n == 0:
        raise ValueError(f"{path}: the video has zero frames")


def read_video(path: str | Path) -> tuple[np.ndarray, Fraction]:
    """All frames of a (short) video in memory: ``(frames (T, H, W, 3) uint8, fps)``.

    Example:
        >>> frames, fps = read_video("op01.mp4")  # doctest: +SKIP
    """
    fps = video_info(path).fps
    return np.stack(list(iter_frames(path))), fps


def count_frames(path: str | Path) -> int:
    """Number of video frames in a file, counted by demuxing packets (no decoding)."""
    container, stream = _open_input(path)
    with container:
        return sum(1 for p in container.demux(stream) if p.size)


def _pick_codec(codec: str | None) -> str:
    import av

    names = (codec,) if codec else CODECS
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise ValueError(f"no usable video encoder among {names} in this PyAV build")


class VideoWriter:
    """Write RGB frames to an mp4 at a given frame rate (PyAV; libx264, else mpeg4).

    The output keeps the input's size: even sides use ``yuv420p``; odd sides use ``yuv444p`` when the encoder
    has it, else the frame is padded by one edge pixel (the only case where the size changes).

    Args:
        path: output file (parents created).
        fps: frame rate (a Fraction keeps e.g. 30000/1001 exact).
        codec: encoder name (default: the first available of :data:`CODECS`).

    Example:
        >>> with VideoWriter("out.mp4", fps=30) as w:  # doctest: +SKIP
        ...     w.write(np.zeros((64, 64, 3), np.uint8))
    """

    def __init__(self, path: str | Path, fps, codec: str | None = None):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        if self.fps <= 0:
            raise ValueError(f"{self.path}: frame rate must be > 0, got {fps}")
        self.codec = _pick_codec(codec)
        self.frames = 0
        self._container = self._stream = None
        self._pad = (0, 0)
        self._opened = False

    def _open(self, height: int, width: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        formats = {f.name for f in (av.codec.Codec(self.codec, "w").video_formats or ())}
        odd = bool(height % 2 or width % 2)
        pix_fmt = "yuv444p" if odd and "yuv444p" in formats else "yuv420p"
        self._pad = (height % 2, width % 2) if odd and pix_fmt == "yuv420p" else (0, 0)
        self._container = av.open(str(self.path), "w")
        self._opened = True
        opts = {"preset": "veryfast"} if self.codec == "libx264" else {}
        self._stream = self._container.add_stream(self.codec, rate=self.fps, options=opts)
        self._stream.width, self._stream.height = width + self._pad[1], height + self._pad[0]
        self._stream.pix_fmt = pix_fmt
        self.size = (height, width)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``uint8 (H, W, 3)`` frame (all frames must share the first frame's size)."""
        import av

        frame = np.ascontiguousarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._container is None:
            self._open(*frame.shape[:2])
        if frame.shape[:2] != self.size:
            raise ValueError(f"{self.path}: frame {self.frames} is {frame.shape[:2]}, the video is {self.size}")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None and self._opened:  # never leave a truncated video behind
            self.path.unlink(missing_ok=True)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps, codec: str | None = None) -> Path:
    """Write RGB ``uint8 (H, W, 3)`` frames as an mp4 (see :class:`VideoWriter`); returns the path.

    Example:
        >>> write_video("demo.mp4", np.zeros((5, 32, 32, 3), np.uint8), fps=2)  # doctest: +SKIP
    """
    with VideoWriter(path, fps, codec) as w:
        for frame in frames:
            w.write(frame)
    if w.frames == 0:
        raise ValueError(f"{path}: no frames to write")
    return Path(path)


# ------------------------------------------------------------------------------------------------ smoothing
def _check_prob(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class Smoothing:
    """How the pipeline decides over time.

    Args:
        gate: classifier threshold without hysteresis (gate open iff ``p >= gate``).
        ema_alpha: EMA weight of the newest probability map in (0, 1] (None = no EMA).
        hysteresis: ``(low, high)`` gate thresholds (None = the plain ``gate`` threshold).

    Example:
        >>> Smoothing(ema_alpha=0.6, hysteresis=(0.4, 0.6)).label
        'ema 0.6 + hysteresis 0.4-0.6'
    """

    gate: float = 0.5
    ema_alpha: float | None = None
    hysteresis: tuple[float, float] | None = None

    def __post_init__(self):
        _check_prob("gate", self.gate)
        if self.ema_alpha is not None and not 0.0 < float(self.ema_alpha) <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {self.ema_alpha}")
        if self.hysteresis is not None:
            low, high = (_check_prob("hysteresis low", self.hysteresis[0]),
                         _check_prob("hysteresis high", self.hysteresis[1]))
            if low > high:
                raise ValueError(f"hysteresis needs low <= high, got low={low}, high={high}")
            object.__setattr__(self, "hysteresis", (low, high))

    @property
    def label(self) -> str:
        parts = []
        if self.ema_alpha is not None:
            parts.append(f"ema {self.ema_alpha:g}")
        if self.hysteresis is not None:
            parts.append(f"hysteresis {self.hysteresis[0]:g}-{self.hysteresis[1]:g}")
        return " + ".join(parts) or f"none (gate {self.gate:g})"


def parse_smooth(text: str | None) -> float | None:
    """Parse ``--smooth``: ``"none"`` -> None, ``"ema:0.6"`` (or ``"ema"`` = :data:`EMA_ALPHA`) -> 0.6.

    Example:
        >>> parse_smooth("ema:0.3"), parse_smooth("none")
        (0.3, None)
    """
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    kind, _, value = text.strip().lower().partition(":")
    if kind != "ema":
        raise ValueError(f"--smooth must be 'none' or 'ema:ALPHA' (e.g. ema:{EMA_ALPHA}), got {text!r}")
    try:
        alpha = float(value) if value else EMA_ALPHA
    except ValueError:
        raise ValueError(f"--smooth ema:ALPHA needs a number, got {text!r}") from None
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
    return alpha


def parse_hysteresis(text: str | None) -> tuple[float, float] | None:
    """Parse ``--hysteresis LOW,HIGH`` (``"none"`` -> None).

    Example:
        >>> parse_hysteresis("0.4,0.6")
        (0.4, 0.6)
    """
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--hysteresis must be LOW,HIGH (e.g. 0.4,0.6), got {text!r}") from None
    return Smoothing(hysteresis=(low, high)).hysteresis


class Hysteresis:
    """Gate decision with hysteresis: a closed gate opens at ``p >= high``, an open gate closes at ``p < low``.

    Args:
        low, high: thresholds, ``0 <= low <= high <= 1``; ``low == high`` is a plain threshold.
        is_open: initial state (closed).

    Example:
        >>> h = Hysteresis(0.4, 0.6); [h.update(p) for p in (0.5, 0.6, 0.45, 0.39)]
        [False, True, True, False]
    """

    def __init__(self, low: float, high: float, is_open: bool = False):
        self.low, self.high = Smoothing(hysteresis=(low, high)).hysteresis
        self.is_open = bool(is_open)

    def update(self, prob: float) -> bool:
        if self.is_open:
            self.is_open = prob >= self.low
        else:
            self.is_open = prob >= self.high
        return self.is_open


class EMA:
    """Exponential moving average ``s_t = alpha * x_t + (1 - alpha) * s_{t-1}``; ``s`` starts at the first
    value after construction or :meth:`reset`.

    Example:
        >>> e = EMA(0.5); [float(e.update(np.float32(v))) for v in (1, 0, 0)]
        [1.0, 0.5, 0.25]
    """

    def __init__(self, alpha: float):
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def update(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, dtype=np.float32)
        if self.state is None or self.state.shape != value.shape:
            self.state = value.copy()
        else:
            self.state = self.alpha * value + (1.0 - self.alpha) * self.state
        return self.state


def hysteresis_gate(probs: Sequence[float], low: float, high: float) -> np.ndarray:
    """Gate decisions of a probability sequence under hysteresis (see :class:`Hysteresis`).

    Example:
        >>> hysteresis_gate([0.7, 0.5, 0.3, 0.5, 0.6], 0.4, 0.6).tolist()
        [True, True, False, False, True]
    """
    h = Hysteresis(low, high)
    return np.array([h.update(float(p)) for p in probs], dtype=bool)


def ema_filter(values: np.ndarray, alpha: float, reset: Sequence[bool] | None = None) -> np.ndarray:
    """EMA along axis 0 of ``values`` (frames first); ``reset[t]`` restarts the average at frame ``t``.

    Example:
        >>> ema_filter(np.array([1.0, 0.0, 0.0, 1.0]), 0.5, reset=[False, False, False, True]).tolist()
        [1.0, 0.5, 0.25, 1.0]
    """
    values = np.asarray(values, dtype=np.float32)
    e, out = EMA(alpha), np.empty_like(values)
    for t in range(len(values)):
        if reset is not None and reset[t]:
            e.reset()
        out[t] = e.update(values[t])
    return out


# ------------------------------------------------------------------------------------------------ stages
def preprocess(frame: np.ndarray, size: int) -> np.ndarray:
    """An RGB ``uint8 (H, W, 3)`` frame as the models saw frames in training: resized to ``size x size`` exactly like
    :func:`endolib.data.load_image` (PIL antialiased bilinear, uint8), scaled to [0, 1] and ImageNet-normalised
    (:func:`endolib.train.normalise`); ``float32 (1, 3, size, size)``.

    Example:
        >>> preprocess(np.zeros((48, 64, 3), np.uint8), 32).shape
        (1, 3, 32, 32)
    """
    from PIL import Image

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if frame.shape[:2] != (size, size):
        frame = np.array(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
    x = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)[None].div_(255.0)
    return normalise(x).numpy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))).astype(np.float32)


class TorchStage:
    """One model under PyTorch: ``stage(x) -> logits`` for ``float32 (N, 3, S, S)`` numpy input.

    Args:
        run: a :class:`LoadedRun` (or its folder).
    """

    backend = "torch"

    def __init__(self, run: LoadedRun | str | Path):
        self.run = load_run(run)
        self.model = self.run.model.eval()
        self.size, self.task, self.arch = self.run.input_size, self.run.task, self.run.arch

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


def onnx_path(run: LoadedRun | str | Path) -> Path:
    """Where a run's ONNX export is cached: ``<run>/model.onnx``."""
    return Path(run.run_dir if isinstance(run, LoadedRun) else run) / "model.onnx"


def export_onnx(model: nn.Module, path: str | Path, size: int, opset: int = ONNX_OPSET) -> Path:
    """Export a model to ONNX (TorchScript exporter, dynamic batch axis) and check it with ``onnx.checker``.

    Args:
        model: the network (put in eval mode here).
        path: the ``.onnx`` file to write (parents created).
        size: input side ``S`` of the ``(N, 3, S, S)`` input.
        opset: ONNX opset (at least 17).

    Returns:
        The path.

    Example:
        >>> export_onnx(create_model("unet", width_mult=0.125), "/tmp/unet.onnx", 32).name  # doctest: +SKIP
        'unet.onnx'
    """
    import onnx

    if opset < ONNX_OPSET:
        raise ValueError(f"opset must be >= {ONNX_OPSET}, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings of transformers' SegFormer and exporter deprecation notes
        torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(str(path))
    return path


class OnnxStage:
    """One model under ONNX Runtime (CPU), exported from its run on first use and cached as ``<run>/model.onnx``
    (re-exported when the checkpoint is newer).

    Args:
        run: a :class:`LoadedRun` (or its folder).
        path: the ``.onnx`` file (default :func:`onnx_path`).
        threads: intra-op threads (default: ``torch.get_num_threads()``, for a fair comparison with PyTorch).
    """

    backend = "onnx"

    def __init__(self, run: LoadedRun | str | Path, path: str | Path | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.run = load_run(run)
        self.size, self.task, self.arch = self.run.input_size, self.run.task, self.run.arch
        self.path = Path(path) if path is not None else onnx_path(self.run)
        ckpt = self.run.checkpoint
        stale = not self.path.is_file() or (ckpt.is_file() and self.path.stat().st_mtime < ckpt.stat().st_mtime)
        if stale:
            export_onnx(self.run.model, self.path, self.size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]


def make_stage(run: LoadedRun | str | Path, backend: str = "torch"):
    """A :class:`TorchStage` or :class:`OnnxStage` for ``backend`` (``"torch"`` or ``"onnx"``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return TorchStage(run) if backend == "torch" else OnnxStage(run)


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
        classifier: a stage (``TorchStage``/``OnnxStage``) of a classifier run.
        segmenter: a stage of a segmenter run.
        smoothing: gate threshold, EMA and hysteresis settings.

    Example:
        >>> pipe = TwoStagePipeline(make_stage("runs/quick/resnet18"), make_stage("runs/quick/unet"))  # doctest: +SKIP
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
        gate_prob = float(_sigmoid(self.classifier(x_cls)).reshape(-1)[0])
        t2 = time.perf_counter()
        ms = {"preprocess": 1e3 * (t1 - t0), "classifier": 1e3 * (t2 - t1), "segmenter": 0.0}
        if not self._gate.update(gate_prob):
            if self._ema is not None:
                self._ema.reset()
            return FrameResult(gate_prob, False, None, ms)
        x_seg = x_cls if self.segmenter.size == self.classifier.size else preprocess(frame, self.segmenter.size)
        t3 = time.perf_counter()
        prob = _sigmoid(self.segmenter(x_seg))[0, 0]
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
    return make_stage(model, backend) if isinstance(model, (str, Path, LoadedRun)) else model


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
        backend: ``"torch"`` or ``"onnx"`` (ignored for ready stages).
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


def smoothing_settings(gate: float = 0.5, ema_alpha: float = EMA_ALPHA,
                       hysteresis: tuple[float, float] = HYSTERESIS) -> dict[str, Smoothing]:
    """The six settings notebook 07 and ``make figures`` compare, from no gate to gate + EMA + hysteresis.

    Example:
        >>> list(smoothing_settings())[-1], smoothing_settings()["gate + ema"].label
        ('gate + ema + hysteresis', 'ema 0.6')
    """
    return {"no gate": Smoothing(gate=0.0), "no gate + ema": Smoothing(gate=0.0, ema_alpha=ema_alpha),
            "gate": Smoothing(gate=gate), "gate + ema": Smoothing(gate=gate, ema_alpha=ema_alpha),
            "gate + hysteresis": Smoothing(gate=gate, hysteresis=hysteresis),
            "gate + ema + hysteresis": Smoothing(gate=gate, ema_alpha=ema_alpha, hysteresis=hysteresis)}


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


def _phantom_scene(params: dict, operation_id: str):
    """Rebuild the scene of one operation exactly as :func:`endolib.phantom.generate_phantom` builds it."""
    from . import phantom

    seed = int(params["seed"])
    cohort = phantom.make_cohort(seed)
    ops = cohort["operation_id"].tolist()
    if operation_id not in ops:
        raise ValueError(f"operation {operation_id!r} is not in the phantom cohort (seed {seed}); valid: {ops}")
    k = ops.index(operation_id)
    op = cohort.iloc[k]
    pid = str(op["patient_id"])
    look = phantom._make_look(np.random.default_rng([seed, 11, int(pid[1:])]))
    positives = phantom._split_positives(cohort, int(params["frames_per_operation"]), seed)[operation_id]
    return phantom.make_scene(op.to_dict(), int(params["size"]), int(params["frames_per_operation"]),
                              float(params["interval_s"]), seed=seed * 1000 + k, look=look, positives=positives)


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

    from .config import paths
    from .phantom import render_frame
    from .repro import load_json

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
    scene = _phantom_scene(params, operation_id)
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
    """A 30 FPS phantom clip of an operation with per-frame ground truth (:func:`endolib.phantom.write_clip`:
    continuous camera motion, tissue entering and leaving; rendered on first use into ``phantom_raw/clips/``).

    Example:
        >>> clip = phantom_clip("smoke")  # doctest: +SKIP
        >>> float(clip.fps), clip.frames.shape[0] == clip.masks.shape[0]  # doctest: +SKIP
        (30.0, True)
    """
    from .phantom import read_clip_masks, write_clip

    path = write_clip(profile, operation_id, raw_dir=raw_dir)
    frames, fps = read_video(path)
    masks = read_clip_masks(path)
    if masks.shape != frames.shape[:3]:
        raise ValueError(f"{path}: {len(frames)} frames of {frames.shape[1:3]} but ground truth {masks.shape}; "
                         f"re-render it (phantom.write_clip(overwrite=True))")
    op = path.stem.split("_")[0]
    return OperationVideo(path, op, fps, frames, masks, "test" if operation_id is None else "")


def demo_video(profile: str = "smoke", data_dir: str | Path | None = None, video: str | Path | None = None,
               progress: bool = False, clip: bool = True) -> OperationVideo:
    """The video of notebook 07: a user's file (no ground truth) or a phantom operation with ground truth: its
    30 FPS clip (``clip=True``, :func:`phantom_clip`) or its time-lapse operation video (:func:`phantom_video`).

    Args:
        profile: whose phantom.
        data_dir: a prepared dataset whose first test operation (sorted ids) names the phantom video (default:
            the first test operation of the phantom's manifest, the same operation for the phantom).
        video: a video file; when given, ``data_dir`` is not used and ``masks`` is None.
        progress: tqdm bar while rendering the ground truth.
        clip: the 30 FPS clip (default) instead of the operation's time-lapse video.

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
        from .data import load_index

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
        per_frame: :attr:`VideoReport.frames` or an :func:`evaluate_video` table (titles show gate probability
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
        per_frame: setting name -> :func:`evaluate_video` table (all of the same video).
        fps: frame rate (x axis in seconds).
        settings: the :class:`Smoothing` of each name (draws the gate threshold / hysteresis band).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .plotting import PALETTE

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


# ------------------------------------------------------------------------------------------------ ONNX vs torch
def _inputs(size: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def compare_backends(run: LoadedRun | str | Path, inputs: np.ndarray | None = None, n: int = 2,
                     seed: int = 0) -> dict:
    """Run one model under PyTorch and ONNX Runtime on the same inputs and report the largest differences.

    Args:
        run: the run (folder or :class:`LoadedRun`).
        inputs: ``float32 (N, 3, S, S)`` model inputs (default: ``n`` standard-normal inputs from ``seed``).
        n, seed: used when ``inputs`` is None.

    Returns:
        ``{"model", "max_abs_diff_logits", "max_abs_diff_prob", "atol", "agree"}`` with ``agree`` =
        ``max_abs_diff_prob <= ONNX_ATOL``.

    Example:
        >>> compare_backends("runs/quick/unet")["agree"]  # doctest: +SKIP
        True
    """
    torch_stage, onnx_stage = TorchStage(run), OnnxStage(run)
    x = _inputs(torch_stage.size, n, seed) if inputs is None else np.asarray(inputs, dtype=np.float32)
    a, b = torch_stage(x), onnx_stage(x)
    d_logit = float(np.abs(a - b).max())
    d_prob = float(np.abs(_sigmoid(a) - _sigmoid(b)).max())
    return {"model": torch_stage.arch, "max_abs_diff_logits": d_logit, "max_abs_diff_prob": d_prob,
            "atol": ONNX_ATOL, "agree": d_prob <= ONNX_ATOL}


def _time_ms(fn, x: np.ndarray, warmup: int, repeats: int) -> np.ndarray:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(1e3 * (time.perf_counter() - t0))
    return np.asarray(times)


def benchmark_backends(runs: Sequence[LoadedRun | str | Path], warmup: int | None = None,
                       repeats: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Batch-1 latency of each model under PyTorch and ONNX Runtime (same thread count).

    Args:
        runs: run folders or :class:`LoadedRun` objects.
        warmup, repeats: untimed and timed calls (default ``Profile.bench_warmup`` / ``bench_repeats``).
        progress: tqdm over models.

    Returns:
        One row per model and backend: ``model``, ``backend``, ``size``, ``ms_mean``, ``ms_std``, ``fps``,
        ``threads``.
    """
    from tqdm.auto import tqdm

    prof = get_profile()
    warmup = prof.bench_warmup if warmup is None else warmup
    repeats = prof.bench_repeats if repeats is None else repeats
    rows = []
    for run in tqdm([load_run(r) for r in runs], desc="benchmark", disable=not progress):
        x = _inputs(run.input_size, 1, 0)
        for stage in (TorchStage(run), OnnxStage(run)):
            t = _time_ms(stage, x, warmup, repeats)
            rows.append({"model": run.arch, "backend": stage.backend, "size": run.input_size,
                         "ms_mean": float(t.mean()), "ms_std": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
                         "fps": 1e3 / float(t.mean()), "threads": torch.get_num_threads()})
    return pd.DataFrame(rows)


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
    """``python -m endolib video IN --out OUT.mp4 --classifier RUN --segmenter RUN [...]`` (see ``--help``);
    ``python -m endolib video --realtime IN ...`` runs the threaded real-time runtime (:mod:`endolib.realtime`).

    Bad input (not a video, zero frames, a run without checkpoint) raises ValueError/FileNotFoundError with a
    message naming the file; ``python -m endolib`` prints it and exits with status 2.

    Returns:
        0 on success.
    """
    if any(a == "--realtime" or a.startswith("--realtime=") for a in argv):
        from .realtime import realtime_main

        return realtime_main(list(argv))
    args = _parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    gate = get_profile().threshold if args.gate is None else args.gate
    smoothing = Smoothing(gate=gate, ema_alpha=parse_smooth(args.smooth), hysteresis=parse_hysteresis(args.hysteresis))
    video_info(args.input)  # fail on a bad video before loading models
    classifier, segmenter = load_run(args.classifier), load_run(args.segmenter)
    if args.backend == "onnx":
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
