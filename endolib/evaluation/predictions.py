"""Test-set predictions of the trained runs, as notebooks 04 and 06 read them: ``predictions.npz`` of each
model and training seed (:func:`load_predictions`), checked against the prepared dataset's test frames
(:func:`check_frame_ids`), the test masks at model size, and which models a notebook evaluates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from endolib.config import CLASSIFIERS, SEGMENTERS, Profile, get_profile, paths

__all__ = ["Predictions", "RUN_FILE", "TRAINING_NOTEBOOK", "predictions_path", "run_command", "load_predictions",
           "check_frame_ids", "split_rows", "load_test_masks", "resolve_models"]


#: file of a run folder holding the test predictions
RUN_FILE = "predictions.npz"
#: notebook that trains each kind of model (named in "missing predictions" errors)
TRAINING_NOTEBOOK = {"cls": "02", "seg": "03"}


# ----------------------------------------------------------------------------------------- predictions
@dataclass
class Predictions:
    """One model's stored test predictions (``predictions.npz``)."""

    model: str
    task: str  # "cls" or "seg"
    seed: int  # training seed of the run
    frame_ids: np.ndarray  # str (N,)
    probs: np.ndarray | None  # cls: float32 (N,); seg: uint8 (N, S, S) (None once Evaluation reduced it)
    size: int
    path: Path


def predictions_path(model: str, profile: str | Profile = "smoke", root=None, seed: int | None = None,
                     dataset: str | None = None) -> Path:
    """``runs/<profile>/[<dataset>/]<model>/seed<s>/predictions.npz``; ``seed=None`` = the profile's first training
    seed; ``dataset`` None = the phantom study (:func:`endolib.config.paths`).

    Example:
        >>> predictions_path("unet", "quick", "/r").as_posix(), predictions_path("unet", "quick", "/r", 43).parent.name
        ('/r/runs/quick/unet/seed42/predictions.npz', 'seed43')
        >>> predictions_path("unet", "quick", "/r", dataset="mine").as_posix()
        '/r/runs/quick/mine/unet/seed42/predictions.npz'
    """
    p = get_profile(profile)
    return paths(p, root, dataset).run(model, p.training_seeds[0] if seed is None else int(seed)) / RUN_FILE


def run_command(model: str, profile: str | Profile = "smoke", data_dir=None, dataset: str | None = None) -> str:
    """The command that trains ``model`` and writes its predictions (for the study on ``data_dir``, named
    ``dataset``, when given).

    Example:
        >>> run_command("unet", "quick")
        'python -m endolib run --profile quick --only 03 --arch unet'
        >>> run_command("unet", "quick", "data/mine")
        'python -m endolib run --profile quick --only 03 --arch unet --data-dir data/mine'
    """
    name = profile.name if isinstance(profile, Profile) else profile
    task = "cls" if model in CLASSIFIERS else "seg"
    return (f"python -m endolib run --profile {name} --only {TRAINING_NOTEBOOK[task]} --arch {model}"
            + (f" --data-dir {data_dir}" if data_dir is not None else "")
            + (f" --dataset {dataset}" if dataset is not None else ""))


