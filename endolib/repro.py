"""Reproducibility: seeding, the environment record, small JSON/CSV writers used by every run, and the
numerics benchmark that measures how far training results move when the floating-point numerics change.

Same seed, same machine: identical numbers. Another CPU (AMD EPYC vs Intel Xeon with AMX) runs other kernels
(vector width, blocking, bf16 units), so the same training rounds differently and its results move in the 2nd-3rd
decimal. :data:`PERTURBED_NUMERICS` stands in for that move on any x86-64 machine; ``python -m endolib bench
numerics`` measures how far each number moves under it and under the other variants in :data:`NUMERICS_VARIANTS`.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["seed_everything", "environment", "save_json", "load_json", "write_table", "PERTURBED_NUMERICS",
           "NUMERICS_VARIANTS", "NUMERICS_ENV", "run_numbers", "numerics_spread", "bench_numerics_main"]

#: Environment variables that change floating-point numerics; recorded by :func:`environment`.
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_DEFAULT_FPMATH_MODE", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")
#: The perturbation ``make test`` runs the notebook tests under a second time: ATen's scalar (non-vectorised)
#: kernels everywhere, and oneDNN convolutions/matmuls in bf16 where the CPU has bf16 units (Intel AMX/AVX512_BF16;
#: a no-op on CPUs without them). Measured to move smoke training as much as the AMD -> Intel switch did.
PERTURBED_NUMERICS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}
#: Variants compared by ``bench numerics``: name -> (environment, profile overrides).
NUMERICS_VARIANTS = {
    "default": ({}, {}),
    "perturbed": (PERTURBED_NUMERICS, {}),
    "aten_scalar": ({"ATEN_CPU_CAPABILITY": "default"}, {}),
    "onednn_bf16": ({"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}, {}),
    "onednn_sse41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, {}),
    "two_threads": ({}, {"num_threads": 2}),
}

_PACKAGES = ("torch", "torchvision", "timm", "transformers", "numpy", "scipy", "scikit-learn", "pandas",
             "onnxruntime", "papermill", "endolib")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels.

    Args:
        seed: the run's seed.

    Returns:
        A fresh ``numpy.random.Generator`` seeded with ``seed`` for code that prefers explicit RNGs.

    Example:
        >>> rng = seed_everything(0); float(rng.random()) == float(np.random.default_rng(0).random())
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
    except ImportError:  # torch is a dependency; this only keeps the helper usable without it
        pass
    return np.random.default_rng(seed)


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """What ran: Python and package versions, CPU, core and thread counts, git commit."""
    from .config import repo_root

    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": _git_commit(repo_root()),
        "numerics_env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
    }
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return env


def save_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return path


def load_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def write_table(df, path: str | Path, float_digits: int = 6) -> Path:
    """Save a results table as CSV (parents created, floats rounded so diffs stay readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.round(float_digits).to_csv(path, index=False)
    return path


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
    from .train import train_seeds, training_settings

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

    from .config import MODELS, paths, require

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
            code = ("import json, sys, pathlib; from endolib.repro import _numerics_worker; "
                    "_numerics_worker(sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3]), "
                    "json.loads(sys.argv[4]))")
            cmd = [sys.executable, "-c", code, profile, json.dumps(models), str(root), json.dumps(overrides)]
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
    print(f"CPU: {_cpu_name()}; torch CPU capability of the default variant: {_cpu_capability()}")
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
    return {"profile": profile, "recorded_on": {"cpu": _cpu_name(), "cpu_capability": _cpu_capability()},
            "variants": {v: {"env": NUMERICS_VARIANTS[v][0], "overrides": NUMERICS_VARIANTS[v][1]}
                         for v in variants},
            "rule": f"tolerance = max({TOLERANCE_FACTOR:g} x largest measured move, {TOLERANCE_FLOOR:g}), rounded up",
            "measured_max_abs_diff": {q: float(v) for q, v in measured.items()}, "tolerance": tolerance,
            "models": sorted({r.split("/")[0] for r in runs}), "runs": runs}


def _cpu_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()
