"""How many training seeds would decide a claim: the ``seeds_to_decide`` and ``power_note`` columns of
``paper_claims.csv`` (docs/statistics.md, "Planning your own study").

A claim's verdict comes from the two-level bootstrap of its deciding comparison ``d = A - B``:
``d_b = f_b + seed level``, where ``f_b`` is the frame-level draw (each model's mean over its seeds on frame
resample ``b``, paired on frames across models) and the seed level of each model is ``sd / sqrt(K) * T`` with
``T ~ t(K - 1)``. With more seeds only the seed level shrinks (as ``t_{K-1} / sqrt(K)``); the frame level is the
test set's and shrinks only with more test frames (or patients), roughly as ``1 / sqrt(n)``.

:func:`seeds_to_decide` keeps everything measured where it is (the frame-level draws ``f_b``, the estimate and
the seed SD of every model) and asks for which number of seeds ``K`` per model the same rule as the verdict
(:func:`endolib.evaluation.pairwise.tail_pvalues`: the 95% percentile CI on one side) would decide the claim.
:func:`frames_to_decide` answers the same question for test frames when no number of seeds decides.

Example:
    >>> f = np.random.default_rng(0).normal(0.03, 0.005, 2000)  # frame-level draws of A - B around 0.03
    >>> seeds_to_decide(f, 0.03, [0.02, 0.02], "above", n_seeds=3)  # seed SD 0.02 per model: 3 seeds do not
    (7, '7 seeds would reproduce it')
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from endolib.evaluation.pairwise import tail_pvalues

__all__ = ["K_MAX", "POWER_STREAM", "decision", "seed_level_draws", "frames_to_decide", "seeds_to_decide"]


#: the largest number of seeds per model searched
K_MAX = 200
#: entropy word of the generator of the projected seed level (another stream than the verdict's seed level)
POWER_STREAM = 24
_VERB = {"reproduced": "reproduce", "contradicted": "contradict"}
#: frames_to_decide searches up to this many times the test frames
_FRAMES_MAX = 1e6


def decision(samples, kind: str, margin: float = 0.0, alpha: float = 0.05) -> str | None:
    """``"reproduced"``, ``"contradicted"`` or None: the verdict rule of one comparison at level ``alpha``.

    The p-value form of :func:`endolib.evaluation.pairwise.tail_pvalues` (``p < alpha`` <=> the ``1 - alpha``
    percentile CI lies on that side), as the verdict uses it.

    Example:
        >>> decision(np.linspace(0.01, 0.03, 100), "above"), decision(np.linspace(-0.01, 0.03, 100), "above")
        ('reproduced', None)
    """
    p_rep, p_con = tail_pvalues(samples, kind, margin)
    if p_rep < alpha:
        return "reproduced"
    if p_con < alpha:
        return "contradicted"
    return None


def seed_level_draws(n_terms: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """Uniform draws ``(n_terms, n_boot)`` behind the projected seed level: one row per model (one independent
    t draw each); ``T = t.ppf(U, K - 1)`` turns them into t(K - 1) draws for any K, so every K uses the same
    random numbers (common random numbers: the decision changes smoothly with K). Deterministic in ``seed``.

    Example:
        >>> seed_level_draws(2, 3, seed=42).shape, bool((seed_level_draws(1, 5) == seed_level_draws(1, 5)).all())
        ((2, 3), True)
    """
    rng = np.random.default_rng([int(seed), POWER_STREAM, int(n_terms)])
    return rng.uniform(np.finfo(np.float64).tiny, 1.0, size=(n_terms, n_boot))


def _boundary(estimate: float, kind: str, margin: float) -> float:
    return 0.0 if kind == "above" else math.copysign(margin, estimate)


def frames_to_decide(frame_samples, estimate: float, kind: str, margin: float = 0.0,
                     alpha: float = 0.05) -> float:
    """How many times the test frames would decide a comparison with no seed level, the estimate staying put.

    The frame-level draws are shrunk around the estimate as ``1 / sqrt(factor)`` (a bootstrap SD of a mean over
    ``n`` frames scales as ``1 / sqrt(n)``); the answer is the smallest ``factor >= 1`` (to 1%) at which
    :func:`decision` decides, ``inf`` when the estimate sits on the boundary (no amount of data decides it).

    Args:
        frame_samples: ``(B,)`` frame-level bootstrap draws of ``d`` (mean over seeds, paired on frames).
        estimate: the point estimate of ``d``.
        kind: ``"above"`` or ``"equivalent"``.
        margin: equivalence margin (ignored for "above").
        alpha: the level the comparison is judged at.

    Example:
        >>> f = 0.01 + np.random.default_rng(1).normal(0, 0.01, 2000)  # SE 0.01 around 0.01: CI straddles 0
        >>> round(frames_to_decide(f, 0.01, "above"), 1)  # about (1.96 * 0.01 / 0.01) ** 2 = 3.8x
        3.8
    """
    f = np.asarray(frame_samples, dtype=np.float64)
    if decision(f, kind, margin, alpha) is not None:
        return 1.0
    if not np.isfinite(estimate) or estimate == _boundary(estimate, kind, margin):
        return math.inf

    def decides(factor):
        return decision(estimate + (f - estimate) / math.sqrt(factor), kind, margin, alpha) is not None

    lo, hi = 1.0, 2.0
    while not decides(hi):
        lo, hi = hi, hi * 2
        if hi > _FRAMES_MAX:
            return math.inf
    while hi / lo > 1.01:  # bisection on the log scale
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if decides(mid) else (mid, hi)
    return hi


def _times(factor: float) -> str:
    return f"{math.ceil(factor * 10) / 10:g}" if factor < 10 else f"{math.ceil(factor):d}"


def seeds_to_decide(frame_samples, estimate: float, seed_sds, kind: str, margin: float = 0.0,
                    n_comparisons: int = 1, n_seeds: int = 2, decided: bool = False, alpha: float = 0.05,
                    k_max: int = K_MAX, seed: int = 0) -> tuple[float, str]:
    """Training seeds per model at which a comparison would be decided, everything measured staying where it is.

    For ``K = 2, 3, ...`` the projected bootstrap distribution of ``d`` is
    ``f_b + sum_j sd_j / sqrt(K) * T_jb`` with ``T_jb ~ t(K - 1)`` independent per model ``j`` (drawn from
    :func:`seed_level_draws`, deterministic), judged by :func:`decision` at ``alpha / n_comparisons``
    (Holm's threshold for the comparison with the smallest p-value, the worst case of a family: a comparison
    passing it passes Holm wherever it stands in the family). The frame-level draws ``f_b`` stay as measured (more
    seeds average per-seed frame noise a little further, so the answer errs towards more seeds).

    * ``decided`` (the verdict is reproduced or contradicted now, with ``n_seeds`` seeds): the smallest
      ``K <= n_seeds`` that decides, else ``n_seeds`` (the verdict decided it: Holm's actual threshold for a
      comparison that is not the family's strongest is milder than the worst case).
    * undecided: the smallest ``K`` in ``n_seeds + 1 .. k_max`` that decides (the study says ``n_seeds`` do not);
      NaN with "more than k_max seeds" if none.
    * NaN when no number of seeds decides: the frame-level draws alone (the seed level gone) do not decide; the
      note then says how many times the test frames would (:func:`frames_to_decide`), or that the estimate sits
      on the boundary. NaN too when a seed SD is unknown (fewer than 2 seeds) or the comparison is undefined.

    Args:
        frame_samples: ``(B,)`` frame-level draws of ``d = A - B`` (each model's mean over its seeds on frame
            resample ``b``; the sign already set so that "above" is the claim's direction).
        estimate: the point estimate of ``d`` (mean over seeds).
        seed_sds: the seed SD of each independent seed-level term: ``(sd_A, sd_B)`` for two models, one SD for a
            difference paired on seeds (the gate: SD of the per-seed differences).
        kind: ``"above"`` or ``"equivalent"``.
        margin: equivalence margin (ignored for "above").
        n_comparisons: comparisons in the claim's Holm family.
        n_seeds: training seeds per model of the study now.
        decided: whether the claim's verdict is decided now.
        alpha: the verdict's error rate (``endolib.evaluation.claims.ALPHA``).
        k_max: the most seeds searched.
        seed: seed of the projected seed level (the data seed).

    Returns:
        ``(K or NaN, note)``.

    Example:
        >>> f = np.random.default_rng(0).normal(0.03, 0.005, 2000)
        >>> seeds_to_decide(f, 0.03, [0.01, 0.01], "above", n_seeds=5, decided=True)
        (4, 'decided now with 5 seeds; 4 would already decide it')
        >>> seeds_to_decide(f - 0.03, 0.0, [0.01, 0.01], "above", n_seeds=3)
        (nan, 'no number of seeds or test frames: the estimate sits on the boundary 0')
    """
    f = np.asarray(frame_samples, dtype=np.float64).ravel()
    sds = np.asarray(seed_sds, dtype=np.float64).ravel()
    a = alpha / max(int(n_comparisons), 1)
    holm_note = f" (Holm's worst case, alpha {alpha:g}/{n_comparisons})" if n_comparisons > 1 else ""
    if f.size == 0 or np.isnan(f).all() or not np.isfinite(estimate):
        return math.nan, "comparison undefined (metric NaN): no number of seeds"
    if not np.isfinite(sds).all():
        return math.nan, "seed SD unknown (fewer than 2 training seeds per model): train at least 2"
    if decision(f, kind, margin, a) is None:  # the seed level gone, the frame level alone does not decide
        b = _boundary(estimate, kind, margin)
        factor = frames_to_decide(f, estimate, kind, margin, a)
        if estimate == b:
            return math.nan, f"no number of seeds or test frames: the estimate sits on the boundary {b:g}"
        if not math.isfinite(factor):
            return math.nan, (f"no number of seeds: the frame-level CI alone straddles {b:g}{holm_note}; more than "
                              f"{_FRAMES_MAX:.0e}x the test frames would be needed")
        return math.nan, (f"no number of seeds: the frame-level CI alone straddles {b:g}{holm_note}; about "
                          f"{_times(factor)}x the test frames would decide it")
    u = seed_level_draws(sds.size, f.size, seed)
    ks = range(2, int(n_seeds) + 1) if decided else range(int(n_seeds) + 1, int(k_max) + 1)
    for k in ks:
        d = f + (sds[:, None] * stats.t.ppf(u, k - 1)).sum(0) / math.sqrt(k)
        verdict = decision(d, kind, margin, a)
        if verdict is None:
            continue
        if not decided:
            return k, f"{k} seeds would {_VERB[verdict]} it{holm_note}"
        if k < n_seeds:
            return k, f"decided now with {n_seeds} seeds; {k} would already decide it{holm_note}"
        break
    if decided:
        return int(n_seeds), f"decided now with {n_seeds} seeds"
    return math.nan, f"more than {k_max} seeds (seed SD {', '.join(f'{s:.3g}' for s in sds)}){holm_note}"
