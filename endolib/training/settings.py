"""Everything one training run is told: :class:`TrainSettings` resolved from a :class:`endolib.config.Profile`
and a registry name (:func:`training_settings`), the distilled students' settings, and the names of a run's
files (:data:`RUN_FILES`, docs/layout.md).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from endolib.config import CLASSIFIERS, MODELS, SEGMENTERS, Profile, get_profile, study_paths
from endolib.models.factory import input_size, model_kwargs, model_task

__all__ = ["FINAL_FOLD", "TrainSettings", "training_settings", "student_name", "student_settings"]


#: ``fold`` value of the final retraining on all training frames in ``history.csv`` (folds > 1 only).
FINAL_FOLD = -1
#: File names inside a run folder (docs/layout.md).
RUN_FILES = {"config": "config.json", "weights": "model.safetensors", "resume": "units/<unit>/resume.pt",
             "history": "history.csv", "environment": "environment.json", "predictions": "predictions.npz",
             "summary": "test_summary.json"}
HISTORY_COLUMNS = ["trial", "fold", "epoch", "train_loss", "val_loss", "val_metric", "lr", "seconds"]
TRIAL_COLUMNS = ("trial", "lr", "batch_size", "weight_decay", "mean_val_loss", "mean_val_metric", "mean_best_epoch",
                 "chosen")
_TASK_MODELS = {"cls": CLASSIFIERS, "seg": SEGMENTERS}
_TASK_NAMES = {"cls": "classifier", "seg": "segmenter"}


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run (one model, one training seed) needs; built by :func:`training_settings`.

    Attributes:
        arch: registry name.
        task: ``"cls"`` or ``"seg"``.
        profile: the profile with the notebook's overrides applied (``profile.seed`` is the data seed).
        data_dir: the prepared dataset.
        model_dir: the model's folder ``runs/<profile>/<arch>/``; the run is ``model_dir/seed<training_seed>``.
        figures_dir: where the learning-curve figure goes.
        size: model input side in pixels.
        model_kwargs: keyword arguments of :func:`endolib.models.factory.create_model`.
        epochs: maximum epochs per training (``cls_epochs`` or ``seg_epochs``).
        training_seed: this run's training seed (initialisation, batch order, augmentation).
        teacher: a finished run folder of a segmenter whose probabilities this model learns from as well
            (knowledge distillation, :func:`endolib.training.losses.distillation_loss` with ``profile.kd_alpha``); None: ground truth only.
        seed_key: integers mixed into every unit's torch seed beside (training seed, model, trial, fold); empty
            (the default) for every run except a distilled student's candidate >= 1 (:func:`student_settings`).
    """

    arch: str
    task: str
    profile: Profile
    data_dir: Path
    model_dir: Path
    figures_dir: Path
    size: int
    model_kwargs: dict
    epochs: int
    training_seed: int
    teacher: Path | None = None
    seed_key: tuple[int, ...] = ()

    @property
    def seed(self) -> int:
        """The training seed (the data seed is ``profile.seed``)."""
        return self.training_seed

    @property
    def data_seed(self) -> int:
        return self.profile.seed

    @property
    def run_dir(self) -> Path:
        """``model_dir/seed<training_seed>``: this run's files (docs/layout.md)."""
        return self.model_dir / f"seed{int(self.training_seed)}"

    @property
    def seeds(self) -> tuple[int, ...]:
        """The profile's training seeds (``profile.training_seeds``)."""
        return self.profile.training_seeds

    def for_seed(self, training_seed: int) -> "TrainSettings":
        """The same settings for another training seed."""
        return dataclasses.replace(self, training_seed=int(training_seed))

    def to_dict(self) -> dict:
        return {"arch": self.arch, "task": self.task, "profile": self.profile.to_dict(),
                "data_dir": str(self.data_dir), "run_dir": str(self.run_dir), "input_size": self.size,
                "model_kwargs": dict(self.model_kwargs), "epochs": self.epochs, "seed": self.training_seed,
                "training_seed": self.training_seed, "data_seed": self.data_seed,
                **({"teacher": str(self.teacher), "kd_alpha": self.profile.kd_alpha} if self.teacher else {}),
                **({"seed_key": list(self.seed_key)} if self.seed_key else {})}

    def describe(self, seeds: tuple[int, ...] | None = None) -> str:
        """A few lines for the notebook: what will be trained, how (``seeds``: the training seeds to run)."""
        p = self.profile
        seeds = tuple(seeds) if seeds is not None else (self.training_seed,)
        search = f"random search, {p.search_trials} trials" if p.search_trials else "no search (profile values)"
        val = (f"{p.folds}-fold patient-grouped CV" if p.folds > 1
               else f"patient-grouped hold-out ({p.holdout_fraction:.0%} of training patients)")
        data = ("all training frames" if self.task == "cls" else
                "training frames with tissue" + (" and without" if p.include_negatives else "")
                + f", expanded {p.expand}x")
        loss = ("binary cross-entropy" if self.task == "cls" else "Dice loss (Eq. 1)" if self.teacher is None else
                f"distillation from {self.teacher}: {p.kd_alpha:g} x Dice loss (Eq. 1) + {1 - p.kd_alpha:g} x BCE "
                f"against the teacher's probabilities (not in the paper)")
        return "\n".join([
            f"model:        {self.arch} ({_TASK_NAMES[self.task]}), input {self.size}x{self.size}, "
            f"kwargs {self.model_kwargs}",
            f"profile:      {p.name}, data seed {p.seed} (split, folds, test set)",
            f"seeds:        training seed(s) {', '.join(map(str, seeds))} (initialisation, batch order, "
            f"augmentation); one run folder each: seed<s>/",
            f"device:       {p.device}, mixed precision {p.amp}, threads {p.unit_threads or 'all cores'}",
            f"data:         {data}",
            f"validation:   {val}",
            f"training:     {loss}, Adam, {_schedule_text(p)}, up to {self.epochs} epochs, "
            + (f"early stopping after {p.patience} without improvement" if p.patience < self.epochs else
               "no early stopping (the best validation epoch is kept)"),
            f"augmentation: rotation +-{p.rotation_deg:g} deg, flips" + (f", zoom +-{p.zoom:g}" if self.task == "cls"
                                                                        else "")
            + (f", colour jitter +-{p.colour_jitter:g} (not in the paper)" if p.colour_jitter else ""),
            f"search:       {search}; lr {p.lr:g}, batch size {p.batch_size}, weight decay {p.weight_decay:g}",
        ])


