"""Test helper: synthetic ``runs/<profile>/<model>/seed<s>/predictions.npz`` for a prepared dataset (docs/layout.md).

For tests (and for executing notebook 04 on fixture data) only; real predictions come from notebooks 02/03.
Classifier scores and segmenter probability maps are noisy versions of the ground truth, with a per-model
``quality`` so models differ, and one run per training seed whose quality is jittered by ``seed_sd`` (the
seed-to-seed spread of a real model)::

    from synthetic_runs import write_synthetic_runs
    write_synthetic_runs(root, "smoke", data_dir, classifiers=["resnet18"], segmenters=["unet"])
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from endolib.config import CLASSIFIERS, SEGMENTERS, get_profile, paths, study_paths
from endolib.evaluation.metrics import quantise


def write_predictions(run_dir: str | Path, frame_ids, probs: np.ndarray, size: int, task: str) -> Path:
    """Write one ``predictions.npz`` exactly as notebooks 02/03 do."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "predictions.npz"
    np.savez_compressed(path, frame_ids=np.asarray(frame_ids).astype(str), probs=probs, size=np.int64(size),
                        task=np.array(task))
    return path


def _mask(data_dir: Path, rel: str, size: int) -> np.ndarray:
    img = Image.open(data_dir / rel).convert("L").resize((size, size), Image.NEAREST)
    return np.asarray(img) > 0


def _smooth(x: np.ndarray) -> np.ndarray:
    """3x3 box blur per frame, so wrong pixels come in blobs as with a real model."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return sum(p[:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3)) / 9.0


def write_synthetic_runs(root, profile: str, data_dir, classifiers=CLASSIFIERS, segmenters=SEGMENTERS,
                         seed: int = 0, quality: dict | None = None, seeds=None,
                         seed_sd: float = 0.02) -> dict[str, dict[int, Path]]:
    """Write synthetic predictions for every requested model and training seed on the dataset's test split.

    Args:
        root: repository root whose ``runs/<profile>/`` receives the run folders.
        profile: profile name (sets the input sizes and the default training seeds).
        data_dir: a prepared dataset (index.csv, masks/).
        classifiers, segmenters: registry names.
        seed: RNG seed.
        quality: model -> signal strength in (0, 1) (default: decreasing along the registry order).
        seeds: training seeds (default: the profile's ``training_seeds``).
        seed_sd: SD of the per-seed jitter of the quality.

    Returns:
        model -> training seed -> path of its ``predictions.npz``.
    """
    data_dir = Path(data_dir)
    p = get_profile(profile)
    index = pd.read_csv(data_dir / "index.csv", dtype={"frame_id": str})
    test = index[index["split"] == "test"].reset_index(drop=True)
    y = test["has_tissue"].to_numpy().astype(float)
    seeds = p.training_seeds if seeds is None else tuple(seeds)
    rng = np.random.default_rng(seed)
    out = {}
    for k, model in enumerate(classifiers):
        out[model] = {}
        for s in seeds:
            q = (quality or {}).get(model, 0.35 - 0.1 * k) + seed_sd * rng.standard_normal()
            score = np.clip(q * y + (1 - q) * rng.random(y.size), 0, 1).astype(np.float32)
            out[model][s] = write_predictions(study_paths(profile, data_dir, root=root).run(model, s), test["frame_id"], score,
                                              p.cls_size, "cls")
    masks = {}
    for k, model in enumerate(segmenters):
        size = p.segformer_size if model.startswith("segformer") else p.seg_size
        if size not in masks:
            masks[size] = np.stack([_mask(data_dir, rel, size) for rel in test["mask"]])
        out[model] = {}
        for s in seeds:
            q = (quality or {}).get(model, 0.45 - 0.03 * k) + seed_sd * rng.standard_normal()
            noisy = 0.5 + q * (masks[size] - 0.5) + rng.normal(0.0, 0.3, masks[size].shape)
            prob = np.clip(_smooth(noisy), 0, 1)
            out[model][s] = write_predictions(study_paths(profile, data_dir, root=root).run(model, s), test["frame_id"], quantise(prob),
                                              size, "seg")
    return out
