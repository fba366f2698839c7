"""The one video reader and writer (PyAV): :func:`video_info`, :func:`iter_frames`, :func:`read_video`,
:func:`count_frames`, :class:`VideoWriter` and :func:`write_video` (first available of :data:`CODECS`); an
unreadable file raises ValueError naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

__all__ = ["VideoInfo", "video_info", "iter_frames", "read_video", "write_video", "count_frames", "VideoWriter"]


#: Preferred encoders, first available wins.
CODECS = ("libx264", "mpeg4")


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
