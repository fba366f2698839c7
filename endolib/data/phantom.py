"""The synthetic BESS phantom: a cohort shaped like the paper's Table 1, rendered as endoscopy videos.

Nothing downstream knows the phantom is synthetic: :func:`generate_phantom` writes exactly what a clinician
would bring (a LabelMe folder of sampled frames with polygon annotations, a manifest CSV, and one video per
operation), and notebook 01 imports it with the same code as real data (:mod:`endolib.data`).

How a frame is made (all vectorised NumPy, no per-pixel Python loops):

* per operation a *scene*: a large canvas (``CANVAS_SCALE`` x the frame side) of anatomy painted in layers
  (reddish textured soft tissue, the neural tissue -- dural sac and/or nerve roots, smooth and pale with fine
  vessels --, whitish fibrous ligamentum flavum, porous pale bone and yellow lobulated fat, the last three
  partly covering the nerve), with a height map (for shading and specular sheen) and a gloss map;
* per patient a *look*: tissue colours, white balance, brightness, field-of-view size, vignetting;
* per operation *timelines*: the camera (pan, zoom, roll) moves between key poses at the sampling times,
  instruments (shafts with metallic shading, some with pale reflections that look like nerve) enter and leave,
  blood and bubbles drift, focus varies;
* a frame at time ``t`` is the canvas seen through the camera pose at ``t`` plus the dynamic layers, speculars,
  defocus and motion blur, the circular field of view with dark corners, and sensor noise. The ground truth is
  the visible neural tissue (not under instruments, fat, bone or ligament; inside the field of view), traced
  into polygons as an annotator would in LabelMe.

About half of the training frames and a third of the test frames show neural tissue (the camera's key poses
at the sampling times look at it or away from it), as in the paper.

Example:
    >>> import tempfile
    >>> raw = generate_phantom("smoke", out_dir=tempfile.mkdtemp(), progress=False, videos=False)
    >>> sorted(p.name for p in raw.iterdir())
    ['labelme', 'manifest.csv', 'phantom.json']
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from endolib.config import get_profile, paths
from endolib.data.phantom_render import (
    APPEARANCE,
    COHORT,
    Scene,
    _make_look,
    make_scene,
    render_frame,
)
from endolib.device import default_threads

__all__ = ["make_cohort", "frame_name", "mask_to_polygons", "labelme_record", "phantom_params", "operation_scene",
           "generate_phantom", "COHORT", "LABEL", "LABELME_VERSION", "PHANTOM_FORMAT"]


#: The label written into every LabelMe shape (the one foreground class).
LABEL = "neural_tissue"
#: The LabelMe version written into the JSON files: LabelMe 5.2 writes exactly these keys (5.3 added "mask").
LABELME_VERSION = "5.2.1"
#: H.264 quality of the operation videos (constant rate factor; lower = better, 18 ~ visually lossless).
VIDEO_CRF = 18
#: Version of the generator's output (part of the parameters): bump it when the rendering changes, so that a
#: phantom made by an older generator is never mistaken for a current one.
PHANTOM_FORMAT = 1


# ------------------------------------------------------------------------------------------------- cohort
def make_cohort(seed: int = 42) -> pd.DataFrame:
    """The phantom cohort: one row per operation, shaped like the paper's Table 1.

    28 patients (22 train, 6 test), 29 operations (one test patient operated twice); procedure types and
    spinal levels, ages with the paper's per-split mean and SD, and the paper's sex counts.

    Args:
        seed: random seed (the cohort is a pure function of it).

    Returns:
        DataFrame with columns ``patient_id, operation_id, procedure, level, age, sex, split``.

    Example:
        >>> c = make_cohort(0); len(c), c.patient_id.nunique(), c.groupby("split").patient_id.nunique().to_dict()
        (29, 28, {'test': 6, 'train': 22})
    """
    rng = np.random.default_rng([seed, 101])
    rows = []
    procs_test = COHORT["procedures_test"]
    splits = {"train": [], "test": []}
    for proc, (n_ops, levels) in COHORT["procedures"].items():
        n_test = procs_test[proc]
        for i in range(n_ops):
            splits["test" if i < n_test else "train"].append((proc, levels[int(rng.integers(len(levels)))]))
    pid = 0
    for split in ("train", "test"):
        ops = splits[split]
        order = rng.permutation(len(ops))
        ops = [ops[i] for i in order]
        n_pat = COHORT["n_patients"][split]
        mean, sd = COHORT["age_mean_sd"][split]
        ages = _ages_with_moments(rng, n_pat, mean, sd)
        n_m, n_f = COHORT["sex_mf"][split]
        sexes = np.array(["M"] * n_m + ["F"] * n_f)[rng.permutation(n_m + n_f)]
        owners = list(range(n_pat))
        if split == COHORT["twice_operated_split"]:  # one patient of this split has a second operation
            owners.append(int(rng.integers(n_pat)))
        if len(owners) != len(ops):
            raise ValueError(f"COHORT is inconsistent: {len(ops)} {split} operations for {n_pat} patients")
        for (proc, level), owner in zip(ops, owners):
            rows.append({"patient_id": f"P{pid + owner + 1:02d}", "procedure": proc, "level": level,
                         "age": int(ages[owner]), "sex": str(sexes[owner]), "split": split})
        pid += n_pat
    df = pd.DataFrame(rows).sort_values(["patient_id", "level"], kind="stable").reset_index(drop=True)
    df.insert(1, "operation_id", [f"OP{i + 1:02d}" for i in range(len(df))])
    return df[["patient_id", "operation_id", "procedure", "level", "age", "sex", "split"]]


def _ages_with_moments(rng: np.random.Generator, n: int, mean: float, sd: float) -> np.ndarray:
    """Integer ages whose sample mean and SD are as close to ``mean``/``sd`` as rounding allows."""
    lo, hi = COHORT["age_range"]
    z = rng.standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return np.clip(np.round(mean + sd * z), lo, hi).astype(int)


def frame_name(operation_id: str, time_s: float) -> str:
    """File stem of the frame sampled at ``time_s`` from an operation, e.g. ``OP03_t00020000ms``."""
    return f"{operation_id}_t{int(round(time_s * 1000)):08d}ms"


# ------------------------------------------------------------------------------------------------ labelme
def mask_to_polygons(soft: np.ndarray, min_area: float = 4.0, tolerance: float = 0.7) -> list[np.ndarray]:
    """Trace the 0.5 level of a soft mask into simplified polygons, as an annotator would outline regions.

    Holes are not traced (LabelMe polygons have none); components smaller than ``min_area`` pixels are
    dropped. Points are (x, y) pixel coordinates with pixel centres at integer + 0.5 (LabelMe's convention
    is pixel corners at integers; a point (x, y) lies at column x, row y).

    Args:
        soft: float (H, W) map, foreground where > 0.5.
        min_area: smallest polygon area kept (pixels).
        tolerance: Douglas-Peucker tolerance (pixels).

    Example:
        >>> m = np.zeros((20, 20)); m[5:15, 4:12] = 1
        >>> [p.shape[1] for p in mask_to_polygons(m)]
        [2]
    """
    import contourpy

    padded = np.pad(np.asarray(soft, np.float64), 1)
    gen = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    polys = []
    for line in gen.lines(0.5):
        pts = line - 1 + 0.5  # undo the pad; array index i -> pixel centre i + 0.5
        if len(pts) < 4:
            continue
        area = 0.5 * (pts[:-1, 0] * pts[1:, 1] - pts[1:, 0] * pts[:-1, 1]).sum()
        if area < 0:  # contourpy: outer boundaries of a > level region are counter-clockwise in (x, y)
            continue  # a hole (clockwise): LabelMe polygons have none
        if abs(area) < min_area:
            continue
        simp = _douglas_peucker(pts[:-1] if np.allclose(pts[0], pts[-1]) else pts, tolerance)
        if len(simp) >= 3:
            polys.append(simp)
    return polys


def _douglas_peucker(pts: np.ndarray, tol: float) -> np.ndarray:
    """Simplify a closed polyline (iterative Douglas-Peucker on the two halves)."""
    n = len(pts)
    if n <= 4:
        return pts
    keep = np.zeros(n, bool)
    far = int(np.argmax(((pts - pts[0]) ** 2).sum(1)))
    keep[[0, far]] = True
    stack = [(0, far), (far, n)]
    while stack:
        i, j = stack.pop()
        a_, b_ = pts[i], pts[j % n]
        seg = pts[i + 1:j]
        if len(seg) == 0:
            continue
        d = b_ - a_
        norm = math.hypot(*d)
        dist = (np.abs(d[0] * (seg[:, 1] - a_[1]) - d[1] * (seg[:, 0] - a_[0])) / norm if norm > 0
                else np.hypot(*(seg - a_).T))
        k = int(np.argmax(dist))
        if dist[k] > tol:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return pts[keep]


def labelme_record(polygons: list[np.ndarray], image_path: str, height: int, width: int,
                   label: str = LABEL) -> dict:
    """A LabelMe annotation exactly as LabelMe writes it (imageData null, one polygon shape per region).

    Example:
        >>> r = labelme_record([np.array([[1, 1], [5, 1], [5, 5]])], "a.png", 8, 8)
        >>> sorted(r), sorted(r["shapes"][0])
        (['flags', 'imageData', 'imageHeight', 'imagePath', 'imageWidth', 'shapes', 'version'], ['description', 'flags', 'group_id', 'label', 'points', 'shape_type'])
    """
    shapes = [{"label": label, "points": [[round(float(x), 2), round(float(y), 2)] for x, y in poly],
               "group_id": None, "description": "", "shape_type": "polygon", "flags": {}}
              for poly in polygons]
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


# ------------------------------------------------------------------------------------------------ writer
def phantom_params(profile="smoke", seed: int | None = None, videos: bool = True, **overrides) -> dict:
    """The parameters that define a phantom (saved in ``phantom.json``; equal parameters = identical files).

    Example:
        >>> phantom_params("smoke")["size"]
        96
    """
    prof = get_profile(profile, **overrides)
    return {"generator": "endolib.data.phantom", "format": PHANTOM_FORMAT, "seed": int(prof.seed if seed is None else seed),
            "size": int(prof.phantom_size), "frames_per_operation": int(prof.frames_per_operation),
            "test_frames_per_operation": int(prof.test_frames_per_operation or prof.frames_per_operation),
            "interval_s": float(prof.interval_s), "video_fps": float(prof.video_fps), "videos": bool(videos)}


def frames_per_operation(params: dict, split: str) -> int:
    """Annotated frames of one operation of ``split`` (``"train"`` or ``"test"``): the test operations have their
    own count, so the test set can have the paper's size while the training side stays small.

    Example:
        >>> p = phantom_params("quick"); frames_per_operation(p, "train"), frames_per_operation(p, "test")
        (24, 250)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    key = "test_frames_per_operation" if split == "test" else "frames_per_operation"
    return int(params.get(key, params["frames_per_operation"]))


