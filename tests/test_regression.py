"""Trained numbers, checked with tolerances that were measured, not guessed (issue 12).

nbval compares no trained number exactly (tests/test_notebook_rules.py); they are checked here instead:

* **Regression**: the smoke runs that ``make test`` trains (``runs/smoke/<model>/seed<s>/``) against
  ``tests/reference/smoke_numerics.json``, recorded with ``python -m endolib bench numerics --write-reference``.
  Each quantity's tolerance is a multiple of the largest move measured when the numerics change (scalar ATen
  kernels, oneDNN in bf16 or capped at SSE4.1, two threads), so a run on another CPU passes and a real change of
  the training (a new loss, another initialisation, a broken augmentation) does not.
* **Invariants**: what must hold on any machine: metrics in range, a trained model beats chance on a task it
  can learn in seconds, by a margin it reaches on every numerics variant.

``make test`` runs this file twice: after the notebooks, and again after the notebooks ran under
``ENDOLIB_PERTURB_NUMERICS=1`` (:data:`endolib.repro.PERTURBED_NUMERICS`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from endolib.config import get_profile, paths
from endolib.training.numerics import run_numbers

REFERENCE = Path(__file__).resolve().parent / "reference" / "smoke_numerics.json"


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


def _smoke_runs() -> dict[str, Path]:
    """``{"<model>/seed<s>": run folder}`` of the reference's runs that exist under ``runs/smoke``."""
    root = paths("smoke").runs
    return {run: root / run for run in _reference()["runs"] if (root / run / "test_summary.json").exists()}


def test_reference_covers_every_model_and_seed_with_a_measured_tolerance():
    ref = _reference()
    p = get_profile("smoke")
    expected = {f"{m}/seed{s}" for m in ref["models"] for s in p.training_seeds}
    assert set(ref["runs"]) == expected
    for quantity, tol in ref["tolerance"].items():
        measured = ref["measured_max_abs_diff"][quantity]
        assert tol >= measured and tol > 0, (quantity, tol, measured)  # tolerances cover what was measured


def test_smoke_runs_match_the_reference_within_measured_tolerance():
    runs = _smoke_runs()
    if not runs:
        pytest.skip("no smoke runs under runs/smoke: `make test` trains them (python -m endolib run --profile "
                    "smoke --only 01 02 03) before this test")
    ref = _reference()
    off = []
    for run, folder in runs.items():
        for quantity, value in run_numbers(folder).items():
            want, tol = ref["runs"][run][quantity], ref["tolerance"][quantity]
            if math.isnan(want) and math.isnan(value):
                continue
            if not abs(value - want) <= tol:
                off.append(f"{run} {quantity}: {value:.5f}, reference {want:.5f} +- {tol:.5f}")
    assert not off, "trained numbers moved further than the numerics can explain:\n" + "\n".join(off)


def test_smoke_runs_are_in_range():
    runs = _smoke_runs()
    if not runs:
        pytest.skip("no smoke runs under runs/smoke (see above)")
    for run, folder in runs.items():
        numbers = run_numbers(folder)
        metric = "auroc" if "auroc" in numbers else "dsc"
        assert 0.0 <= numbers[metric] <= 1.0, (run, numbers)
        assert numbers["train_loss"] >= 0 and numbers["val_loss"] >= 0, (run, numbers)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("arch, floor", [("unet", 0.80), ("resnet18", 0.90)])
def test_training_beats_chance_on_a_learnable_task(make_tiny_dataset, tmp_path, arch, floor):
    """Bright ellipses on dark-red noise: predicting tissue everywhere gives DSC ~0.3, chance AUROC 0.5.
    Measured on this setting (profile seed 42): U-Net DSC 0.911 (default numerics), 0.914 (perturbed), 0.915
    (two threads); ResNet-18 AUROC 1.0 on all three. The floors leave a margin below those."""
    from endolib.training.runs import train_model
    from endolib.training.settings import training_settings

    data = make_tiny_dataset(n_patients=6, n_test=2, frames=8, height=32, width=32)
    epochs = {"unet": 4, "resnet18": 6}[arch]
    s = training_settings(arch, "smoke", data_dir=data, model_dir=tmp_path / arch, figures_dir=tmp_path / "fig",
                          epochs=epochs, batch_size=4, lr=3e-3, patience=20)
    result = train_model(s, progress=False)
    value = result.test_summary["dsc" if arch == "unet" else "auroc"]
    assert value >= floor, f"{arch} reached {value:.3f} on the learnable tiny task, below {floor}"
