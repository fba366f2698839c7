"""Reading what clinicians have: images (EXIF orientation applied), masks (binarised, with a report of what was
odd) and LabelMe annotations rasterised to masks (:func:`labelme_mask`); :class:`ImportReport` collects every
skipped file and warning of an import (``report.csv``).
"""
from __future__ import annotations

import base64
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

__all__ = ["ImportReport", "read_image", "read_mask", "labelme_mask"]


#: Shape types of LabelMe that enclose an area (the others -- line, linestrip, point -- are reported and ignored).
AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")


# ------------------------------------------------------------------------------------------------ report
@dataclass
class ImportReport:
    """Every file an import skipped or repaired, with the reason (``report.csv``: file, status, reason)."""

    rows: list = field(default_factory=list)

    def skip(self, file, reason: str) -> None:
        """Record a file left out of the dataset."""
        self.rows.append({"file": str(file), "status": "skipped", "reason": reason})

    def warn(self, file, reason: str) -> None:
        """Record a file kept with a repair or an assumption the user should know about."""
        self.rows.append({"file": str(file), "status": "warning", "reason": reason})

    @property
    def n_skipped(self) -> int:
        return sum(r["status"] == "skipped" for r in self.rows)

    @property
    def n_warnings(self) -> int:
        return sum(r["status"] == "warning" for r in self.rows)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["file", "status", "reason"])

    def summary(self) -> str:
        return f"{self.n_skipped} file(s) skipped, {self.n_warnings} warning(s)"


# ------------------------------------------------------------------------------------------- reading files
def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block means "no orientation"
        return 1


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None


def read_image(path: str | Path, exif: bool = True) -> np.ndarray:
    """Read an image as RGB ``uint8 (H, W, 3)``, with its EXIF orientation applied (as LabelMe shows it).

    Args:
        path: image file (PNG, JPEG, BMP, TIFF, WebP).
        exif: apply the EXIF orientation tag.

    Raises:
        ValueError: the file is not a readable image (the message names it).

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "a.png"); Image.new("RGB", (4, 3)).save(f)
        >>> read_image(f).shape
        (3, 4, 3)
    """
    img = _open(Path(path))
    if exif:
        img = ImageOps.exif_transpose(img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


#: A mask value is "mid-grey" between these fractions of its value range (JPEG ringing stays near 0 and the top).
MID_GREY = (0.25, 0.75)

#: A mask with more than this share of mid-grey pixels is not a binary mask (grey noise, a probability map, a
#: photo): it is refused unless a threshold is given on purpose (``mask_threshold``).
MID_GREY_SHARE = 0.05


def read_mask(path: str | Path, exif: bool = True, report: ImportReport | None = None,
              threshold: float | None = None) -> np.ndarray:
    """Read a binary mask: 0/1 or 0/255 PNG, JPEG with compression noise, 1 or 3 channels, 8 or 16 bit.

    A mask whose values are all 0 or 1 is used as is; otherwise it is read on its actual value range (0-255 when
    no value exceeds 255, even stored in 16 bit; else 0-65535) and a pixel is foreground above half that range
    (for several channels, the brightest channel counts). A mask with many mid-grey pixels (more than
    :data:`MID_GREY_SHARE` of them between :data:`MID_GREY` of the range) is not a mask: ``ValueError`` naming
    the values seen, unless ``threshold`` binarises it on purpose.

    Args:
        path: mask file.
        exif: apply the EXIF orientation tag (as for images).
        report: where to note a suspicious mask (nonzero values all below half range, 16 bit holding 8-bit
            values, a grey mask binarised at ``threshold``).
        threshold: foreground above this fraction of the value range (0-1), set on purpose for grey masks
            (default: half range, and grey masks are refused).

    Raises:
        ValueError: not a readable image, more than two channels, or a grey mask without ``threshold``.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "m.png")
        >>> Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(f); read_mask(f).astype(int).tolist()
        [[0, 1], [1, 0]]
        >>> Image.fromarray(np.array([[0, 255], [255, 0]], np.uint16)).save(f); read_mask(f).astype(int).tolist()
        [[0, 1], [1, 0]]
    """
    img = _open(Path(path))
    if exif:
        img = ImageOps.exif_transpose(img)
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    arr = _mask_values(img, path)
    if arr.size and arr.max() <= 1 and arr.min() >= 0:
        return arr > 0
    top = _value_range(arr)
    grey = _mid_grey_share(arr, top)
    seen = f"values {arr.min():g}..{arr.max():g} in {arr.dtype}, read on 0-{top:g}, {grey:.0%} mid-grey pixels"
    if threshold is None and grey > MID_GREY_SHARE:
        raise ValueError(f"{path}: not a binary mask ({seen}; a mask holds 0 and one foreground value, JPEG "
                         f"noise stays near them); fix: export it as 0/255 or 0/1 PNG, or pass "
                         f"mask_threshold=0.5 (a fraction of the range) to binarise it on purpose")
    cut = top * (0.5 if threshold is None else _check_threshold(threshold))
    out = arr > cut
    if report is not None:
        if threshold is not None and grey > MID_GREY_SHARE:
            report.warn(path, f"grey mask ({seen}) binarised at mask_threshold={threshold:g} "
                              f"({out.mean():.0%} foreground)")
        elif arr.dtype.itemsize > 1 and top == 255:
            report.warn(path, f"{arr.dtype.itemsize * 8}-bit mask holding 8-bit values ({seen}): read on 0-255")
        if not out.any() and arr.max() > 0:
            report.warn(path, f"mask values go up to {arr.max():g} but none is above half range ({cut:g}; {seen}); "
                              f"read as empty -- is it a 0/1 mask saved with lossy compression?")
    return out


def _mask_values(img: Image.Image, path) -> np.ndarray:
    """One channel of mask values (the brightest channel of a colour mask)."""
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(img.convert("RGB")).max(axis=2)
    elif img.mode in ("LA", "PA"):
        arr = np.asarray(img)[..., 0]
    else:
        arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"{path}: mask has shape {arr.shape}; expected one or three channels")
    return arr