def operation_scene(params: dict, operation_id: str, cohort: pd.DataFrame | None = None) -> Scene:
    """Rebuild the scene of one operation exactly as :func:`generate_phantom` made it.

    Args:
        params: :func:`phantom_params` (or the ``params`` of a ``phantom.json``).
        operation_id: e.g. ``"OP03"``.
        cohort: :func:`make_cohort` of ``params["seed"]`` (computed when omitted).

    Example:
        >>> s = operation_scene(phantom_params("smoke"), "OP01"); s.size
        96
    """
    seed = int(params["seed"])
    cohort = make_cohort(seed) if cohort is None else cohort
    ops = cohort["operation_id"].astype(str).tolist()
    if operation_id not in ops:
        raise ValueError(f"operation {operation_id!r} is not in the phantom cohort (seed {seed}); valid: {ops}")
    k = ops.index(operation_id)
    op = cohort.iloc[k]
    n_frames = frames_per_operation(params, str(op["split"]))
    look = _make_look(np.random.default_rng([seed, 11, int(str(op["patient_id"])[1:])]))
    positives = _split_positives(cohort, params, seed)[operation_id]
    return make_scene(op.to_dict(), int(params["size"]), n_frames, float(params["interval_s"]),
                      seed=seed * 1000 + k, look=look, positives=positives)


