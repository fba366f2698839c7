"""The prepared dataset as every stage after notebook 01 reads it (docs/layout.md): ``index.csv`` validated
(:func:`load_index`), frames and masks at any size (:func:`load_image`, :func:`load_mask`), a full check of the
files, the cohort table (Table 1) and the montage figure.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from endolib.data.groups import _SPLITS, check_split
from endolib.data.readers import _open

__all__ = ["INDEX_COLUMNS", "FRAME_CACHE", "load_index", "load_image", "load_mask", "check_dataset", "cohort_table",
           "plot_montage"]


#: The folder of a prepared dataset where ``endolib.training.frames.load_frames`` keeps the frames it resized: derived
#: files (deleting the folder costs only the time to resize again), left out of the dataset's fingerprint
#: (``endolib.study.provenance.dataset_fingerprint``).
FRAME_CACHE = "cache"

#: Columns of ``index.csv`` (docs/layout.md), in order.
INDEX_COLUMNS = ["frame_id", "image", "mask", "patient_id", "operation_id", "split", "has_tissue", "height",
                 "width", "source", "time_s", "procedure", "level", "age", "sex"]


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

    from endolib.plotting import PALETTE, paper_style

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


#: The paper's Table 1 values, for the side-by-side columns of :func:`cohort_table`.
PAPER_TABLE1 = {
    "patients": ("22", "6"), "operations": ("22", "7"), "images": ("4661", "1749"),
    "images with neural tissue": ("2307 (49.5%)", "635 (36.3%)"), "age, years (mean ± SD)": ("65.4 ± 10.7", "63.8 ± 14.1"),
    "sex M / F": ("9 / 13", "3 / 3"),
}