def training_settings(arch: str, profile: str | Profile = "smoke", data_dir: str | Path | None = None,
                      model_dir: str | Path | None = None, figures_dir: str | Path | None = None,
                      epochs: int | None = None, task: str | None = None, training_seed: int | None = None,
                      dataset: str | None = None, **overrides) -> TrainSettings:
    """Resolve a notebook's parameters into :class:`TrainSettings`.

    Args:
        arch: registry name (``resnet18`` ... ``segformer_b1``).
        profile: ``smoke``, ``quick``, ``paper`` or a Profile.
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        model_dir: the model's folder, holding one ``seed<s>/`` run per training seed
            (default ``study_paths(profile, data_dir, dataset).run(arch)``: ``runs/<profile>/<arch>`` for the
            phantom, ``runs/<profile>/<dataset>/<arch>`` for another dataset).
        figures_dir: figure folder (default ``study_paths(profile, data_dir, dataset).figures``).
        epochs: overrides ``cls_epochs`` or ``seg_epochs`` (whichever the model uses).
        task: if given (``"cls"``/``"seg"``), require ``arch`` to be of that kind (a notebook trains one kind).
        training_seed: the run's training seed (default: the first of ``profile.training_seeds``).
        dataset: the study's dataset name (default: :func:`endolib.config.dataset_name` of ``data_dir``, None for
            the phantom).
        **overrides: any Profile field (``lr``, ``batch_size``, ``weight_decay``, ``folds``, ``search_trials``,
            ``include_negatives``, ``seed`` (the data seed), ``seeds``, ``device``, ``amp``, ...); None values
            are ignored. They are applied after the profile's ``per_task`` settings for this model's task and its
            ``per_model`` settings.

    Example:
        >>> s = training_settings("unet", "quick", epochs=3)
        >>> s.task, s.size, s.epochs, s.model_kwargs, s.training_seed, s.run_dir.name
        ('seg', 64, 3, {'width_mult': 0.25}, 42, 'seed42')
        >>> training_settings("unet", "quick", data_dir="data/mine").run_dir.parent.parent.name
        'mine'
    """
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(MODELS)}")
    kind = model_task(arch)
    if task is not None and kind != task:
        raise ValueError(f"{arch} is a {_TASK_NAMES[kind]}, but this notebook trains {_TASK_NAMES[task]}s: "
                         f"{', '.join(_TASK_MODELS[task])}")
    field_name = "cls_epochs" if kind == "cls" else "seg_epochs"
    prof = get_profile(profile).for_model(arch).replace(**{field_name: epochs}, **overrides)
    _check_profile(prof)
    p = study_paths(prof, data_dir, dataset)
    return TrainSettings(arch=arch, task=kind, profile=prof,
                         data_dir=Path(data_dir) if data_dir is not None else p.phantom,
                         model_dir=Path(model_dir) if model_dir is not None else p.run(arch),
                         figures_dir=Path(figures_dir) if figures_dir is not None else p.figures,
                         size=input_size(arch, prof), model_kwargs=model_kwargs(arch, prof),
                         epochs=int(getattr(prof, field_name)),
                         training_seed=int(training_seed) if training_seed is not None else prof.training_seeds[0])

def _schedule_text(p: Profile) -> str:
    if p.lr_schedule == "cosine":
        return (f"learning rate warmed up over {p.warmup_epochs} epoch(s), then cosine decay to 0"
                if p.warmup_epochs else "cosine decay of the learning rate to 0")
    return f"learning rate x{p.lr_factor} after {p.lr_patience + 1} epoch(s) without improvement"


