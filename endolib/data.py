"""Data import: phantom, LabelMe, image/mask folders or surgical videos -> one canonical prepared dataset.

Every later notebook reads the prepared dataset of ``docs/layout.md`` (``index.csv``, ``images/``, ``masks/``,
``report.csv``, ``prepare.json``) through :func:`load_index`, :func:`load_image` and :func:`load_mask`.
:func:`prepare_dataset` writes it from any of four sources:

* ``phantom``: generate the synthetic cohort (:mod:`endolib.phantom`) and import its LabelMe folder -- the same
  code path as real data;
* ``labelme``: a folder of frames with LabelMe JSON files (polygons, rectangles, circles and masks; several
  shapes per frame are united; a frame without JSON, or whose JSON has no shape, is a negative);
* ``folders``: an image folder and a mask folder paired by file stem (``mask_suffix`` such as ``"_mask"``);
  masks as PNG 0/1 or 0/255, JPEG with compression noise (foreground = above half the range), 1 or 3 channels;
* ``video``: surgical recordings; frames are extracted every ``interval_s`` seconds into a folder to be
  annotated with LabelMe, then imported as ``labelme``.

Images keep their size and aspect; EXIF orientation is applied the way LabelMe displays images (its polygons
are in the rotated frame). Patients and operations come from a manifest CSV (``patient_id, operation_id,
procedure, level, age, sex, split``) or from a regular expression on the file path (``group_pattern``); with
neither, a patient-level split is impossible and the split is by file (with a loud warning). Without a
``split`` column the split is drawn at patient level with the paper's proportion (6 of 28 patients in test).

Nothing is dropped silently: every skipped file and every repair (clipped points, EXIF mismatch, a mask
without image...) is a row of ``report.csv`` with the file and the reason.

Example:
    >>> prep = prepare_dataset("phantom", profile="smoke", progress=False)   # doctest: +SKIP
    >>> load_index(prep.data_dir).groupby("split").patient_id.nunique().to_dict()   # doctest: +SKIP
    {'test': 6, 'train': 22}
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from .config import get_profile, paths

__all__ = [
    "SOURCES", "INDEX_COLUMNS", "MANIFEST_COLUMNS", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "TEST_FRACTION",
    "ImportReport", "Frame", "PreparedDataset",
    "read_image", "read_mask", "labelme_mask", "extract_frames",
    "import_labelme", "import_folders", "import_video", "read_manifest", "assign_groups", "assign_split",
    "check_split", "prepare_dataset", "open_prepared", "load_index", "load_image", "load_mask", "check_dataset",
    "cohort_table", "plot_montage", "frame_id_from_path",
]

#: The ``source`` values of :func:`prepare_dataset` (the notebook parameter).
SOURCES = ("phantom", "labelme", "folders", "video")
#: Columns of ``index.csv`` (docs/layout.md), in order.
INDEX_COLUMNS = ["frame_id", "image", "mask", "patient_id", "operation_id", "split", "has_tissue", "height",
                 "width", "source", "time_s", "procedure", "level", "age", "sex"]
#: Columns of a manifest CSV; ``operation_id`` is required, the others optional.
MANIFEST_COLUMNS = ["patient_id", "operation_id", "procedure", "level", "age", "sex", "split"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".mpg", ".mpeg", ".webm", ".wmv")
#: Share of patients in the test split when the manifest has no ``split`` column (paper: 6 of 28 patients).
TEST_FRACTION = 6 / 28
#: Shape types of LabelMe that enclose an area (the others -- line, linestrip, point -- are reported and ignored).
AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")
_TIME_PATTERN = re.compile(r"_t(\d+)ms$")
_SPLITS = ("train", "test")


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


@dataclass
class Frame:
    """One imported frame before it is written: where it came from and its binary mask."""

    rel: str  # path relative to the source root, without extension (used for ids and grouping)
    source: str  # the original file
    image: np.ndarray  # uint8 (H, W, 3), EXIF orientation applied
    mask: np.ndarray  # bool (H, W)
    time_s: float | None = None
    copy_from: Path | None = None  # an RGB PNG that can be copied byte for byte instead of re-encoded


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


def read_mask(path: str | Path, exif: bool = True, report: ImportReport | None = None) -> np.ndarray:
    """Read a binary mask: 0/1 or 0/255 PNG, JPEG with compression noise, 1 or 3 channels, 8 or 16 bit.

    A mask whose values are all 0 or 1 is used as is; otherwise a pixel is foreground when it is above half
    the range of its type (127 for 8 bit; for several channels, the brightest channel counts).

    Args:
        path: mask file.
        exif: apply the EXIF orientation tag (as for images).
        report: where to note a suspicious mask (nonzero values all below half range).

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "m.png")
        >>> Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(f); read_mask(f).astype(int).tolist()
        [[0, 1], [1, 0]]
    """
    img = _open(Path(path))
    if exif:
        img = ImageOps.exif_transpose(img)
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(img.convert("RGB")).max(axis=2)
    elif img.mode in ("LA", "PA"):
        arr = np.asarray(img)[..., 0]
    else:
        arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"{path}: mask has shape {arr.shape}; expected one or three channels")
    if arr.size and arr.max() <= 1 and arr.min() >= 0:
        return arr > 0
    half = np.iinfo(arr.dtype).max / 2 if np.issubdtype(arr.dtype, np.integer) else 0.5
    out = arr > half
    if report is not None and not out.any() and arr.max() > 0:
        report.warn(path, f"mask values go up to {arr.max()} but none is above half range ({half:g}); read as "
                          f"empty -- is it a 0/1 mask saved with lossy compression?")
    return out


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


# ------------------------------------------------------------------------------------------------ ids
def frame_id_from_path(rel: str) -> str:
    """A filesystem-safe frame id from a relative path without extension (``a/b c`` -> ``a__b_c``).

    Example:
        >>> frame_id_from_path("OP01/OP01_t00010000ms")
        'OP01__OP01_t00010000ms'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", rel.replace("\\", "/").replace("/", "__"))