def generate_phantom(profile="smoke", out_dir: str | Path | None = None, seed: int | None = None,
                     videos: bool = True, overwrite: bool = False, progress: bool = True,
                     workers: int | None = None, **overrides) -> Path:
    """Generate the phantom cohort as raw data: a LabelMe folder, a manifest and one video per operation.

    Layout of ``out_dir`` (default ``paths(profile).phantom_raw``)::

        manifest.csv                 patient_id, operation_id, procedure, level, age, sex, split
        labelme/<OPxx>/<OPxx>_t<ms>ms.png (+ .json for the frames that show neural tissue)
        videos/<OPxx>.mp4            the operation at ``video_fps``; frame k is at k / video_fps seconds, so the
                                     annotated frames are the video frames at multiples of ``interval_s``
        phantom.json                 the parameters, the counts and the generation speed

    A folder holding a complete phantom with the same parameters is reused as is; a folder with other
    parameters (or other content) raises unless ``overwrite=True``.

    Args:
        profile: profile name or :class:`~endolib.config.Profile` (sets ``phantom_size``,
            ``frames_per_operation``, ``interval_s``, ``video_fps``).
        out_dir: target folder.
        seed: random seed (default: the profile's).
        videos: also write the operation videos.
        overwrite: replace an existing folder made with other parameters.
        progress: show a tqdm bar and print the generation speed (frames per second).
        workers: processes that render operations side by side (None: the profile's ``num_threads``, else the cores
            this process may use; 1: in this process). Every operation is rendered from its own seeds, so the files
            are the same byte for byte whatever the number.
        **overrides: profile settings, e.g. ``phantom_size=64``.

    Returns:
        The folder written.

    Example:
        >>> import tempfile
        >>> d = generate_phantom("smoke", out_dir=tempfile.mkdtemp(), videos=False, progress=False,
        ...                      frames_per_operation=2, phantom_size=32)
        >>> len(pd.read_csv(d / "manifest.csv"))
        29
    """
    from tqdm.auto import tqdm

    from endolib.repro import save_json

    prof = get_profile(profile, **overrides)
    params = phantom_params(prof, seed=seed, videos=videos)
    out = Path(out_dir) if out_dir is not None else paths(prof).phantom_raw
    if _reusable(out, params, overwrite):
        if progress:
            print(f"phantom: reusing {out} (same parameters)")
        return out
    for sub in ("labelme", "videos"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    for name in ("manifest.csv", "phantom.json"):
        (out / name).unlink(missing_ok=True)
    (out / "labelme").mkdir(parents=True, exist_ok=True)

    cohort = make_cohort(params["seed"])
    t_start = time.perf_counter()
    counts = {"frames": 0, "positives": 0, "video_frames": 0, "rendered": 0}
    for c in tqdm(_render_operations(params, cohort, out, workers or prof.num_threads or default_threads()),
                  total=len(cohort), desc="phantom", unit="op", disable=not progress):
        for k in counts:
            counts[k] += c[k]
    seconds = time.perf_counter() - t_start
    cohort.to_csv(out / "manifest.csv", index=False)
    rate = counts["rendered"] / max(seconds, 1e-9)
    if progress:
        print(f"phantom: {len(cohort)} operations, {counts['frames']} annotated frames ({counts['positives']} with "
              f"neural tissue), {counts['video_frames']} video frames; {counts['rendered']} frames rendered in "
              f"{seconds:.1f} s ({rate:.0f} frames/s) -> {out}")
    save_json({"params": params, "complete": True, **counts, "seconds": round(seconds, 2),
               "frames_per_s": round(rate, 1)}, out / "phantom.json")
    return out


def _render_operation(params: dict, op_id: str, cohort: pd.DataFrame, out: Path) -> dict:
    """Render and write one operation (:func:`_write_operation`); its counts."""
    return _write_operation(operation_scene(params, op_id, cohort), op_id, out, params)


def _render_operations(params: dict, cohort: pd.DataFrame, out: Path, workers: int):
    """Yield the counts of every operation as it is written: in this process when ``workers`` is 1 (or off Linux),
    else in that many forked processes, the operations with the most frames first (the test operations are ten times
    longer)."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ops = cohort["operation_id"].astype(str).tolist()
    # forked processes (Linux): they start without re-running the caller's script, which a spawned process would
    # (a script without a __main__ guard would start over); the children render with NumPy and Pillow only
    workers = max(1, min(int(workers), len(ops))) if sys.platform == "linux" else 1
    if workers == 1:
        for op_id in ops:
            yield _render_operation(params, op_id, cohort, out)
        return
    split = dict(zip(ops, cohort["split"].astype(str)))
    order = sorted(ops, key=lambda o: -frames_per_operation(params, split[o]))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_render_operation, params, op_id, cohort, out) for op_id in order]
        for future in as_completed(futures):
            yield future.result()


def _reusable(out: Path, params: dict, overwrite: bool) -> bool:
    """True if ``out`` already holds this phantom; raise if it holds something else (unless overwrite)."""
    meta = out / "phantom.json"
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("params") == params and old.get("complete") and (out / "manifest.csv").exists():
            return True
        if old.get("params") != params and not overwrite:
            raise FileExistsError(
                f"{out}: holds a phantom made with other parameters ({old.get('params')}, wanted {params}); "
                f"pass overwrite=True to replace it or choose another folder")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder exists and is not a phantom; pass overwrite=True to replace it "
                              f"or choose another folder")
    return False


def _write_operation(scene: Scene, op_id: str, out: Path, params: dict) -> dict:
    """Render one operation: the annotated frames (PNG + LabelMe JSON) and, if asked, its video.

    Annotated frames that fall on a video frame are rendered once and used for both."""
    size = scene.size
    fps = float(params["video_fps"])
    duration = len(scene.key_times) * float(params["interval_s"])
    op_dir = out / "labelme" / op_id
    op_dir.mkdir(parents=True, exist_ok=True)
    sampled = {}  # video frame index -> sample time, for samples on the video's time grid
    pending = []
    for t in scene.key_times:
        j = t * fps
        if params["videos"] and abs(j - round(j)) < 1e-6:
            sampled[int(round(j))] = float(t)
        else:
            pending.append(float(t))
    counts = {"frames": 0, "positives": 0, "video_frames": 0, "rendered": 0}

    def annotate(t: float):
        img, soft = render_frame(scene, t)
        counts["rendered"] += 1
        stem = frame_name(op_id, t)
        Image.fromarray(img).save(op_dir / f"{stem}.png", compress_level=1)
        polys = mask_to_polygons(soft, min_area=APPEARANCE["min_polygon_area"] * size * size,
                                 tolerance=max(0.5, size / 200))
        if polys:
            rec = labelme_record(polys, f"{stem}.png", size, size)
            (op_dir / f"{stem}.json").write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n")
            counts["positives"] += 1
        counts["frames"] += 1
        return img

    for t in pending:
        annotate(t)
    if params["videos"]:
        n = int(round(duration * fps))
        with _VideoWriter(out / "videos" / f"{op_id}.mp4", fps, size) as writer:
            for j in range(n):
                if j in sampled:
                    img = annotate(sampled[j])
                else:
                    img = render_frame(scene, j / fps, with_mask=False)[0]
                    counts["rendered"] += 1
                writer.write(img)
        counts["video_frames"] = n
    return counts


def _split_positives(cohort: pd.DataFrame, params: dict, seed: int) -> dict[str, int]:
    """Positive frames per operation so each split matches the paper's share of frames with neural tissue."""
    rng = np.random.default_rng([seed, 23])
    out = {}
    for split, grp in cohort.groupby("split"):
        n_frames = frames_per_operation(params, str(split))
        frac = COHORT["positive_fraction"][split]
        total = int(round(frac * n_frames * len(grp)))
        weights = rng.uniform(0.5, 1.5, len(grp))
        share = weights / weights.sum() * total
        counts = np.minimum(np.floor(share).astype(int), n_frames)
        order = np.argsort(-(share - counts), kind="stable")
        i = 0
        while counts.sum() < total:
            j = order[i % len(order)]
            if counts[j] < n_frames:
                counts[j] += 1
            i += 1
        out.update(dict(zip(grp.operation_id, counts.tolist())))
    return out


class _VideoWriter:
    """H.264 MP4 writer (PyAV): frame k is shown at k / fps seconds."""

    def __init__(self, path: Path, fps: float, size: int):
        from fractions import Fraction

        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self._av = av
        self.container = av.open(str(path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        self.stream.width = self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.thread_count = 1
        if codec == "libx264":
            self.stream.options = {"crf": str(VIDEO_CRF), "preset": "ultrafast"}

    def write(self, img: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        return False


# ------------------------------------------------------------------------------------------------ 30 FPS clips
#: real-frame-rate clips (issue 15): frame rate, length per profile (default CLIP_SECONDS["default"]) and the time
#: between the camera's key poses; half of the key poses show neural tissue, so it enters and leaves the view
CLIP_FPS = 30.0
CLIP_SECONDS = {"smoke": 2.0, "default": 6.0}
CLIP_KEY_INTERVAL_S = 1.0


def clip_scene(params: dict, operation_id: str, seconds: float, key_interval_s: float = CLIP_KEY_INTERVAL_S) -> Scene:
    """The scene of a short real-time clip of an operation: the operation's patient look and anatomy, a camera
    moving continuously between key poses ``key_interval_s`` apart, half of them on neural tissue (at least one
    with and one without).

    Example:
        >>> s = clip_scene(phantom_params("smoke"), "OP01", seconds=2.0)
        >>> len(s.key_times), int(s.key_positive.sum())
        (3, 1)
    """
    seed = int(params["seed"])
    cohort = make_cohort(seed)
    ops = cohort["operation_id"].astype(str).tolist()
    if operation_id not in ops:
        raise ValueError(f"operation {operation_id!r} is not in the phantom cohort (seed {seed}); valid: {ops}")
    if seconds <= 0 or key_interval_s <= 0:
        raise ValueError(f"seconds and key_interval_s must be > 0, got {seconds} and {key_interval_s}")
    k = ops.index(operation_id)
    op = cohort.iloc[k]
    n_keys = max(2, int(round(seconds / key_interval_s)) + 1)
    look = _make_look(np.random.default_rng([seed, 11, int(str(op["patient_id"])[1:])]))
    return make_scene(op.to_dict(), int(params["size"]), n_keys, float(key_interval_s),
                      seed=seed * 1000 + k + 500, look=look, positives=max(1, n_keys // 2))


def clip_path(raw_dir: str | Path, operation_id: str, fps: float = CLIP_FPS) -> Path:
    """``<phantom_raw>/clips/<OP>_<fps>fps.mp4``; the ground truth is ``..._masks.npz`` next to it."""
    return Path(raw_dir) / "clips" / f"{operation_id}_{fps:g}fps.mp4"


def write_clip(profile="smoke", operation_id: str | None = None, raw_dir: str | Path | None = None,
               seconds: float | None = None, fps: float = CLIP_FPS, overwrite: bool = False) -> Path:
    """Render a real-frame-rate clip of a phantom operation with per-frame ground truth (lazily: an existing clip
    made with the same settings is reused).

    Writes ``clips/<OP>_30fps.mp4`` (H.264), ``clips/<OP>_30fps_masks.npz`` (``masks``: bool (T, S, S), packed)
    and ``clips/<OP>_30fps.json`` (the settings) under the phantom folder.

    Args:
        profile: whose phantom (``paths(profile).phantom_raw``; needs its ``phantom.json``).
        operation_id: default the first test operation of the manifest.
        raw_dir: the phantom folder (default ``paths(profile).phantom_raw``).
        seconds: clip length (default :data:`CLIP_SECONDS` of the profile).
        fps: frame rate.
        overwrite: re-render even if a matching clip exists.

    Returns:
        The mp4 path.
    """
    prof = get_profile(profile)
    raw = Path(raw_dir) if raw_dir is not None else paths(prof).phantom_raw
    meta = raw / "phantom.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: no phantom here; generate it with notebook 01 "
                                f"(`python -m endolib run --profile {prof.name} --only 01`)")
    params = json.loads(meta.read_text()).get("params", {})
    if operation_id is None:
        manifest = pd.read_csv(raw / "manifest.csv")
        test_ops = sorted(manifest.loc[manifest["split"] == "test", "operation_id"].astype(str))
        if not test_ops:
            raise ValueError(f"{raw / 'manifest.csv'}: no test operation")
        operation_id = test_ops[0]
    seconds = float(seconds or CLIP_SECONDS.get(prof.name, CLIP_SECONDS["default"]))
    path = clip_path(raw, operation_id, fps)
    settings = {"params": params, "operation_id": operation_id, "seconds": seconds, "fps": float(fps),
                "key_interval_s": CLIP_KEY_INTERVAL_S}
    info = path.with_suffix(".json")
    masks_file = path.with_name(path.stem + "_masks.npz")
    if not overwrite and path.is_file() and masks_file.is_file() and info.is_file() \
            and json.loads(info.read_text()) == settings:
        return path
    scene = clip_scene(params, operation_id, seconds)
    n = int(round(seconds * fps))
    masks = np.zeros((n, scene.size, scene.size), dtype=bool)
    tmp = path.with_name(path.stem + ".partial.mp4")
    with _VideoWriter(tmp, fps, scene.size) as writer:
        for j in range(n):
            img, soft = render_frame(scene, j / fps)
            masks[j] = soft > 0.5
            writer.write(img)
    np.savez_compressed(masks_file, masks=np.packbits(masks, axis=-1), shape=np.array(masks.shape))
    tmp.replace(path)  # the clip appears only when complete
    info.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def read_clip_masks(path: str | Path) -> np.ndarray:
    """The per-frame ground truth of a clip written by :func:`write_clip`: bool ``(T, S, S)``."""
    path = Path(path)
    masks_file = path.with_name(path.stem + "_masks.npz")
    if not masks_file.is_file():
        raise FileNotFoundError(f"{masks_file}: no ground truth for {path} (make the clip with phantom.write_clip)")
    with np.load(masks_file) as z:
        shape = tuple(int(v) for v in z["shape"])
        return np.unpackbits(z["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
