"""Bootstrap confidence intervals over frames (or patients) and training seeds, paired across models.

Fast because nothing is recomputed from pixels: each model is reduced once to per-image statistics
(:class:`SegmenterStats`: confusion counts and 256-bin score histograms; :class:`ClassifierStats`:
label and score per frame). A bootstrap resample is a vector of weights (how often each frame was
drawn), so every resampled metric is a weighted sum of per-image statistics: one matrix product for all
resamples. The same weights are used for every model, so model differences are *paired*.

Resampling draws frame indices exactly like ``scipy.stats.bootstrap`` (``rng.integers(0, n, (n_boot, n))``
with ``rng = np.random.default_rng(seed)``) and the percentile interval uses the same quantile rule, so
the percentile CI of a statistic agrees with ``scipy.stats.bootstrap(..., method="percentile")``.
With ``groups`` (patient ids) whole patients are resampled instead (a cluster bootstrap).

Training seeds (:func:`seed_bootstrap`): every (model, seed) is scored on the same frame resamples, then
:func:`combine_seeds` adds the seed level per model (a t(K - 1) draw scaled by the across-seed SE, or seeds
resampled with replacement): the two-level bootstrap of ``docs/statistics.md``. With one seed it is the frame
bootstrap above, number for number.

Layering: this module builds on :mod:`endolib.evaluation.metrics` (definitions, never the reverse); its speed is
measured by ``python -m endolib bench stats`` (:mod:`endolib.evaluation.bench`).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0); y = np.arange(60) % 2; s = np.clip(0.3 * y + rng.random(60) * 0.7, 0, 1)
    >>> boot = bootstrap({"a": ClassifierStats(y, s)}, n_boot=200, seed=0)
    >>> round(boot.estimates["a"]["auroc"], 3), boot.samples["a"]["auroc"].shape
    (0.756, (200,))

Why this length: the per-frame statistics of a classifier and of a segmenter, the frame/cluster resampling and the
two-level seed combination share their sample layout and are only correct together (pairwise tests, which read
them, live in :mod:`endolib.evaluation.pairwise`).
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np

from endolib.evaluation import metrics as M
from endolib.paper import TABLE3_METRICS, TABLE4_METRICS

__all__ = ["CI_LEVEL", "CHUNK_FRAMES", "bootstrap_indices", "resample_weights", "percentile_ci", "weighted_mean",
           "level_cut", "ClassifierStats", "SegmenterStats", "BootstrapResult", "bootstrap", "SEG_IMAGE_METRICS",
           "SEG_POOLED_METRICS", "CLS_METRICS", "SEED_LEVELS", "SEED_STREAM", "seed_rng", "combine_seeds",
           "metric_samples", "SeedBootstrapResult", "seed_bootstrap", "clip_ci"]


#: two-sided confidence level of every interval
CI_LEVEL = 0.95
#: frames per chunk when reducing pixel arrays to per-image statistics (bounds temporary memory)
CHUNK_FRAMES = 32
#: seed level of the two-level bootstrap (docs/statistics.md): ``"t"`` = each model's seed mean is moved by
#: ``sd_seeds / sqrt(K) * T`` with ``T ~ t(K - 1)`` (default); ``"resample"`` = K seeds drawn with replacement
SEED_LEVELS = ("t", "resample")
#: second entropy word of the seed-level generator, so the frame resamples stay exactly the one-seed ones
SEED_STREAM = 14


#: classifier metrics (Table 3): AUROC from the scores, the rest at the decision threshold
CLS_METRICS = TABLE3_METRICS
#: segmenter metrics averaged over images (Table 4 names; ``auprc_image`` = mean of per-image AP)
SEG_IMAGE_METRICS = tuple(m for m in TABLE4_METRICS if m != "auprc") + ("auprc_image",)
#: segmenter metrics pooled over all pixels (``auprc`` is the exact pixel-level AUPRC)
SEG_POOLED_METRICS = tuple(f"{m}_pooled" for m in TABLE4_METRICS if m != "auprc") + ("auprc",)


# ----------------------------------------------------------------------------------------- resampling
def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled indices ``(n_boot, n)``, drawn exactly as ``scipy.stats.bootstrap`` draws them.

    Example:
        >>> bootstrap_indices(3, 2, np.random.default_rng(0)).shape
        (2, 3)
    """
    return rng.integers(0, n, (n_boot, n))