def _time_from_stem(stem: str) -> float | None:
    m = _TIME_PATTERN.search(stem)
    return int(m.group(1)) / 1000.0 if m else None


def _rel_key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _list_images(root: Path, exclude_suffix: str = "") -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if exclude_suffix:
        files = [p for p in files if not p.stem.endswith(exclude_suffix)]
    return files


def _keyed(files: list[Path], root: Path, report: ImportReport) -> dict[str, Path]:
    """Files by relative path without extension; a second file with the same key is reported, not used."""
    out = {}
    for p in files:
        key = _rel_key(p, root)
        if key in out:
            report.skip(p, f"another image has the same name ({out[key].name}); which one is meant is ambiguous")
            continue
        out[key] = p
    return out


def _require_dir(path, name: str) -> Path:
    if path is None:
        raise ValueError(f"{name} is required for this source")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {name} is not a folder")
    return path


# ------------------------------------------------------------------------------------------------ importers
def import_labelme(labelme_dir: str | Path, labels: Sequence[str] | None = None, report: ImportReport | None = None,
                   progress: bool = False) -> list[Frame]:
    """Import a LabelMe folder (searched recursively): every image is a frame, its same-stem JSON its mask.

    A frame without JSON, or whose JSON has no area shape, is a negative. A JSON without image uses its
    embedded ``imageData`` when present, else it is skipped (reported). Image size and JSON size must agree;
    a JSON that fits the image only *without* its EXIF rotation (annotated by a tool that ignored EXIF) is
    matched to the unrotated pixels and reported.

    Args:
        labelme_dir: the folder.
        labels: shape labels that mark neural tissue (default: every label).
        report: collects skipped files and warnings.
        progress: tqdm bar.

    Returns:
        The frames, sorted by relative path.
    """
    from tqdm.auto import tqdm

    root = _require_dir(labelme_dir, "labelme_dir")
    report = report if report is not None else ImportReport()
    by_key = _keyed(_list_images(root), root, report)
    jsons = {_rel_key(p, root): p for p in sorted(root.rglob("*.json"))
             if not any(part.startswith(".") for part in p.relative_to(root).parts)}
    frames = []
    for key in tqdm(sorted(set(by_key) | set(jsons)), desc="importing LabelMe", disable=not progress, leave=False):
        img_path, js_path = by_key.get(key), jsons.get(key)
        try:
            frame = _labelme_frame(key, img_path, js_path, labels, report)
        except (ValueError, FileNotFoundError) as e:
            report.skip(js_path or img_path, str(e))
            continue
        if frame is not None:
            frames.append(frame)
    return frames


def _labelme_frame(key: str, img_path: Path | None, js_path: Path | None, labels, report: ImportReport):
    rec = _read_labelme_json(js_path) if js_path is not None else None
    copy_from = None
    if img_path is None:
        if rec.get("imageData"):
            try:
                raw = Image.open(io.BytesIO(base64.b64decode(rec["imageData"])))
                image = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"))
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{js_path}: no image file and imageData is not a readable image ({e})") from None
            report.warn(js_path, "no image file beside it; used the image embedded in imageData")
            source = js_path
        else:
            raise ValueError(f"{js_path}: annotation without image (no {Path(key).name}.<png|jpg|...> beside it "
                             f"and no imageData; imagePath says {rec.get('imagePath')!r})")
    else:
        source = img_path
        image = read_image(img_path)
        if _exif_orientation(_open(img_path)) == 1 and img_path.suffix.lower() == ".png":
            copy_from = img_path
    h, w = image.shape[:2]
    if rec is None:
        return Frame(key, str(source), image, np.zeros((h, w), bool), _time_from_stem(Path(key).name), copy_from)
    jh, jw = rec.get("imageHeight"), rec.get("imageWidth")
    if jh is not None and jw is not None and (jh, jw) != (h, w):
        raw = read_image(img_path, exif=False) if img_path is not None else None
        if raw is not None and raw.shape[:2] == (jh, jw):
            report.warn(js_path, f"annotation is {jw}x{jh}, the image {w}x{h} after its EXIF rotation: the shapes "
                                 f"were drawn on the unrotated pixels, which are used for this frame")
            image, (h, w), copy_from = raw, raw.shape[:2], None
        else:
            raise ValueError(f"{js_path}: annotation is for a {jw}x{jh} image but {source} is {w}x{h}")
    mask = labelme_mask(rec, h, w, where=str(js_path), labels=labels, report=report)
    return Frame(key, str(source), image, mask, _time_from_stem(Path(key).name), copy_from)


def import_folders(images_dir: str | Path, masks_dir: str | Path | None = None, mask_suffix: str = "",
                   report: ImportReport | None = None, progress: bool = False) -> list[Frame]:
    """Import an image folder and a mask folder, paired by relative path and stem (``<stem><mask_suffix>``).

    An image without mask is a negative (reported); a mask without image is skipped (reported). A mask must
    have its image's size; a mask that fits only the image's unrotated pixels (EXIF) is rotated like the image
    (reported); any other size mismatch skips the frame.

    Args:
        images_dir: images (searched recursively).
        masks_dir: masks (default: ``images_dir``, then ``mask_suffix`` must tell masks apart).
        mask_suffix: what follows the image stem in a mask's stem, e.g. ``"_mask"``.
        report: collects skipped files and warnings.
        progress: tqdm bar.
    """
    from tqdm.auto import tqdm

    img_root = _require_dir(images_dir, "images_dir")
    mask_root = _require_dir(masks_dir, "masks_dir") if masks_dir is not None else img_root
    same = img_root.resolve() == mask_root.resolve()
    if same and not mask_suffix:
        raise ValueError(f"{img_root}: images and masks share a folder, so mask_suffix (e.g. '_mask') must tell "
                         f"them apart")
    report = report if report is not None else ImportReport()
    images = list(_keyed(_list_images(img_root, exclude_suffix=mask_suffix if same else ""), img_root,
                         report).values())
    masks = _list_images(mask_root)
    if same:
        masks = [m for m in masks if m.stem.endswith(mask_suffix)]
    mask_by_key, mask_by_stem = {}, {}
    for m in masks:
        key = _rel_key(m, mask_root)
        if mask_suffix:
            if not key.endswith(mask_suffix):
                report.skip(m, f"mask without the suffix {mask_suffix!r}; cannot pair it")
                continue
            key = key[: len(key) - len(mask_suffix)]
        if key in mask_by_key:
            report.skip(m, f"second mask for {key} (first: {mask_by_key[key]})")
            continue
        mask_by_key[key] = m
        mask_by_stem.setdefault(Path(key).name, []).append(key)
    used, frames = set(), []
    for img_path in tqdm(images, desc="importing folders", disable=not progress, leave=False):
        key = _rel_key(img_path, img_root)
        mkey = key if key in mask_by_key else None
        if mkey is None and len(mask_by_stem.get(Path(key).name, [])) == 1:
            mkey = mask_by_stem[Path(key).name][0]
        try:
            image = read_image(img_path)
            if mkey is None:
                report.warn(img_path, "no mask found; used as a frame without neural tissue")
                mask = np.zeros(image.shape[:2], bool)
            else:
                used.add(mkey)
                mask = _paired_mask(mask_by_key[mkey], img_path, image, report)
        except (ValueError, FileNotFoundError) as e:
            report.skip(img_path, str(e))
            continue
        copy = img_path if img_path.suffix.lower() == ".png" and _exif_orientation(_open(img_path)) == 1 else None
        frames.append(Frame(key, str(img_path), image, mask, _time_from_stem(Path(key).name), copy))
    for key, m in sorted(mask_by_key.items()):
        if key not in used:
            report.skip(m, "mask without image")
    return frames


