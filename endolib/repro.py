"""Reproducibility (ground floor): seeding, the environment record, small JSON/CSV writers used by every run, and
the package's own source files (:func:`package_modules`, :func:`module_imports`, :func:`source_closure`) for the
code fingerprints and the architecture test.

Same seed, same machine: identical numbers. Another CPU (AMD EPYC vs Intel Xeon with AMX) runs other kernels
(vector width, blocking, bf16 units), so the same training rounds differently and its results move in the 2nd-3rd
decimal. :data:`PERTURBED_NUMERICS` stands in for that move on any x86-64 machine; ``python -m endolib bench
numerics`` (:mod:`endolib.training.numerics`) measures how far each number moves under it and under the other
variants.
"""
from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["seed_everything", "environment", "cpu_info", "cpu_name", "save_json", "load_json", "write_table",
           "PERTURBED_NUMERICS", "NUMERICS_ENV", "package_modules", "module_imports", "source_closure"]


#: Environment variables that change floating-point numerics; recorded by :func:`environment`.
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_DEFAULT_FPMATH_MODE", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")
#: The perturbation ``make test`` runs the notebook tests under a second time: ATen's scalar (non-vectorised)
#: kernels everywhere, and oneDNN convolutions/matmuls in bf16 where the CPU has bf16 units (Intel AMX/AVX512_BF16;
#: a no-op on CPUs without them). Measured to move smoke training as much as the AMD -> Intel switch did.
PERTURBED_NUMERICS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}


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


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The CPU's model name and instruction-set flags, from the kernel's description of its first processor: the
    one reader of ``/proc/cpuinfo`` (environment records, ``endolib.device``'s AMX check, the deployment's precision
    plan).

    Args:
        cpuinfo: the file to read. Not Linux, or unreadable: the model from :mod:`platform`, no flags.

    Returns:
        ``{"model": str, "flags": frozenset of str}``.

    Example:
        >>> sorted(cpu_info())
        ['flags', 'model']
    """
    model, flags = None, None
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and flags is None:
                flags = frozenset(value.split())
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(), "flags": flags or frozenset()}


def cpu_name() -> str:
    """This machine's CPU model, as every timing table names it (:func:`cpu_info`)."""
    return cpu_info()["model"]


def environment() -> dict:
    """What ran: Python and package versions, CPU, core and thread counts, git commit."""
    from endolib.config import repo_root

    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_name(),
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


# ------------------------------------------------------------------------------------------------ source files
def package_modules() -> dict[str, Path]:
    """Every module of the installed endolib package: dotted name -> source file (``endolib.training.unit``; a
    package is its ``__init__.py``, named after the package).

    Example:
        >>> mods = package_modules()
        >>> "endolib.training.unit" in mods and "endolib.repro" in mods
        True
    """
    pkg = Path(__file__).resolve().parent
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = ("endolib",) + f.relative_to(pkg).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def module_imports(name: str, modules: dict[str, Path] | None = None) -> set[str]:
    """The endolib modules that module ``name`` imports anywhere in its file (top level or inside functions,
    absolute or relative), read statically from the source: ``from endolib.x import y`` counts as ``endolib.x.y``
    when that is a module, else as ``endolib.x``.

    Example:
        >>> "endolib.training.losses" in module_imports("endolib.training.unit")
        True
    """
    import ast

    modules = package_modules() if modules is None else modules
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def source_closure(roots, modules: dict[str, Path] | None = None) -> list[str]:
    """``roots`` and every endolib module they import, transitively (:func:`module_imports`), sorted."""
    modules = package_modules() if modules is None else modules
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in modules:
            raise KeyError(f"{name}: not an endolib module")
        seen.add(name)
        todo += sorted(module_imports(name, modules))
    return sorted(seen)
