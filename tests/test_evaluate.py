"""Notebook 04's library: loading/validating predictions of every training seed, Tables 3/4 (mean over seeds,
two-level CIs), tests, figures, the two-stage gate, the paper-claims table."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from synthetic_runs import write_predictions, write_synthetic_runs

from endolib.config import CLASSIFIERS, SEGMENTERS, get_profile, study_paths
from endolib.evaluation.bootstrap import combine_seeds, percentile_ci, seed_rng
from endolib.evaluation.figures import (
    pr_figure,
    roc_figure,
    seed_figure,
    two_stage_figure,
)
from endolib.evaluation.metrics import (
    UndefinedMetricWarning,
    auroc,
    dice,
    seg_counts,
    youden_threshold,
)
from endolib.evaluation.predictions import load_predictions, resolve_models
from endolib.evaluation.study import Evaluation
from endolib.evaluation.tables import format_ci, metric_definitions, p_matrix
from endolib.evaluation.two_stage import (
    GATE_SWEEP_POINTS,
    describe_two_stage,
    gate_metrics,
    gate_runs,
    two_stage,
)

CLS = ["resnet18", "mobilenetv3_large"]
SEG = ["unet", "segformer_b0"]
SEEDS = get_profile("smoke").training_seeds  # (42, 43)


@pytest.fixture
def study(tmp_path, make_tiny_dataset, monkeypatch):
    """A repository root with a tiny dataset (32 test frames, 16 with tissue, 4 test patients) and synthetic runs
    of every smoke training seed."""
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    data_dir = make_tiny_dataset(n_patients=5, n_test=4, frames=8, height=24, width=32)
    write_synthetic_runs(tmp_path, "smoke", data_dir, CLS, SEG, seed=1)
    return tmp_path, data_dir


def _paths(study):
    """The tiny dataset's own study: ``runs/smoke/<dataset>/``, ``results/smoke/<dataset>/``."""
    root, data_dir = study
    return study_paths("smoke", data_dir, root=root)


def _evaluation(study, **kw):
    root, data_dir = study
    kw = {"classifiers": CLS, "segmenters": SEG, "root": root, "progress": False, "n_boot": 60, **kw}
    return Evaluation("smoke", data_dir=data_dir, **kw)


def test_missing_predictions_name_the_command(study):
    root, data_dir = study
    with pytest.raises(FileNotFoundError) as err:
        Evaluation("smoke", data_dir=data_dir, root=root, progress=False)  # None = every registry model
    msg = str(err.value)
    assert "python -m endolib run --profile smoke --only 02 --arch resnet34" in msg
    assert "python -m endolib run --profile smoke --only 03 --arch r2unet" in msg
    assert "--arch unet" not in msg  # present models are not listed
    n_missing = len(CLASSIFIERS) + len(SEGMENTERS) - 4
    assert f"{n_missing * len(SEEDS)} training run(s) of {n_missing} model(s)" in msg
    assert f"r2unet seed 43: runs/smoke/{data_dir.name}/r2unet/seed43/predictions.npz" in msg


def test_one_missing_seed_is_named(study):
    root, data_dir = study
    (_paths(study).runs / "unet/seed43/predictions.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 training run\(s\) of 1 model\(s\).*\n  unet seed 43: "):
        _evaluation(study)
    ev = _evaluation(study, seeds=[42])  # an explicit subset of seeds still works
    assert ev.seeds == (42,) and list(ev.predictions["unet"]) == [42]


def test_seeds_load_into_one_evaluation(study):
    ev = _evaluation(study)
    assert ev.seeds == SEEDS and all(list(ev.predictions[m]) == list(SEEDS) for m in CLS + SEG)
    assert all(p.seed == s for m in CLS for s, p in ev.predictions[m].items())
    assert (ev.summary()["n_seeds"] == len(SEEDS)).all()
    # one model instance: the first training seed
    default = load_predictions("unet", "smoke", study[0], dataset=_paths(study).dataset)
    assert default.seed == SEEDS[0] and default.path.parent.name == f"seed{SEEDS[0]}"