def _paired_mask(mask_path: Path, img_path: Path, image: np.ndarray, report: ImportReport) -> np.ndarray:
    mask = read_mask(mask_path, report=report)
    if mask.shape == image.shape[:2]:
        return mask
    raw_mask = read_mask(mask_path, exif=False)
    orient = _exif_orientation(_open(img_path))
    if orient != 1 and raw_mask.shape == read_image(img_path, exif=False).shape[:2]:
        rotated = np.asarray(ImageOps.exif_transpose(_with_orientation(raw_mask, orient)), dtype=bool)
        if rotated.shape == image.shape[:2]:
            report.warn(mask_path, f"mask fits {img_path.name} only before its EXIF rotation (orientation {orient});"
                                   f" rotated it like the image")
            return rotated
    raise ValueError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {img_path} is "
                     f"{image.shape[1]}x{image.shape[0]}")


def _with_orientation(mask: np.ndarray, orientation: int) -> Image.Image:
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif)
    buf.seek(0)
    return Image.open(buf)


def extract_frames(video: str | Path, out_dir: str | Path, interval_s: float, report: ImportReport | None = None
                   ) -> list[tuple[Path, float]]:
    """Extract one frame every ``interval_s`` seconds of a video (PyAV) as PNG files.

    The frame kept for time ``t`` is the first whose timestamp is at or after ``t`` minus half a frame. Files are
    ``out_dir/<video stem>/<video stem>_t<ms>ms.png``; existing files are kept (extraction is resumable and never
    overwrites annotations' images).

    Args:
        video: the recording (mp4, mov, avi, mkv...).
        out_dir: where frames go.
        interval_s: seconds between extracted frames (the paper: 10).
        report: where an unreadable video is reported (default: raise).

    Returns:
        ``(png path, time in seconds)`` per extracted frame.
    """
    import av

    from .phantom import frame_name

    video = Path(video)
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    target = Path(out_dir) / video.stem
    target.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise ValueError(f"{video}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0) or None
            half = 0.5 / rate if rate else 0.0
            next_t = 0.0
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if frame.time + 1e-9 >= next_t - half:
                    t = next_t
                    png = target / f"{frame_name(video.stem, t)}.png"
                    if not png.exists():
                        frame.to_image().convert("RGB").save(png)
                    out.append((png, t))
                    while next_t - half <= frame.time + 1e-9:
                        next_t += interval_s
    except (av.error.FFmpegError, OSError, ValueError) as e:
        msg = str(e) if str(video) in str(e) else f"{video}: cannot read video ({e})"
        if report is None:
            raise ValueError(msg) from None
        report.skip(video, msg)
    return out


def import_video(video_dir: str | Path, frames_dir: str | Path, interval_s: float, labels=None,
                 report: ImportReport | None = None, progress: bool = False) -> list[Frame]:
    """Extract frames from every video of ``video_dir`` into ``frames_dir`` and import that folder as LabelMe.

    Raises:
        ValueError: no frame has a LabelMe annotation yet -- the message says where to annotate.
    """
    from tqdm.auto import tqdm

    root = _require_dir(video_dir, "video_dir")
    report = report if report is not None else ImportReport()
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise FileNotFoundError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    n = 0
    for v in tqdm(videos, desc="extracting frames", disable=not progress, leave=False):
        n += len(extract_frames(v, frames_dir, interval_s, report=report))
    frames_dir = Path(frames_dir)
    if not any(frames_dir.rglob("*.json")):
        raise ValueError(f"{frames_dir}: {n} frames extracted from {len(videos)} video(s) every {interval_s:g} s, "
                         f"but none is annotated yet. Draw the neural tissue with LabelMe (polygons; JSON saved "
                         f"beside each frame), then run again (source='video' or source='labelme', "
                         f"labelme_dir='{frames_dir}'). A frame left without JSON counts as a negative.")
    return import_labelme(frames_dir, labels=labels, report=report, progress=progress)


# ------------------------------------------------------------------------------------------------ groups
def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and check a manifest CSV (one row per operation, or per frame with an ``image`` column).

    Required: ``operation_id`` (and ``patient_id``; when missing, each operation is its own patient). Optional:
    ``procedure, level, age, sex, split`` (``train``/``test``). A patient in both splits is an error.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "m.csv")
        >>> pd.DataFrame({"patient_id": ["P1"], "operation_id": ["OP1"], "split": ["test"]}).to_csv(f, index=False)
        >>> read_manifest(f).loc[0, "split"]
        'test'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: not a readable CSV ({e})") from None
    df.columns = [c.strip() for c in df.columns]
    if "operation_id" not in df.columns and "image" not in df.columns:
        raise ValueError(f"{path}: manifest needs an 'operation_id' column (or 'image' for per-frame rows); "
                         f"it has {list(df.columns)}")
    if "operation_id" not in df.columns:
        df["operation_id"] = df["patient_id"] if "patient_id" in df.columns else df["image"]
    if "patient_id" not in df.columns:
        df["patient_id"] = df["operation_id"]
    for col in ("patient_id", "operation_id"):
        df[col] = df[col].str.strip()
        if (df[col] == "").any():
            rows = (df.index[df[col] == ""] + 2).tolist()
            raise ValueError(f"{path}: empty {col} on line(s) {rows}")
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df["split"] = df["split"].str.strip().str.lower()
    bad = sorted(set(df["split"]) - set(_SPLITS) - {""})
    if bad:
        raise ValueError(f"{path}: split must be 'train' or 'test', found {bad}")
    has = df["split"] != ""
    if has.any() and not has.all():
        raise ValueError(f"{path}: split is given for some rows only (lines {(df.index[~has] + 2).tolist()} lack it)")
    both = df[has].groupby("patient_id")["split"].nunique()
    if (both > 1).any():
        pid = both[both > 1].index[0]
        raise ValueError(f"{path}: patient {pid} is in both splits (operations "
                         f"{df.loc[df.patient_id == pid, 'operation_id'].tolist()})")
    if "image" not in df.columns and df["operation_id"].duplicated().any():
        dup = df.loc[df["operation_id"].duplicated(), "operation_id"].iloc[0]
        raise ValueError(f"{path}: operation {dup} appears twice")
    return df