def load_predictions(model: str, profile: str | Profile = "smoke", root=None, seed: int | None = None,
                     dataset: str | None = None) -> Predictions:
    """Load and validate one training run's ``predictions.npz``.

    Args:
        model: registry name.
        profile: profile whose ``runs/`` folder to read.
        root: repository root (default :func:`endolib.config.repo_root`).
        seed: training seed (default: the profile's first, ``profile.training_seeds[0]``).
        dataset: the study's dataset name (:func:`endolib.config.dataset_name`; None: the phantom study).

    Raises:
        FileNotFoundError: no predictions (the message names the command that makes them).
        ValueError: the file is malformed (message names the file and what is wrong).
    """
    seed = get_profile(profile).training_seeds[0] if seed is None else int(seed)
    path = predictions_path(model, profile, root, seed, dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions for {model} (training seed {seed}); train it with "
                                f"`{run_command(model, profile, dataset=dataset)}`")
    task = "cls" if model in CLASSIFIERS else "seg"
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    missing = sorted({"frame_ids", "probs", "size", "task"} - set(data))
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected frame_ids, probs, size, task")
    stored_task, size = str(data["task"]), int(data["size"])
    probs, ids = data["probs"], data["frame_ids"].astype(str)
    if stored_task != task:
        raise ValueError(f"{path}: task is {stored_task!r} but {model} is a {task!r} model")
    if probs.shape[0] != ids.shape[0]:
        raise ValueError(f"{path}: {ids.shape[0]} frame_ids but {probs.shape[0]} predictions")
    if task == "cls":
        if probs.ndim != 1 or not np.issubdtype(probs.dtype, np.floating):
            raise ValueError(f"{path}: classifier probs must be float (N,); got {probs.dtype} {probs.shape}")
        if np.isnan(probs).any() or probs.min(initial=0) < 0 or probs.max(initial=0) > 1:
            raise ValueError(f"{path}: classifier probs must lie in [0, 1] without NaN")
    elif probs.dtype != np.uint8 or probs.ndim != 3 or probs.shape[1:] != (size, size):
        raise ValueError(f"{path}: segmenter probs must be uint8 (N, {size}, {size}) = round(255 * p); "
                         f"got {probs.dtype} {probs.shape}")
    return Predictions(model, task, seed, ids, probs, size, path)


def split_rows(index: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The rows of one split (default the test split) of a prepared dataset's index, in index order."""
    return index[index["split"] == split].reset_index(drop=True)


def check_frame_ids(pred: Predictions, test_ids, source: str = "index.csv",
                    profile: str | Profile = "smoke") -> None:
    """Refuse predictions that do not cover exactly the dataset's test split, in index order.

    Args:
        pred: loaded predictions.
        test_ids: the test split's frame ids in index order.
        source: where ``test_ids`` came from (for the message).
        profile: the profile (for the re-run command in the message).

    Example:
        >>> p = Predictions("unet", "seg", 42, np.array(["a", "b"]), None, 8, Path("x.npz"))
        >>> check_frame_ids(p, ["a", "c"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x.npz: predictions are for a different test split than index.csv: 1 test frame(s) without ...
    """
    ids, want = np.asarray(pred.frame_ids).astype(str), np.asarray(test_ids).astype(str)
    if ids.shape == want.shape and (ids == want).all():
        return
    missing, extra = sorted(set(want.tolist()) - set(ids.tolist())), sorted(set(ids.tolist()) - set(want.tolist()))
    problems = []
    if missing:
        problems.append(f"{len(missing)} test frame(s) without a prediction (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} prediction(s) for frames not in the test split (e.g. {extra[:3]})")
    if not problems:
        n_dup = ids.size - np.unique(ids).size
        problems.append(f"{n_dup} duplicated frame id(s)" if n_dup else "frames are not in index order")
    raise ValueError(f"{pred.path}: predictions are for a different test split than {source}: "
                     f"{', '.join(problems)}; re-run `{run_command(pred.model, profile)}`")


def load_test_masks(data_dir, frame_ids, size: int, progress: bool = True) -> np.ndarray:
    """Ground-truth masks of the given frames at ``size x size`` (nearest resize) -> bool ``(N, S, S)``."""
    from tqdm.auto import tqdm

    from endolib.data.dataset import load_mask

    out = np.zeros((len(frame_ids), size, size), dtype=bool)
    for i, fid in enumerate(tqdm(frame_ids, desc=f"masks {size}x{size}", disable=not progress, leave=False)):
        out[i] = load_mask(data_dir, fid, size=size) > 0
    return out


def resolve_models(kind: str, names) -> tuple[str, ...]:
    """``None`` -> every registry model of ``kind`` (``"cls"``/``"seg"``); else validated names.

    Example:
        >>> resolve_models("seg", ["unet"]), len(resolve_models("cls", None))
        (('unet',), 3)
    """
    registry = CLASSIFIERS if kind == "cls" else SEGMENTERS
    if names is None:
        return tuple(registry)
    names = (names,) if isinstance(names, str) else tuple(names)
    bad = [n for n in names if n not in registry]
    if bad:
        raise ValueError(f"unknown {'classifier' if kind == 'cls' else 'segmenter'}(s) {bad}; "
                         f"valid: {', '.join(registry)}")
    return names