def _row_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items occurs in each row of ``idx`` -> float64 ``(rows, n)``."""
    rows = idx.shape[0]
    flat = idx + n * np.arange(rows, dtype=np.int64)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def resample_weights(n: int, n_boot: int, seed: int, groups=None) -> np.ndarray:
    """Bootstrap resamples as frame weights ``(n_boot, n)``: how often each frame is in each resample.

    Args:
        n: number of frames.
        n_boot: number of resamples.
        seed: seed of ``np.random.default_rng``.
        groups: optional cluster label per frame (e.g. patient id): resample whole clusters (each drawn
            cluster contributes all its frames), so a resample has a varying number of frames.

    Example:
        >>> w = resample_weights(4, 3, seed=0)
        >>> w.shape, w.sum(axis=1).tolist()
        ((3, 4), [4.0, 4.0, 4.0])
        >>> wc = resample_weights(4, 2, 0, groups=["a", "a", "b", "b"])  # whole patients: equal within a group
        >>> bool((wc[:, 0] == wc[:, 1]).all() and (wc[:, 2] == wc[:, 3]).all()), wc.sum(1).tolist()
        (True, [4.0, 4.0])
    """
    if n_boot < 1 or n < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1; got n={n}, n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    if groups is None:
        return _row_counts(bootstrap_indices(n, n_boot, rng), n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have one label per frame ({n}); got shape {groups.shape}")
    _, member = np.unique(groups, return_inverse=True)
    n_groups = int(member.max()) + 1
    return _row_counts(bootstrap_indices(n_groups, n_boot, rng), n_groups)[:, member]


def percentile_ci(samples, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (linear quantiles, as ``scipy.stats.bootstrap``).

    NaN samples (a metric undefined on some resample) are left out with a warning; all NaN -> (NaN, NaN).

    Example:
        >>> percentile_ci(np.arange(101.0), 0.5)
        (25.0, 75.0)
    """
    s = np.asarray(samples, dtype=np.float64).ravel()
    bad = np.isnan(s)
    if bad.all():
        return float("nan"), float("nan")
    if bad.any():
        warnings.warn(f"{int(bad.sum())} of {s.size} bootstrap resamples gave an undefined value and are "
                      f"left out of the interval", M.UndefinedMetricWarning, stacklevel=2)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(s[~bad], [alpha, 1 - alpha])
    return float(lo), float(hi)


def weighted_mean(values, weights=None) -> np.ndarray:
    """Mean of per-image values under frame weights; NaN values are left out (mean over defined images).

    Args:
        values: ``(N,)`` per-image values (NaN = undefined for that image).
        weights: ``(B, N)`` resample weights, or None for the plain mean.

    Example:
        >>> weighted_mean(np.array([1.0, np.nan, 3.0]), np.array([[1, 1, 1], [0, 2, 1]])).tolist()
        [2.0, 3.0]
    """
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    w = np.ones((1, v.size)) if weights is None else np.asarray(weights, dtype=np.float64)
    num, den = w @ np.where(ok, v, 0.0), w @ ok.astype(np.float64)
    out = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
    return out[0] if weights is None else out


def _weighted_sum(values, weights):
    v = np.asarray(values, dtype=np.float64)
    return v.sum(0) if weights is None else weights @ v


