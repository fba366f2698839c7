"""Training of every classifier and segmenter with one loop (notebooks 02 and 03).

The protocol of the paper (Methods; ``paper_tables.md``), for any registry name:

* **Data**: frames of the training split, resized once to the model input size and kept in memory.
  Classifiers use every frame (label ``has_tissue``); segmenters use frames with tissue (``include_negatives``
  adds the others). ImageNet normalisation.
* **Augmentation** (training only), drawn afresh per frame and epoch and applied identically to image and
  mask: random rotation and horizontal/vertical flips, plus random zoom for classifiers; optionally
  (``colour_jitter`` > 0, not in the paper) random white balance and brightness of the image. The segmentation
  training set is expanded ``expand``-fold (every copy gets its own random draw).
* **Validation**: patient-grouped K-fold CV inside the training split (``folds``; stratified by
  ``has_tissue``, no patient in both parts). With ``folds=1`` a grouped hold-out of ``holdout_fraction`` of
  the training patients is the validation set.
* **Losses**: binary cross-entropy (classifiers); Dice loss of the paper's Eq. 1 (segmenters). Adam,
  reduce-LR-on-plateau and early stopping on the validation loss.
* **Random search** over learning rate, batch size and weight decay (``search_trials`` draws from
  :data:`endolib.config.SEARCH_SPACE`; 0 = the profile's values). The chosen trial has the lowest mean
  validation loss (classifiers) or the highest mean validation DSC (segmenters), both taken at each fold's
  best epoch.
* **Final model**: with ``folds > 1`` it is retrained on all training frames with the chosen
  hyperparameters for the mean best epoch count of the chosen trial's folds; with ``folds = 1`` it is the
  hold-out-selected model (the chosen trial's weights at its best validation epoch). ``config.json`` says which.

* **Training seeds**: every model is trained once per training seed (``profile.training_seeds``); the seed
  changes initialisation, batch order and augmentation. Splits, folds, search trials and the test set use the
  data seed ``profile.seed`` and are the same for every training seed.

**Units.** One *unit* is one training: model x training seed x trial x fold, or the final retraining
(``fold = FINAL_FOLD``). :func:`train_unit` is a plain function of its inputs; its torch seed comes from
(training seed, model, trial, fold) only, it checkpoints ``resume.pt`` in its folder after every epoch and writes
its record atomically, so a finished unit is never recomputed and an interrupted one continues where it stopped
(ending with the same weights as an uninterrupted run). :func:`train_model` (one seed) runs the units in order,
then :func:`finish_run` (choose the trial, predict the test set, write the run files); :func:`train_seeds` does
that for every seed of a model; ``endolib.study.distributed`` submits the same units to Dask.

Layout (``docs/layout.md``): ``runs/<profile>/<model>/seed<s>/`` holds one run (config.json, model.safetensors,
history.csv, environment.json, predictions.npz, test_summary.json) and ``units/t<trial>_f<fold>/`` (or
``t<trial>_final``) with each unit's ``unit.json``, ``weights.safetensors`` (where needed) and ``resume.pt``
while it runs.

Example:
    >>> s = training_settings("unet", "smoke", data_dir="data/smoke/phantom")   # doctest: +SKIP
    >>> result = train_seeds(s)                                                # doctest: +SKIP
    >>> print(result.headline())                                               # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from endolib.config import Profile, get_profile, require
from endolib.models.factory import create_model
from endolib.repro import environment
from endolib.training.curves import save_learning_curves
from endolib.training.folds import _trials_table
from endolib.training.frames import TrainingData, load_frames, prepare_data
from endolib.training.settings import (
    FINAL_FOLD,
    HISTORY_COLUMNS,
    RUN_FILES,
    TRIAL_COLUMNS,
    TrainSettings,
    student_settings,
)
from endolib.training.students import (
    ACCEPTANCE_FILE,
    StudentCheck,
    _validation_frames,
    passes,
    validation_dsc,
    write_acceptance,
)
from endolib.training.unit import (
    _atomic,
    _save_weights,
    _seg_dsc,
    _write_json,
    load_unit,
    predict,
    search_units,
    train_unit,
    unit_dir,
    unit_name,
)

__all__ = ["train_model", "TrainResult", "final_unit", "train_final_unit", "finish_run", "train_seeds", "SeedResults",
           "train_students"]


def train_students(profile: str | Profile = "smoke", widths=None, teacher: str = "unet",
                   training_seed: int | None = None, data_dir: str | Path | None = None,
                   teacher_run: str | Path | None = None, progress: bool = True,
                   dataset: str | None = None) -> list[StudentCheck]:
    """Distil and check the students of one teacher run, for each width of ``profile.student_widths`` (or
    ``widths``): candidate 0, 1, ... (:func:`endolib.training.settings.student_settings`) are trained (or loaded,
    when finished with the same settings) one after another until one's best validation DSC is at most
    ``profile.student_max_val_drop`` below the teacher's (same validation frames,
    :func:`endolib.training.students.validation_dsc`) or ``profile.student_candidates`` were tried. The decision is
    written atomically to ``acceptance.json`` in candidate 0's run folder
    (:func:`endolib.training.students.acceptance_path`); a rerun loads every candidate it trained before.

    Args:
        profile: the profile (its student settings).
        widths: student widths relative to the teacher (default ``profile.student_widths``).
        teacher: the teacher's registry name (U-Net family).
        training_seed: the teacher's training seed (default the profile's first).
        data_dir: the prepared dataset (default the profile's).
        teacher_run: the teacher's run folder, if not ``runs/<profile>/<teacher>/seed<training_seed>/``.
        progress: tqdm bars.
        dataset: the study's dataset name (default :func:`endolib.config.dataset_name` of ``data_dir``).

    Returns:
        One :class:`endolib.training.students.StudentCheck` per width (``accepted`` None: no usable student).

    Raises:
        FileNotFoundError: the teacher run is not finished (names the command that trains it).
        ValueError: the teacher's config.json has no validation DSC, or a student was validated on other
            frames than its teacher.

    Example:
        >>> checks = train_students("smoke", widths=(0.5,), data_dir="data/smoke/phantom")  # doctest: +SKIP
        >>> checks[0].accepted, checks[0].model                                            # doctest: +SKIP
        (0, 'unet_w0.5')
    """
    profile = get_profile(profile)  # resolved once, handed down as a Profile
    base = student_settings(1.0, profile, teacher, training_seed, data_dir, teacher_run, dataset=dataset)
    require(base.teacher / RUN_FILES["config"], f"the teacher run ({teacher}, training seed {base.training_seed})",
            f"python -m endolib run --profile {base.profile.name} --only 03 --arch {teacher}")
    p = base.profile
    teacher_cfg = json.loads((base.teacher / RUN_FILES["config"]).read_text())
    teacher_val = validation_dsc(teacher_cfg)
    widths = p.student_widths if widths is None else widths
    checks = []
    for w in widths:
        check = StudentCheck(float(w), base.training_seed, str(base.teacher), teacher_val,
                             float(p.student_max_val_drop), int(p.student_candidates),
                             teacher_fingerprint=teacher_cfg.get("fingerprint"))
        for c in range(int(p.student_candidates)):
            s = student_settings(w, profile, teacher, training_seed, data_dir, teacher_run, candidate=c,
                                 dataset=dataset)
            result = train_model(s, progress=progress, figure=False)
            own, theirs = _validation_frames(result.config), _validation_frames(teacher_cfg)
            if theirs is not None and own != theirs:
                raise ValueError(f"{s.run_dir}: validated on other frames than its teacher {base.teacher} "
                                 f"({own} vs {theirs}); retrain the teacher with this profile and dataset")
            val = validation_dsc(result.config)
            ok = passes(teacher_val, val, p.student_max_val_drop)
            check.candidates.append({"candidate": c, "model": s.model_dir.name, "val_dsc": val,
                                     "drop": teacher_val - val, "passed": ok,
                                     "fingerprint": result.config.get("fingerprint")})
            if ok:
                check.accepted = c
                break
        write_acceptance(check, student_settings(w, profile, teacher, training_seed, data_dir, teacher_run,
                                                 dataset=dataset).run_dir / ACCEPTANCE_FILE)
        checks.append(check)
    return checks


# ---------------------------------------------------------------------------------------------- top level
@dataclass
class TrainResult:
    """What :func:`train_model` returns for one training seed (also on disk in ``run_dir``).

    Attributes:
        settings: the run's settings.
        config: the saved ``config.json``.
        history: per-epoch history (``history.csv``).
        trials: one row per search trial: hyperparameters, mean validation loss/metric, mean best epoch, chosen.
        folds: the fold table (patients and frames per fold and part).
        test_summary: the headline test metric (``test_summary.json``).
        figure: path of the learning-curve PNG (all finished seeds of the model; None when not drawn).
        seconds: wall time of this call.
    """

    settings: TrainSettings
    config: dict
    history: pd.DataFrame
    trials: pd.DataFrame
    folds: pd.DataFrame
    test_summary: dict
    figure: Path | None
    seconds: float

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    @property
    def training_seed(self) -> int:
        return self.settings.training_seed

    @property
    def final_model(self) -> str:
        return self.config["final_model"]["description"]

    @property
    def value(self) -> float:
        """The headline test metric (AUROC for classifiers, DSC for segmenters)."""
        return float(self.test_summary[self.test_summary["metric"]])

    def headline(self, digits: int = 2) -> str:
        """The printed test result, e.g. ``unet: test DSC 0.81 (mean over 24 test frames with tissue)``."""
        t = self.test_summary
        if t["metric"] == "auroc":
            return (f"{t['model']}: test AUROC {t['auroc']:.{digits}f} ({t['n_test_frames']} test frames, "
                    f"{t['n_test_positive']} with tissue)")
        return (f"{t['model']}: test DSC {t['dsc']:.{digits}f} (mean over the {t['n_test_positive']} test frames "
                f"with tissue; predictions saved for all {t['n_test_frames']})")

    def chosen(self, digits: int = 2) -> pd.DataFrame:
        """The search table for display: hyperparameters (3 significant digits), mean validation loss and
        metric rounded to ``digits``, mean best epoch, and the chosen flag."""
        df = self.trials.copy()
        for col in ("lr", "weight_decay"):
            df[col] = [float(f"{v:.3g}") for v in df[col]]
        return df.round({"mean_val_loss": digits, "mean_val_metric": digits, "mean_best_epoch": 1})


@dataclass
class SeedResults:
    """The runs of one model over its training seeds (what :func:`train_seeds` returns).

    Attributes:
        runs: one :class:`TrainResult` per training seed, in seed order.
        figure: the learning-curve PNG with every seed.
        seconds: wall time of the call.
    """

    runs: list
    figure: Path | None
    seconds: float

    @property
    def arch(self) -> str:
        return self.runs[0].settings.arch

    @property
    def seeds(self) -> list[int]:
        return [r.training_seed for r in self.runs]

    @property
    def folds(self) -> pd.DataFrame:
        """The fold table (the same for every seed: folds use the data seed)."""
        return self.runs[0].folds

    @property
    def metric(self) -> str:
        return self.runs[0].test_summary["metric"]

    def final_models(self) -> str:
        """One line per seed: how its final model was obtained."""
        return "\n".join(f"seed {r.training_seed}: {r.final_model}" for r in self.runs)

    def chosen(self, digits: int = 2) -> pd.DataFrame:
        """The search tables of all seeds, with a ``training_seed`` column."""
        return pd.concat([r.chosen(digits).assign(training_seed=r.training_seed) for r in self.runs],
                         ignore_index=True)[["training_seed", *self.runs[0].trials.columns]]

    def table(self) -> pd.DataFrame:
        """One row per seed: the test metric and the final model's trial and epochs."""
        return pd.DataFrame([{"model": r.settings.arch, "training_seed": r.training_seed, self.metric: r.value,
                              "final_trial": r.config["final_model"]["trial"],
                              "final_epochs": r.config["final_model"]["epochs"]} for r in self.runs])

    def mean_sd(self) -> tuple[float, float]:
        """Mean and across-seed SD (ddof=1; NaN with one seed) of the headline test metric."""
        v = np.array([r.value for r in self.runs], float)
        return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan

    def headline(self, digits: int = 2) -> str:
        """Per-seed test results and their mean +- SD, e.g. ``unet: test DSC 0.80 +- 0.02 (mean +- SD over 3
        seeds: 0.78, 0.80, 0.82)``."""
        name = "AUROC" if self.metric == "auroc" else "DSC"
        mean, sd = self.mean_sd()
        per = ", ".join(f"seed {r.training_seed}: {r.value:.{digits}f}" for r in self.runs)
        spread = f" +- {sd:.{digits}f} (mean +- SD over {len(self.runs)} seeds)" if len(self.runs) > 1 else ""
        t = self.runs[0].test_summary
        frames = (f"{t['n_test_frames']} test frames, {t['n_test_positive']} with tissue" if self.metric == "auroc"
                  else f"mean over the {t['n_test_positive']} test frames with tissue")
        return f"{self.arch}: test {name} {mean:.{digits}f}{spread} ({frames})\nper seed: {per}"


def _search_records(settings: TrainSettings, data: TrainingData) -> list[dict]:
    """The records of every search unit; a clear error naming the units that are not done."""
    records, missing = [], []
    for t, k in search_units(settings):
        rec = load_unit(settings, t, k)
        (records.append(rec) if rec is not None else missing.append(unit_name(t, k)))
    if missing:
        raise FileNotFoundError(f"{settings.run_dir / 'units'}: unit(s) {', '.join(missing)} of {settings.arch} "
                                f"(training seed {settings.training_seed}) are not finished; train them with "
                                f"train_model or `python -m endolib run --only 02 03 --arch {settings.arch}`")
    return records


def final_unit(settings: TrainSettings, data: TrainingData | None = None) -> tuple[int, int] | None:
    """(chosen trial, epochs) of the final retraining once every search unit is done (``folds > 1``), else None."""
    if settings.profile.folds == 1:
        return None
    data = data if data is not None else prepare_data(settings, progress=False)
    trials_df = _trials_table(_search_records(settings, data), data.trials, settings.task)
    chosen = int(trials_df.index[trials_df["chosen"]][0])
    return chosen, max(1, int(round(trials_df.loc[chosen, "mean_best_epoch"])))


def train_final_unit(settings: TrainSettings, data: TrainingData | None = None, progress: bool = True,
                     on_epoch_end: Callable | None = None) -> dict | None:
    """Train (or load) the final retraining unit of a ``folds > 1`` run; None with ``folds == 1``."""
    data = data if data is not None else prepare_data(settings, progress)
    fin = final_unit(settings, data)
    if fin is None:
        return None
    return train_unit(settings, fin[0], FINAL_FOLD, epochs=fin[1], data=data, progress=progress,
                      on_epoch_end=on_epoch_end)


def train_model(settings: TrainSettings, resume: bool = True, progress: bool = True,
                on_epoch_end: Callable[[dict], None] | None = None, data: TrainingData | None = None,
                figure: bool = True) -> TrainResult:
    """Run the whole protocol for one model and one training seed and write its run folder (docs/layout.md).

    It calls exactly the unit functions the distributed runner calls: :func:`train_unit` for every search
    unit, :func:`train_final_unit` (``folds > 1``), then :func:`finish_run`. Units already done (for example
    by ``python -m endolib run --scheduler local:2``) are loaded, not retrained.

    Args:
        settings: from :func:`endolib.training.settings.training_settings` (``settings.for_seed(s)`` for another seed).
        resume: continue interrupted units from their ``resume.pt`` and reuse finished units (False: delete
            this seed's units and outputs first and train afresh).
        progress: tqdm bars for loading, epochs and batches.
        on_epoch_end: called with the history row after every epoch, once the checkpoint is written
            (e.g. to stop a run in a test; an exception raised there interrupts the run like a kill would).
        data: :func:`prepare_data` of these settings (shared across the seeds of a model).
        figure: draw the learning-curve figure of the model's finished seeds.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: empty training/test split, too few patients for the folds, a fold without positives.
        NonFiniteLossError: a NaN/inf loss (the unit's last good checkpoint ``resume.pt`` is kept).
    """
    t_start = time.perf_counter()
    if not resume:
        _clear_run(settings)
    data = data if data is not None else prepare_data(settings, progress)
    for t, k in search_units(settings):
        train_unit(settings, t, k, data=data, progress=progress, on_epoch_end=on_epoch_end)
    train_final_unit(settings, data, progress, on_epoch_end)
    result = finish_run(settings, data, progress=progress, figure=figure)
    result.seconds = time.perf_counter() - t_start
    return result


def _clear_run(settings: TrainSettings) -> None:
    import shutil

    if (settings.run_dir / "units").exists():
        shutil.rmtree(settings.run_dir / "units")
    for name in RUN_FILES.values():
        (settings.run_dir / name).unlink(missing_ok=True)


def train_seeds(settings: TrainSettings, seeds=None, resume: bool = True, progress: bool = True,
                on_epoch_end: Callable[[dict], None] | None = None) -> SeedResults:
    """Train one model with each of its training seeds (one run folder each), in one process.

    Args:
        settings: from :func:`endolib.training.settings.training_settings` (any seed).
        seeds: training seeds (default ``settings.profile.training_seeds``); an int is one seed.
        resume, progress, on_epoch_end: see :func:`train_model`.

    Returns:
        :class:`SeedResults` (per-seed results, mean +- SD, and the learning-curve figure of all seeds).
    """
    t_start = time.perf_counter()
    seeds = settings.profile.training_seeds if seeds is None else (
        (int(seeds),) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds))
    if not seeds:
        raise ValueError("seeds is empty: give at least one training seed")
    data = prepare_data(settings, progress)
    runs = [train_model(settings.for_seed(s), resume, progress, on_epoch_end, data=data, figure=False)
            for s in seeds]
    fig = save_learning_curves(settings, seeds)
    return SeedResults(runs, fig, time.perf_counter() - t_start)


