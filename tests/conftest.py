"""Shared test fixtures: a tiny prepared dataset in exactly the docs/layout.md format.

``tiny_dataset`` is a ready-made folder (6 patients, 4 train / 2 test, 6 frames each, half with tissue);
``make_tiny_dataset`` is the factory for tests that need other sizes::

    def test_something(make_tiny_dataset):
        data_dir = make_tiny_dataset(n_patients=8, frames=4)

Frames are dark-red noise; positive frames carry a bright yellowish ellipse that is exactly the mask, so
a model can learn the task in a few epochs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

INDEX_COLUMNS = ["frame_id", "image", "mask", "patient_id", "operation_id", "split", "has_tissue", "height",
                 "width", "source", "time_s", "procedure", "level", "age", "sex"]


def _ellipse(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def write_tiny_dataset(root: str | Path, n_patients: int = 6, n_test: int = 2, frames: int = 6,
                       height: int = 40, width: int = 48, seed: int = 0) -> Path:
    """Write a prepared dataset (index.csv, images/, masks/, report.csv, prepare.json) under ``root``.

    Args:
        root: target folder (created).
        n_patients: patients, one operation each; the last ``n_test`` are the test split.
        n_test: test patients.
        frames: frames per patient; even-numbered frames have tissue.
        height, width: frame size in pixels.
        seed: RNG seed.

    Returns:
        The dataset folder.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        pid = f"P{p + 1:02d}"
        for f in range(frames):
            fid = f"{pid}_op1_f{f:03d}"
            img = np.zeros((height, width, 3), np.uint8)
            img[..., 0] = rng.integers(90, 150, (height, width))
            img[..., 1] = rng.integers(10, 50, (height, width))
            img[..., 2] = rng.integers(10, 50, (height, width))
            mask = np.zeros((height, width), np.uint8)
            has = int(f % 2 == 0)
            if has:
                m = _ellipse(height, width, rng)
                img[m] = (230, 220, 150)
                mask[m] = 255
            Image.fromarray(img).save(root / "images" / f"{fid}.png")
            Image.fromarray(mask).save(root / "masks" / f"{fid}.png")
            rows.append({"frame_id": fid, "image": f"images/{fid}.png", "mask": f"masks/{fid}.png",
                         "patient_id": pid, "operation_id": f"{pid}_op1",
                         "split": "test" if p >= n_patients - n_test else "train", "has_tissue": has,
                         "height": height, "width": width, "source": f"raw/{fid}.jpg", "time_s": 10.0 * f,
                         "procedure": "lumbar interlaminar", "level": "L4-5", "age": 60 + p, "sex": "MF"[p % 2]})
    pd.DataFrame(rows, columns=INDEX_COLUMNS).sort_values("frame_id").to_csv(root / "index.csv", index=False)
    pd.DataFrame(columns=["file", "status", "reason"]).to_csv(root / "report.csv", index=False)
    (root / "prepare.json").write_text('{"source": "tests/conftest.py tiny dataset"}\n')
    return root


@pytest.fixture
def make_tiny_dataset(tmp_path):
    """Factory fixture: ``make_tiny_dataset(**kw)`` writes a dataset (see :func:`write_tiny_dataset`)."""
    counter = iter(range(10**6))

    def make(**kw) -> Path:
        return write_tiny_dataset(tmp_path / f"tiny_dataset_{next(counter)}", **kw)

    return make


@pytest.fixture
def tiny_dataset(make_tiny_dataset) -> Path:
    """A tiny prepared dataset: 6 patients (P05, P06 test), 6 frames of 40x48 each, half with tissue."""
    return make_tiny_dataset()


@pytest.fixture
def one_thread():
    """One torch thread: tiny models gain nothing from two, and the suite stays fast on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