def test_predictions_for_another_split_are_refused(study):
    root, data_dir = study
    # one seed disagreeing is enough
    pred = load_predictions("unet", "smoke", root, seed=SEEDS[1], dataset=_paths(study).dataset)
    write_predictions(pred.path.parent, pred.frame_ids[:-1], pred.probs[:-1], pred.size, "seg")
    with pytest.raises(ValueError, match="different test split .*1 test frame\\(s\\) without a prediction"):
        _evaluation(study)
    order = np.r_[1, 0, 2:len(pred.frame_ids)]
    write_predictions(pred.path.parent, pred.frame_ids[order], pred.probs[order], pred.size, "seg")
    with pytest.raises(ValueError, match="not in index order"):
        _evaluation(study)


def test_malformed_predictions_name_the_file(study):
    root, _ = study
    pred = load_predictions("unet", "smoke", root, dataset=_paths(study).dataset)
    write_predictions(pred.path.parent, pred.frame_ids, pred.probs.astype(np.float32) / 255, pred.size, "seg")
    with pytest.raises(ValueError, match=r"unet/seed42/predictions.npz: segmenter probs must be uint8"):
        load_predictions("unet", "smoke", root, dataset=_paths(study).dataset)
    write_predictions(pred.path.parent, pred.frame_ids, pred.probs, pred.size, "cls")
    with pytest.raises(ValueError, match="task is 'cls' but unet is a 'seg' model"):
        load_predictions("unet", "smoke", root, dataset=_paths(study).dataset)
    pred.path.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_predictions("unet", "smoke", root, dataset=_paths(study).dataset)


def test_unknown_model_names():
    with pytest.raises(ValueError, match="unknown segmenter"):
        resolve_models("seg", ["resnet18"])


def test_table3_matches_direct_computation(study):
    root, data_dir = study
    ev = _evaluation(study)
    t = ev.table3()
    assert (_paths(study).results / "table3_classifiers.csv").exists()
    saved = pd.read_csv(_paths(study).results / "table3_classifiers.csv")
    assert list(saved["model"]) == CLS and {"auroc_lo", "auroc_hi", "auroc_seed_sd", "npv", "threshold",
                                           "n_seeds"} <= set(saved.columns)
    by_seed = ev.table3_by_seed()
    assert (_paths(study).results / "table3_classifiers_by_seed.csv").exists()
    assert len(by_seed) == len(CLS) * len(SEEDS) and list(by_seed["seed"][:2]) == list(SEEDS)
    y = ev.has_tissue
    for model in CLS:
        row = t.set_index("model").loc[model]
        per_seed = {"auroc": [], "accuracy": [], "npv": []}
        for s in SEEDS:
            score = ev.predictions[model][s].probs
            pred = score >= 0.5
            per_seed["auroc"].append(roc_auc_score(y, score))
            per_seed["accuracy"].append(np.mean(pred == y))
            per_seed["npv"].append(np.sum(~pred & ~y) / np.sum(~pred))
            seed_row = by_seed[(by_seed["model"] == model) & (by_seed["seed"] == s)].iloc[0]
            assert seed_row["auroc"] == pytest.approx(per_seed["auroc"][-1])
            assert seed_row["auroc_lo"] <= seed_row["auroc"] <= seed_row["auroc_hi"]
        for metric, values in per_seed.items():  # point estimate = mean over seeds; SD across seeds
            assert row[metric] == pytest.approx(np.mean(values))
            assert row[f"{metric}_seed_sd"] == pytest.approx(np.std(values, ddof=1))
        assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"] and row["n_seeds"] == len(SEEDS)
    assert (t["n_frames"] == 32).all() and (t["n_positive"] == 16).all()


def test_youden_thresholds_are_per_classifier(study):
    ev = _evaluation(study, youden=True)
    t = ev.table3(save=False)
    by_seed = ev.table3_by_seed(save=False).set_index(["model", "seed"])
    for model in CLS:
        expected = [youden_threshold(ev.has_tissue, ev.predictions[model][s].probs) for s in SEEDS]
        assert [by_seed.loc[(model, s), "threshold"] for s in SEEDS] == pytest.approx(expected)
        assert t.set_index("model").loc[model, "threshold"] == pytest.approx(np.mean(expected))
    assert (t["threshold_rule"] == "youden per seed (test set)").all()