def _finished(settings: TrainSettings, fingerprint: str) -> bool:
    cfg = settings.run_dir / RUN_FILES["config"]
    if not cfg.is_file() or not all((settings.run_dir / RUN_FILES[k]).is_file()
                                    for k in ("weights", "history", "predictions", "summary")):
        return False
    return json.loads(cfg.read_text()).get("fingerprint") == fingerprint


def finish_run(settings: TrainSettings, data: TrainingData | None = None, progress: bool = True,
               figure: bool = True) -> TrainResult:
    """The step after the units: choose the trial, take the final model's weights, predict the test set and
    write the run folder (weights, history, predictions, summary, environment, then ``config.json`` last).

    A run that is already finished with the same settings and data is loaded, not recomputed.

    Raises:
        FileNotFoundError: a unit is not done (the message names it).
    """
    from endolib.evaluation.metrics import auroc, quantise
    from endolib.models.weights import load_weights

    s, p = settings, settings.profile
    data = data if data is not None else prepare_data(s, progress)
    fp = data.fingerprint(s)
    if _finished(s, fp):  # also when the units folder was deleted afterwards to save space
        trials = pd.DataFrame(json.loads((s.run_dir / RUN_FILES["config"]).read_text())["trials"])
        return _load_result(s, data.folds_df, trials[list(TRIAL_COLUMNS)], figure)
    records = _search_records(s, data)
    trials_df = _trials_table(records, data.trials, s.task)
    chosen = int(trials_df.index[trials_df["chosen"]][0])
    if p.folds > 1:
        _, final_epochs = final_unit(s, data)
        final_rec = load_unit(s, chosen, FINAL_FOLD)
        if final_rec is None:
            raise FileNotFoundError(f"{unit_dir(s, chosen, FINAL_FOLD)}: the final retraining of {s.arch} "
                                    f"(training seed {s.training_seed}) is not finished; run train_final_unit")
        records = records + [final_rec]
        n_frames, n_pats = int(data.use.sum()), len(set(data.train_rows["patient_id"].astype(str)[data.use]))
        weights_path = unit_dir(s, chosen, FINAL_FOLD) / "weights.safetensors"
        final = {"method": "retrain_all",
                 "description": f"retrained on all {n_frames} training frames ({n_pats} "
                                f"patients) with trial {chosen}'s hyperparameters for {final_epochs} epochs (the "
                                f"mean best epoch over its {p.folds} validation folds); no validation data, the "
                                f"learning-rate schedule follows the training loss",
                 "trial": chosen, "epochs": final_epochs}
    else:
        sel = next(r for r in records if r["trial"] == chosen)
        weights_path = unit_dir(s, chosen, 0) / "weights.safetensors"
        val_pats = sorted(set(data.train_rows["patient_id"].astype(str).to_numpy()[data.splits[0][1]]))
        final = {"method": "holdout_best",
                 "description": f"the hold-out-selected model: trial {sel['trial']} at its best validation epoch "
                                f"{sel['best_epoch']} (lowest validation loss), trained on the training patients "
                                f"except the {len(val_pats)} held-out validation patient(s) {', '.join(val_pats)}",
                 "trial": int(sel["trial"]), "epochs": int(sel["best_epoch"])}
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: the final model's weights are missing; rerun the unit "
                                f"(delete {weights_path.parent} and train again)")
    from endolib.device import resolve_device, set_threads

    set_threads(p.unit_threads)  # predictions with the unit's threads
    device = resolve_device(p.device)
    model = create_model(s.arch, **s.model_kwargs)
    load_weights(model, weights_path, strict=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    history = pd.DataFrame([row for r in records for row in r["history"]], columns=HISTORY_COLUMNS)
    _atomic(s.run_dir / RUN_FILES["history"], lambda tmp: history.to_csv(tmp, index=False))
    _save_weights(model.state_dict(), s.run_dir / RUN_FILES["weights"])

    test = load_frames(s.data_dir, data.test_rows, s.size, masks=s.task == "seg", progress=progress)
    probs = predict(model, test, s.task, p.eval_batch_size, device, channels_last=p.channels_last)
    ids = test.frame_ids
    if s.task == "cls":
        stored = probs.astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = auroc(test.labels, stored)
        summary = {"metric": "auroc", "auroc": round(float(value), 6)}
    else:
        stored = quantise(probs)
        pos = test.labels.astype(bool)
        dsc = _seg_dsc(stored.astype(np.float64) / 255.0, test.masks, p.threshold)
        summary = {"metric": "dsc", "dsc": round(float(dsc[pos].mean()), 6) if pos.any() else math.nan,
                   "dsc_definition": f"mean per-frame DSC over the {int(pos.sum())} test frames with tissue, "
                                     f"probability >= {p.threshold}, at {s.size}x{s.size}"}
    summary.update({"model": s.arch, "task": s.task, "profile": p.name, "training_seed": s.training_seed,
                    "n_test_frames": int(len(ids)), "n_test_positive": int(test.labels.sum()), "input_size": s.size})
    def write_predictions(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, frame_ids=ids.astype(str), probs=stored, size=np.int64(s.size),
                                task=np.array(s.task))

    _atomic(s.run_dir / RUN_FILES["predictions"], write_predictions)
    _write_json(summary, s.run_dir / RUN_FILES["summary"])
    _write_json(environment(), s.run_dir / RUN_FILES["environment"])

    row = trials_df.loc[chosen]
    config = {**s.to_dict(),
              "chosen_hyperparameters": {"lr": float(row["lr"]), "batch_size": int(row["batch_size"]),
                                         "weight_decay": float(row["weight_decay"])},
              "selection_rule": "lowest mean validation loss" if s.task == "cls" else "highest mean validation DSC",
              "final_model": final, "trials": trials_df.to_dict(orient="records"),
              "folds": data.folds_df.to_dict(orient="records"),
              "n_train_frames": int(data.folds_df.query("fold == 0")["frames"].sum()),
              "test_frame_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
              "loss": ("binary cross-entropy" if s.task == "cls" else "Dice loss, paper Eq. 1 (sums over the batch)"
                       if s.teacher is None else f"distillation: {p.kd_alpha:g} x Dice loss (paper Eq. 1) + "
                                                 f"{1 - p.kd_alpha:g} x BCE against the teacher's probabilities"),
              "units": {unit_name(r["trial"], r["fold"]): {"best_epoch": r["best_epoch"], "device": r.get("device"),
                                                             "amp": r.get("amp")} for r in records},
              "fingerprint": fp, "files": dict(RUN_FILES)}
    _write_json(config, s.run_dir / RUN_FILES["config"])  # last: the run is finished when config.json is there
    return _load_result(s, data.folds_df, trials_df, figure)


def _load_result(s: TrainSettings, folds_df, trials_df, figure: bool) -> TrainResult:
    config = json.loads((s.run_dir / RUN_FILES["config"]).read_text())
    history = pd.read_csv(s.run_dir / RUN_FILES["history"])
    summary = json.loads((s.run_dir / RUN_FILES["summary"]).read_text())
    png = save_learning_curves(s) if figure else None
    return TrainResult(s, config, history, trials_df, folds_df, summary, png, 0.0)