def level_cut(threshold: float) -> int:
    """Smallest uint8 level ``k`` with ``k / 255 >= threshold`` (a stored probability is positive iff ``>= k``).

    Example:
        >>> level_cut(0.5), level_cut(0.0), level_cut(1.0)
        (128, 0, 255)
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]; got {threshold}")
    return int(np.searchsorted(np.arange(M.N_LEVELS) / (M.N_LEVELS - 1), threshold, side="left"))


# ---------------------------------------------------------------------------------- per-image statistics
@dataclass
class ClassifierStats:
    """A classifier's test predictions: label and score per frame, and the decision threshold.

    Args:
        y_true: ``(N,)`` 0/1 labels (frame has neural tissue).
        score: ``(N,)`` predicted probability.
        threshold: predict positive iff ``score >= threshold``.

    Example:
        >>> ClassifierStats([0, 1], [0.2, 0.7]).metrics()["accuracy"]
        1.0
    """

    y_true: np.ndarray
    score: np.ndarray
    threshold: float = 0.5

    def __post_init__(self):
        self.y_true = M._as_binary(self.y_true, "y_true").ravel()
        self.score = np.asarray(self.score, dtype=np.float64).ravel()
        if self.y_true.shape != self.score.shape:
            raise ValueError(f"y_true and score lengths differ: {self.y_true.shape} vs {self.score.shape}")
        if np.isnan(self.score).any():
            raise ValueError("classifier scores contain NaN")
        self._bins, self._bin_of = np.unique(self.score, return_inverse=True)

    @property
    def n(self) -> int:
        return self.y_true.size

    def counts(self) -> M.SegCounts:
        """Per-frame 0/1 confusion counts at the threshold."""
        return M.counts_from_labels(self.y_true, self.score >= self.threshold)

    def histograms(self, weights=None) -> tuple[np.ndarray, np.ndarray]:
        """(Weighted) positive and negative counts per distinct score, ascending: ``(U,)`` or ``(B, U)``."""
        y = self.y_true.astype(np.float64)
        if weights is None:
            pos = np.bincount(self._bin_of, weights=y, minlength=self._bins.size)
            return pos, np.bincount(self._bin_of, minlength=self._bins.size) - pos
        order = np.argsort(self._bin_of, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(self._bin_of[order]) > 0])
        w = np.asarray(weights, dtype=np.float64)[:, order]
        pos = np.add.reduceat(w * y[order], starts, axis=1)
        return pos, np.add.reduceat(w, starts, axis=1) - pos

    def metrics(self, weights=None, names=CLS_METRICS) -> dict[str, np.ndarray | float]:
        """Table 3 metrics: floats (weights None) or ``(B,)`` arrays for resample weights ``(B, N)``."""
        out = {}
        if "auroc" in names:
            out["auroc"] = M.auc_from_hist(*self.histograms(weights))
        rest = [m for m in names if m != "auroc"]
        if rest:
            c = self.counts()
            sums = [_weighted_sum(x, weights) for x in c]
            out.update(M.confusion_metrics(*sums, names=rest))
        return {m: (float(v) if weights is None else v) for m, v in ((m, out[m]) for m in names)}


@dataclass
class SegmenterStats:
    """A segmenter reduced to per-image statistics: confusion counts at the threshold and score histograms.

    Build it with :meth:`from_levels`; index it with :meth:`subset` (e.g. frames with tissue only).

    Example:
        >>> lv = np.array([[[255, 0], [200, 10]]], np.uint8); t = np.array([[[1, 0], [0, 0]]])
        >>> st = SegmenterStats.from_levels(lv, t)
        >>> st.tp.tolist(), st.fp.tolist(), round(st.metrics()["auprc"], 3)
        ([1], [1], 1.0)
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    pos_hist: np.ndarray
    neg_hist: np.ndarray
    threshold: float = 0.5

    @classmethod
    def from_levels(cls, levels, target, threshold: float = 0.5, chunk: int = CHUNK_FRAMES) -> "SegmenterStats":
        """Reduce uint8 probability maps ``(N, S, S)`` and masks ``(N, S, S)`` to per-image statistics.

        Args:
            levels: stored probabilities ``round(255 * p)``, uint8.
            target: ground-truth masks, boolean or 0/1, same shape.
            threshold: probability threshold of the binary prediction (``p >= threshold``).
            chunk: frames processed at a time.
        """
        levels, target = np.asarray(levels), np.asarray(target)
        if levels.shape != target.shape or levels.ndim != 3:
            raise ValueError(f"need levels and target of the same shape (N, H, W); got {levels.shape} and "
                             f"{target.shape}")
        parts = [M.score_histograms(levels[i:i + chunk], target[i:i + chunk])
                 for i in range(0, levels.shape[0], chunk)]
        if not parts:
            raise ValueError("no frames to evaluate")
        pos, neg = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        # the confusion counts at the threshold follow from the histograms: positive iff level >= cut
        cut = level_cut(threshold)
        counts = (pos[:, cut:].sum(1), neg[:, cut:].sum(1), pos[:, :cut].sum(1), neg[:, :cut].sum(1))
        return cls(*counts, pos, neg, threshold)

    @property
    def n(self) -> int:
        return self.tp.size

    def subset(self, keep) -> "SegmenterStats":
        """The statistics of the frames selected by a boolean mask or index array."""
        return SegmenterStats(self.tp[keep], self.fp[keep], self.fn[keep], self.tn[keep],
                              self.pos_hist[keep], self.neg_hist[keep], self.threshold)

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image metric values ``(N,)``; NaN where a metric is undefined on an image (no warning here)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", M.UndefinedMetricWarning)
            vals = M.confusion_metrics(self.tp, self.fp, self.fn, self.tn,
                                       names=[m for m in SEG_IMAGE_METRICS if m != "auprc_image"])
            vals["auprc_image"] = M.ap_from_hist(self.pos_hist, self.neg_hist)
        return vals

    def metrics(self, weights=None, names=None) -> dict[str, np.ndarray | float]:
        """Table 4 metrics, mean over images (``dsc`` ...) and pooled over pixels (``dsc_pooled`` ..., ``auprc``).

        Per-image values that are undefined (e.g. precision of an empty prediction) are left out of the
        mean, with an :class:`~endolib.evaluation.metrics.UndefinedMetricWarning` saying how many.

        Args:
            weights: ``(B, N)`` resample weights, or None for the estimate on the data as given.
            names: subset of :data:`SEG_IMAGE_METRICS` + :data:`SEG_POOLED_METRICS` (default: all).
        """
        names = SEG_IMAGE_METRICS + SEG_POOLED_METRICS if names is None else tuple(names)
        unknown = sorted(set(names) - set(SEG_IMAGE_METRICS) - set(SEG_POOLED_METRICS))
        if unknown:
            raise ValueError(f"unknown segmenter metric(s) {unknown}")
        out = {}
        image = [m for m in names if m in SEG_IMAGE_METRICS]
        if image:
            per_image = self.per_image()
            for m in image:
                bad = int(np.isnan(per_image[m]).sum())
                if bad and weights is None:
                    warnings.warn(f"per-image {m} undefined for {bad} of {self.n} images; they are left out "
                                  f"of the mean", M.UndefinedMetricWarning, stacklevel=2)
                out[m] = weighted_mean(per_image[m], weights)
        pooled = [m for m in names if m in SEG_POOLED_METRICS]
        if pooled:
            sums = [_weighted_sum(x, weights) for x in (self.tp, self.fp, self.fn, self.tn)]
            base = [m[: -len("_pooled")] for m in pooled if m != "auprc"]
            vals = M.confusion_metrics(*sums, names=base)
            out.update({f"{m}_pooled": v for m, v in vals.items()})
            if "auprc" in pooled:
                out["auprc"] = M.ap_from_hist(_weighted_sum(self.pos_hist, weights),
                                              _weighted_sum(self.neg_hist, weights))
        return {m: (float(out[m]) if weights is None else out[m]) for m in names}