def test_table4_on_tissue_frames_matches_direct_computation(study):
    from endolib.data.dataset import load_mask

    root, data_dir = study
    ev = _evaluation(study)
    t = ev.table4().set_index("model")
    assert (_paths(study).results / "table4_segmenters.csv").exists()
    from sklearn.metrics import average_precision_score

    by_seed = ev.table4_by_seed().set_index(["model", "seed"])
    assert (_paths(study).results / "table4_segmenters_by_seed.csv").exists()
    test = ev.test[ev.has_tissue]
    for model in SEG:
        values = {"dsc": [], "sensitivity_pooled": [], "auprc": []}
        for s in SEEDS:
            pred = load_predictions(model, "smoke", root, seed=s, dataset=_paths(study).dataset)
            assert ev.predictions[model][s].probs is None  # released after the reduction to per-image statistics
            masks = np.stack([load_mask(data_dir, f, size=pred.size) > 0 for f in test["frame_id"]])
            levels = pred.probs[ev.has_tissue]
            c = seg_counts(levels >= 128, masks)
            values["dsc"].append(np.mean(dice(c.tp, c.fp, c.fn)))
            values["sensitivity_pooled"].append(c.tp.sum() / (c.tp.sum() + c.fn.sum()))
            values["auprc"].append(average_precision_score(masks.ravel(), levels.ravel()))
            assert by_seed.loc[(model, s), "dsc"] == pytest.approx(values["dsc"][-1])
        assert t.loc[model, "n_frames"] == 16 and t.loc[model, "size"] == pred.size
        for metric, v in values.items():
            assert t.loc[model, metric] == pytest.approx(np.mean(v))
            assert t.loc[model, f"{metric}_seed_sd"] == pytest.approx(np.std(v, ddof=1))
        assert t.loc[model, "dsc_lo"] <= t.loc[model, "dsc"] <= t.loc[model, "dsc_hi"]


def test_pairwise_tests_file(study):
    root, _ = study
    ev = _evaluation(study)
    t = ev.pairwise()
    saved = pd.read_csv(_paths(study).results / "pairwise_tests.csv")
    # cls: 1 pair x 5 metrics (two-level) + DeLong per seed; seg: 1 pair x 3 metrics
    assert len(saved) == len(t) == 5 + len(SEEDS) + 3
    assert set(t["test"]) == {"paired bootstrap", "DeLong"}
    assert set(t.loc[t["test"] == "DeLong", "seed"]) == {str(s) for s in SEEDS}
    assert (t.loc[t["test"] == "paired bootstrap", "seed"] == "all").all()
    assert t["p"].between(0, 1).all() and (t["p_holm"] >= t["p"] - 1e-12).all()
    pm = p_matrix(t, "auroc", "DeLong")
    assert pm.loc["resnet18", "mobilenetv3_large"] == pm.loc["mobilenetv3_large", "resnet18"]
    assert np.isnan(pm.loc["resnet18", "resnet18"])


def test_cluster_comparison_and_cluster_tables(study):
    ev = _evaluation(study, cluster_bootstrap=True)
    t = ev.cluster_comparison()
    assert set(t["metric"]) == {"auroc", "accuracy", "f1", "dsc", "iou", "auprc"}
    assert (t["n_patients"] == 4).all() and (t["patient_width"] >= 0).all() and (t["patient_width"] > 0).any()
    assert np.allclose(t["width_ratio"], t["patient_width"] / t["frame_width"])
    assert (ev.table3(save=False)["resampling"] == "patients").all()


