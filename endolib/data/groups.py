"""Patients, operations and the train/test split of an import: a manifest (:func:`read_manifest`) or a file-name
pattern gives each frame its patient and operation (:func:`assign_groups`), patients are split
(:func:`assign_split`, the paper's 6 of 28 test patients), and no patient may be in both splits (:func:`check_split`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from endolib.data.importers import IMAGE_EXTENSIONS, Frame
from endolib.data.readers import ImportReport

__all__ = ["MANIFEST_COLUMNS", "TEST_FRACTION", "read_manifest", "assign_groups", "assign_split", "check_split"]


#: Columns of a manifest CSV; ``operation_id`` is required, the others optional.
MANIFEST_COLUMNS = ["patient_id", "operation_id", "procedure", "level", "age", "sex", "split"]


#: Share of patients in the test split when the manifest has no ``split`` column (paper: 6 of 28 patients).
TEST_FRACTION = 6 / 28


_SPLITS = ("train", "test")


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
    Frames that match nothing are skipped (reported); when no frame matches, ``ValueError`` shows two paths and
    the pattern (or the manifest's operations).

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
    if frames and not rows:
        raise ValueError(_no_group_message(frames, manifest, group_pattern))
    return pd.DataFrame(rows, columns=["rel"] + MANIFEST_COLUMNS)


def _no_group_message(frames: Sequence[Frame], manifest: pd.DataFrame | None, group_pattern: str | None) -> str:
    """No frame found its patient: two file names, the pattern or the manifest's operations, and a fix.

    Example:
        >>> f = [Frame(r, f"/d/{r}.png", np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), bool)) for r in ("a1", "b2")]
        >>> print(_no_group_message(f, None, "(?P<patient>P.)"))  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
        no frame left after grouping: group_pattern '(?P<patient>P.)' matches none of the 2 frame paths,
        e.g. 'a1', 'b2'; fix: ...
    """
    ex = ", ".join(repr(f.rel) for f in frames[:2])
    if manifest is not None:
        ops = ", ".join(manifest["operation_id"].astype(str).tolist()[:4])
        return (f"no frame left after grouping: none of the {len(frames)} frame paths (e.g. {ex}) names an "
                f"operation_id of the manifest ({ops}...) as a folder or a file-name prefix; fix: name the folders "
                f"(or file-name starts) after the manifest's operation_id, or add an 'image' column")
    return (f"no frame left after grouping: group_pattern {group_pattern!r} matches none of the {len(frames)} frame "
            f"paths, e.g. {ex}; fix: a regular expression searched in these paths (relative, '/' separators, no "
            f"extension), e.g. r'^(?P<patient>[^/_]+)' for the name's start")


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