def student_name(teacher: str, width: float, candidate: int = 0) -> str:
    """Model folder name of a distilled student: ``<teacher>_w<width>`` (width relative to the teacher) for the
    first candidate, ``<teacher>_w<width>_c<candidate>`` for a later one (:func:`student_settings`).

    Example:
        >>> student_name("unet", 0.5), student_name("unet", 0.25, candidate=2)
        ('unet_w0.5', 'unet_w0.25_c2')
    """
    if int(candidate) < 0:
        raise ValueError(f"candidate must be >= 0, got {candidate}")
    return f"{teacher}_w{float(width):g}" + (f"_c{int(candidate)}" if candidate else "")


def student_settings(width: float, profile: str | Profile = "smoke", teacher: str = "unet",
                     training_seed: int | None = None, data_dir: str | Path | None = None,
                     teacher_run: str | Path | None = None, candidate: int = 0, dataset: str | None = None,
                     **overrides) -> TrainSettings:
    """Settings of a knowledge-distilled student: the teacher's architecture at ``width`` times its width,
    trained by the one training loop on the teacher's data and protocol, with the loss
    :func:`endolib.training.losses.distillation_loss` against the teacher run of the same training seed. The run folder is
    ``runs/<profile>/<teacher>_w<width>/seed<s>/`` (:func:`student_name`) for candidate 0, and
    ``runs/<profile>/<teacher>_w<width>_c<candidate>/seed<s>/`` for the candidates that
    :func:`endolib.training.runs.train_students` trains when an earlier one misses ``profile.student_max_val_drop``.

    Args:
        width: the student's channel width relative to the teacher, in (0, 1].
        profile, training_seed, data_dir, dataset, **overrides: see :func:`training_settings` (``epochs``
            defaults to the profile's ``student_epochs``).
        teacher: a U-Net-family segmenter (its run of ``training_seed`` must be finished to train).
        teacher_run: the teacher's run folder, if not ``runs/<profile>/<teacher>/seed<training_seed>/``.
        candidate: which candidate of this width and training seed (0: the first, seeded like any run of the
            training seed; c >= 1: its units' torch seeds also take ``seed_key = (width in millionths, c)``, a
            function of training seed, width and candidate only).

    Example:
        >>> s = student_settings(0.5, "quick")
        >>> s.arch, s.model_kwargs, s.run_dir.parent.name, s.teacher.parent.name, s.seed_key
        ('unet', {'width_mult': 0.125}, 'unet_w0.5', 'unet', ())
        >>> c = student_settings(0.25, "quick", candidate=1)
        >>> c.run_dir.parent.name, c.run_dir.name, c.seed_key
        ('unet_w0.25_c1', 'seed42', (250000, 1))
    """
    if teacher not in _TASK_MODELS["seg"] or teacher.startswith("segformer"):
        raise ValueError(f"teacher must be a U-Net-family segmenter "
                         f"({', '.join(m for m in _TASK_MODELS['seg'] if not m.startswith('segformer'))}), "
                         f"got {teacher!r}")
    if not 0.0 < float(width) <= 1.0:
        raise ValueError(f"width must be in (0, 1] (relative to the teacher), got {width}")
    profile = get_profile(profile)  # resolved once here; training_settings takes it as it is
    overrides.setdefault("epochs", profile.student_epochs)
    t = training_settings(teacher, profile, data_dir=data_dir, training_seed=training_seed, task="seg",
                          dataset=dataset, **overrides)
    teacher_run = Path(teacher_run) if teacher_run is not None else t.run_dir
    cfg = teacher_run / RUN_FILES["config"]  # the teacher's own width, once it is trained (else the profile's)
    base = json.loads(cfg.read_text()).get("model_kwargs", t.model_kwargs) if cfg.is_file() else t.model_kwargs
    kwargs = {**base, "width_mult": float(base["width_mult"]) * float(width)}
    seed_key = (int(round(float(width) * 1e6)), int(candidate)) if candidate else ()
    return dataclasses.replace(t, model_dir=t.model_dir.parent / student_name(teacher, width, candidate),
                               model_kwargs=kwargs, teacher=teacher_run, seed_key=seed_key)


def _check_profile(p: Profile) -> None:
    checks = {"folds": p.folds >= 1, "search_trials": p.search_trials >= 0, "expand": p.expand >= 1,
              "batch_size": p.batch_size >= 2, "lr": p.lr > 0, "weight_decay": p.weight_decay >= 0,
              "cls_epochs": p.cls_epochs >= 1, "seg_epochs": p.seg_epochs >= 1, "patience": p.patience >= 1,
              "holdout_fraction": 0 < p.holdout_fraction < 1,
              "colour_jitter": 0 <= p.colour_jitter < 1}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid training setting(s): {', '.join(f'{k}={getattr(p, k)!r}' for k in bad)}")