def test_paper_comparison_labels_data_sources(study):
    ev = _evaluation(study)
    t = ev.paper_comparison("table4")
    assert list(t.columns) == ["model", "data", "dsc", "iou", "accuracy", "sensitivity", "specificity", "precision",
                               "fpr", "fnr", "auprc"]
    assert len(t) == 2 * 2 and set(t["data"]) == {"phantom (ours)", "clinical (paper)"}
    assert t.loc[(t.model == "U-Net") & (t.data == "clinical (paper)"), "dsc"].item() == "0.79 (0.78–0.81)"
    ours = ev.table4(save=False).set_index("model")
    assert t.loc[(t.model == "U-Net") & (t.data == "phantom (ours)"), "dsc"].item() == format_ci(
        ours.loc["unet", "dsc"], ours.loc["unet", "dsc_lo"], ours.loc["unet", "dsc_hi"])


def test_figures_are_saved(study, monkeypatch):
    import endolib.plotting

    ev = _evaluation(study)
    pr_figure(ev)  # one real save (PNG + PDF)
    assert (ev.paths.figures / "fig6_pr.png").exists() and (ev.paths.figures / "fig6_pr.pdf").exists()
    saved = []  # the others: check names and folder without paying for rendering at 200 dpi
    monkeypatch.setattr(endolib.plotting, "save_figure", lambda fig, name, folder=None: saved.append((name, folder)))
    roc_figure(ev)
    seed_figure(ev, "cls")
    seed_figure(ev, "seg")
    comparison, sweep = two_stage(ev)
    two_stage_figure(ev, comparison, sweep)
    assert saved == [(n, ev.paths.figures) for n in ("fig5_roc", "fig_table3_seeds", "fig_table4_seeds",
                                                     "fig_two_stage_sweep")]


def test_two_stage_gate(study):
    root, _ = study
    ev = _evaluation(study)
    comparison, sweep = two_stage(ev, "resnet18", "unet", gate_threshold=0.5)
    alone, gated = comparison.iloc[0], comparison.iloc[1]
    assert "paper Table 5" in alone["latency_source"]  # no table5_compute.csv yet: stated assumption
    assert alone["fps"] == pytest.approx(1000 / 27.0)
    assert gated["latency_ms"] == pytest.approx(1.2 + gated["share_passed"] * 27.0)
    assert gated["neg_false_mask"] <= alone["neg_false_mask"]
    assert gated["dsc_pos"] <= alone["dsc_pos"] + 1e-12  # a gate can only remove predictions
    assert len(sweep) == GATE_SWEEP_POINTS
    first = sweep.iloc[0]  # threshold 0: every frame passes
    assert first["share_passed"] == 1.0 and first["dsc_pos"] == pytest.approx(alone["dsc_pos"])
    text = describe_two_stage(comparison)
    assert text.startswith("Gating unet with resnet18 at p >= 0.50") and "paper Table 5" in text
    saved = pd.read_csv(_paths(study).results / "two_stage.csv")
    assert len(saved) == 2 + GATE_SWEEP_POINTS
    assert {"neg_false_mask_lo", "dsc_pos_hi", "fps"} <= set(saved.columns)


def test_two_stage_with_perfect_gate_and_measured_latency(study):
    root, data_dir = study
    test = pd.read_csv(data_dir / "index.csv").query("split == 'test'")
    for s in SEEDS:
        write_predictions(_paths(study).runs / f"resnet18/seed{s}", test["frame_id"],
                          test["has_tissue"].to_numpy(np.float32), 32, "cls")
    _paths(study).results.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": ["resnet18", "unet"], "latency_ms": [2.0, 10.0]}).to_csv(
        _paths(study).results / "table5_compute.csv", index=False)
    ev = _evaluation(study)
    comparison, _ = two_stage(ev, "resnet18", "unet")
    alone, gated = comparison.iloc[0], comparison.iloc[1]
    assert gated["neg_false_mask"] == 0.0 and gated["pos_missed"] == 0.0
    assert gated["dsc_pos"] == pytest.approx(alone["dsc_pos"])
    assert gated["share_passed"] == 0.5 and gated["fps"] == pytest.approx(1000 / (2.0 + 0.5 * 10.0))
    assert "measured" in gated["latency_source"]