def assign_groups(frames: Sequence[Frame], manifest: pd.DataFrame | None = None, group_pattern: str | None = None,
                  report: ImportReport | None = None) -> pd.DataFrame:
    """Patient and operation of every frame: from the manifest, else from ``group_pattern``, else none.

    With a manifest, a frame belongs to the operation whose id is a folder of its path or starts its file name
    (``OP03/...`` or ``OP03_...``; the longest id wins), or to the row whose ``image`` column names it.
    ``group_pattern`` is a regular expression searched in the frame's relative path (``/`` separators):
    named groups ``patient`` and optionally ``operation``, or one unnamed group for the patient.
    Frames that match nothing are skipped (reported).

    Returns:
        One row per kept frame: ``rel, patient_id, operation_id, procedure, level, age, sex, split``
        (``patient_id`` empty when there are no groups at all).
    """
    report = report if report is not None else ImportReport()
    rows = []
    if manifest is not None:
        per_frame = "image" in manifest.columns and (manifest["image"] != "").any()
        if per_frame:
            lookup = {_strip_ext(v): r for v, r in zip(manifest["image"], manifest.to_dict("records"))}
        ops = sorted(manifest.to_dict("records"), key=lambda r: -len(r["operation_id"]))
        for f in frames:
            hit = lookup.get(f.rel) or lookup.get(Path(f.rel).name) if per_frame else None
            if hit is None:
                parts, name = f.rel.split("/"), Path(f.rel).name
                hit = next((r for r in ops if r["operation_id"] in parts[:-1]
                            or re.match(re.escape(r["operation_id"]) + r"($|[^A-Za-z0-9])", name)), None)
            if hit is None:
                report.skip(f.source, "no manifest row for this frame (its path names no operation_id of the "
                                      "manifest)")
                continue
            rows.append({"rel": f.rel, **{c: hit.get(c, "") for c in MANIFEST_COLUMNS}})
    elif group_pattern:
        try:
            rx = re.compile(group_pattern)
        except re.error as e:
            raise ValueError(f"group_pattern {group_pattern!r} is not a valid regular expression ({e})") from None
        if "patient" not in rx.groupindex and rx.groups < 1:
            raise ValueError(f"group_pattern {group_pattern!r} needs a group: (?P<patient>...) "
                             f"[and (?P<operation>...)], or one (...) for the patient")
        for f in frames:
            m = rx.search(f.rel)
            pid = (m.group("patient") if "patient" in rx.groupindex else m.group(1)) if m else None
            if not pid:
                report.skip(f.source, f"path {f.rel!r} does not match group_pattern {group_pattern!r}")
                continue
            op = m.group("operation") if "operation" in rx.groupindex and m.group("operation") else pid
            rows.append({"rel": f.rel, "patient_id": pid, "operation_id": op, "procedure": "", "level": "",
                         "age": "", "sex": "", "split": ""})
    else:
        rows = [{"rel": f.rel, "patient_id": "", "operation_id": "", "procedure": "", "level": "", "age": "",
                 "sex": "", "split": ""} for f in frames]
    return pd.DataFrame(rows, columns=["rel"] + MANIFEST_COLUMNS)


def _strip_ext(v: str) -> str:
    p = Path(str(v).replace("\\", "/"))
    return p.with_suffix("").as_posix() if p.suffix.lower() in IMAGE_EXTENSIONS else p.as_posix()


def assign_split(groups: pd.DataFrame, seed: int = 42, test_fraction: float = TEST_FRACTION) -> pd.Series:
    """The split of every row: the manifest's, else a seeded draw of whole patients (``test_fraction`` of them),
    else -- no patients known -- a seeded draw of single files.

    Example:
        >>> g = pd.DataFrame({"patient_id": list("aabbccdd"), "split": [""] * 8})
        >>> s = assign_split(g, seed=0, test_fraction=0.25); sorted(g.patient_id[s == "test"].unique())
        ['c']
    """
    if len(groups) and (groups["split"] != "").all():
        return groups["split"].copy()
    has_groups = len(groups) and (groups["patient_id"] != "").all()
    units = groups["patient_id"] if has_groups else pd.Series(np.arange(len(groups)).astype(str), index=groups.index)
    uniq = sorted(units.unique())
    rng = np.random.default_rng([seed, 3])
    order = [uniq[i] for i in rng.permutation(len(uniq))]
    n_test = int(round(test_fraction * len(uniq)))
    if len(uniq) >= 2:
        n_test = min(max(n_test, 1), len(uniq) - 1)
    test = set(order[:n_test])
    return pd.Series(np.where(units.isin(test), "test", "train"), index=groups.index)


