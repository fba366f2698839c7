"""The numerics benchmark (``python -m endolib bench numerics``): train the smoke study under other floating-point
numerics (:data:`NUMERICS_VARIANTS`: scalar ATen kernels, oneDNN bf16, SSE4.1, two threads), each in a fresh
interpreter, and measure how far every trained number moves; :func:`numerics_reference` turns that into the
tolerances of ``tests/test_regression.py``.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from endolib.repro import (
    PERTURBED_NUMERICS,
    cpu_name,
    load_json,
    save_json,
    write_table,
)

__all__ = ["NUMERICS_VARIANTS", "run_numbers", "numerics_spread", "bench_numerics_main"]


#: Variants compared by ``bench numerics``: name -> (environment, profile overrides).
NUMERICS_VARIANTS = {
    "default": ({}, {}),
    "perturbed": (PERTURBED_NUMERICS, {}),
    "aten_scalar": ({"ATEN_CPU_CAPABILITY": "default"}, {}),
    "onednn_bf16": ({"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}, {}),
    "onednn_sse41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, {}),
    "two_threads": ({}, {"num_threads": 2, "train_threads": 2}),
}


# ------------------------------------------------------------------------------------------ numerics benchmark
def run_numbers(run_dir: str | Path) -> dict:
    """The trained numbers of one run folder that regression checks compare: the headline test metric
    (``auroc`` or ``dsc``) and the last epoch's ``train_loss``, ``val_loss`` and validation metric (``val_auroc`` or
    ``val_dsc``) of the chosen trial.

    Example:
        >>> run_numbers("runs/smoke/unet/seed42")  # doctest: +SKIP
        {'dsc': 0.40033, 'train_loss': 0.674596, 'val_loss': 0.687808, 'val_dsc': 0.36413}
    """
    import pandas as pd

    run_dir = Path(run_dir)
    summary = load_json(run_dir / "test_summary.json")
    history = pd.read_csv(run_dir / "history.csv")
    config = load_json(run_dir / "config.json")
    chosen = next((t["trial"] for t in config.get("trials", []) if t.get("chosen")), int(history["trial"].iloc[-1]))
    last = history[history["trial"] == chosen].iloc[-1]
    metric = summary["metric"]  # auroc (classifiers) or dsc (segmenters); the validation metric is the same kind
    out = {metric: float(summary[metric])}
    out.update({k: float(last[k]) for k in ("train_loss", "val_loss")})
    out[f"val_{metric}"] = float(last["val_metric"])
    return out


def _collect_numbers(root: Path) -> dict:
    """``{"<model>[/seed<s>]": run_numbers(...)}`` for every finished run below ``root``."""
    return {f.parent.relative_to(root).as_posix(): run_numbers(f.parent)
            for f in sorted(root.rglob("test_summary.json"))}


def _numerics_worker(profile: str, models: list[str], root: Path, overrides: dict) -> None:
    from endolib.training.runs import train_seeds
    from endolib.training.settings import training_settings

    for arch in models:  # every training seed of the profile: runs root/<arch>/seed<s>/
        s = training_settings(arch, profile, model_dir=root / arch, figures_dir=root / "figures", **overrides)
        train_seeds(s, progress=False)
    save_json(_collect_numbers(root), root / "numbers.json")


def numerics_spread(profile: str = "smoke", models=None, variants=None, workdir: str | Path | None = None,
                    progress: bool = True):
    """Train ``models`` once per numerics variant (each in its own process, so the environment takes effect
    before torch loads) and tabulate how far every trained number moves from the ``default`` variant.

    Args:
        profile: the profile to train (``smoke``: seconds per model).
        models: registry names (default: all eleven).
        variants: names from :data:`NUMERICS_VARIANTS` (``default`` is always added first).
        workdir: where the runs go (default: a temporary folder, removed afterwards).
        progress: a tqdm bar over the variants.

    Returns:
        A long DataFrame: ``run`` (model or model/seed), ``quantity``, one column per variant, ``max_abs_diff``
        (largest |variant - default|).

    Example:
        >>> numerics_spread("smoke", models=["unet"], variants=["perturbed"])  # doctest: +SKIP
    """
    import subprocess
    import sys
    import tempfile

    import pandas as pd
    from tqdm.auto import tqdm

    from endolib.config import MODELS, paths, require

    models = list(models or MODELS)
    variants = ["default"] + [v for v in (variants or NUMERICS_VARIANTS) if v != "default"]
    unknown = [v for v in variants if v not in NUMERICS_VARIANTS]
    if unknown:
        raise ValueError(f"unknown numerics variant(s) {unknown}; valid: {', '.join(NUMERICS_VARIANTS)}")
    require(paths(profile).phantom / "index.csv", "the prepared phantom",
            f"python -m endolib run --profile {profile} --only 01")
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    base = Path(tmp.name if tmp else workdir)
    numbers = {}
    try:
        for name in tqdm(variants, desc="numerics variants", disable=not progress):
            env_vars, overrides = NUMERICS_VARIANTS[name]
            root = base / name
            # a fresh interpreter per variant (the numerics variables are read when torch loads), running this
            # module's worker (_worker_main below)
            cmd = [sys.executable, "-m", _numerics_worker.__module__, profile, json.dumps(models), str(root),
                   json.dumps(overrides)]
            done = subprocess.run(cmd, env={**os.environ, **env_vars}, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"numerics variant {name!r} failed:\n{done.stderr[-3000:]}")
            numbers[name] = load_json(root / "numbers.json")
    finally:
        if tmp:
            tmp.cleanup()
    rows = []
    for run, values in numbers["default"].items():
        for quantity, ref in values.items():
            row = {"run": run, "quantity": quantity}
            row.update({v: numbers[v].get(run, {}).get(quantity, float("nan")) for v in variants})
            row["max_abs_diff"] = max(abs(row[v] - ref) for v in variants)
            rows.append(row)
    return pd.DataFrame(rows)


def bench_numerics_main(argv: list[str]) -> int:
    """``python -m endolib bench numerics``: how far trained numbers move when the numerics change."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m endolib bench numerics", description=bench_numerics_main.__doc__)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--models", nargs="+", help="registry names (default: all eleven)")
    ap.add_argument("--variants", nargs="+", choices=list(NUMERICS_VARIANTS), help="default: all")
    ap.add_argument("--out", help="write the table as CSV here")
    ap.add_argument("--write-reference", metavar="JSON",
                    help="write the default variant's numbers with tolerances derived from the measured moves "
                         "(tests/reference/smoke_numerics.json is made this way)")
    args = ap.parse_args(argv)
    table = numerics_spread(args.profile, args.models, args.variants)
    print(f"CPU: {cpu_name()}; torch CPU capability of the default variant: {_cpu_capability()}")
    print(table.round(5).to_string(index=False))
    summary = table.groupby("quantity")["max_abs_diff"].max()
    print("largest move from the default numerics, per quantity:",
          ", ".join(f"{q} {v:.4f}" for q, v in summary.items()))
    if args.out:
        write_table(table, args.out)
        print(f"written: {args.out}")
    if args.write_reference:
        ref = numerics_reference(table, args.profile)
        save_json(ref, args.write_reference)
        print(f"written: {args.write_reference} (tolerances: {ref['tolerance']})")
    return 0