def test_gate_metrics_counts_gate_misses_as_empty_predictions():
    from endolib.evaluation.bootstrap import SegmenterStats

    z = np.zeros((3, 256))
    st = SegmenterStats(np.array([4, 4, 0]), np.array([0, 2, 5]), np.array([0, 1, 0]), np.array([9, 9, 9]), z, z)
    r = gate_metrics(st, [1, 1, 0], [True, False, True])
    assert r["pos_missed"] == 0.5 and r["neg_false_mask"] == 1.0
    assert r["dsc_pos"] == pytest.approx((1.0 + 0.0) / 2)  # frame 2 gated out: DSC 0


def test_undefined_metrics_warn_not_crash(study, make_tiny_dataset):
    root, _ = study
    ev = _evaluation(study)
    st = ev.seg_stats["unet"][SEEDS[0]].subset(~ev.has_tissue)  # no tissue: sensitivity undefined everywhere
    with pytest.warns(UndefinedMetricWarning):
        m = st.metrics(names=("sensitivity", "sensitivity_pooled", "dsc"))
    assert np.isnan(m["sensitivity"]) and np.isnan(m["sensitivity_pooled"]) and np.isfinite(m["dsc"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(auroc([0, 0], [0.1, 0.2]))


def test_metric_definitions_cover_tables():
    d = metric_definitions()
    assert {"table3", "table4", "two_stage", "all"} == set(d["table"])
    assert d["metric"].str.contains("_seed_sd").any()


# ----------------------------------------------------------------------------------------- paper claims
def test_claim_rule_directional_equivalence_and_holm():
    from endolib.evaluation.claims import judge_comparisons

    def around(centre, half):  # 200 resamples spread evenly on [centre - half, centre + half]
        return np.linspace(centre - half, centre + half, 200)

    judge = judge_comparisons
    assert judge([around(0.10, 0.05)], ["above"], [0])["verdict"] == "reproduced"
    assert judge([around(-0.10, 0.05)], ["above"], [0])["verdict"] == "contradicted"
    assert judge([around(0.02, 0.05)], ["above"], [0])["verdict"] == "inconclusive"
    assert judge([around(0.0, 0.03)], ["equivalent"], [0.05])["verdict"] == "reproduced"
    assert judge([around(0.04, 0.03)], ["equivalent"], [0.05])["verdict"] == "inconclusive"  # CI crosses +margin
    assert judge([around(0.12, 0.03)], ["equivalent"], [0.05])["verdict"] == "contradicted"
    # one comparison: exactly the 95% CI rule; 4 of 200 resamples (2%) below 0 -> p = 0.04 -> reproduced alone ...
    d = np.r_[np.full(4, -0.01), np.full(196, 0.05)]
    assert percentile_ci(d)[0] > 0 and judge([d], ["above"], [0])["verdict"] == "reproduced"
    # ... but not in a family of three with Holm (0.04 > 0.05 / 3)
    r = judge([d, d, d], ["above"] * 3, [0] * 3)
    assert r["verdict"] == "inconclusive" and r["n_reproduced"] == 0
    # any comparison contradicting the claim decides it
    r = judge([around(0.1, 0.01), around(-0.1, 0.01)], ["above", "above"], [0, 0])
    assert r["verdict"] == "contradicted" and r["deciding"] == 1


def test_seed_spread_turns_a_machine_dependent_claim_inconclusive():
    """Each seed alone says "A above B" with a tight frame CI, one seed says the opposite: a one-run study
    (or a second machine) would decide either way; the two-level CI must not."""
    from endolib.evaluation.claims import judge_comparisons

    rng = np.random.default_rng(0)
    per_seed = np.array([0.04, 0.05, -0.03])  # the seeds' A - B on the test set
    samples = per_seed[:, None] + 0.004 * rng.standard_normal((3, 2000))
    one_run = [judge_comparisons([samples[k]], ["above"], [0])["verdict"] for k in range(3)]
    assert one_run == ["reproduced", "reproduced", "contradicted"]
    _, two_level = combine_seeds(per_seed, samples, seed_rng(42, "x"), "t")
    assert judge_comparisons([two_level], ["above"], [0])["verdict"] == "inconclusive"


def test_paper_claims_csv(study):
    from endolib.evaluation.claims import (
        CLAIM_COLUMNS,
        CLAIMS,
        RULE,
        VERDICTS,
        paper_claims,
        summarise_claims,
    )

    root, data_dir = study
    ev = _evaluation(study)
    t = paper_claims(ev)
    saved = pd.read_csv(_paths(study).results / "paper_claims.csv")
    assert list(saved.columns) == CLAIM_COLUMNS and len(saved) == len(CLAIMS)
    assert saved["claim"].tolist() == [c.claim for c in CLAIMS]
    assert set(t["verdict"]) <= set(VERDICTS)
    ok = t["our_ci_lo"].notna()
    assert (t.loc[ok, "our_ci_lo"] <= t.loc[ok, "our_estimate"] + 1e-12).all()
    assert (t.loc[ok, "our_estimate"] <= t.loc[ok, "our_ci_hi"] + 1e-12).all()
    by_claim = t.set_index("claim")
    # models not evaluated here (resnet34, the other U-Nets) -> inconclusive, and the notes say why
    assert by_claim.loc["ResNet-18 and ResNet-34 AUROC not different", "verdict"] == "inconclusive"
    assert "not evaluated: resnet34" in by_claim.loc["ResNet-18 and ResNet-34 AUROC not different", "notes"]
    gate = by_claim.loc["the classifier gate reduces false masks on tissue-free frames"]
    runs = gate_runs(ev, "resnet18", "unet")
    per_seed = runs["alone"]["estimates"]["neg_false_mask"] - runs["gated"]["estimates"]["neg_false_mask"]
    assert gate["our_estimate"] == pytest.approx(per_seed.mean()) and gate["n_seeds"] == len(SEEDS)
    timing = t[t["rule"] == RULE["timing"]]
    assert (timing["verdict"] == "inconclusive").all() and timing["notes"].str.contains("not found").all()
    text = summarise_claims(_paths(study).results / "paper_claims.csv", "smoke")
    assert text.startswith(f"Paper claims on the smoke phantom ({len(SEEDS)} training seeds): ")
    assert text.count("\n- ") == len(CLAIMS)


def test_paper_claims_decided_by_strong_effects_and_measured_speed(tmp_path, make_tiny_dataset, monkeypatch):
    from endolib.evaluation.claims import paper_claims

    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    data_dir = make_tiny_dataset(n_patients=5, n_test=4, frames=8, height=24, width=32)
    seeds = (42, 43, 44)
    write_synthetic_runs(tmp_path, "smoke", data_dir, ["resnet18"], ["unet", "segformer_b0", "segformer_b1"], seed=2,
                         seeds=seeds, seed_sd=0.005, quality={"segformer_b0": 0.5, "segformer_b1": 0.12})
    res = study_paths("smoke", data_dir, root=tmp_path).results  # the tiny dataset's own study
    res.mkdir(parents=True)
    pd.DataFrame({"model": ["resnet18", "unet", "resunet", "r2unet", "aunet", "aresunet", "ar2unet"],
                  "latency_ms": [2.0, 10.0, 12.0, 14.0, 9.0, 11.0, 13.0], "backend": "eager"}).to_csv(
        res / "table5_compute.csv", index=False)
    pd.DataFrame({"classifier": ["resnet18"] * 2, "segmenter": ["unet"] * 2, "precision": ["fp32", "int8"],
                  "fps": [20.0, 26.0], "dsc_drop_lo": [0.0, -0.01], "dsc_drop_hi": [0.0, 0.01],
                  "n_seeds": 3}).to_csv(res / "realtime.csv", index=False)
    ev = Evaluation("smoke", data_dir=data_dir, classifiers=["resnet18"],
                      segmenters=["unet", "segformer_b0", "segformer_b1"], seeds=seeds, root=tmp_path,
                      progress=False, n_boot=400)
    t = paper_claims(ev, save=False).set_index("claim")
    b0_b1 = t.loc["SegFormer-B0 above SegFormer-B1 on DSC and IoU"]
    assert b0_b1["verdict"] == "reproduced" and b0_b1["n_reproduced"] == 2 and b0_b1["n_seeds"] == 3
    assert b0_b1["our_ci_lo"] > 0
    speed = t.loc["U-Net variants run at 25-40 FPS (real time)"]
    assert speed["verdict"] == "reproduced" and speed["our_estimate"] == pytest.approx(1000 / 14.0)
    pipe = t.loc["ResNet-18 + U-Net pipeline keeps up with a 30 FPS, 256 px stream (fp32, table5_compute.csv)"]
    assert pipe["verdict"] == "reproduced" and pipe["our_estimate"] == pytest.approx(1000 / 12.0)
    best = t.loc["ResNet-18 + U-Net pipeline keeps up with a 30 FPS stream (best deployable variant, realtime.csv)"]
    assert best["verdict"] == "inconclusive" and best["our_estimate"] == 26.0  # 26 FPS: drops 13% of 30 FPS
    # one training seed: the seed spread cannot enter the CI, so nothing is decided
    one = paper_claims(Evaluation("smoke", data_dir=data_dir, classifiers=["resnet18"],
                                      segmenters=["segformer_b0", "segformer_b1"], seeds=[42], root=tmp_path,
                                      progress=False, n_boot=400), save=False).set_index("claim")
    row = one.loc["SegFormer-B0 above SegFormer-B1 on DSC and IoU"]
    assert row["verdict"] == "inconclusive" and "capped at inconclusive" in row["notes"]


def test_undefined_comparison_supports_nothing_and_is_not_shown():
    from endolib.evaluation.claims import judge_comparisons

    r = judge_comparisons([np.full(100, np.nan), np.linspace(0.05, 0.15, 100)], ["above", "above"], [0, 0])
    assert r["verdict"] == "inconclusive" and r["n_undefined"] == 1 and r["deciding"] == 1



NAN = float("nan")


@pytest.mark.parametrize("fps, drop_lo, drop_hi, n_seeds, verdict, estimate", [
    # 29.9 FPS loses 0.1-0.2 DSC: not the paper's pipeline; 29 FPS keeps it and keeps up
    ([20.0, 29.0, 29.9], [0.0, -0.01, 0.1], [0.0, 0.015, 0.2], 3, "reproduced", 29.0),
    ([20.0, 27.0, 29.9], [0.0, -0.01, 0.1], [0.0, 0.015, 0.2], 3, "inconclusive", 27.0),  # drops 10% of frames
    ([20.0, 24.0, 29.9], [0.0, -0.01, 0.1], [0.0, 0.015, 0.2], 3, "contradicted", 24.0),  # too slow when accurate
    ([20.0, 24.0, 29.9], [0.0, -0.01, NAN], [0.0, 0.015, NAN], 3, "inconclusive", 24.0),  # 29.9: accuracy unknown
    ([20.0, 24.0, 29.9], [0.0, -0.01, -0.3], [0.0, 0.015, 0.5], 3, "inconclusive", 24.0),  # 29.9 may keep it
    ([20.0, 29.0], [-0.01, -0.01], [0.03, 0.1], 3, "inconclusive", NAN),  # none shown to keep it, none to lose it
    ([20.0, 29.0], [-0.01, 0.05], [0.03, 0.1], 3, "contradicted", NAN),  # the only candidate runs at 20 FPS
    ([20.0, 29.0, 29.9], [0.0, -0.01, 0.1], [0.0, 0.015, 0.2], 1, "inconclusive", NAN),  # one seed: undecided
    ([20.0, 24.0], [0.0, 0.1], [0.0, 0.2], None, "contradicted", NAN),  # a file from before seeds; all too slow
])
def test_live_stream_claim_needs_a_fast_variant_shown_to_keep_its_accuracy(tmp_path, fps, drop_lo, drop_hi, n_seeds,
                                                                          verdict, estimate):
    from endolib.evaluation.claims import CLAIMS, _timing_row

    res = tmp_path / "results" / "smoke"
    res.mkdir(parents=True)
    table = pd.DataFrame({"width": [1.0, 0.25, 0.125][:len(fps)], "fps": fps, "dsc_drop_lo": drop_lo,
                          "dsc_drop_hi": drop_hi})
    if n_seeds is not None:
        table["n_seeds"] = n_seeds
    table.to_csv(res / "realtime.csv", index=False)
    claim = next(c for c in CLAIMS if c.models == ("realtime.csv",))
    row = _timing_row(get_profile("smoke"), tmp_path, claim)
    assert row["verdict"] == verdict
    assert row.get("our_estimate", NAN) == pytest.approx(estimate, nan_ok=True)
    assert f"fastest of all {len(fps)} variants: {max(fps):.1f} FPS" in row["notes"]


@pytest.mark.parametrize("n_accepted, verdict", [
    ([3, 3, 3], "reproduced"),  # every seed's student accepted: 29 FPS keeps the accuracy and keeps up
    ([3, 2, 3], "inconclusive"),  # 29 FPS is as accurate but not deployable (a seed's students all missed the bound)
    ([3, 2, 0], "inconclusive"),  # ... nor does the 29.9 FPS variant, which is shown to lose it, decide anything
])
def test_live_stream_claim_deploys_only_variants_whose_students_were_accepted(tmp_path, n_accepted, verdict):
    from endolib.evaluation.claims import CLAIMS, _timing_row

    res = tmp_path / "results" / "smoke"
    res.mkdir(parents=True)
    pd.DataFrame({"width": [1.0, 0.25, 0.125], "fps": [20.0, 29.0, 29.9], "dsc_drop_lo": [0.0, -0.01, 0.1],
                  "dsc_drop_hi": [0.0, 0.015, 0.2], "n_seeds": 3, "n_accepted": n_accepted}).to_csv(
        res / "realtime.csv", index=False)
    row = _timing_row(get_profile("smoke"), tmp_path, next(c for c in CLAIMS if c.models == ("realtime.csv",)))
    assert row["verdict"] == verdict


def test_a_variant_without_accepted_students_can_be_shown_too_slow_or_too_inaccurate(tmp_path):
    """Students that all missed the validation bound, measured with the candidate best on validation: a fast
    variant that loses the accuracy no longer leaves the live-stream claim open."""
    from endolib.evaluation.claims import CLAIMS, _timing_row

    res = tmp_path / "results" / "smoke"
    res.mkdir(parents=True)
    pd.DataFrame({"width": [1.0, 0.25, 0.125], "fps": [20.0, 24.0, 29.9], "dsc_drop_lo": [0.0, 0.05, 0.1],
                  "dsc_drop_hi": [0.0, 0.2, 0.3], "n_seeds": 3, "n_accepted": [3, 1, 0]}).to_csv(
        res / "realtime.csv", index=False)
    row = _timing_row(get_profile("smoke"), tmp_path, next(c for c in CLAIMS if c.models == ("realtime.csv",)))
    assert row["verdict"] == "contradicted"


def test_speed_claims_with_untimed_models(tmp_path):
    """The smoke profile times only some models: untimed rows (NaN latency and backend) must not break the claim
    (it did: sorting a NaN backend among strings) and the notes say how many were timed."""
    from endolib.evaluation.claims import CLAIMS, _timing_row

    res = tmp_path / "results" / "smoke"
    res.mkdir(parents=True)
    models = ["resnet18", "unet", "resunet", "r2unet", "aunet", "aresunet", "ar2unet"]
    pd.DataFrame({"model": models, "latency_ms": [10.0, 20.0] + [np.nan] * 5,
                  "backend": ["onnxruntime", "onnxruntime"] + [np.nan] * 5}).to_csv(res / "table5_compute.csv",
                                                                                 index=False)
    rows = {c.claim: _timing_row(get_profile("smoke"), tmp_path, c) for c in CLAIMS if c.kind == "timing"}
    unets = rows["U-Net variants run at 25-40 FPS (real time)"]
    assert unets["our_estimate"] == pytest.approx(50.0) and "(1 of 6 timed)" in unets["notes"]
    pipe = rows["ResNet-18 + U-Net pipeline keeps up with a 30 FPS, 256 px stream (fp32, table5_compute.csv)"]
    assert pipe["our_estimate"] == pytest.approx(1000 / 30.0) and "backend onnxruntime" in pipe["notes"]
