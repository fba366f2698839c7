"""The study as a user runs it, for the cluster tests: ``python -m endolib run --profile smoke --only 01 02 03
--arch resnet18 unet --scheduler SPEC`` in a temporary ``ENDOLIB_ROOT`` (its own data/, runs/, results/; the
notebooks are this checkout's), and what must be identical between two such runs."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: the smoke subset: notebook 01, one classifier and one segmenter, the profile's two training seeds
ARGS = ["--profile", "smoke", "--only", "01", "02", "03", "--arch", "resnet18", "unet", "--no-progress"]
#: files of a run folder that must be byte-identical (config.json, environment.json and history.csv hold paths,
#: versions and seconds; they are compared without them, see :func:`compare`)
RUN_FILES = ("model.safetensors", "predictions.npz", "test_summary.json")


@dataclass
class CliRun:
    root: Path
    rc: int
    output: str
    seconds: float

    def number(self, pattern: str) -> float | None:
        m = re.search(pattern, self.output)
        return float(m.group(1)) if m else None


def run_cli(root: Path, scheduler: str, env: dict | None = None, timeout: float = 300.0,
            extra_args: list[str] | None = None) -> CliRun:
    """Run the study's command line in ``root`` (an ENDOLIB_ROOT) with ``--scheduler scheduler``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "notebooks").exists():
        (root / "notebooks").symlink_to(REPO / "notebooks")
    pp = os.environ.get("PYTHONPATH", "")
    full_env = {**os.environ, "ENDOLIB_ROOT": str(root), "PYTHONPATH": str(REPO) + (os.pathsep + pp if pp else ""),
                **(env or {})}
    cmd = [sys.executable, "-m", "endolib", "run", *ARGS, "--scheduler", scheduler, *(extra_args or [])]
    t0 = time.monotonic()
    # its own session: on a timeout or an interrupt the command is stopped with everything it started (the Dask
    # workers of local:N, the notebook kernels), not only its first process
    p = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        out, _ = _stop_group(p)
        rc, out = 124, f"timed out after {timeout:g} s\n{out or ''}"
    except BaseException:
        _stop_group(p)
        raise
    out = "\n".join(line for line in out.splitlines() if "Kernel is running over TCP" not in line)
    return CliRun(root, rc, out, time.monotonic() - t0)


def _stop_group(p: subprocess.Popen, grace: float = 20.0):
    """SIGTERM the process group of ``p``, SIGKILL it after ``grace`` seconds; ``p``'s remaining output."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return p.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return p.communicate(timeout=grace)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(a: Path, b: Path) -> list[str]:
    """What differs between the outputs of two study runs (empty: identical): every run folder's weights,
    predictions and test summary byte for byte, its history without the seconds, its config with the root path
    replaced, and every results/smoke/*.csv table."""
    import pandas as pd

    diffs, n = [], 0
    runs_a = sorted(p.relative_to(a) for p in (a / "runs" / "smoke").glob("*/seed*") if p.is_dir())
    runs_b = sorted(p.relative_to(b) for p in (b / "runs" / "smoke").glob("*/seed*") if p.is_dir())
    if runs_a != runs_b or not runs_a:
        return [f"run folders differ: {runs_a} vs {runs_b}"]
    for run in runs_a:
        for f in RUN_FILES:
            n += 1
            if _sha(a / run / f) != _sha(b / run / f):
                diffs.append(f"{run / f}")
        ha = pd.read_csv(a / run / "history.csv").drop(columns="seconds")
        hb = pd.read_csv(b / run / "history.csv").drop(columns="seconds")
        if not ha.equals(hb):
            diffs.append(f"{run / 'history.csv'} (besides seconds)")
        ca = (a / run / "config.json").read_text().replace(str(a), "ROOT")
        cb = (b / run / "config.json").read_text().replace(str(b), "ROOT")
        if json.loads(ca) != json.loads(cb):
            diffs.append(f"{run / 'config.json'} (besides the root path)")
    tables = sorted(p.name for p in (a / "results" / "smoke").glob("*.csv"))
    if tables != sorted(p.name for p in (b / "results" / "smoke").glob("*.csv")) or not tables:
        diffs.append(f"results/smoke tables differ: {tables}")
    for t in tables:
        if _sha(a / "results" / "smoke" / t) != _sha(b / "results" / "smoke" / t):
            diffs.append(f"results/smoke/{t}")
    return diffs
