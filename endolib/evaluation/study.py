"""Notebook 04: Tables 3 and 4, pairwise tests, Figures 5 and 6, and what the two-stage gate buys.

Reads ``runs/<profile>/<model>/seed<s>/predictions.npz`` for every training seed ``s`` of the profile
(``docs/layout.md``), checks that each file covers exactly the test split of the prepared dataset in index order
(refuses otherwise), reduces every (model, seed) once to per-frame statistics (:mod:`endolib.evaluation.bootstrap`) and runs
the two-level bootstrap (training seeds x test frames, frames shared by every model: ``docs/statistics.md``).
A model's number is the mean over its seeds; ``<metric>_seed_sd`` is the across-seed SD.

Definitions (see :func:`endolib.evaluation.tables.metric_definitions`):

* Table 3 (classifiers) is on **all** test frames; a frame is called positive iff ``p >= threshold``
  (0.5, or per classifier Youden's threshold *chosen on the test set itself*, which is optimistic).
* Table 4 (segmenters) is on the test frames **with** neural tissue, as in the paper, at each model's
  input size (masks resized with nearest neighbour). ``<metric>`` is the mean over images,
  ``<metric>_pooled`` pools the pixels of all images; ``auprc`` is the exact pixel-level AUPRC of the
  stored uint8 probabilities (pooled), ``auprc_image`` the mean of per-image AUPRC.
* The two-stage analysis runs on **all** test frames: a frame reaches the segmenter iff the gate
  classifier's probability is ``>= gate threshold``; a gated-out frame counts as an empty prediction.

Example:
    >>> ev = Evaluation("smoke")                                # doctest: +SKIP
    >>> ev.table3(); ev.table4(); ev.pairwise(); ev.two_stage()  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from endolib.config import CLASSIFIERS, SEGMENTERS, Profile, get_profile, study_paths
from endolib.evaluation import metrics as M
from endolib.evaluation.bootstrap import (
    CLS_METRICS,
    SEED_LEVELS,
    SEG_IMAGE_METRICS,
    SEG_POOLED_METRICS,
    ClassifierStats,
    SeedBootstrapResult,
    SegmenterStats,
    seed_bootstrap,
)
from endolib.evaluation.pairwise import (
    PAIRED_TESTS,
    PAIRWISE_COLUMNS,
    ci_width_comparison,
    pairwise_tests,
)
from endolib.evaluation.predictions import (
    Predictions,
    check_frame_ids,
    load_predictions,
    load_test_masks,
    predictions_path,
    resolve_models,
    run_command,
    split_rows,
)
from endolib.evaluation.tables import paper_comparison

__all__ = ["Evaluation", "CLUSTER_METRICS"]


#: metrics whose CI widths are compared between frame and patient resampling
CLUSTER_METRICS = {"cls": ("auroc", "accuracy", "f1"), "seg": ("dsc", "iou", "auprc")}


# -------------------------------------------------------------------------------------------- evaluation
class Evaluation:
    """Everything notebook 04 computes, from the saved predictions of every training seed of one profile.

    Args:
        profile: ``smoke``, ``quick`` or ``paper`` (or a Profile).
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        dataset: the study's dataset name (default :func:`endolib.config.dataset_name` of ``data_dir``: None for the
            phantom); predictions are read from ``runs/<profile>/<dataset>/`` and tables and figures written to
            ``results/<profile>/<dataset>/`` (:func:`endolib.config.study_paths`).
        classifiers, segmenters: registry names (None = all; each must have predictions; ``[]`` = none).
        threshold: decision threshold (default: the profile's).
        youden: use each classifier's Youden threshold (per seed, chosen on the test set: optimistic) instead.
        n_boot: bootstrap resamples (default: the profile's).
        cluster_bootstrap: resample patients instead of frames for the tables' CIs and tests.
        seeds: training seeds to read (default ``profile.training_seeds``).
        seed_level: seed level of the two-level bootstrap, ``"t"`` (default) or ``"resample"``
            (:func:`endolib.evaluation.bootstrap.combine_seeds`).
        root: repository root (default :func:`endolib.config.repo_root`).
        progress: show progress bars while loading masks.

    Example:
        >>> ev = Evaluation("smoke", classifiers=["resnet18"], segmenters=["unet"])  # doctest: +SKIP
        >>> ev.summary()                                                            # doctest: +SKIP
    """

    def __init__(self, profile: str | Profile = "smoke", data_dir=None, classifiers=None, segmenters=None,
                 threshold: float | None = None, youden: bool = False, n_boot: int | None = None,
                 cluster_bootstrap: bool = False, seeds=None, seed_level: str = "t", root=None,
                 progress: bool = True, dataset: str | None = None):
        from endolib.data.dataset import load_index

        self.profile = get_profile(profile, threshold=threshold, n_boot=n_boot)
        self.paths = study_paths(self.profile, data_dir, dataset, root)
        self.dataset = self.paths.dataset  # None: the phantom study
        self.root = self.paths.root
        self.data_dir = Path(data_dir) if data_dir is not None else self.paths.phantom
        self.youden, self.cluster, self.progress = bool(youden), bool(cluster_bootstrap), progress
        self.seeds = tuple(int(s) for s in (self.profile.training_seeds if seeds is None else seeds))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct training seeds, at least one; got {self.seeds}")
        if seed_level not in SEED_LEVELS:
            raise ValueError(f"seed_level must be one of {SEED_LEVELS}; got {seed_level!r}")
        self.seed_level = seed_level
        self.test = split_rows(load_index(self.data_dir))
        if self.test.empty:
            raise ValueError(f"{self.data_dir / 'index.csv'}: no frames in the test split")
        self.has_tissue = self.test["has_tissue"].to_numpy().astype(bool)
        self.patients = self.test["patient_id"].astype(str).to_numpy()
        names = resolve_models("cls", classifiers) + resolve_models("seg", segmenters)
        self.predictions = self._load_all(names)
        self.classifiers = [m for m in names if m in CLASSIFIERS]
        self.segmenters = [m for m in names if m in SEGMENTERS]
        self.thresholds = {m: {s: self._threshold(m, s) for s in self.seeds} for m in self.classifiers}
        self.cls_stats = {m: {s: ClassifierStats(self.has_tissue, self.predictions[m][s].probs,
                                                   self.thresholds[m][s]) for s in self.seeds}
                          for m in self.classifiers}
        self._boot = {}

    # ------------------------------------------------------------------ loading
    def missing_runs(self, names) -> list[tuple[str, int]]:
        """(model, seed) pairs among ``names`` x :attr:`seeds` without a ``predictions.npz``."""
        return [(m, s) for m in names for s in self.seeds
                if not predictions_path(m, self.profile, self.root, s, self.dataset).exists()]

    def _load_all(self, names) -> dict[str, dict[int, Predictions]]:
        """Load every (model, seed)'s predictions (all missing runs reported at once) and check their frame ids.

        Every seed's file must cover exactly the test split (so all seeds share the frame ids). Segmenters are
        reduced to per-image statistics (``self.seg_stats[model][seed]``) one run at a time and their
        probability maps released (``probs`` becomes None), so memory holds one run's maps at most.
        """
        missing = self.missing_runs(names)
        if missing:
            models = list(dict.fromkeys(m for m, _ in missing))
            lines = "\n".join(f"  {m} seed {s}: "
                              f"{predictions_path(m, self.profile, self.root, s, self.dataset).relative_to(self.root)}"
                              for m, s in missing)
            data_dir = None if self.dataset is None else self.data_dir
            cmds = "\n".join(f"  {run_command(m, self.profile, data_dir)}" for m in models)
            raise FileNotFoundError(f"{self.paths.runs}: no predictions.npz for {len(missing)} training run(s) of "
                                    f"{len(models)} model(s) (training seeds {list(self.seeds)}):\n{lines}\n"
                                    f"make them with:\n{cmds}")
        preds, masks, self.seg_stats = {}, {}, {}
        for m in names:
            preds[m] = {}
            for s in self.seeds:
                pred = load_predictions(m, self.profile, self.root, s, self.dataset)
                check_frame_ids(pred, self.test["frame_id"], str(self.data_dir / "index.csv"), self.profile)
                if pred.task == "seg":
                    if pred.size not in masks:
                        masks[pred.size] = load_test_masks(self.data_dir, self.test["frame_id"], pred.size,
                                                           self.progress)
                    self.seg_stats.setdefault(m, {})[s] = SegmenterStats.from_levels(
                        pred.probs, masks[pred.size], self.profile.threshold)
                    pred.probs = None
                preds[m][s] = pred
            sizes = {p.size for p in preds[m].values()}
            if len(sizes) != 1:
                raise ValueError(f"{self.paths.run(m)}: the training seeds of {m} predict at different sizes {sizes}")
        return preds

    def _threshold(self, model: str, seed: int) -> float:
        if not self.youden:
            return float(self.profile.threshold)
        return M.youden_threshold(self.has_tissue, self.predictions[model][seed].probs)

    def size(self, model: str) -> int:
        """Input size of a model's predictions (the same for all its seeds)."""
        return next(iter(self.predictions[model].values())).size

    # ------------------------------------------------------------------ summaries
    def summary(self) -> pd.DataFrame:
        """What is evaluated: one row per model (task, input size, seeds, test frames, with tissue, threshold)."""
        rows = [{"model": m, "task": next(iter(by_seed.values())).task, "size": self.size(m),
                 "n_seeds": len(by_seed), "seeds": " ".join(str(s) for s in by_seed),
                 "test_frames": len(self.test), "with_tissue": int(self.has_tissue.sum()),
                 "threshold": "youden per seed" if self.youden and m in self.thresholds
                 else round(float(self.profile.threshold), 4)}
                for m, by_seed in self.predictions.items()]
        return pd.DataFrame(rows)

    def groups(self, cluster: bool, keep=None):
        if not cluster:
            return None
        return self.patients if keep is None else self.patients[keep]

    def bootstrap(self, task: str, cluster: bool | None = None) -> SeedBootstrapResult:
        """Two-level bootstrap (seeds x frames, frames shared by all models) of all classifiers (all frames) or
        segmenters (frames with tissue)."""
        cluster = self.cluster if cluster is None else cluster
        key = (task, cluster)
        if key not in self._boot:
            if task == "cls":
                stats, groups = self.cls_stats, self.groups(cluster)
            else:
                stats = {m: {s: st.subset(self.has_tissue) for s, st in by_seed.items()}
                         for m, by_seed in self.seg_stats.items()}
                groups = self.groups(cluster, self.has_tissue)
            if not stats:
                raise ValueError(f"no {'classifiers' if task == 'cls' else 'segmenters'} selected")
            self._boot[key] = seed_bootstrap(stats, self.profile.n_boot, self.profile.seed, groups,
                                               seed_level=self.seed_level)
        return self._boot[key]

    def _resampling(self) -> str:
        return "patients" if self.cluster else "frames"

    def _annotate(self, t: pd.DataFrame) -> pd.DataFrame:
        t["resampling"], t["n_boot"] = self._resampling(), self.profile.n_boot
        t["seed_level"] = self.seed_level if len(self.seeds) > 1 else "none (one seed)"
        return t

    # ------------------------------------------------------------------ tables
    def table3(self, save: bool = True) -> pd.DataFrame:
        """Table 3: classifier metrics, mean over seeds, across-seed SD and two-level 95% CIs
        -> ``results/<profile>/table3_classifiers.csv``."""
        t = self.bootstrap("cls").table(CLS_METRICS)
        t.insert(2, "threshold", [float(np.mean(list(self.thresholds[m].values()))) for m in t["model"]])
        t.insert(3, "threshold_rule", "youden per seed (test set)" if self.youden else "fixed")
        t.insert(4, "n_frames", len(self.test))
        t.insert(5, "n_positive", int(self.has_tissue.sum()))
        t = self._annotate(t)
        if save:
            self._write(t, "table3_classifiers.csv")
        return t

    def table3_by_seed(self, save: bool = True) -> pd.DataFrame:
        """Table 3 per training seed (frame-bootstrap CIs) -> ``table3_classifiers_by_seed.csv``."""
        t = self.bootstrap("cls").seed_table(CLS_METRICS)
        t.insert(2, "threshold", [self.thresholds[m][s] for m, s in zip(t["model"], t["seed"])])
        t.insert(3, "n_frames", len(self.test))
        t["resampling"], t["n_boot"] = self._resampling(), self.profile.n_boot
        if save:
            self._write(t, "table3_classifiers_by_seed.csv")
        return t

    def table4(self, save: bool = True) -> pd.DataFrame:
        """Table 4: segmenter metrics (mean over images and pooled), mean over seeds, across-seed SD and two-level
        95% CIs -> ``table4_segmenters.csv``."""
        t = self.bootstrap("seg").table(SEG_IMAGE_METRICS + SEG_POOLED_METRICS)
        t.insert(2, "size", [self.size(m) for m in t["model"]])
        t.insert(3, "n_frames", int(self.has_tissue.sum()))
        t.insert(4, "threshold", float(self.profile.threshold))
        t = self._annotate(t)
        if save:
            self._write(t, "table4_segmenters.csv")
        return t

    def table4_by_seed(self, save: bool = True) -> pd.DataFrame:
        """Table 4 per training seed (frame-bootstrap CIs) -> ``table4_segmenters_by_seed.csv``."""
        t = self.bootstrap("seg").seed_table(SEG_IMAGE_METRICS + SEG_POOLED_METRICS)
        t.insert(2, "size", [self.size(m) for m in t["model"]])
        t.insert(3, "n_frames", int(self.has_tissue.sum()))
        t["resampling"], t["n_boot"] = self._resampling(), self.profile.n_boot
        if save:
            self._write(t, "table4_segmenters_by_seed.csv")
        return t

    def pairwise(self, save: bool = True) -> pd.DataFrame:
        """Two-level paired bootstrap tests (Holm per metric) for every model pair; DeLong per seed for AUROC."""
        parts = []
        if len(self.classifiers) > 1:
            parts.append(pairwise_tests(self.bootstrap("cls"), PAIRED_TESTS["cls"], "cls", self.cls_stats))
        if len(self.segmenters) > 1:
            parts.append(pairwise_tests(self.bootstrap("seg"), PAIRED_TESTS["seg"], "seg"))
        t = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIRWISE_COLUMNS)
        t["resampling"] = self._resampling()
        if save:
            self._write(t, "pairwise_tests.csv")
        return t

    def cluster_comparison(self) -> pd.DataFrame:
        """Two-level CI widths with frames vs patients resampled (the cluster bootstrap), for the primary metrics."""
        parts = []
        for task, models in (("cls", self.classifiers), ("seg", self.segmenters)):
            if models:
                t = ci_width_comparison(self.bootstrap(task, False), self.bootstrap(task, True),
                                          CLUSTER_METRICS[task])
                parts.append(t)
        out = pd.concat(parts, ignore_index=True)
        out.insert(2, "n_patients", len(np.unique(self.patients)))
        return out

    def paper_comparison(self, which: str) -> pd.DataFrame:
        """Our Table 3 or 4 beside the paper's (phantom vs clinical data)."""
        ours = self.table3(save=False) if which == "table3" else self.table4(save=False)
        return paper_comparison(ours, which)

    def _write(self, table: pd.DataFrame, name: str) -> Path:
        from endolib.repro import write_table

        return write_table(table, self.paths.results / name)
