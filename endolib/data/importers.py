"""The importers of notebook 01: LabelMe folders (:func:`import_labelme`), image + mask folders
(:func:`import_folders`) and videos, sampled into frames to annotate (:func:`import_video`), each giving
:class:`Frame` records with a filesystem-safe frame id.
"""
from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from endolib.data.readers import (
    ImportReport,
    _exif_orientation,
    _open,
    _read_labelme_json,
    labelme_mask,
    read_image,
    read_mask,
)

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Frame", "extract_frames", "import_labelme", "import_folders",
           "import_video", "frame_id_from_path"]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".mpg", ".mpeg", ".webm", ".wmv")


_TIME_PATTERN = re.compile(r"_t(\d+)ms$")


@dataclass
class Frame:
    """One imported frame before it is written: where it came from and its binary mask."""

    rel: str  # path relative to the source root, without extension (used for ids and grouping)
    source: str  # the original file
    image: np.ndarray  # uint8 (H, W, 3), EXIF orientation applied
    mask: np.ndarray  # bool (H, W)
    time_s: float | None = None
    copy_from: Path | None = None  # an RGB PNG that can be copied byte for byte instead of re-encoded


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
                   report: ImportReport | None = None, progress: bool = False,
                   mask_threshold: float | None = None) -> list[Frame]:
    """Import an image folder and a mask folder, paired by relative path and stem (``<stem><mask_suffix>``).

    An image without mask is a negative (reported); a mask without image is skipped (reported). A mask must
    have its image's size; a mask that fits only the image's unrotated pixels (EXIF) is rotated like the image
    (reported); any other size mismatch skips the frame, and so does a mask that is not binary (grey values,
    see :func:`endolib.data.readers.read_mask`) unless ``mask_threshold`` is set on purpose.

    Args:
        images_dir: images (searched recursively).
        masks_dir: masks (default: ``images_dir``, then ``mask_suffix`` must tell masks apart).
        mask_suffix: what follows the image stem in a mask's stem, e.g. ``"_mask"``.
        report: collects skipped files and warnings.
        progress: tqdm bar.
        mask_threshold: binarise grey masks above this fraction of their value range (0-1); default: refuse them.

    Raises:
        ValueError: masks exist but none pairs with an image (the message shows an image, the mask names looked
            for and some that exist).
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
    pairs = [(p, _rel_key(p, img_root)) for p in images]
    pairs = [(p, key, _mask_key(key, mask_by_key, mask_by_stem)) for p, key in pairs]
    if pairs and (masks or same) and all(mkey is None for _, _, mkey in pairs):
        raise ValueError(_unpaired_message(img_root, mask_root, pairs[0][0], pairs[0][1], mask_suffix,
                                           masks, len(pairs)))
    used, frames = set(), []
    for img_path, key, mkey in tqdm(pairs, desc="importing folders", disable=not progress, leave=False):
        if mkey is not None:  # paired, even if the image or the mask then turns out unreadable
            used.add(mkey)
        try:
            image = read_image(img_path)
            if mkey is None:
                report.warn(img_path, "no mask found; used as a frame without neural tissue")
                mask = np.zeros(image.shape[:2], bool)
            else:
                mask = _paired_mask(mask_by_key[mkey], img_path, image, report, mask_threshold)
        except (ValueError, FileNotFoundError) as e:
            report.skip(img_path, str(e))
            continue
        copy = img_path if img_path.suffix.lower() == ".png" and _exif_orientation(_open(img_path)) == 1 else None
        frames.append(Frame(key, str(img_path), image, mask, _time_from_stem(Path(key).name), copy))
    for key, m in sorted(mask_by_key.items()):
        if key not in used:
            report.skip(m, "mask without image")
    return frames


def _mask_key(key: str, mask_by_key: dict, mask_by_stem: dict) -> str | None:
    """The mask paired with image ``key``: same relative path, else the only mask with its stem."""
    if key in mask_by_key:
        return key
    same_stem = mask_by_stem.get(Path(key).name, [])
    return same_stem[0] if len(same_stem) == 1 else None


def _unpaired_message(img_root: Path, mask_root: Path, img_path: Path, key: str, mask_suffix: str,
                      masks: list[Path], n_images: int) -> str:
    """Why no image found its mask: one image, the names looked for, some that exist, and a fix.

    Example:
        >>> print(_unpaired_message(Path("im"), Path("mk"), Path("im/a.png"), "a", "_mask", [Path("mk/a_seg.png")], 1))
        ... # doctest: +NORMALIZE_WHITESPACE
        im: none of the 1 image(s) pairs with one of the 1 mask file(s) in mk (mask_suffix='_mask'); for a.png it
        looked for mk/a_mask.png (or .jpg, .tif, ...), or a_mask.* in a subfolder; masks there are named
        a_seg.png; fix: mask_suffix='_seg'
    """
    names = [m.relative_to(mask_root).as_posix() for m in masks]
    ex = ", ".join(names[:3]) + (f" ... ({len(names)} in all)" if len(names) > 3 else "")
    guess = _guess_suffix([Path(key).name], [m.stem for m in masks])
    fix = (f"mask_suffix={guess!r}" if guess is not None and guess != mask_suffix else
           "set mask_suffix to what follows the image's name in its mask's name ('' when they are named alike), "
           "or point masks_dir at the masks")
    if not masks:
        return (f"{mask_root}: no file ends with mask_suffix {mask_suffix!r}, so no image has a mask (files there: "
                f"{', '.join(p.name for p in _list_images(mask_root)[:3])}); fix: set mask_suffix to what ends the "
                f"masks' names, or give masks_dir")
    return (f"{img_root}: none of the {n_images} image(s) pairs with one of the {len(masks)} mask file(s) in "
            f"{mask_root} (mask_suffix={mask_suffix!r}); for {img_path.name} it looked for "
            f"{mask_root / (key + mask_suffix)}.png (or .jpg, .tif, ...), or {Path(key).name}{mask_suffix}.* in a "
            f"subfolder; masks there are named {ex}; fix: {fix}")


def _guess_suffix(image_stems: list[str], mask_stems: list[str]) -> str | None:
    """What follows an image stem in a mask stem, when some mask starts with some image's stem.

    Example:
        >>> _guess_suffix(["a", "b"], ["b_seg", "c"])
        '_seg'
    """
    for ms in mask_stems:
        for st in image_stems:
            if ms.startswith(st):
                return ms[len(st):]
    return None


def _paired_mask(mask_path: Path, img_path: Path, image: np.ndarray, report: ImportReport,
                 threshold: float | None = None) -> np.ndarray:
    mask = read_mask(mask_path, report=report, threshold=threshold)
    if mask.shape == image.shape[:2]:
        return mask
    raw_mask = read_mask(mask_path, exif=False, threshold=threshold)
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

    from endolib.data.phantom import frame_name

    video = Path(video)
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    target = Path(out_dir) / video.stem
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
                        target.mkdir(parents=True, exist_ok=True)  # only once a frame is decoded
                        frame.to_image().convert("RGB").save(png)
                    out.append((png, t))
                    while next_t - half <= frame.time + 1e-9:
                        next_t += interval_s
    except (av.error.FFmpegError, OSError, ValueError) as e:
        msg = str(e) if str(e).startswith(str(video)) else f"{video}: cannot read video ({e})"
        if report is None:
            raise ValueError(msg) from None
        report.skip(video, msg)
    return out


def import_video(video_dir: str | Path, frames_dir: str | Path, interval_s: float, labels=None,
                 report: ImportReport | None = None, progress: bool = False) -> list[Frame]:
    """Extract frames from every video of ``video_dir`` into ``frames_dir`` and import that folder as LabelMe.

    Raises:
        ValueError: no video could be read (the message names each file and why), or no frame has a LabelMe
            annotation yet (the message says where to annotate, and names the videos that could not be read).
    """
    from tqdm.auto import tqdm

    root = _require_dir(video_dir, "video_dir")
    report = report if report is not None else ImportReport()
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise FileNotFoundError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    n, unreadable = 0, []
    for v in tqdm(videos, desc="extracting frames", disable=not progress, leave=False):
        before = len(report.rows)
        got = extract_frames(v, frames_dir, interval_s, report=report)
        n += len(got)
        if not got:
            unreadable.append(report.rows[-1]["reason"] if len(report.rows) > before else f"{v}: no frame decoded")
    if unreadable and n == 0:
        raise ValueError(f"{root}: no frame could be extracted from the {len(videos)} video file(s): "
                         f"{'; '.join(unreadable[:3])}; fix: convert them to mp4 (H.264), e.g. ffmpeg -i IN OUT.mp4, "
                         f"or remove the files that are not videos")
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir() or not any(frames_dir.rglob("*.json")):
        skipped = f" ({len(unreadable)} unreadable: {'; '.join(unreadable[:3])})" if unreadable else ""
        raise ValueError(f"{frames_dir}: {n} frames extracted from {len(videos)} video(s) every {interval_s:g} s"
                         f"{skipped}, but none is annotated yet. Draw the neural tissue with LabelMe (polygons; JSON "
                         f"saved beside each frame), then run again (source='video' or source='labelme', "
                         f"labelme_dir='{frames_dir}'). A frame left without JSON counts as a negative.")
    return import_labelme(frames_dir, labels=labels, report=report, progress=progress)