# ------------------------------------------------------------------------------------------- bootstrap
@dataclass
class BootstrapResult:
    """Point estimates, bootstrap samples and percentile CIs of several models on shared resamples."""

    estimates: dict  # model -> metric -> float
    samples: dict  # model -> metric -> (n_boot,) array
    n_boot: int
    seed: int
    level: float = CI_LEVEL
    cluster: bool = False
    n_frames: int = 0
    n_clusters: int | None = None
    cis: dict = field(default_factory=dict)  # model -> metric -> (lo, hi), filled lazily

    def ci(self, model: str, metric: str) -> tuple[float, float]:
        """Percentile CI of one model's metric."""
        key = (model, metric)
        if key not in self.cis:
            self.cis[key] = percentile_ci(self.samples[model][metric], self.level)
        return self.cis[key]

    def table(self, metrics=None):
        """One row per model: ``model``, then ``<metric>, <metric>_lo, <metric>_hi`` for each metric."""
        import pandas as pd

        rows = []
        for model, est in self.estimates.items():
            row = {"model": model}
            for m in metrics or est.keys():
                lo, hi = self.ci(model, m)
                row.update({m: est[m], f"{m}_lo": lo, f"{m}_hi": hi})
            rows.append(row)
        return pd.DataFrame(rows)