#: A tolerance is this many times the largest move measured for its quantity, and at least TOLERANCE_FLOOR.
TOLERANCE_FACTOR = 3.0
TOLERANCE_FLOOR = 0.01


def numerics_reference(table, profile: str = "smoke") -> dict:
    """The regression reference of ``tests/test_regression.py`` from a :func:`numerics_spread` table: every run's
    default-variant numbers and, per quantity, tolerance = max(``TOLERANCE_FACTOR`` x the largest measured move,
    ``TOLERANCE_FLOOR``), rounded up to two significant digits."""
    measured = table.groupby("quantity")["max_abs_diff"].max()
    tolerance = {}
    for q, move in measured.items():
        tol = max(TOLERANCE_FACTOR * float(move), TOLERANCE_FLOOR)
        digits = 1 - int(math.floor(math.log10(tol)))
        tolerance[q] = math.ceil(tol * 10 ** digits) / 10 ** digits
    runs = {}
    for row in table.itertuples():
        runs.setdefault(row.run, {})[row.quantity] = float(row.default)
    variants = [c for c in table.columns if c in NUMERICS_VARIANTS]
    return {"profile": profile, "recorded_on": {"cpu": cpu_name(), "cpu_capability": _cpu_capability()},
            "variants": {v: {"env": NUMERICS_VARIANTS[v][0], "overrides": NUMERICS_VARIANTS[v][1]}
                         for v in variants},
            "rule": f"tolerance = max({TOLERANCE_FACTOR:g} x largest measured move, {TOLERANCE_FLOOR:g}), rounded up",
            "measured_max_abs_diff": {q: float(v) for q, v in measured.items()}, "tolerance": tolerance,
            "models": sorted({r.split("/")[0] for r in runs}), "runs": runs}


def _cpu_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def _worker_main(argv: list[str]) -> None:
    """``python -m endolib.training.numerics PROFILE MODELS_JSON ROOT OVERRIDES_JSON``: one variant's training, in the
    subprocess that :func:`numerics_spread` starts with the variant's environment."""
    profile, models, root, overrides = argv
    _numerics_worker(profile, json.loads(models), Path(root), json.loads(overrides))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
