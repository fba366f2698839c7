"""Incremental rebuild: the runner skips a notebook whose inputs are unchanged since its last successful run.

A job's *inputs* are content hashes of

- ``notebook``: its cells (source, type, tags; stored outputs do not count),
- ``parameters``: the papermill parameters, plus the content of every parameter that names an existing path,
- ``endolib``: every ``endolib/*.py`` (the library a notebook imports; ``config.py`` holds the profiles) but
  :data:`NOT_IMPORTED` (the website and card writers),
- ``packages``: the versions of the main packages (torch, numpy, ...),
- what the notebook reads (:data:`READS`): ``data`` (the prepared dataset by content, plus the raw phantom with
  its videos; the generation log ``phantom.json`` with its timings does not count), ``runs`` (every trained
  model's folder: weights, predictions, config, history), ``realtime`` (``results/<profile>/realtime.csv``, made by
  ``python -m endolib bench realtime`` outside the runner; 04's paper-claims table reads it), or another
  notebook's name (the files that notebook wrote in its last recorded run).

A job is skipped only when all of these are equal to the ones recorded after its last successful run **and**
every output it wrote then is still there with the same content (tables and figures it wrote, its run folder for
02/03, the dataset for 01, and the executed notebook). Anything else reruns it, and the runner prints why.
The record is ``runs/<profile>/build_state.json``; ``python -m endolib run --force`` reruns everything. A study on
another prepared dataset keeps its own (``runs/<profile>/<dataset>/build_state.json``, provenance in
``results/<profile>/<dataset>/``), reads its own runs and tables, and never counts the phantom's generated
``phantom_raw/``; the phantom study's bookkeeping leaves the dataset studies' folders inside
``results/<profile>/`` out, so neither study's run makes the other rerun.

The same bookkeeping feeds :mod:`endolib.study.provenance`: each executed job's new or changed tables and figures are
attributed to it in ``results/<profile>/provenance.json``.

Example:
    >>> READS["06_figures"]
    ('data', 'runs', '05_computational_load')
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from endolib.config import MODELS, paths
from endolib.repro import package_modules
from endolib.study import provenance as prov

__all__ = ["READS", "STATE_FILE", "Tracker", "notebook_hash", "library_hash"]


STATE_FILE = "build_state.json"

#: What each notebook reads besides itself, its parameters and endolib: ``"data"``, ``"runs"`` or the name of an
#: earlier notebook (its recorded outputs). 04 and 06 read the latencies of 05 (table5_compute.csv); 05 needs no
#: trained model and no data. A notebook missing here reads everything before it (the safe default).
READS: dict[str, tuple[str, ...]] = {
    "01_data_preparation": (),
    "02_classifier_training": ("data",),
    "03_segmentation_training": ("data",),
    "05_computational_load": (),
    "04_evaluation": ("data", "runs", "05_computational_load", "realtime"),
    "06_figures": ("data", "runs", "05_computational_load"),
    "07_video_demo": ("data", "runs"),
}

_LABELS = {"notebook": "notebook changed", "parameters": "parameters changed", "endolib": "endolib source changed",
           "packages": "package versions changed", "data": "dataset changed", "runs": "trained runs changed",
           "realtime": "realtime.csv changed (python -m endolib bench realtime)"}


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _output_tree_fingerprint(folder: Path) -> str | None:
    """Fingerprint of a folder a job wrote (01's dataset, a model's runs), without the resized-frame cache that later
    jobs add to a dataset (``cache/``, :data:`endolib.data.dataset.FRAME_CACHE`): writing it is not a change."""
    from endolib.data.dataset import FRAME_CACHE

    return prov.tree_fingerprint(folder, exclude_dirs=(FRAME_CACHE,))


def notebook_hash(path: str | Path) -> str:
    """Hash of what a notebook runs: each cell's type, source and tags (outputs and execution counts ignored).

    Example:
        >>> import nbformat, tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "n.ipynb"
        >>> nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell("x = 1")]
        >>> nbformat.write(nb, f); h = notebook_hash(f)
        >>> nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="1")]; nbformat.write(nb, f)
        >>> notebook_hash(f) == h
        True
    """
    path = Path(path)
    try:
        nb = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a notebook (invalid JSON: {e})") from None
    cells = [(c.get("cell_type"), "".join(c.get("source", "")), sorted(c.get("metadata", {}).get("tags", [])))
             for c in nb.get("cells", [])]
    return _sha(cells)


#: endolib modules no notebook imports, directly or through another module (tests/test_incremental.py checks):
#: the website builder and the card writer; changing them must not rerun the study.
NOT_IMPORTED = ("endolib.study.site", "endolib.study.cards", "endolib.study.pages")


def library_hash() -> str:
    """Hash of every endolib module in every subpackage (dotted names and contents,
    :func:`endolib.repro.package_modules`) except :data:`NOT_IMPORTED`."""
    return _sha({name: prov.sha256_file(f) for name, f in package_modules().items() if name not in NOT_IMPORTED})


def _package_versions() -> dict:
    from importlib import metadata

    from endolib.repro import _PACKAGES

    out = {}
    for name in _PACKAGES:
        if name == "endolib":
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class Decision:
    skip: bool
    reason: str


class Tracker:
    """The runner's bookkeeping for one ``run`` call: skip decisions, build state and provenance.

    Args:
        profile: the profile the jobs run with.
        notebooks_dir: where the source notebooks are.
        output_dir: where executed notebooks go; ``build_state.json`` is kept there.
        force: rerun every job (and record it).
        provenance_file: where provenance is recorded (default ``results/<profile>/provenance.json`` when
            ``output_dir`` is ``runs/<profile>``, else ``output_dir/provenance.json``; for a dataset's study the
            same under ``<dataset>/``).
        dataset: the study's dataset name (None: the phantom study; :func:`endolib.config.paths`).
    """

    def __init__(self, profile: str, notebooks_dir: str | Path, output_dir: str | Path, force: bool = False,
                 provenance_file: str | Path | None = None, dataset: str | None = None):
        self.profile, self.force = profile, force
        self.p = paths(profile, dataset=dataset)
        self.nb_dir, self.out_dir = Path(notebooks_dir), Path(output_dir)
        self.state_file = self.out_dir / STATE_FILE
        default_out = self.out_dir.resolve() == self.p.runs.resolve()
        self.provenance_file = Path(provenance_file) if provenance_file else (
            self.p.results / "provenance.json" if default_out else self.out_dir / "provenance.json")
        self.state = self._load_state()
        self._library = library_hash()
        self._packages = _package_versions()
        self._env = None
        self._git = None
        self._before: dict = {}
        self._job_inputs: dict = {}

    # ------------------------------------------------------------------ state file
    def _load_state(self) -> dict:
        if not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text())
        except json.JSONDecodeError:
            print(f"    {self.state_file}: unreadable build state, every job reruns", flush=True)
            return {}
        return data.get("jobs", {}) if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"profile": self.profile, "jobs": self.state}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    # ------------------------------------------------------------------ inputs
    def _data_dir(self, job) -> Path:
        d = job.parameters.get("data_dir") or job.parameters.get("output_dir")
        return Path(d) if d else self.p.phantom

    def _watched(self) -> list[Path]:
        return [self.p.results, self.p.figures]

    def _snapshot(self) -> dict:
        """:func:`endolib.study.provenance.snapshot` of the study's tables and figures. The phantom study's
        ``results/<profile>/`` holds the other datasets' studies as sub-folders (it writes none itself): they are
        left out, so a dataset's study never changes what the phantom study's jobs read or wrote."""
        others = ()
        if self.p.dataset is None and self.p.results.is_dir():
            others = tuple(d.name for d in self.p.results.iterdir() if d.is_dir())
        return prov.snapshot(self._watched(), exclude_dirs=others)

    def inputs(self, job) -> dict:
        """The content hashes the skip decision compares (see the module docstring)."""
        params = dict(job.parameters)
        path_params = {k: prov.tree_fingerprint(v) for k, v in params.items()
                       if isinstance(v, str) and k not in ("profile", "arch", "data_dir", "output_dir")
                       and ("/" in v or os.sep in v) and Path(v).exists()}
        out = {"notebook": notebook_hash(self.nb_dir / f"{job.notebook}.ipynb"),
               "parameters": _sha([params, path_params]), "endolib": self._library,
               "packages": _sha(self._packages)}
        reads = READS.get(job.notebook)
        if reads is None:  # unknown notebook: it reads everything that ran before it
            reads = ("data", "runs")
            from endolib.study.plan import NOTEBOOKS

            if job.notebook in NOTEBOOKS:
                reads += tuple(NOTEBOOKS[:NOTEBOOKS.index(job.notebook)])
        for what in reads:
            if what == "data":
                # clips/ (the 30 FPS clips, endolib.data.phantom.write_clip) is a cache that notebook 07 renders on first
                # use from the phantom's seed and the endolib source, both inputs already: counting it would make
                # the first 07 run change the "dataset" of every notebook and rerun the whole study once more
                # another dataset's study does not read the generated phantom (its record keeps the same shape)
                raw = None if self.p.dataset is not None else prov.tree_fingerprint(
                    self.p.phantom_raw, exclude=("phantom.json",), exclude_dirs=("clips",))
                out["data"] = _sha([prov.dataset_fingerprint(self._data_dir(job)), raw])
            elif what == "runs":
                out["runs"] = _sha({m: prov.tree_fingerprint(self.p.run(m)) for m in MODELS})
            elif what == "realtime":  # made outside the runner (bench realtime); absent is a state too
                out["realtime"] = prov.tree_fingerprint(self.p.results / "realtime.csv")
            else:
                out[f"after:{what}"] = self._outputs_of(what)
        return out

    def _outputs_of(self, notebook: str) -> str:
        """Hash of the current content of the files ``notebook`` wrote in its recorded runs.

        Without a record (it never ran through the runner) every table and figure that no recorded job wrote counts,
        so nothing stale is used, and a job's own outputs do not make it rerun (``--only 01 02 03 04`` without 05).
        """
        files = sorted({f for name, rec in self.state.items() if rec.get("notebook") == notebook
                        for f in rec.get("outputs", {}).get("files", {})})
        if not any(rec.get("notebook") == notebook for rec in self.state.values()):
            written = {f for rec in self.state.values() for f in rec.get("outputs", {}).get("files", {})}
            files = sorted(f for f in (self._rel(g) for g in self._snapshot() if not g.endswith("provenance.json"))
                           if f not in written)
        return _sha({f: (prov.sha256_file(self._abs(f)) if self._abs(f).exists() else None) for f in files})

    def _rel(self, path) -> str:
        """A path as recorded in the build state: relative to the repository root when inside it."""
        try:
            return Path(path).resolve().relative_to(self.p.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _abs(self, recorded: str) -> Path:
        path = Path(recorded)
        return path if path.is_absolute() else self.p.root / path

    def _output_trees(self, job) -> dict[str, Path]:
        trees = {}
        if job.notebook == "01_data_preparation":
            trees["dataset"] = self._data_dir(job)
        arch = job.parameters.get("arch")
        if arch:
            trees["run"] = self.p.run(arch)
        return trees

    # ------------------------------------------------------------------ decisions
    def decide(self, job) -> Decision:
        """Skip or run ``job``, with the reason (printed by the runner)."""
        inputs = self.inputs(job)
        self._job_inputs[job.output_name] = inputs
        if self.force:
            return Decision(False, "--force")
        rec = self.state.get(job.output_name)
        if rec is None:
            return Decision(False, "no successful run recorded")
        changed = [_LABELS.get(k, f"outputs of {k[6:]} changed" if k.startswith("after:") else f"{k} changed")
                   for k in sorted(set(inputs) | set(rec.get("inputs", {})))
                   if inputs.get(k) != rec.get("inputs", {}).get(k)]
        if changed:
            return Decision(False, ", ".join(changed))
        outs = rec.get("outputs", {})
        for f, sha in outs.get("files", {}).items():
            if not self._abs(f).exists():
                return Decision(False, f"output missing: {f}")
            if prov.sha256_file(self._abs(f)) != sha:
                return Decision(False, f"output modified since: {f}")
        for name, (folder, fp) in outs.get("trees", {}).items():
            if _output_tree_fingerprint(self._abs(folder)) != fp:
                return Decision(False, f"{name} {folder} missing or modified since")
        return Decision(True, f"inputs unchanged since {rec.get('finished_utc', '?')} "
                              f"({', '.join(k.replace('after:', 'outputs of ') for k in sorted(inputs))})")

    # ------------------------------------------------------------------ recording
    def started(self, job) -> None:
        """Before executing: forget the job's record (an interrupted run must rerun) and list the outputs."""
        if self.state.pop(job.output_name, None) is not None:
            self._save_state()
        self._before = self._snapshot()

    def finished(self, job, ok: bool, seconds: float, executed: str | Path) -> None:
        """After executing: on success record inputs, outputs and provenance."""
        prov._HASH_CACHE.clear()  # files may have been rewritten within the same second: hash them again
        if not ok:
            return
        changed = [f for f in prov.changed_files(self._before, self._snapshot())
                   if not f.endswith(("provenance.json", ".tmp"))]
        executed = Path(executed)
        files = {self._rel(f): prov.sha256_file(f) for f in changed + ([str(executed)] if executed.exists() else [])}
        trees = {name: (self._rel(folder), _output_tree_fingerprint(folder))
                 for name, folder in self._output_trees(job).items()}
        inputs = self._job_inputs.get(job.output_name) or self.inputs(job)
        # the inputs are those seen before the job ran; 01 writes its own dataset, so nothing it reads changed
        finished = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.state[job.output_name] = {"notebook": job.notebook, "inputs": inputs, "finished_utc": finished,
                                       "seconds": round(float(seconds), 1),
                                       "outputs": {"files": files, "trees": trees}}
        self._save_state()
        self._record_provenance(job, seconds, executed, changed)

    def _record_provenance(self, job, seconds, executed, changed) -> None:
        if self._env is None:
            from endolib.repro import environment

            self._env = environment()
            self._git = prov.git_state()
        reads = READS.get(job.notebook, ("data", "runs"))
        arch = job.parameters.get("arch")
        if "runs" in reads:
            runs = prov.runs_used(self.profile, dataset=self.p.dataset)
        elif arch:
            runs = prov.runs_used(self.profile, models=(arch,), dataset=self.p.dataset)
        else:
            runs = []
        data_dir = self._data_dir(job) if ("data" in reads or job.notebook == "01_data_preparation") else None
        record = prov.job_record(job.output_name, job.notebook, job.parameters, self._env, self._git, seconds,
                                 data_dir if data_dir and data_dir.exists() else None, runs, executed)
        prov.update_provenance(self.provenance_file, record, changed)