def bootstrap(stats: dict, n_boot: int, seed: int, groups=None, level: float = CI_LEVEL,
              names=None, weights_chunk: int | None = None) -> BootstrapResult:
    """Paired bootstrap of several models evaluated on the same frames.

    Args:
        stats: model name -> :class:`ClassifierStats` or :class:`SegmenterStats` (same frames, same order).
        n_boot: number of resamples.
        seed: resampling seed (identical resamples for every model: differences are paired).
        groups: optional cluster label (patient id) per frame for a cluster bootstrap.
        level: confidence level of the percentile intervals.
        names: metric names passed to each ``stats.metrics`` (default: all of that kind).
        weights_chunk: resamples processed at a time (default: all at once).

    Example:
        >>> y = np.r_[np.zeros(20), np.ones(20)]; s = np.linspace(0, 1, 40)
        >>> b = bootstrap({"m": ClassifierStats(y, s)}, n_boot=100, seed=1)
        >>> b.samples["m"]["auroc"].shape, b.ci("m", "auroc")[1]
        ((100,), 1.0)
    """
    if not stats:
        raise ValueError("no models to bootstrap")
    sizes = {m: s.n for m, s in stats.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"models are not evaluated on the same frames: frame counts {sizes}")
    n = next(iter(sizes.values()))
    weights = resample_weights(n, n_boot, seed, groups)
    chunk = weights_chunk or n_boot
    estimates, samples = {}, {}
    for model, st in stats.items():
        kwargs = {} if names is None else {"names": names}
        estimates[model] = st.metrics(None, **kwargs)
        parts = [st.metrics(weights[i:i + chunk], **kwargs) for i in range(0, n_boot, chunk)]
        samples[model] = {m: np.concatenate([p[m] for p in parts]) for m in estimates[model]}
    n_clusters = None if groups is None else int(np.unique(np.asarray(groups)).size)
    return BootstrapResult(estimates, samples, n_boot, seed, level, groups is not None, n, n_clusters)


# --------------------------------------------------------------------------- two-level (seeds x frames) bootstrap
def clip_ci(lo: float, hi: float, bounds=(0.0, 1.0)) -> tuple[float, float]:
    """Intersect an interval with the range of the parameter (every metric of Tables 3/4 lies in [0, 1]).

    A confidence set intersected with the parameter space keeps its coverage; only the seed level's t tails
    (two or three seeds) can reach past the range.

    Example:
        >>> clip_ci(-0.2, 0.7)
        (0.0, 0.7)
    """
    if np.isnan(lo) or np.isnan(hi):
        return lo, hi
    return float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))


def seed_rng(seed: int, model: str) -> np.random.Generator:
    """Generator of one model's seed-level draws: fixed by the data seed and the model name only.

    Independent of the frame resamples (another entropy word) and of which other models are evaluated.

    Example:
        >>> float(seed_rng(42, "unet").random()) == float(seed_rng(42, "unet").random())
        True
    """
    return np.random.default_rng([int(seed), SEED_STREAM, zlib.crc32(model.encode())])


