"""A study on a second prepared dataset lives beside the phantom study and never writes into it (issue 25, item 1).

The test imports a small cohort of folders (images + masks it makes), runs notebooks 01-04 on it with profile
smoke for one classifier and one segmenter through the runner, and checks that every tracked file under
``results/``, ``figures/`` and ``docs/`` is byte-identical afterwards, that the phantom study's executed notebooks and
incremental record are untouched, and that the dataset's tables, figures, run folders and records are in its own
folders.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from endolib.config import paths, repo_root
from endolib.data.prepare import prepare_dataset
from endolib.study.runner import run, where_outputs_are

NAME = "isolation_check"  # the second dataset's study name (its folder name)


def _tracked(root: Path, *dirs: str) -> dict[str, str]:
    files = subprocess.run(["git", "ls-files", "--", *dirs], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split()
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in files if (root / f).is_file()}


def _phantom_records(profile: str) -> dict[str, str]:
    runs = paths(profile).runs
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(runs.glob("*")) if f.is_file()} if runs.is_dir() else {}


def _cohort(root: Path, patients: int = 8, frames: int = 3) -> tuple[Path, Path]:
    """images/P<i>_f<k>.png and masks/P<i>_f<k>_mask.png: a bright blob (tissue) on every other frame."""
    rng = np.random.default_rng(0)
    for i in range(patients):
        for k in range(frames):
            img = rng.integers(20, 120, (48, 64, 3)).astype(np.uint8)
            mask = np.zeros((48, 64), np.uint8)
            if (i + k) % 2 == 0:
                y, x = rng.integers(5, 25), rng.integers(5, 35)
                img[y:y + 16, x:x + 22] = (235, 225, 190)
                mask[y:y + 16, x:x + 22] = 255
            for sub, arr, name in (("images", img, f"P{i}_f{k}.png"), ("masks", mask, f"P{i}_f{k}_mask.png")):
                (root / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / sub / name)
    return root / "images", root / "masks"


@pytest.fixture
def second_dataset(tmp_path):
    images, masks = _cohort(tmp_path / "recordings")
    prep = prepare_dataset("folders", tmp_path / NAME, images_dir=images, masks_dir=masks, mask_suffix="_mask",
                           group_pattern=r"^(?P<patient>P\d+)_", profile="smoke", progress=False)
    study = paths("smoke", dataset=NAME)
    yield prep.data_dir, study
    for folder in (study.runs, study.results):  # the test's own study, not the phantom's
        shutil.rmtree(folder, ignore_errors=True)


def test_a_second_dataset_study_leaves_the_phantom_study_alone(second_dataset):
    data_dir, study = second_dataset
    root = repo_root()
    committed = _tracked(root, "results", "figures", "docs")
    records = _phantom_records("smoke")
    results = run("smoke", only=["01", "02", "03", "04"], archs=["resnet18", "unet"],
                  extra={"data_dir": str(data_dir)}, progress=False)
    failed = [(r.job.output_name, r.error) for r in results if not r.ok]
    assert not failed, failed
    assert _tracked(root, "results", "figures", "docs") == committed, "a dataset study changed a committed file"
    assert _phantom_records("smoke") == records, "a dataset study changed the phantom study's records"
    # the dataset's own tables, figures, executed notebooks, run folders and incremental record
    for f in ("table1.csv", "colour_baseline.csv", "table3_classifiers.csv", "table4_segmenters.csv",
              "provenance.json"):
        assert (study.results / f).is_file(), f
    assert any(study.figures.glob("*.png"))
    assert (study.runs / "build_state.json").is_file()
    assert (study.runs / "04_evaluation.ipynb").is_file()
    assert (study.run("unet", 42) / "model.safetensors").is_file()
    assert (study.run("resnet18", 42) / "model.safetensors").is_file()
    assert "results/smoke/isolation_check/" in where_outputs_are(study)
    # the rerun skips every job: the dataset study's records are its own and complete
    again = run("smoke", only=["01", "02", "03", "04"], archs=["resnet18", "unet"],
                extra={"data_dir": str(data_dir)}, progress=False)
    assert all(r.skipped for r in again), [(r.job.output_name, r.skipped) for r in again]
