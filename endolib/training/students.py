"""Which distilled student a deployment may use. A candidate student is *accepted* only when its best validation
DSC is at most ``profile.student_max_val_drop`` below its teacher's, both measured on the same validation frames
(the test set is never looked at); :func:`endolib.training.runs.train_students` trains candidates until one is
accepted or ``profile.student_candidates`` were tried, and keeps the decision for one width and training seed in
``acceptance.json`` (:data:`ACCEPTANCE_FILE`) beside the first candidate's run (docs/realtime.md). This module
reads and writes those records; :func:`accepted_student` is the run folder a deployment may load, or None.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from endolib.config import Profile, get_profile, paths
from endolib.training.settings import RUN_FILES, student_name
from endolib.training.unit import _write_json

__all__ = ["ACCEPTANCE_FILE", "StudentCheck", "validation_dsc", "passes", "acceptance_path", "read_acceptance",
           "write_acceptance", "candidate_run", "accepted_student"]

#: the acceptance record of one width and training seed, in the first candidate's run folder
ACCEPTANCE_FILE = "acceptance.json"


def _config(run: dict | str | Path) -> dict:
    return run if isinstance(run, dict) else json.loads((Path(run) / RUN_FILES["config"]).read_text())


def validation_dsc(run: dict | str | Path) -> float:
    """The best validation DSC of a finished segmenter run: ``mean_val_metric`` of the trial its ``config.json``
    chose (each validation fold's DSC at the epoch of lowest validation loss, averaged over folds; the
    hold-out part with ``folds == 1``).

    Args:
        run: the run folder or its loaded ``config.json``.

    Raises:
        ValueError: the config holds no chosen trial (not a run finished by
            :func:`endolib.training.runs.train_model`).

    Example:
        >>> validation_dsc({"trials": [{"trial": 0, "mean_val_metric": 0.61, "chosen": False},
        ...                            {"trial": 1, "mean_val_metric": 0.7, "chosen": True}]})
        0.7
    """
    chosen = [t for t in _config(run).get("trials", []) if t.get("chosen")]
    if not chosen:
        where = run if not isinstance(run, dict) else "this run"
        raise ValueError(f"{where}: config.json records no chosen trial with its validation DSC; train the run "
                         f"with endolib.training.runs.train_model (`python -m endolib run --only 03`)")
    value = chosen[0].get("mean_val_metric")
    return float("nan") if value is None else float(value)


def _validation_frames(config: dict) -> list | None:
    """The validation part of each fold (fold, patients, frames) as ``config.json`` records it; None if absent."""
    folds = config.get("folds")
    if folds is None:
        return None
    return [(r["fold"], r["patients"], r["frames"]) for r in folds if r.get("part") == "val"]


def passes(teacher_val: float, student_val: float, max_drop: float) -> bool:
    """Whether a student meets the bound: ``teacher_val - student_val <= max_drop`` (a NaN never does).

    Example:
        >>> passes(0.75, 0.52, 0.05), passes(0.75, 0.72, 0.05), passes(0.75, float("nan"), 0.05)
        (False, True, False)
    """
    drop = float(teacher_val) - float(student_val)
    return math.isfinite(drop) and drop <= float(max_drop)


@dataclass
class StudentCheck:
    """The acceptance of one width's distilled students for one training seed (:data:`ACCEPTANCE_FILE`).

    Attributes:
        width: the students' width relative to the teacher.
        training_seed: the teacher's and the students' training seed.
        teacher_run: the teacher's run folder.
        teacher_val_dsc: the teacher's best validation DSC (:func:`validation_dsc`).
        max_val_drop, limit: the profile's ``student_max_val_drop`` and ``student_candidates``.
        candidates: one dict per candidate trained, in order: ``candidate``, ``model`` (its model folder,
            :func:`endolib.training.settings.student_name`), ``val_dsc``, ``drop`` (teacher's minus its),
            ``passed`` and ``fingerprint`` (its ``config.json`` fingerprint).
        accepted: the accepted candidate, or None when none of ``limit`` met the bound.
        teacher_fingerprint: the teacher's ``config.json`` fingerprint (None for a run without one).
    """

    width: float
    training_seed: int
    teacher_run: str
    teacher_val_dsc: float
    max_val_drop: float
    limit: int
    candidates: list = field(default_factory=list)
    accepted: int | None = None
    teacher_fingerprint: str | None = None

    @property
    def tried(self) -> int:
        """How many candidates were trained."""
        return len(self.candidates)

    @property
    def model(self) -> str | None:
        """The accepted candidate's model folder (``unet_w0.25``, ``unet_w0.25_c1``, ...), or None."""
        return None if self.accepted is None else self.candidates[self.accepted]["model"]

    def describe(self) -> str:
        """One line: the teacher's validation DSC, each candidate's, and the decision.

        Example:
            >>> c = StudentCheck(0.25, 44, "runs/quick/unet/seed44", 0.75, 0.05, 2,
            ...                  [{"candidate": 0, "model": "unet_w0.25", "val_dsc": 0.52},
            ...                   {"candidate": 1, "model": "unet_w0.25_c1", "val_dsc": 0.6}])
            >>> print(c.describe())  # doctest: +NORMALIZE_WHITESPACE
            width 0.25, training seed 44: no student accepted after 2 candidate(s) (validation DSC 0.520, 0.600
            vs the teacher's 0.750; accepted when at most 0.05 below)
        """
        vals = ", ".join(f"{c['val_dsc']:.3f}" for c in self.candidates)
        what = (f"candidate {self.accepted} accepted ({self.model})" if self.accepted is not None else
                f"no student accepted after {self.tried} candidate(s)")
        return (f"width {self.width:g}, training seed {self.training_seed}: {what} (validation DSC {vals} vs the "
                f"teacher's {self.teacher_val_dsc:.3f}; accepted when at most {self.max_val_drop:g} below)")

    def to_dict(self) -> dict:
        return asdict(self)


def acceptance_path(width: float, profile: str | Profile = "smoke", teacher: str = "unet", seed: int | None = None,
                    root=None, dataset: str | None = None) -> Path:
    """``runs/<profile>/[<dataset>/]<teacher>_w<width>/seed<s>/acceptance.json`` (training seed ``seed``, default
    the first; ``dataset`` None: the phantom study).

    Example:
        >>> acceptance_path(0.25, "quick", seed=44, root="/r").as_posix()
        '/r/runs/quick/unet_w0.25/seed44/acceptance.json'
        >>> acceptance_path(0.25, "quick", seed=44, root="/r", dataset="mine").as_posix()
        '/r/runs/quick/mine/unet_w0.25/seed44/acceptance.json'
    """
    p = get_profile(profile)
    seed = p.training_seeds[0] if seed is None else int(seed)
    return paths(p, root, dataset).run(student_name(teacher, width), seed) / ACCEPTANCE_FILE


def write_acceptance(check: StudentCheck, path: str | Path) -> Path:
    """Write ``check`` to ``path`` atomically (a temporary file, then a rename); an identical record is left as
    it is."""
    path, record = Path(path), check.to_dict()
    if path.is_file() and json.loads(path.read_text()) == json.loads(json.dumps(record, default=str)):
        return path
    return _write_json(record, path)


def read_acceptance(width: float, profile: str | Profile = "smoke", teacher: str = "unet", seed: int | None = None,
                    root=None, dataset: str | None = None) -> StudentCheck | None:
    """The acceptance record of ``width`` and training seed ``seed`` (:func:`acceptance_path`), or None when
    its students were never checked.

    Example:
        >>> read_acceptance(0.5, "quick", root="/nonexistent") is None
        True
    """
    path = acceptance_path(width, profile, teacher, seed, root, dataset)
    return StudentCheck(**json.loads(path.read_text())) if path.is_file() else None


def candidate_run(check: StudentCheck, candidate: int, profile: str | Profile = "smoke", root=None,
                  dataset: str | None = None) -> Path | None:
    """The run folder of candidate ``candidate`` of ``check``, or None when that run changed since it was checked
    (its ``config.json`` is missing or has another fingerprint than the record's: check again with
    :func:`endolib.training.runs.train_students`).

    Example:
        >>> c = StudentCheck(0.25, 44, "runs/quick/unet/seed44", 0.75, 0.05, 1,
        ...                  [{"candidate": 0, "model": "unet_w0.25", "fingerprint": "abc"}])
        >>> candidate_run(c, 0, "quick", root="/nonexistent") is None
        True
    """
    record = check.candidates[int(candidate)]
    run = paths(get_profile(profile), root, dataset).run(record["model"], check.training_seed)
    cfg = run / RUN_FILES["config"]
    if not cfg.is_file() or _config(run).get("fingerprint") != record["fingerprint"]:
        return None
    return run


def accepted_student(width: float, profile: str | Profile = "smoke", teacher: str = "unet", seed: int | None = None,
                     root=None, dataset: str | None = None) -> Path | None:
    """The run folder of the accepted student of ``width`` and training seed ``seed``: None when its students
    were never checked, none was accepted, or the accepted run changed since it was checked
    (:func:`candidate_run`).

    Example:
        >>> accepted_student(0.5, "quick", root="/nonexistent") is None
        True
    """
    check = read_acceptance(width, profile, teacher, seed, root, dataset)
    if check is None or check.accepted is None:
        return None
    return candidate_run(check, check.accepted, profile, root, dataset)
