"""Bootstrap, paired tests, Holm, DeLong: agreement with scipy / brute force, and the tests' behaviour."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from endolib.evaluation.bench import bench_main, naive_segmenter_bootstrap
from endolib.evaluation.bootstrap import (
    CLS_METRICS,
    SEED_LEVELS,
    ClassifierStats,
    SegmenterStats,
    bootstrap,
    bootstrap_indices,
    combine_seeds,
    level_cut,
    percentile_ci,
    resample_weights,
    seed_bootstrap,
    seed_rng,
    weighted_mean,
)
from endolib.evaluation.metrics import (
    UndefinedMetricWarning,
    ap_from_hist,
    dice,
    iou,
    quantise,
    seg_counts,
)
from endolib.evaluation.pairwise import (
    ci_width_comparison,
    delong_covariance,
    delong_test,
    holm,
    paired_pvalue,
    pairwise_tests,
)


def _classifier(n=80, quality=0.3, seed=0, y=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n) if y is None else y
    return y, np.round(np.clip(quality * y + rng.random(y.size) * (1 - quality), 0, 1), 3)


def _segmenter_arrays(n=12, size=16, seed=0, quality=0.4):
    rng = np.random.default_rng(seed)
    target = rng.random((n, size, size)) > 0.75
    target[:, 0, 0] = True  # every frame has tissue
    levels = quantise(np.clip(quality * target + (1 - quality) * rng.random(target.shape), 0, 1))
    return levels, target


def test_resample_weights_are_bootstrap_counts():
    w = resample_weights(10, 50, seed=3)
    assert w.shape == (50, 10) and (w.sum(1) == 10).all()
    idx = np.random.default_rng(3).integers(0, 10, (50, 10))
    assert (w[7] == np.bincount(idx[7], minlength=10)).all()


def test_cluster_weights_resample_whole_patients():
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    w = resample_weights(6, 40, seed=1, groups=groups)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 3] == w[:, 4]).all()
    per_group = np.stack([w[:, 0], w[:, 3], w[:, 5]], 1)
    assert (per_group.sum(1) == 3).all()  # three clusters drawn per resample


def test_percentile_ci_agrees_with_scipy_bootstrap_mean():
    x = np.random.default_rng(0).gamma(2.0, size=57)
    ours = weighted_mean(x, resample_weights(x.size, 999, seed=11))
    lo, hi = percentile_ci(ours, 0.95)
    ref = sps.bootstrap((x,), np.mean, n_resamples=999, method="percentile", confidence_level=0.95,
                        rng=np.random.default_rng(11))
    assert lo == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def test_percentile_ci_agrees_with_scipy_bootstrap_auroc_and_pooled_dice():
    y, score = _classifier(60, seed=2)
    boot = bootstrap({"m": ClassifierStats(y, score)}, n_boot=150, seed=5, names=("auroc",))

    def auroc_stat(yy, ss):
        if len(np.unique(yy)) < 2:
            return np.nan
        return roc_auc_score(yy, ss)

    ref = sps.bootstrap((y, score), auroc_stat, paired=True, vectorized=False, n_resamples=150,
                        method="percentile", rng=np.random.default_rng(5))
    np.testing.assert_allclose(boot.ci("m", "auroc"), tuple(ref.confidence_interval), atol=1e-12)

    levels, target = _segmenter_arrays(15, seed=4)
    st = SegmenterStats.from_levels(levels, target)
    b2 = bootstrap({"s": st}, n_boot=300, seed=9, names=("dsc_pooled",))
    ref2 = sps.bootstrap((st.tp, st.fp, st.fn), lambda a, b, c: dice(a.sum(), b.sum(), c.sum()), paired=True,
                         vectorized=False, n_resamples=300, method="percentile", rng=np.random.default_rng(9))
    np.testing.assert_allclose(b2.ci("s", "dsc_pooled"), tuple(ref2.confidence_interval), atol=1e-12)


def test_fast_bootstrap_equals_naive_recompute():
    levels, target = _segmenter_arrays(10, seed=1)
    levels2, _ = _segmenter_arrays(10, seed=2)
    fast = bootstrap({"a": SegmenterStats.from_levels(levels, target),
                        "b": SegmenterStats.from_levels(levels2, target)}, n_boot=25, seed=7)
    naive = naive_segmenter_bootstrap({"a": levels, "b": levels2}, target, n_boot=25, seed=7)
    for model, metric in itertools.product("ab", ("dsc", "dsc_pooled", "auprc")):
        np.testing.assert_allclose(fast.samples[model][metric], naive[model][metric], atol=1e-12)


def test_segmenter_estimates_match_direct_computation():
    levels, target = _segmenter_arrays(8, seed=3)
    st = SegmenterStats.from_levels(levels, target, threshold=0.5)
    m = st.metrics()
    pred = levels >= 128
    c = seg_counts(pred, target)
    assert m["dsc"] == pytest.approx(np.mean(dice(c.tp, c.fp, c.fn)))
    assert m["iou_pooled"] == pytest.approx(float(iou(c.tp.sum(), c.fp.sum(), c.fn.sum())))
    from sklearn.metrics import average_precision_score

    assert m["auprc"] == pytest.approx(average_precision_score(target.ravel(), levels.ravel()), abs=1e-12)


def test_per_image_undefined_values_are_left_out_with_warning():
    levels, target = _segmenter_arrays(4, seed=0)
    levels[1] = 0  # frame 1: empty prediction -> per-image precision undefined
    st = SegmenterStats.from_levels(levels, target)
    with pytest.warns(UndefinedMetricWarning, match="per-image precision undefined for 1 of 4"):
        m = st.metrics(names=("precision",))
    c = seg_counts(levels >= 128, target)
    keep = [0, 2, 3]
    assert m["precision"] == pytest.approx(np.mean(c.tp[keep] / (c.tp[keep] + c.fp[keep])))


def test_threshold_level_cut_matches_float_threshold():
    levels = np.arange(256, dtype=np.uint8)
    for t in (0.0, 0.3, 0.5, 0.5 + 1e-9, 0.75, 1.0):
        assert ((levels >= level_cut(t)) == (levels / 255 >= t)).all()


def test_paired_test_identical_models_p_one_and_different_models_small():
    y, good = _classifier(150, quality=0.6, seed=1)
    _, bad = _classifier(150, quality=0.05, seed=2, y=y)
    stats = {"good": ClassifierStats(y, good), "copy": ClassifierStats(y, good.copy()),
             "bad": ClassifierStats(y, bad)}
    boot = bootstrap(stats, n_boot=400, seed=0)
    t = pairwise_tests(boot, ("auroc", "accuracy"), "cls", stats)
    row = lambda a, b, test, metric="auroc": t[(t.model_a == a) & (t.model_b == b) & (t.test == test)  # noqa: E731
                                               & (t.metric == metric)].iloc[0]
    assert row("good", "copy", "paired bootstrap")["p"] == 1.0
    assert row("good", "copy", "DeLong")["p"] == 1.0
    assert row("good", "bad", "paired bootstrap")["p"] < 0.05
    assert row("good", "bad", "DeLong")["p"] < 0.05
    assert row("good", "bad", "paired bootstrap", "accuracy")["p"] < 0.05
    assert len(t) == 3 * 2 + 3  # 3 pairs x 2 metrics, plus DeLong on AUROC
    assert (t["p_holm"] >= t["p"] - 1e-15).all() and (t["p_holm"] <= 1).all()


def test_paired_pvalue_is_uniformish_under_null():
    # two independent noisy copies of the same quality: p should not be systematically small
    y, a = _classifier(120, quality=0.4, seed=10)
    ps = []
    for seed in range(12):
        _, b = _classifier(120, quality=0.4, seed=100 + seed, y=y)
        boot = bootstrap({"a": ClassifierStats(y, a), "b": ClassifierStats(y, b)}, 200, seed, names=("auroc",))
        ps.append(paired_pvalue(boot.samples["a"]["auroc"], boot.samples["b"]["auroc"],
                                  boot.estimates["a"]["auroc"], boot.estimates["b"]["auroc"]))
    assert np.mean(np.array(ps) < 0.05) <= 0.25 and np.median(ps) > 0.2


def test_holm_known_values():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, np.nan, 0.01])
    assert np.isnan(out[1]) and out.tolist()[0] == 0.2 and out[2] == pytest.approx(0.02)
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]


def _delong_bruteforce(y, scores):
    """DeLong et al. (1988) structural components, O(m n) per model."""
    y = np.asarray(y).astype(bool)
    x, z = scores[:, y], scores[:, ~y]
    psi = (x[:, :, None] > z[:, None, :]) + 0.5 * (x[:, :, None] == z[:, None, :])
    v10, v01 = psi.mean(2), psi.mean(1)  # per positive, per negative
    auc = psi.mean((1, 2))
    cov = np.cov(v10) / x.shape[1] + np.cov(v01) / z.shape[1]
    return auc, cov


def test_delong_matches_bruteforce_and_sklearn():
    y, a = _classifier(90, quality=0.4, seed=3)
    _, b = _classifier(90, quality=0.2, seed=4, y=y)
    scores = np.vstack([a, b])
    aucs, cov = delong_covariance(y, scores)
    ref_auc, ref_cov = _delong_bruteforce(y, scores)
    np.testing.assert_allclose(aucs, ref_auc, atol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, a), roc_auc_score(y, b)], atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    r = delong_test(y, a, b)
    z = (ref_auc[0] - ref_auc[1]) / np.sqrt(ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1])
    assert r["z"] == pytest.approx(z) and r["p"] == pytest.approx(2 * sps.norm.sf(abs(z)))


def test_delong_known_case():
    # hand-computed: positives {0.9, 0.6}, negatives {0.7, 0.1}; psi = [[1, 1], [0, 1]] -> AUC 0.75,
    # V10 = [1, 0.5] (var 0.125), V01 = [0.5, 1] (var 0.125) -> var(AUC) = 0.125/2 + 0.125/2 = 0.125
    aucs, cov = delong_covariance([1, 1, 0, 0], [[0.9, 0.6, 0.7, 0.1]])
    assert aucs[0] == pytest.approx(0.75) and cov[0, 0] == pytest.approx(0.125)


def test_delong_undefined_without_both_classes():
    with pytest.warns(UndefinedMetricWarning, match="DeLong"):
        r = delong_test([1, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.0])
    assert np.isnan(r["p"])


def test_bootstrap_requires_same_frames():
    with pytest.raises(ValueError, match="same frames"):
        bootstrap({"a": ClassifierStats([0, 1], [0.1, 0.9]),
                     "b": ClassifierStats([0, 1, 1], [0.1, 0.9, 0.8])}, 10, 0)


def test_percentile_ci_skips_undefined_resamples_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="2 of 5"):
        lo, hi = percentile_ci([0.1, np.nan, 0.3, np.nan, 0.2])
    assert 0.1 <= lo < hi <= 0.3
    assert np.isnan(percentile_ci([np.nan, np.nan])[0])


def test_cluster_bootstrap_widens_ci_for_clustered_data():
    # frames of a patient share a patient effect -> frame resampling understates the uncertainty
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(8), 25)
    y = np.tile([0, 1], 100)
    effect = rng.normal(0, 0.25, 8)[patients]
    score = np.clip(0.5 + 0.15 * (2 * y - 1) + effect + rng.normal(0, 0.05, y.size), 0, 1)
    stats = {"m": ClassifierStats(y, score)}
    frames = bootstrap(stats, 300, 0, names=("auroc", "accuracy"))
    clusters = bootstrap(stats, 300, 0, groups=patients, names=("auroc", "accuracy"))
    t = ci_width_comparison(frames, clusters, ("auroc", "accuracy"))
    assert (t["width_ratio"] > 1.2).all()
    assert clusters.n_clusters == 8 and frames.n_clusters is None


def test_bench_main_runs_small(capsys):
    assert bench_main(["--frames", "20", "--size", "16", "--models", "2", "--n-boot", "30",
                         "--naive-frames", "10", "--naive-boot", "3"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "bootstrap" in out


# ----------------------------------------------------------------------- two-level (training seeds x frames)
def _slow_two_level(levels: dict, target, scores: dict, y, n_boot: int, seed: int, seed_level: str,
                    seg_names=("dsc", "dsc_pooled", "auprc")) -> dict:
    """Reference two-level bootstrap: loops over resamples, models and seeds, recomputing every metric from the
    resampled pixel arrays / scores, then draws the seed level with the same generators as the fast code.

    levels: model -> seed -> uint8 maps; scores: model -> seed -> classifier scores (same frames as ``target``/``y``).
    """
    n = (target if target is not None else y).shape[0]
    idx = bootstrap_indices(n, n_boot, np.random.default_rng(seed))
    cut = level_cut(0.5)
    out = {}
    for model, by_seed in {**levels, **scores}.items():
        seeds = list(by_seed)
        is_seg = model in levels
        names = seg_names if is_seg else ("auroc", "accuracy")
        per_seed = {m: np.empty((len(seeds), n_boot)) for m in names}
        for b in range(n_boot):
            for k, s in enumerate(seeds):
                if is_seg:
                    p, t = by_seed[s][idx[b]], target[idx[b]]
                    c = seg_counts(p >= cut, t)
                    vals = {"dsc": np.mean(dice(c.tp, c.fp, c.fn)),
                            "dsc_pooled": dice(c.tp.sum(), c.fp.sum(), c.fn.sum()),
                            "auprc": ap_from_hist(np.bincount(p[t], minlength=256), np.bincount(p[~t], minlength=256))}
                else:
                    yy, ss = y[idx[b]], by_seed[s][idx[b]]
                    vals = {"auroc": roc_auc_score(yy, ss), "accuracy": np.mean((ss >= 0.5) == yy)}
                for m in names:
                    per_seed[m][k, b] = vals[m]
        rng = seed_rng(seed, model)
        out[model] = {}
        for m in names:  # the seed level, drawn per metric in the same order as the fast code
            x, kk = per_seed[m], len(seeds)
            if kk == 1:
                out[model][m] = x[0]
                continue
            draws = (rng.standard_t(kk - 1, size=n_boot) if seed_level == "t"
                     else rng.integers(0, kk, (n_boot, kk)))
            res = np.empty(n_boot)
            for b in range(n_boot):
                col = x[:, b]
                if seed_level == "t":
                    res[b] = col.mean() + col.std(ddof=1) / np.sqrt(kk) * draws[b]
                else:
                    res[b] = np.mean([col[j] for j in draws[b]])
            out[model][m] = res
    return out


@pytest.mark.parametrize("seed_level", SEED_LEVELS)
def test_two_level_bootstrap_equals_slow_reference(seed_level):
    _, target = _segmenter_arrays(10, seed=1)
    def run(q, s):  # one training seed's maps: the model's quality jittered per seed, its own noise
        noise = np.random.default_rng(s).random(target.shape)
        return quantise(np.clip(q * target + (1 - q) * noise, 0, 1))

    levels = {m: {s: run(q + 0.05 * k, s) for k, s in enumerate((42, 43, 44))} for m, q in (("a", 0.3), ("b", 0.4))}
    fast = seed_bootstrap({m: {s: SegmenterStats.from_levels(lv, target) for s, lv in by.items()}
                             for m, by in levels.items()}, n_boot=30, seed=7, names=("dsc", "dsc_pooled", "auprc"),
                            seed_level=seed_level)
    slow = _slow_two_level(levels, target, {}, None, 30, 7, seed_level)
    for model, metric in itertools.product("ab", ("dsc", "dsc_pooled", "auprc")):
        np.testing.assert_allclose(fast.samples[model][metric], slow[model][metric], rtol=1e-10, atol=1e-12)
        assert fast.estimates[model][metric] == pytest.approx(np.mean([fast.seed_estimates[model][s][metric]
                                                                       for s in (42, 43, 44)]))
    # the pairwise test's CI and p of a - b come from the same paired two-level samples
    row = pairwise_tests(fast, ["dsc"], "seg").iloc[0]
    d = slow["a"]["dsc"] - slow["b"]["dsc"]
    assert (row["diff_lo"], row["diff_hi"]) == pytest.approx(percentile_ci(d))
    assert row["p"] == pytest.approx(paired_pvalue(slow["a"]["dsc"], slow["b"]["dsc"], row["value_a"],
                                                     row["value_b"]))

    y = np.random.default_rng(0).integers(0, 2, 40)
    scores = {m: {s: _classifier(y=y, quality=q, seed=s)[1] for s in (1, 2)} for m, q in (("c", 0.2), ("d", 0.5))}
    fast = seed_bootstrap({m: {s: ClassifierStats(y, sc) for s, sc in by.items()} for m, by in scores.items()},
                            n_boot=40, seed=3, names=("auroc", "accuracy"), seed_level=seed_level)
    slow = _slow_two_level({}, None, scores, y, 40, 3, seed_level)
    for model, metric in itertools.product("cd", ("auroc", "accuracy")):
        np.testing.assert_allclose(fast.samples[model][metric], slow[model][metric], rtol=1e-10, atol=1e-12)


def test_one_seed_reduces_to_the_frame_bootstrap():
    y, s = _classifier(60, seed=4)
    _, s2 = _classifier(y=y, quality=0.5, seed=5)
    frame = bootstrap({"a": ClassifierStats(y, s), "b": ClassifierStats(y, s2)}, n_boot=80, seed=11)
    two = seed_bootstrap({"a": {42: ClassifierStats(y, s)}, "b": {42: ClassifierStats(y, s2)}}, n_boot=80,
                           seed=11)
    for model, metric in itertools.product("ab", CLS_METRICS):
        np.testing.assert_array_equal(two.samples[model][metric], frame.samples[model][metric])
        assert two.estimates[model][metric] == frame.estimates[model][metric]
        assert two.ci(model, metric) == pytest.approx(frame.ci(model, metric))
        assert np.isnan(two.seed_sd(model, metric))
    pf = pairwise_tests(frame, ["auroc"], "cls")
    pt = pairwise_tests(two, ["auroc"], "cls")
    np.testing.assert_allclose(pt[["diff", "diff_lo", "diff_hi", "p", "p_holm"]].to_numpy(float),
                               pf[["diff", "diff_lo", "diff_hi", "p", "p_holm"]].to_numpy(float))


def test_seed_level_t_covers_a_three_seed_mean_and_plain_resampling_does_not():
    """Why the default seed level is "t": with three seeds, resampling them can never leave their range.

    Simulated: a true mean of 0.8, seed effects N(0, 0.03^2), a test-set error N(0, 0.005^2) shared by the seeds
    (one test set), and frame resamples spread like that error around each seed's estimate.
    """
    rng = np.random.default_rng(0)
    n_rep, n_boot, cover = 300, 1000, {"t": 0, "resample": 0}
    for _ in range(n_rep):
        seeds = 0.8 + 0.03 * rng.standard_normal(3) + 0.005 * rng.standard_normal()
        x = seeds[:, None] + 0.005 * rng.standard_normal(n_boot)[None, :] + 0.001 * rng.standard_normal((3, n_boot))
        for level in cover:
            _, samples = combine_seeds(seeds, x, rng, level)
            lo, hi = percentile_ci(samples)
            cover[level] += lo <= 0.8 <= hi
    # measured (this RNG seed): t 0.963, resample 0.763; the plain resampling is why the seed level is t
    assert 0.90 <= cover["t"] / n_rep <= 0.99, cover
    assert cover["resample"] / n_rep < 0.85, cover


def test_seed_bootstrap_tables_and_bad_input():
    y, s = _classifier(50, seed=1)
    runs = {"a": {42: ClassifierStats(y, s), 43: ClassifierStats(y, _classifier(y=y, seed=2)[1])}}
    b = seed_bootstrap(runs, n_boot=50, seed=0)
    t = b.table(["auroc"])
    assert t.columns.tolist() == ["model", "n_seeds", "auroc", "auroc_lo", "auroc_hi", "auroc_seed_sd"]
    assert 0.0 <= t.loc[0, "auroc_lo"] <= t.loc[0, "auroc"] <= t.loc[0, "auroc_hi"] <= 1.0
    long = b.seed_table(["auroc"])
    assert long["seed"].tolist() == [42, 43] and t.loc[0, "auroc"] == pytest.approx(long["auroc"].mean())
    assert t.loc[0, "auroc_seed_sd"] == pytest.approx(long["auroc"].std(ddof=1))
    with pytest.raises(ValueError, match="same frames"):
        seed_bootstrap({"a": {42: ClassifierStats(y, s), 43: ClassifierStats(y[:-1], s[:-1])}}, 10, 0)
    with pytest.raises(ValueError, match="seed_level"):
        combine_seeds([0.1, 0.2], np.zeros((2, 3)), np.random.default_rng(0), "bayes")
    with pytest.raises(ValueError, match="no training seeds"):
        seed_bootstrap({"a": {}}, 10, 0)


def test_delong_per_seed_in_pairwise_tests():
    y = np.random.default_rng(0).integers(0, 2, 60)
    cls = {m: {s: ClassifierStats(y, _classifier(y=y, quality=q, seed=s)[1]) for s in (42, 43)}
           for m, q in (("a", 0.2), ("b", 0.4), ("c", 0.6))}
    t = pairwise_tests(seed_bootstrap(cls, 60, 0), ["auroc"], "cls", cls)
    dl = t[t["test"] == "DeLong"]
    assert len(dl) == 3 * 2 and set(dl["seed"]) == {"42", "43"}
    r = dl[(dl["model_a"] == "a") & (dl["model_b"] == "c") & (dl["seed"] == "43")].iloc[0]
    ref = delong_test(y, cls["a"][43].score, cls["c"][43].score)
    assert r["p"] == pytest.approx(ref["p"])
    fam = dl[dl["seed"] == "43"]  # Holm within one seed's family of 3 pairs
    np.testing.assert_allclose(fam["p_holm"], holm(fam["p"]))