def check_split(index: pd.DataFrame, where: str = "index") -> None:
    """Raise ``ValueError`` if a patient is in both splits (naming the patient and one file of each split).

    Example:
        >>> check_split(pd.DataFrame({"patient_id": ["a", "a"], "split": ["train", "test"], "source": ["x", "y"]}))
        Traceback (most recent call last):
        ...
        ValueError: index: patient a is in both splits (train: x; test: y)
    """
    pids = index["patient_id"].astype(str)
    if (pids == "").all():
        return
    n = index.groupby(pids)["split"].nunique()
    if (n > 1).any():
        pid = n[n > 1].index[0]
        sub = index[pids == pid]
        col = "source" if "source" in index.columns else "frame_id"
        ex = {s: sub.loc[sub["split"] == s, col].iloc[0] for s in _SPLITS}
        raise ValueError(f"{where}: patient {pid} is in both splits (train: {ex['train']}; test: {ex['test']})")


# ------------------------------------------------------------------------------------------------ prepare
@dataclass
class PreparedDataset:
    """What :func:`prepare_dataset` made: the folder, its index and report, and whether it was reused."""

    data_dir: Path
    index: pd.DataFrame
    report: pd.DataFrame
    reused: bool
    grouped: bool = True  # False: no patient groups were known and the split is by file
    messages: list = field(default_factory=list)

    def split_note(self) -> str:
        """How the split was made, said loudly when it could not be made by patient."""
        if not self.grouped:
            return ("WARNING: patients unknown (no manifest, no group_pattern) -> a patient-level split is "
                    "IMPOSSIBLE; frames were split by file and test scores will be optimistic.")
        n = self.index.groupby("split")["patient_id"].nunique()
        return (f"patient-level split: {n.get('train', 0)} train / {n.get('test', 0)} test patients, "
                f"no patient in both splits")

    def summary(self) -> str:
        ix = self.index
        parts = []
        for s in _SPLITS:
            sub = ix[ix["split"] == s]
            parts.append(f"{s}: {sub['patient_id'].nunique()} patients, {sub['operation_id'].nunique()} operations,"
                         f" {len(sub)} frames, {int(sub['has_tissue'].sum())} with neural tissue")
        skipped = int((self.report["status"] == "skipped").sum()) if len(self.report) else 0
        warned = int((self.report["status"] == "warning").sum()) if len(self.report) else 0
        return "; ".join(parts) + f"; report: {skipped} skipped, {warned} warnings"


def prepare_dataset(source: str = "phantom", output_dir: str | Path | None = None, *,
                    images_dir=None, masks_dir=None, mask_suffix: str = "", labelme_dir=None, video_dir=None,
                    manifest=None, group_pattern: str | None = None, interval_s: float | None = None,
                    seed: int | None = None, profile="smoke", labels: Sequence[str] | None = None,
                    overwrite: bool = False, progress: bool = True) -> PreparedDataset:
    """Write the canonical prepared dataset (docs/layout.md) from one source; the parameters of notebook 01.

    A folder that already holds a dataset prepared with the same parameters (and unchanged input files) is
    reused; one prepared with other parameters raises ``FileExistsError`` unless ``overwrite=True``.

    Args:
        source: ``phantom``, ``labelme``, ``folders`` or ``video``.
        output_dir: where to write (default for the phantom: ``paths(profile).phantom``; required otherwise).
        images_dir, masks_dir, mask_suffix: the ``folders`` source.
        labelme_dir: the ``labelme`` source; for ``video``, where frames are extracted and annotated (default
            ``<output_dir>_frames``).
        video_dir: the ``video`` source.
        manifest: CSV with ``patient_id, operation_id, procedure, level, age, sex, split`` (phantom: its own).
        group_pattern: regular expression giving the patient (and operation) from a file path, when there is no
            manifest (see :func:`assign_groups`).
        interval_s: seconds between frames extracted from videos (default: the profile's, 10 s as the paper).
        seed: seed of the phantom and of the split draw (default: the profile's).
        profile: profile name (phantom size, defaults).
        labels: LabelMe labels that mark neural tissue (default: all).
        overwrite: replace a dataset prepared with other parameters.
        progress: progress bars and messages.

    Example:
        >>> prep = prepare_dataset("phantom", profile="smoke", progress=False)   # doctest: +SKIP
        >>> len(prep.index)   # doctest: +SKIP
        116
    """
    from .repro import environment, save_json

    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    prof = get_profile(profile)
    seed = prof.seed if seed is None else int(seed)
    interval_s = prof.interval_s if interval_s is None else float(interval_s)
    if output_dir is None:
        if source != "phantom":
            raise ValueError(f"output_dir is required for source={source!r} (e.g. 'data/my_study'); later "
                             f"notebooks read it as data_dir")
        output_dir = paths(prof).phantom
    out = Path(output_dir)
    params = _prepare_params(source, prof, seed, images_dir, masks_dir, mask_suffix, labelme_dir, video_dir, manifest,
                             group_pattern, interval_s, labels, out)
    messages = []

    def say(msg: str) -> None:
        messages.append(msg)
        if progress:
            print(msg)

    report = ImportReport()
    if source == "phantom":
        from .phantom import generate_phantom

        raw = generate_phantom(prof, out_dir=Path(params["labelme_dir"]).parent, seed=seed, overwrite=overwrite,
                               progress=progress)
        manifest = raw / "manifest.csv"
    reused = _check_existing(out, params, _fingerprint(params), overwrite, say)
    if reused:
        say(f"prepared dataset {out} is up to date (same parameters and inputs); reusing it")
        index = load_index(out)
        rep = pd.read_csv(out / "report.csv", dtype=str, keep_default_na=False)
        grouped = bool(json.loads((out / "prepare.json").read_text()).get("grouped", True))
        return PreparedDataset(out, index, rep, True, grouped, messages)

    if source in ("phantom", "labelme"):
        frames = import_labelme(params["labelme_dir"], labels=labels, report=report, progress=progress)
    elif source == "folders":
        frames = import_folders(images_dir, masks_dir, mask_suffix=mask_suffix, report=report, progress=progress)
    else:
        frames = import_video(video_dir, params["labelme_dir"], interval_s, labels=labels, report=report,
                              progress=progress)
    if not frames:
        raise ValueError(f"no usable frame found for source={source!r} ({report.summary()}): "
                         + "; ".join(f"{r['file']}: {r['reason']}" for r in report.rows[:5]))
    man = read_manifest(manifest) if manifest is not None else None
    groups = assign_groups(frames, man, group_pattern, report)
    grouped = bool(len(groups)) and bool((groups["patient_id"] != "").all())
    if not grouped:  # every file is its own group, so later patient-grouped steps work per file
        groups["patient_id"] = groups["operation_id"] = groups["rel"].map(frame_id_from_path)
        say("WARNING: no manifest and no group_pattern: patients are unknown, so a patient-level split is "
            "IMPOSSIBLE. Frames are split by file; neighbouring frames of one patient will sit in both splits "
            "and test scores will be optimistic. Pass manifest= or group_pattern= to split by patient.")
        warnings.warn("no patient groups: the split is by file, not by patient", stacklevel=2)
    groups["split"] = assign_split(groups, seed=seed)
    index = _write_dataset(out, frames, groups, report, progress)
    check_split(index, where=str(out / "index.csv"))
    rep = report.to_frame()
    rep.to_csv(out / "report.csv", index=False)
    save_json({"params": params, "inputs": _fingerprint(params), "complete": True, "grouped": grouped,
               "counts": {"frames": len(index), "positives": int(index["has_tissue"].sum()),
                          "skipped": report.n_skipped, "warnings": report.n_warnings},
               "environment": environment()}, out / "prepare.json")
    if report.rows:
        say(f"import report: {report.summary()} -> {out / 'report.csv'}")
    return PreparedDataset(out, load_index(out), rep, False, grouped, messages)


