"""Data import: phantom, LabelMe, image/mask folders or surgical videos -> one canonical prepared dataset.

Every later notebook reads the prepared dataset of ``docs/layout.md`` (``index.csv``, ``images/``, ``masks/``,
``report.csv``, ``prepare.json``) through :func:`load_index`, :func:`endolib.data.dataset.load_image` and :func:`endolib.data.dataset.load_mask`.
:func:`prepare_dataset` writes it from any of four sources:

* ``phantom``: generate the synthetic cohort (:mod:`endolib.data.phantom`) and import its LabelMe folder -- the same
  code path as real data;
* ``labelme``: a folder of frames with LabelMe JSON files (polygons, rectangles, circles and masks; several
  shapes per frame are united; a frame without JSON, or whose JSON has no shape, is a negative);
* ``folders``: an image folder and a mask folder paired by file stem (``mask_suffix`` such as ``"_mask"``);
  masks as PNG 0/1 or 0/255, JPEG with compression noise (foreground = above half the range), 1 or 3 channels,
  8 or 16 bit (read on their actual value range); a grey mask is skipped unless ``mask_threshold`` is set;
* ``video``: surgical recordings; frames are extracted every ``interval_s`` seconds into a folder to be
  annotated with LabelMe, then imported as ``labelme``.

Images keep their size and aspect; EXIF orientation is applied the way LabelMe displays images (its polygons
are in the rotated frame). Patients and operations come from a manifest CSV (``patient_id, operation_id,
procedure, level, age, sex, split``) or from a regular expression on the file path (``group_pattern``); with
neither, a patient-level split is impossible and the split is by file (with a loud warning). Without a
``split`` column the split is drawn at patient level with the paper's proportion (6 of 28 patients in test).

Nothing is dropped silently: every skipped file and every repair (clipped points, EXIF mismatch, a mask
without image...) is a row of ``report.csv`` with the file and the reason. An import that would give an unusable
dataset (no frame left after grouping, masks that pair with no image, no frame with tissue, a split without
patient) raises before anything is written (the bad inputs: ``docs/data_import.md``).

Example:
    >>> prep = prepare_dataset("phantom", profile="smoke", progress=False)   # doctest: +SKIP
    >>> load_index(prep.data_dir).groupby("split").patient_id.nunique().to_dict()   # doctest: +SKIP
    {'test': 6, 'train': 22}
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from endolib.config import get_profile, paths
from endolib.data.dataset import INDEX_COLUMNS, _is_rgb_png, load_index
from endolib.data.groups import (
    _SPLITS,
    assign_groups,
    assign_split,
    check_split,
    read_manifest,
)
from endolib.data.importers import (
    Frame,
    _require_dir,
    frame_id_from_path,
    import_folders,
    import_labelme,
    import_video,
)
from endolib.data.readers import ImportReport

__all__ = ["SOURCES", "PreparedDataset", "prepare_dataset", "open_prepared"]


#: The ``source`` values of :func:`prepare_dataset` (the notebook parameter).
SOURCES = ("phantom", "labelme", "folders", "video")


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
                    overwrite: bool = False, progress: bool = True,
                    mask_threshold: float | None = None) -> PreparedDataset:
    """Write the canonical prepared dataset (docs/layout.md) from one source; the parameters of notebook 01.

    A folder that already holds a dataset prepared with the same parameters (and unchanged input files) is
    reused; one prepared with other parameters raises ``FileExistsError`` unless ``overwrite=True``.

    An import that would give an unusable dataset raises ``ValueError`` naming the cause and the fix before
    anything is written (no frame left after grouping, masks that pair with no image, no frame with tissue, a
    split without patient), so the corrected rerun needs no ``overwrite``; an existing dataset is kept.

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
        mask_threshold: ``folders``: binarise grey masks above this fraction of their value range (0-1), set on
            purpose; by default a mask with many mid-grey pixels is skipped (``report.csv`` says what was seen).

    Example:
        >>> prep = prepare_dataset("phantom", profile="smoke", progress=False)   # doctest: +SKIP
        >>> len(prep.index)   # doctest: +SKIP
        116
    """
    from endolib.repro import environment, save_json

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
    if mask_threshold is not None:  # only when set, so datasets prepared before this parameter are still reused
        params["mask_threshold"] = float(mask_threshold)
    messages = []

    def say(msg: str) -> None:
        messages.append(msg)
        if progress:
            print(msg)

    report = ImportReport()
    if source == "phantom":
        from endolib.data.phantom import generate_phantom

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
        frames = import_folders(images_dir, masks_dir, mask_suffix=mask_suffix, report=report, progress=progress,
                                mask_threshold=mask_threshold)
    else:
        frames = import_video(video_dir, params["labelme_dir"], interval_s, labels=labels, report=report,
                              progress=progress)
    if not frames:
        raise ValueError(f"{_input_dir(params)}: no usable frame found for source={source!r} ({report.summary()}): "
                         + "; ".join(f"{r['file']}: {r['reason']}" for r in report.rows[:5])
                         + "; fix: correct or replace the files named")
    man = read_manifest(manifest) if manifest is not None else None
    groups = assign_groups(frames, man, group_pattern, report)
    grouped = man is not None or bool(group_pattern)
    if not grouped:  # every file is its own group, so later patient-grouped steps work per file
        groups["patient_id"] = groups["operation_id"] = groups["rel"].map(frame_id_from_path)
        say("WARNING: no manifest and no group_pattern: patients are unknown, so a patient-level split is "
            "IMPOSSIBLE. Frames are split by file; neighbouring frames of one patient will sit in both splits "
            "and test scores will be optimistic. Pass manifest= or group_pattern= to split by patient.")
        warnings.warn("no patient groups: the split is by file, not by patient", stacklevel=2)
    groups["split"] = assign_split(groups, seed=seed)
    _check_usable(frames, groups, report, _input_dir(params), man)
    _clear_dataset(out)
    try:
        index = _write_dataset(out, frames, groups, report, progress)
        check_split(index, where=str(out / "index.csv"))
        rep = report.to_frame()
        rep.to_csv(out / "report.csv", index=False)
        save_json({"params": params, "inputs": _fingerprint(params), "complete": True, "grouped": grouped,
                   "counts": {"frames": len(index), "positives": int(index["has_tissue"].sum()),
                              "skipped": report.n_skipped, "warnings": report.n_warnings},
                   "environment": environment()}, out / "prepare.json")
    except BaseException:  # a half-written dataset would block the rerun: leave none
        _clear_dataset(out)
        raise
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
        from endolib.data.phantom import phantom_params

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
    return False


def _clear_dataset(out: Path) -> None:
    """Remove a prepared dataset's files (and ``out`` itself when that leaves it empty)."""
    for sub in ("images", "masks"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    for name in ("index.csv", "report.csv", "prepare.json"):
        (out / name).unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _input_dir(params: dict) -> str:
    """The folder the frames came from, for messages."""
    key = {"folders": "images_dir", "video": "labelme_dir"}.get(params["source"], "labelme_dir")
    return str(params.get(key))


def _check_usable(frames: Sequence[Frame], groups: pd.DataFrame, report: ImportReport, where: str,
                  manifest: pd.DataFrame | None) -> None:
    """Refuse, before anything is written, an import whose dataset could not train or test a model.

    Raises:
        ValueError: no frame with neural tissue, a split without patient, or a patient in both splits (cause
            and fix named).

    Example:
        >>> f = [Frame("a", "/d/a.png", np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), bool))]
        >>> g = pd.DataFrame({"rel": ["a"], "patient_id": ["P1"], "split": ["train"]})
        >>> _check_usable(f, g, ImportReport(), "/d", None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: /d: the test split has no patient (all 1 patient(s) are in train: P1); fix: ...
    """
    kept = set(groups["rel"])
    if not any(f.mask.any() for f in frames if f.rel in kept):
        raise ValueError(f"{where}: none of the {len(kept)} frame(s) has neural tissue (every mask is empty"
                         f"{_empty_hint(report)}); a study needs frames with tissue to train and score; fix: check "
                         f"masks_dir and mask_suffix (folders) or labels (LabelMe), and report.csv's lines")
    for split in _SPLITS:
        if not (groups["split"] == split).any():
            pids = sorted(groups["patient_id"].unique())
            other = "test" if split == "train" else "train"
            fix = (f"give some patients split={split!r} in the manifest" if manifest is not None
                   and (manifest["split"] != "").all() else
                   "at least 2 patients are needed: check group_pattern or the manifest's patient_id")
            raise ValueError(f"{where}: the {split} split has no patient (all {len(pids)} patient(s) are in "
                             f"{other}: {', '.join(map(str, pids[:5]))}); fix: {fix}")
    check_split(groups.rename(columns={"rel": "source"}), where=where)


def _empty_hint(report: ImportReport) -> str:
    no_mask = sum(r["reason"].startswith("no mask found") for r in report.rows)
    return f"; {no_mask} image(s) had no mask" if no_mask else ""


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


# ------------------------------------------------------------------------------------------------ Table 1