def combine_seeds(seed_estimates, seed_samples, rng: np.random.Generator | None = None,
                  seed_level: str = "t") -> tuple[float, np.ndarray]:
    """Two-level bootstrap of a mean over training seeds, from each seed's frame-bootstrap samples.

    ``seed_samples[k, b]`` is seed ``k``'s metric on frame resample ``b`` (the same frame weights for every
    seed and model). The estimate is the mean over seeds; resample ``b`` of it is

    * ``"t"``: ``mean_k x[k, b] + sd_k x[k, b] / sqrt(K) * T_b`` with ``T_b ~ t(K - 1)`` (the exact
      distribution of a mean of K normal seed effects; K = 3 seeds give the +-4.30 SE of a t(2) interval);
    * ``"resample"``: ``mean_k x[s_bk, b]`` with ``s_b`` K seeds drawn with replacement (the plain two-level
      bootstrap; with few seeds it cannot leave the range of the seeds and is too narrow).

    With one seed both reduce to the frame bootstrap (``seed_samples[0]``, no draw).

    Args:
        seed_estimates: ``(K,)`` per-seed estimates.
        seed_samples: ``(K, B)`` per-seed frame-bootstrap samples.
        rng: generator of the seed-level draws (e.g. :func:`seed_rng`); unused for K = 1.
        seed_level: ``"t"`` or ``"resample"``.

    Returns:
        ``(estimate, samples (B,))``.

    Example:
        >>> est, s = combine_seeds([0.8], np.array([[0.79, 0.81]]))
        >>> est, s.tolist()
        (0.8, [0.79, 0.81])
    """
    if seed_level not in SEED_LEVELS:
        raise ValueError(f"seed_level must be one of {SEED_LEVELS}; got {seed_level!r}")
    est = np.asarray(seed_estimates, dtype=np.float64).ravel()
    x = np.atleast_2d(np.asarray(seed_samples, dtype=np.float64))
    if x.shape[0] != est.size:
        raise ValueError(f"{est.size} seed estimates but samples for {x.shape[0]} seeds")
    k, n_boot = x.shape
    if k == 1:
        return float(est[0]), x[0].copy()
    if rng is None:
        raise ValueError("combine_seeds needs an rng for more than one seed")
    if seed_level == "t":
        t = rng.standard_t(k - 1, size=n_boot)
        samples = x.mean(0) + x.std(0, ddof=1) / np.sqrt(k) * t
    else:
        pick = rng.integers(0, k, (n_boot, k))
        samples = np.take_along_axis(x.T, pick, axis=1).mean(1)
    return float(est.mean()), samples


def metric_samples(st, weights, names=None, chunk: int | None = None) -> tuple[dict, dict]:
    """One model's metrics on the data as given and on each resample: ``(estimates, samples)``."""
    kwargs = {} if names is None else {"names": names}
    chunk = chunk or weights.shape[0]
    estimates = st.metrics(None, **kwargs)
    parts = [st.metrics(weights[i:i + chunk], **kwargs) for i in range(0, weights.shape[0], chunk)]
    return estimates, {m: np.concatenate([p[m] for p in parts]) for m in estimates}