def open_prepared(data_dir: str | Path) -> PreparedDataset:
    """An already prepared dataset (for example one passed as ``data_dir`` to the study), as
    :func:`prepare_dataset` would return it when reusing it.

    Example:
        >>> open_prepared("data/smoke/phantom").reused   # doctest: +SKIP
        True
    """
    data_dir = Path(data_dir)
    index = load_index(data_dir)
    rep_path = data_dir / "report.csv"
    rep = (pd.read_csv(rep_path, dtype=str, keep_default_na=False) if rep_path.is_file()
           else pd.DataFrame(columns=["file", "status", "reason"]))
    meta = data_dir / "prepare.json"
    try:
        grouped = bool(json.loads(meta.read_text()).get("grouped", True)) if meta.is_file() else True
    except json.JSONDecodeError:
        raise ValueError(f"{meta}: not valid JSON") from None
    return PreparedDataset(data_dir, index, rep, True, grouped)


def _prepare_params(source, prof, seed, images_dir, masks_dir, mask_suffix, labelme_dir, video_dir, manifest,
                    group_pattern, interval_s, labels, out: Path) -> dict:
    def s(p):
        return str(Path(p).resolve()) if p is not None else None

    params = {"source": source, "seed": seed, "group_pattern": group_pattern, "labels": list(labels) if labels else None}
    if source == "phantom":
        from .phantom import phantom_params

        raw = paths(prof).phantom_raw if out.resolve() == paths(prof).phantom.resolve() else out.parent / f"{out.name}_raw"
        params.update(phantom=phantom_params(prof, seed=seed), labelme_dir=s(raw / "labelme"),
                      manifest=s(raw / "manifest.csv"))
    elif source == "labelme":
        params.update(labelme_dir=s(_require_dir(labelme_dir, "labelme_dir")), manifest=s(manifest))
    elif source == "folders":
        params.update(images_dir=s(_require_dir(images_dir, "images_dir")),
                      masks_dir=s(masks_dir) if masks_dir is not None else None,
                      mask_suffix=mask_suffix, manifest=s(manifest))
    else:
        frames = labelme_dir if labelme_dir is not None else out.parent / f"{out.name}_frames"
        params.update(video_dir=s(_require_dir(video_dir, "video_dir")), labelme_dir=s(frames),
                      interval_s=float(interval_s), manifest=s(manifest))
    if manifest is not None and not Path(manifest).is_file():
        raise FileNotFoundError(f"{manifest}: manifest not found")
    return params


