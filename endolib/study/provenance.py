"""Provenance: which commit, data, settings, checkpoints and machine produced each table and figure.

The batch runner (``python -m endolib run``) records it without any help from the notebooks: before and after
each notebook it lists ``results/<profile>/`` and the figures folder (size + modification time) and attributes
every file that appeared or changed to that notebook. ``results/<profile>/provenance.json`` then holds::

    {"jobs": {"04_evaluation.ipynb": {"notebook": ..., "git_commit": ..., "git_dirty": ..., "profile": ...,
                                      "overrides": {...}, "dataset_fingerprint": ..., "runs": [...],
                                      "packages": {...}, "cpu": ..., "gpu": ..., "wall_time_s": ..., ...}},
     "outputs": {"results/quick/table3_classifiers.csv": {"job": "04_evaluation.ipynb", "sha256": ...}, ...}}

:func:`provenance_of` merges the two for one file. ``runs`` lists every trained model the job could read (model,
seed, sha256 of ``model.safetensors``), for both layouts ``runs/<profile>/<model>/`` and
``runs/<profile>/<model>/seed<s>/``.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x")
    >>> tree_fingerprint(d) == tree_fingerprint(d)
    True
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from endolib.config import MODELS, paths, repo_root
from endolib.study.strip import PUBLISHED_DIR

__all__ = ["sha256_file", "tree_fingerprint", "dataset_fingerprint", "runs_used", "git_state", "snapshot",
           "changed_files", "job_record", "update_provenance", "load_provenance", "provenance_of"]


#: Files that never count as content: resumable state of an interrupted run, editor debris; the logs of the Dask
#: tasks (endolib.study.distributed), rewritten with their timings each time a task runs, also when it finds its unit
#: already done; a run's ONNX export (endolib.deploy.stages.onnx_path), a cache of model.safetensors (which counts) that
#: notebook 07 or bench realtime writes on first use, after the training job was recorded.
IGNORED_NAMES = frozenset({"resume.pt", ".DS_Store", "unit.log", "final.log", "finish.log", "model.onnx"})
IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints"})
_HASH_CACHE: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cached within the process while size, mtime and inode stay the same)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _files(root: Path, exclude: frozenset = frozenset(), exclude_dirs: frozenset = frozenset()) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS and d not in exclude_dirs)
        out += [Path(dirpath) / f for f in sorted(filenames) if f not in IGNORED_NAMES and f not in exclude]
    return out


def tree_fingerprint(root: str | Path, exclude=(), exclude_dirs=()) -> str | None:
    """SHA-256 over the relative paths and contents of every file under ``root`` (``None`` if it does not exist).

    Args:
        root: a folder (or a single file).
        exclude: file names to leave out (e.g. ``("prepare.json",)``).
        exclude_dirs: folder names to leave out, at any depth (e.g. ``("clips",)``).
    """
    root = Path(root)
    if not root.exists():
        return None
    h = hashlib.sha256()
    for f in _files(root, frozenset(exclude), frozenset(exclude_dirs)):
        rel = f.name if root.is_file() else f.relative_to(root).as_posix()
        h.update(f"{rel}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def dataset_fingerprint(data_dir: str | Path) -> str | None:
    """Fingerprint of a prepared dataset: ``index.csv`` and every image and mask file, by content.

    ``prepare.json`` (which holds the environment record, e.g. the commit) and ``report.csv`` are left out, so the
    same frames prepared at another commit give the same fingerprint, and so is the cache of resized frames
    (``cache/``, :data:`endolib.data.dataset.FRAME_CACHE`), which the first run writes.
    """
    from endolib.data.dataset import FRAME_CACHE

    return tree_fingerprint(data_dir, exclude=("prepare.json", "report.csv"), exclude_dirs=(FRAME_CACHE,))


def runs_used(profile: str, models=MODELS, root: str | Path | None = None, dataset: str | None = None) -> list[dict]:
    """Every trained run of ``profile`` on disk: model, seed and sha256 of its checkpoint ``model.safetensors``.

    Reads both layouts: ``runs/<profile>/<model>/model.safetensors`` and ``runs/<profile>/<model>/seed<s>/...``;
    ``dataset`` (a study on another prepared dataset) reads ``runs/<profile>/<dataset>/`` instead.
    """
    out = []
    for model in models:
        folder = paths(profile, root, dataset).run(model)
        for ckpt in sorted(folder.glob("model.safetensors")) + sorted(folder.glob("seed*/model.safetensors")):
            seed = None
            if ckpt.parent.name.startswith("seed") and ckpt.parent.name[4:].isdigit():
                seed = int(ckpt.parent.name[4:])
            else:
                try:
                    seed = json.loads((ckpt.parent / "config.json").read_text()).get("seed")
                except (OSError, json.JSONDecodeError):
                    pass
            out.append({"model": model, "seed": seed, "run": _rel(ckpt.parent, root),
                        "checkpoint_sha256": sha256_file(ckpt)})
    return out


def git_state(root: str | Path | None = None) -> dict:
    """The commit and whether the source is dirty: results/, figures/, the published notebooks in study/ and runs
    are outputs, and Markdown (README, docs/) is prose that no result depends on (``cards`` rewrites parts of it
    after every study run), so none of them counts."""
    root = Path(root) if root else repo_root()

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"git_commit": None, "git_dirty": None, "git_dirty_files": []}
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!figures",
                     f":!{PUBLISHED_DIR}", ":!*.md")
        dirty = [line[3:] for line in status.stdout.splitlines() if line.strip()]
        return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty), "git_dirty_files": dirty[:20]}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None, "git_dirty_files": []}


def snapshot(folders, exclude_dirs=()) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every file under the given folders (missing folders are empty), leaving out
    folders named in ``exclude_dirs`` at any depth."""
    snap = {}
    for folder in folders:
        folder = Path(folder)
        if folder.exists():
            for f in _files(folder, exclude_dirs=frozenset(exclude_dirs)):
                st = f.stat()
                snap[str(f)] = (st.st_size, st.st_mtime_ns)
    return snap