def _value_range(arr: np.ndarray) -> float:
    """The top of a mask's value range: 1.0 for floats, else 255 or 65535, whichever holds its largest value.

    Example:
        >>> _value_range(np.array([0, 255], np.uint16)), _value_range(np.array([0, 300], np.uint16))
        (255, 65535)
    """
    if not np.issubdtype(arr.dtype, np.integer):
        return 1.0
    peak = int(arr.max()) if arr.size else 0
    return 255 if peak <= 255 else 65535 if peak <= 65535 else int(np.iinfo(arr.dtype).max)


def _mid_grey_share(arr: np.ndarray, top: float) -> float:
    """Share of pixels between :data:`MID_GREY` of the range ``0..top``."""
    if not arr.size:
        return 0.0
    lo, hi = MID_GREY[0] * top, MID_GREY[1] * top
    return float(((arr > lo) & (arr < hi)).mean())


def _check_threshold(threshold: float) -> float:
    if not 0 < float(threshold) < 1:
        raise ValueError(f"mask_threshold must be a fraction of the value range between 0 and 1, got {threshold}; "
                         f"fix: e.g. mask_threshold=0.5")
    return float(threshold)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: dict, pts: np.ndarray, size: tuple[int, int],
                where: str) -> None:
    """Rasterise one LabelMe shape the way LabelMe's ``shape_to_mask`` does (PIL, outline included)."""
    kind = shape.get("shape_type") or "polygon"
    xy = [tuple(p) for p in pts.tolist()]
    if kind == "polygon":
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy[:2]
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    elif kind == "circle":
        (cx, cy), (px, py) = xy[:2]
        r = math.hypot(px - cx, py - cy)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    elif kind == "mask":
        data = shape.get("mask")
        if not data:
            raise ValueError(f"{where}: shape_type 'mask' without 'mask' data")
        m = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L")) > 0
        x0, y0 = (int(round(v)) for v in xy[0])
        canvas = np.asarray(draw._image, dtype=np.uint8).copy()  # noqa: SLF001 - PIL keeps the image here
        h, w = canvas.shape
        y1, x1 = min(h, y0 + m.shape[0]), min(w, x0 + m.shape[1])
        if y0 < h and x0 < w:
            canvas[max(y0, 0):y1, max(x0, 0):x1] |= m[max(-y0, 0):y1 - y0, max(-x0, 0):x1 - x0].astype(np.uint8)
        draw._image.paste(Image.fromarray(canvas))  # noqa: SLF001


def labelme_mask(record: dict, height: int, width: int, where: str = "<json>", labels: Sequence[str] | None = None,
                 report: ImportReport | None = None) -> np.ndarray:
    """The union of the area shapes of a LabelMe record as a boolean ``(height, width)`` mask.

    Polygons need at least 3 points, rectangles and circles 2 (else ``ValueError`` naming the file and shape).
    Points outside the image are clipped to it (reported as a warning). Line and point shapes have no area and
    are reported and ignored.

    Args:
        record: the parsed JSON.
        height, width: the image size the shapes refer to.
        where: the file, for messages.
        labels: only shapes with these labels count (default: every shape).
        report: where warnings go (default: Python warnings).

    Example:
        >>> rec = {"shapes": [{"label": "n", "points": [[1, 1], [4, 1], [4, 3]], "shape_type": "polygon"}]}
        >>> int(labelme_mask(rec, 5, 6).sum())
        7
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for i, shape in enumerate(record.get("shapes") or []):
        if not isinstance(shape, dict) or "points" not in shape:
            raise ValueError(f"{where}: shape {i} has no 'points'; not a LabelMe shape")
        if labels is not None and shape.get("label") not in labels:
            continue
        kind = shape.get("shape_type") or "polygon"
        desc = f"shape {i} ({kind}, label {shape.get('label')!r})"
        if kind not in AREA_SHAPES:
            _note(report, where, f"{desc} encloses no area; ignored")
            continue
        try:
            pts = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {desc} has points that are not (x, y) number pairs") from None
        need = 3 if kind == "polygon" else 2
        if len(pts) < need:
            raise ValueError(f"{where}: {desc} has {len(pts)} point(s); a {kind} needs at least {need}")
        if not np.isfinite(pts).all():
            raise ValueError(f"{where}: {desc} has non-finite coordinates")
        outside = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
        if outside.any() and kind != "mask":
            _note(report, where, f"{desc}: {int(outside.sum())} point(s) outside the {width}x{height} image "
                                 f"clipped to its border")
            pts = np.stack([np.clip(pts[:, 0], 0, width), np.clip(pts[:, 1], 0, height)], axis=1)
        _draw_shape(draw, shape, pts, (height, width), where)
    return np.asarray(canvas, dtype=bool)


def _note(report: ImportReport | None, file, reason: str) -> None:
    if report is None:
        warnings.warn(f"{file}: {reason}", stacklevel=3)
    else:
        report.warn(file, reason)


def _read_labelme_json(path: Path) -> dict:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a LabelMe file (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a LabelMe file (invalid JSON: {e})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("shapes"), list):
        raise ValueError(f"{path}: not a LabelMe file (no 'shapes' list)")
    for key in ("imageHeight", "imageWidth"):
        if key in rec and rec[key] is not None and not isinstance(rec[key], int):
            raise ValueError(f"{path}: not a LabelMe file ({key} is {rec[key]!r}, not an integer)")
    return rec