def _fingerprint(params: dict) -> str:
    """Hash of the input files (names, sizes, modification times): a changed input means regenerate."""
    h = hashlib.sha256()
    for key in ("labelme_dir", "images_dir", "masks_dir", "video_dir", "manifest"):
        p = params.get(key)
        if not p or not Path(p).exists():
            continue
        files = [Path(p)] if Path(p).is_file() else sorted(q for q in Path(p).rglob("*") if q.is_file())
        for f in files:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _check_existing(out: Path, params: dict, fingerprint: str, overwrite: bool, say=print) -> bool:
    meta = out / "prepare.json"
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("params") == params:
            if old.get("complete") and old.get("inputs") == fingerprint and (out / "index.csv").exists():
                return True
            say(f"{out}: same parameters but the input files changed (or the last run did not finish); "
                f"preparing it again")
        elif not overwrite:
            raise FileExistsError(
                f"{out}: holds a dataset prepared with other parameters ({old.get('params', old)}); pass "
                f"overwrite=True to replace it, or choose another output_dir")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder exists and is not a prepared dataset; pass overwrite=True to "
                              f"replace its content, or choose another output_dir")
    for sub in ("images", "masks"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    for name in ("index.csv", "report.csv", "prepare.json"):
        (out / name).unlink(missing_ok=True)
    return False


def _write_dataset(out: Path, frames: Sequence[Frame], groups: pd.DataFrame, report: ImportReport,
                   progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    by_rel = {f.rel: f for f in frames}
    rows, seen = [], set()
    for g in tqdm(groups.to_dict("records"), desc="writing dataset", disable=not progress, leave=False):
        f = by_rel[g["rel"]]
        fid = frame_id_from_path(f.rel)
        if fid in seen:
            k = 2
            while f"{fid}_{k}" in seen:
                k += 1
            report.warn(f.source, f"frame id {fid} already used; renamed {fid}_{k}")
            fid = f"{fid}_{k}"
        seen.add(fid)
        img_rel, mask_rel = f"images/{fid}.png", f"masks/{fid}.png"
        if f.copy_from is not None and _is_rgb_png(f.copy_from):
            shutil.copyfile(f.copy_from, out / img_rel)
        else:
            Image.fromarray(f.image).save(out / img_rel, compress_level=1)
        Image.fromarray((f.mask * 255).astype(np.uint8)).save(out / mask_rel, compress_level=1)
        h, w = f.image.shape[:2]
        rows.append({"frame_id": fid, "image": img_rel, "mask": mask_rel, "patient_id": g["patient_id"],
                     "operation_id": g["operation_id"], "split": g["split"], "has_tissue": int(f.mask.any()),
                     "height": h, "width": w, "source": f.source,
                     "time_s": "" if f.time_s is None else f.time_s, "procedure": g["procedure"],
                     "level": g["level"], "age": g["age"], "sex": g["sex"]})
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS).sort_values("frame_id", kind="stable").reset_index(drop=True)
    index.to_csv(out / "index.csv", index=False)
    return index


def _is_rgb_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.mode == "RGB"


# ------------------------------------------------------------------------------------------------ access
_ID_COLUMNS = ("frame_id", "image", "mask", "patient_id", "operation_id", "split", "source", "procedure", "level",
               "sex")


def _missing_message(data_dir: Path) -> str:
    parts = data_dir.resolve().parts
    profile = parts[-2] if len(parts) >= 3 and parts[-3] == "data" else "<profile>"
    return (f"{data_dir / 'index.csv'}: no prepared dataset here; prepare it with notebook 01 "
            f"(`python -m endolib run --profile {profile} --only 01`)")


def load_index(data_dir: str | Path) -> pd.DataFrame:
    """The validated index of a prepared dataset (sorted by ``frame_id``: the index order).

    Raises:
        FileNotFoundError: no ``index.csv`` (the message names the command that prepares it).
        ValueError: missing columns, duplicate ids, bad split/has_tissue values, or a patient in both splits.

    Example:
        >>> load_index("data/smoke/phantom").columns[:3].tolist()   # doctest: +SKIP
        ['frame_id', 'image', 'mask']
    """
    data_dir = Path(data_dir)
    path = data_dir / "index.csv"
    if not path.is_file():
        raise FileNotFoundError(_missing_message(data_dir))
    df = pd.read_csv(path, dtype={c: str for c in _ID_COLUMNS}, keep_default_na=False,
                     na_values={"time_s": [""], "age": [""]})
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    if df["frame_id"].duplicated().any():
        raise ValueError(f"{path}: duplicate frame_id {df.loc[df['frame_id'].duplicated(), 'frame_id'].iloc[0]}")
    bad = sorted(set(df["split"]) - set(_SPLITS))
    if bad:
        raise ValueError(f"{path}: split must be 'train' or 'test', found {bad}")
    try:
        df["has_tissue"] = df["has_tissue"].astype(int)
        df["height"] = df["height"].astype(int)
        df["width"] = df["width"].astype(int)
        df["time_s"] = pd.to_numeric(df["time_s"], errors="raise").astype(float)
        df["age"] = pd.to_numeric(df["age"], errors="raise").astype(float)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad numeric column ({e})") from None
    if not df["has_tissue"].isin([0, 1]).all():
        raise ValueError(f"{path}: has_tissue must be 0 or 1")
    check_split(df, where=str(path))
    return df.sort_values("frame_id", kind="stable").reset_index(drop=True)[INDEX_COLUMNS]


def _resolve_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def load_image(data_dir: str | Path, frame_id: str, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """One frame as RGB ``uint8 (H, W, 3)``; ``size`` (side, or (height, width)) resizes it (antialiased bilinear).

    Example:
        >>> load_image("data/smoke/phantom", "OP01__OP01_t00000000ms", size=32).shape   # doctest: +SKIP
        (32, 32, 3)
    """
    path = Path(data_dir) / "images" / f"{frame_id}.png"
    img = _open(path).convert("RGB")
    hw = _resolve_size(size)
    if hw is not None and (img.height, img.width) != hw:
        img = img.resize((hw[1], hw[0]), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_mask(data_dir: str | Path, frame_id: str, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """One mask as ``uint8 (H, W)`` in {0, 1}; ``size`` resizes it (nearest neighbour).

    Example:
        >>> load_mask("data/smoke/phantom", "OP01__OP01_t00000000ms").max() <= 1   # doctest: +SKIP
        True
    """
    path = Path(data_dir) / "masks" / f"{frame_id}.png"
    img = _open(path)
    if img.mode != "L":
        img = img.convert("L")
    hw = _resolve_size(size)
    if hw is not None and (img.height, img.width) != hw:
        img = img.resize((hw[1], hw[0]), Image.NEAREST)
    return (np.asarray(img) > 127).astype(np.uint8)


def check_dataset(data_dir: str | Path, progress: bool = False) -> pd.DataFrame:
    """Check a prepared dataset and count it: no patient in both splits, every file present, masks the size of
    their images, every frame with tissue has a non-empty mask and every other an empty one.

    Returns:
        Counts per split (patients, operations, frames, frames with tissue, share with tissue).

    Raises:
        ValueError: the first problem found, naming the frame.
    """
    from tqdm.auto import tqdm

    data_dir = Path(data_dir)
    index = load_index(data_dir)
    for row in tqdm(index.itertuples(index=False), total=len(index), desc="checking", disable=not progress,
                    leave=False):
        for rel in (row.image, row.mask):
            if not (data_dir / rel).is_file():
                raise ValueError(f"{data_dir / rel}: listed in index.csv but missing")
        with Image.open(data_dir / row.image) as im:
            iw, ih = im.size
        mask = load_mask(data_dir, row.frame_id)
        if mask.shape != (ih, iw) or (ih, iw) != (row.height, row.width):
            raise ValueError(f"{data_dir / row.mask}: mask {mask.shape[::-1]}, image {(iw, ih)}, index "
                             f"{(row.width, row.height)} disagree")
        if bool(mask.any()) != bool(row.has_tissue):
            raise ValueError(f"{data_dir / row.mask}: has_tissue={row.has_tissue} but the mask is "
                             f"{'non-empty' if mask.any() else 'empty'}")
    return _split_counts(index)


def _split_counts(index: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for s in _SPLITS:
        sub = index[index["split"] == s]
        rows.append({"split": s, "patients": sub["patient_id"].nunique(), "operations": sub["operation_id"].nunique(),
                     "frames": len(sub), "with_tissue": int(sub["has_tissue"].sum()),
                     "share_with_tissue": round(float(sub["has_tissue"].mean()), 3) if len(sub) else float("nan")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ Table 1
#: The paper's Table 1 values, for the side-by-side columns of :func:`cohort_table`.
PAPER_TABLE1 = {
    "patients": ("22", "6"), "operations": ("22", "7"), "images": ("4661", "1749"),
    "images with neural tissue": ("2307 (49.5%)", "635 (36.3%)"), "age, years (mean ± SD)": ("65.4 ± 10.7", "63.8 ± 14.1"),
    "sex M / F": ("9 / 13", "3 / 3"),
}


def cohort_table(index: pd.DataFrame, paper: bool = True) -> pd.DataFrame:
    """Table 1: the cohort by split (patients, operations, images, images with tissue, age, sex, procedures).

    Age and sex are counted per patient, procedures per operation. With ``paper``, the paper's values are added
    as columns ``paper_train`` and ``paper_test``.

    Example:
        >>> ix = pd.DataFrame({"patient_id": ["a", "b"], "operation_id": ["o1", "o2"], "split": ["train", "test"],
        ...                    "has_tissue": [1, 0], "age": [60.0, 70.0], "sex": ["M", "F"],
        ...                    "procedure": ["x", "x"], "level": ["L4-5", "L5-S1"]})
        >>> cohort_table(ix, paper=False).set_index("characteristic").loc["patients"].tolist()
        ['1', '1']
    """
    out = {}
    for s in _SPLITS:
        sub = index[index["split"] == s]
        pat = sub.drop_duplicates("patient_id")
        ops = sub.drop_duplicates("operation_id")
        n, k = len(sub), int(sub["has_tissue"].sum())
        age = pd.to_numeric(pat["age"], errors="coerce").dropna()
        sexes = pat["sex"].astype(str).str.upper()
        col = {"patients": str(pat["patient_id"].nunique()), "operations": str(ops["operation_id"].nunique()),
               "images": str(n), "images with neural tissue": f"{k} ({100 * k / n:.1f}%)" if n else "0",
               "age, years (mean ± SD)": f"{age.mean():.1f} ± {age.std(ddof=1):.1f}" if len(age) > 1 else "",
               "sex M / F": f"{int((sexes == 'M').sum())} / {int((sexes == 'F').sum())}" if len(pat) else ""}
        for proc, grp in ops[ops["procedure"].astype(str) != ""].groupby("procedure"):
            levels = ", ".join(sorted(set(grp["level"].astype(str)) - {""}))
            col[f"procedure: {proc}"] = f"{len(grp)}" + (f" ({levels})" if levels else "")
        out[s] = col
    keys = list(dict.fromkeys(list(out["train"]) + list(out["test"])))
    rows = []
    for key in keys:
        row = {"characteristic": key, "train": out["train"].get(key, "0"), "test": out["test"].get(key, "0")}
        if paper:
            row["paper_train"], row["paper_test"] = PAPER_TABLE1.get(key, ("", ""))
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ montage
#: Opacity of the mask fill in the montage (the outline is drawn fully).
MONTAGE_FILL = 0.2


def plot_montage(data_dir: str | Path, n: int = 12, seed: int = 0, cols: int = 6, split: str | None = None):
    """A montage of frames with their masks (translucent fill and contour), positives and negatives of both splits.

    Args:
        data_dir: prepared dataset.
        n: frames shown.
        seed: which frames (a seeded draw, half with tissue when possible).
        cols: columns of the grid.
        split: only this split (default: both).

    Returns:
        The matplotlib figure (save it with ``save_figure(fig, "fig_data_montage", paths(profile).figures)``).
    """
    import matplotlib.pyplot as plt

    from .plotting import PALETTE, paper_style

    paper_style()
    index = load_index(data_dir)
    if split is not None:
        index = index[index["split"] == split]
    rng = np.random.default_rng(seed)
    pos, neg = index[index["has_tissue"] == 1], index[index["has_tissue"] == 0]
    k_pos = min(len(pos), max(n - len(neg), (2 * n + 2) // 3))
    pick = pd.concat([pos.iloc[rng.permutation(len(pos))[:k_pos]], neg.iloc[rng.permutation(len(neg))[:n - k_pos]]])
    pick = pick.sort_values(["split", "frame_id"], ascending=[False, True])
    rows = max(1, math.ceil(len(pick) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False,
                             gridspec_kw={"hspace": 0.25, "wspace": 0.05})
    colour = np.array(_rgb(PALETTE[2]))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), pick.itertuples(index=False)):
        img = load_image(data_dir, row.frame_id).astype(np.float32) / 255
        mask = load_mask(data_dir, row.frame_id).astype(bool)
        over = img.copy()
        over[mask] = (1 - MONTAGE_FILL) * over[mask] + MONTAGE_FILL * colour
        ax.imshow(over)
        if mask.any():
            ax.contour(mask, levels=[0.5], colors=[PALETTE[2]], linewidths=0.8)
        ax.set_title(f"{row.split} {row.patient_id}" + (" +" if row.has_tissue else ""), fontsize=7, pad=2)
    fig.suptitle("Frames with the neural tissue mask (green outline); + = frame with tissue", fontsize=8)
    return fig


def _rgb(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)