def changed_files(before: dict, after: dict) -> list[str]:
    """Files that are new in ``after`` or whose size or modification time changed."""
    return sorted(f for f, sig in after.items() if before.get(f) != sig)


def _rel(path: str | Path, root: str | Path | None = None) -> str:
    root = Path(root).resolve() if root else repo_root()
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def job_record(job_name: str, notebook: str, parameters: dict, environment: dict, git: dict, seconds: float,
               data_dir: str | Path | None, runs: list[dict], executed_notebook: str | Path) -> dict:
    """The provenance of one executed notebook (shared by every file it wrote)."""
    profile = parameters.get("profile")
    cpu_info = {k: environment.get(k) for k in ("cpu", "cpu_count", "torch_threads", "platform", "python")}
    return {
        "job": job_name,
        "notebook": f"notebooks/{notebook}.ipynb",
        "executed_notebook": _rel(executed_notebook),
        "profile": profile,
        "overrides": {k: v for k, v in parameters.items() if k != "profile"},
        **git,
        "dataset": _rel(data_dir) if data_dir else None,
        "dataset_fingerprint": dataset_fingerprint(data_dir) if data_dir else None,
        "runs": runs,
        "packages": environment.get("packages", {}),
        **cpu_info,
        "gpu": environment.get("cuda"),
        "wall_time_s": round(float(seconds), 1),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def load_provenance(path: str | Path) -> dict:
    """``provenance.json`` as a dict (empty structure if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {"jobs": {}, "outputs": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it and rerun `python -m endolib run`") from None
    data.setdefault("jobs", {})
    data.setdefault("outputs", {})
    return data


def update_provenance(path: str | Path, record: dict, outputs: list[str | Path]) -> dict:
    """Add (or replace) one job's record and the files it wrote; other jobs' entries are kept.

    A file written by this job is attributed to it even if another job wrote it before. A file the job wrote in an
    earlier run but not in this one is no longer attributed to it (it now comes from somewhere else, e.g. the
    realtime bench's figure that notebook 05 used to save). Entries of files that no longer exist are dropped. The
    file is replaced atomically.
    """
    path = Path(path)
    data = load_provenance(path)
    data["jobs"][record["job"]] = record
    data["outputs"] = {k: v for k, v in data["outputs"].items() if v.get("job") != record["job"]}
    for f in outputs:
        data["outputs"][_rel(f)] = {"job": record["job"], "sha256": sha256_file(f)}
    root = repo_root()
    data["outputs"] = {k: v for k, v in sorted(data["outputs"].items()) if (root / k).exists()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return data


def provenance_of(file: str | Path, profile: str, root: str | Path | None = None,
                  dataset: str | None = None) -> dict | None:
    """The provenance of one table or figure (its job's record plus ``sha256`` and ``current``), or None.

    ``current`` is False when the file changed after the runner recorded it (e.g. a notebook was run by hand).
    ``dataset``: a study on another prepared dataset (its ``results/<profile>/<dataset>/provenance.json``).

    Example:
        >>> provenance_of("results/nonexistent/table1.csv", "nonexistent") is None
        True
    """
    root = Path(root) if root else repo_root()
    data = load_provenance(paths(profile, root, dataset).results / "provenance.json")
    rel = _rel(Path(file) if Path(file).is_absolute() else root / file, root)
    entry = data["outputs"].get(rel)
    if entry is None:
        return None
    rec = dict(data["jobs"].get(entry["job"], {}))
    current = (root / rel).exists() and sha256_file(root / rel) == entry["sha256"]
    return {**rec, "file": rel, "sha256": entry["sha256"], "current": current}
