"""What a finished training unit is keyed by: the settings that change results, the training frames, the
teacher's weights and the source of the training code (:func:`code_fingerprint`), so that ``make paper``
reuses a unit only when nothing it depends on has changed.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pandas as pd

from endolib.config import SEARCH_SPACE
from endolib.repro import package_modules, source_closure
from endolib.training.settings import RUN_FILES, TrainSettings

#: Profile fields that do not key a unit: how many seeds exist, where it runs, which distilled students exist and are
#: accepted (that decides which are trained, not what one learns; a student's own width is in its ``model_kwargs``),
#: and ``num_threads``. The thread count does change what a CPU unit learns (U-Net seed 42, quick, 2 epochs:
#: validation DSC 0.531 at one thread, 0.586 at two), so a profile meant for CPUs fixes it with ``train_threads``,
#: which is keyed (quick: 1); ``num_threads`` is left out because a Dask worker fills it in with its own size
#: (``endolib.study.distributed._worker_settings``), and keying it would make a serial rerun retrain Dask's units.
_NOT_FINGERPRINTED = ("num_threads", "device", "seeds", "bench_warmup", "bench_repeats", "bench_models",
                      "bench_backends", "n_boot", "student_widths", "student_max_val_drop", "student_candidates",
                      # already applied: a unit's profile is resolved for its model (Profile.for_model), so another
                      # model's entry (or a new one) leaves this model's units as they are
                      "per_task", "per_model")
#: Profile fields only a distilled student reads (a teacher or any other model is not retrained when they change).
_STUDENT_ONLY = ("kd_alpha", "student_epochs")
#: Modules whose effect on a unit is fingerprinted as values, not as source: the profiles (their resolved fields)
#: and the search space (below). Hashing config.py's source as well retrained every unit of every model after any
#: edit of it, a comment or one model's ``per_model`` entry included.
_HASHED_AS_VALUES = ("endolib.config",)


#: Where the training code starts: a unit's fingerprint hashes these modules and every endolib module they import.
TRAINING_CODE = ("endolib.training.runs",)


@functools.lru_cache(maxsize=None)
def code_fingerprint(roots: tuple[str, ...] = TRAINING_CODE) -> str:
    """Hash of the source of the ``roots`` modules and of every endolib module they import, transitively, in any
    subpackage (:func:`endolib.repro.source_closure`: imports anywhere in a file, read statically, so the set does
    not depend on what else a process has loaded). A finished training unit is reused only with the same training
    code: after a change to the loop, the losses, the models or the data loading, ``make paper`` retrains instead
    of reloading stale weights.

    Example:
        >>> len(code_fingerprint())
        64
    """
    modules = package_modules()
    digest = hashlib.sha256()
    for name in source_closure(roots, modules):
        if name in _HASHED_AS_VALUES:
            continue
        digest.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    return digest.hexdigest()


def _fingerprint(settings: TrainSettings, index: pd.DataFrame) -> str:
    """What must match for a finished unit or a checkpoint to be reused (everything that changes results,
    the training code included: :func:`code_fingerprint`)."""
    skip = _NOT_FINGERPRINTED + (() if settings.teacher is not None else _STUDENT_ONLY)
    prof = {k: v for k, v in settings.profile.to_dict().items() if k not in skip}
    cols = index[["frame_id", "patient_id", "split", "has_tissue"]].astype(str)
    blob = json.dumps({"arch": settings.arch, "profile": prof, "size": settings.size,
                       "model_kwargs": settings.model_kwargs, "epochs": settings.epochs,
                       "training_seed": settings.training_seed, "code": code_fingerprint(),
                       "search_space": SEARCH_SPACE,
                       "teacher": _teacher_fingerprint(settings.teacher),
                       "index": hashlib.sha256(cols.to_csv(index=False).encode()).hexdigest(),
                       **({"seed_key": list(settings.seed_key)} if settings.seed_key else {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _teacher_fingerprint(teacher: Path | None) -> str | None:
    """sha256 of a teacher run's weights (a retrained teacher retrains its students), None without a teacher."""
    if teacher is None:
        return None
    weights = Path(teacher) / RUN_FILES["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: the teacher's weights are missing; train the teacher first "
                                f"(`python -m endolib run --only 03 --arch {Path(teacher).parent.name}`)")
    return hashlib.sha256(weights.read_bytes()).hexdigest()