@dataclass
class SeedBootstrapResult(BootstrapResult):
    """A :class:`BootstrapResult` over training seeds: ``estimates``/``samples`` are the two-level ones (mean
    over seeds); ``seed_estimates``/``seed_samples`` (model -> seed -> metric) the per-seed frame bootstrap."""

    seed_estimates: dict = field(default_factory=dict)
    seed_samples: dict = field(default_factory=dict)
    seed_level: str = "t"

    def ci(self, model: str, metric: str) -> tuple[float, float]:
        """Two-level percentile CI of one model's metric (clipped to [0, 1])."""
        key = (model, metric)
        if key not in self.cis:
            self.cis[key] = clip_ci(*percentile_ci(self.samples[model][metric], self.level))
        return self.cis[key]

    def seeds(self, model: str) -> list[int]:
        return list(self.seed_estimates[model])

    def seed_sd(self, model: str, metric: str) -> float:
        """Across-seed SD (ddof 1) of the per-seed estimates; NaN with one seed."""
        v = np.array([e[metric] for e in self.seed_estimates[model].values()], dtype=np.float64)
        return float(np.std(v, ddof=1)) if v.size > 1 else float("nan")

    def seed_ci(self, model: str, seed: int, metric: str) -> tuple[float, float]:
        """Frame-bootstrap CI of one training seed's metric."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", M.UndefinedMetricWarning)
            return percentile_ci(self.seed_samples[model][seed][metric], self.level)

    def table(self, metrics=None):
        """One row per model: ``model``, ``n_seeds``, then ``<m>, <m>_lo, <m>_hi, <m>_seed_sd`` per metric."""
        import pandas as pd

        rows = []
        for model, est in self.estimates.items():
            row = {"model": model, "n_seeds": len(self.seed_estimates[model])}
            for m in metrics or est.keys():
                lo, hi = self.ci(model, m)
                row.update({m: est[m], f"{m}_lo": lo, f"{m}_hi": hi, f"{m}_seed_sd": self.seed_sd(model, m)})
            rows.append(row)
        return pd.DataFrame(rows)

    def seed_table(self, metrics=None):
        """Long table: one row per (model, seed) with the frame-bootstrap CI of every metric."""
        import pandas as pd

        rows = []
        for model, by_seed in self.seed_estimates.items():
            for s, est in by_seed.items():
                row = {"model": model, "seed": int(s)}
                for m in metrics or est.keys():
                    lo, hi = self.seed_ci(model, s, m)
                    row.update({m: est[m], f"{m}_lo": lo, f"{m}_hi": hi})
                rows.append(row)
        return pd.DataFrame(rows)


def seed_bootstrap(stats: dict, n_boot: int, seed: int, groups=None, level: float = CI_LEVEL, names=None,
                   seed_level: str = "t", weights_chunk: int | None = None) -> SeedBootstrapResult:
    """Two-level bootstrap of several models, each trained with several seeds, on the same test frames.

    Frame (or patient) resamples are one set of weights shared by every model and seed, so differences stay
    paired on frames; per seed the metric of every resample comes from the per-image statistics (one matrix
    product), then :func:`combine_seeds` adds the seed level, drawn independently per model (different
    models' seeds are independent training runs). See ``docs/statistics.md``.

    Args:
        stats: model -> training seed -> :class:`ClassifierStats` / :class:`SegmenterStats` (same frames).
        n_boot, seed, groups, level, names, weights_chunk: as for :func:`bootstrap` (``seed`` = data seed).
        seed_level: ``"t"`` (default) or ``"resample"`` (see :func:`combine_seeds`).

    Example:
        >>> y = np.r_[np.zeros(20), np.ones(20)]; rng = np.random.default_rng(0)
        >>> st = {s: ClassifierStats(y, np.clip(0.3 * y + 0.7 * rng.random(40), 0, 1)) for s in (42, 43, 44)}
        >>> b = seed_bootstrap({"m": st}, n_boot=100, seed=1)
        >>> b.samples["m"]["auroc"].shape, len(b.seed_estimates["m"]), b.table(["auroc"])["n_seeds"].item()
        ((100,), 3, 3)
    """
    if not stats:
        raise ValueError("no models to bootstrap")
    sizes = {(m, s): st.n for m, by_seed in stats.items() for s, st in by_seed.items()}
    empty = [m for m, by_seed in stats.items() if not by_seed]
    if empty:
        raise ValueError(f"no training seeds for {empty}")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"models/seeds are not evaluated on the same frames: frame counts {sizes}")
    n = next(iter(sizes.values()))
    weights = resample_weights(n, n_boot, seed, groups)
    estimates, samples, seed_est, seed_smp = {}, {}, {}, {}
    for model, by_seed in stats.items():
        seed_est[model], seed_smp[model] = {}, {}
        for s, st in by_seed.items():
            seed_est[model][s], seed_smp[model][s] = metric_samples(st, weights, names, weights_chunk)
        rng = seed_rng(seed, model)
        estimates[model], samples[model] = {}, {}
        for m in next(iter(seed_est[model].values())):
            estimates[model][m], samples[model][m] = combine_seeds(
                [seed_est[model][s][m] for s in by_seed], np.stack([seed_smp[model][s][m] for s in by_seed]),
                rng, seed_level)
    n_clusters = None if groups is None else int(np.unique(np.asarray(groups)).size)
    return SeedBootstrapResult(estimates, samples, n_boot, seed, level, groups is not None, n, n_clusters,
                               seed_estimates=seed_est, seed_samples=seed_smp, seed_level=seed_level)
