"""Notebook 04's library: loading/validating predictions, Tables 3/4, tests, figures, the two-stage gate."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from endolib import evaluate as E
from endolib import metrics as M
from endolib.config import CLASSIFIERS, SEGMENTERS
from synthetic_runs import write_predictions, write_synthetic_runs

CLS = ["resnet18", "mobilenetv3_large"]
SEG = ["unet", "segformer_b0"]


@pytest.fixture
def study(tmp_path, make_tiny_dataset, monkeypatch):
    """A repository root with a tiny dataset (32 test frames, 16 with tissue, 4 test patients) and synthetic runs."""
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    data_dir = make_tiny_dataset(n_patients=5, n_test=4, frames=8, height=24, width=32)
    write_synthetic_runs(tmp_path, "smoke", data_dir, CLS, SEG, seed=1)
    return tmp_path, data_dir


def _evaluation(study, **kw):
    root, data_dir = study
    kw = {"classifiers": CLS, "segmenters": SEG, "root": root, "progress": False, "n_boot": 60, **kw}
    return E.Evaluation("smoke", data_dir=data_dir, **kw)


def test_missing_predictions_name_the_command(study):
    root, data_dir = study
    with pytest.raises(FileNotFoundError) as err:
        E.Evaluation("smoke", data_dir=data_dir, root=root, progress=False)  # None = every registry model
    msg = str(err.value)
    assert "python -m endolib run --profile smoke --only 02 --arch resnet34" in msg
    assert "python -m endolib run --profile smoke --only 03 --arch r2unet" in msg
    assert "--arch unet" not in msg  # present models are not listed
    assert f"{len(CLASSIFIERS) + len(SEGMENTERS) - 4} model(s)" in msg


def test_predictions_for_another_split_are_refused(study):
    root, data_dir = study
    pred = E.load_predictions("unet", "smoke", root)
    write_predictions(pred.path.parent, pred.frame_ids[:-1], pred.probs[:-1], pred.size, "seg")
    with pytest.raises(ValueError, match="different test split .*1 test frame\\(s\\) without a prediction"):
        _evaluation(study)
    order = np.r_[1, 0, 2:len(pred.frame_ids)]
    write_predictions(pred.path.parent, pred.frame_ids[order], pred.probs[order], pred.size, "seg")
    with pytest.raises(ValueError, match="not in index order"):
        _evaluation(study)


def test_malformed_predictions_name_the_file(study):
    root, _ = study
    pred = E.load_predictions("unet", "smoke", root)
    write_predictions(pred.path.parent, pred.frame_ids, pred.probs.astype(np.float32) / 255, pred.size, "seg")
    with pytest.raises(ValueError, match=r"unet/predictions.npz: segmenter probs must be uint8"):
        E.load_predictions("unet", "smoke", root)
    write_predictions(pred.path.parent, pred.frame_ids, pred.probs, pred.size, "cls")
    with pytest.raises(ValueError, match="task is 'cls' but unet is a 'seg' model"):
        E.load_predictions("unet", "smoke", root)
    pred.path.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        E.load_predictions("unet", "smoke", root)


def test_unknown_model_names():
    with pytest.raises(ValueError, match="unknown segmenter"):
        E.resolve_models("seg", ["resnet18"])


def test_table3_matches_direct_computation(study):
    root, data_dir = study
    ev = _evaluation(study)
    t = ev.table3()
    assert (root / "results/smoke/table3_classifiers.csv").exists()
    saved = pd.read_csv(root / "results/smoke/table3_classifiers.csv")
    assert list(saved["model"]) == CLS and {"auroc_lo", "auroc_hi", "npv", "threshold"} <= set(saved.columns)
    y = ev.has_tissue
    for model in CLS:
        score = ev.predictions[model].probs
        row = t.set_index("model").loc[model]
        assert row["auroc"] == pytest.approx(roc_auc_score(y, score))
        pred = score >= 0.5
        assert row["accuracy"] == pytest.approx(np.mean(pred == y))
        assert row["npv"] == pytest.approx(np.sum(~pred & ~y) / np.sum(~pred))
        assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"]
    assert (t["n_frames"] == 32).all() and (t["n_positive"] == 16).all()


def test_youden_thresholds_are_per_classifier(study):
    ev = _evaluation(study, youden=True)
    t = ev.table3(save=False)
    for model in CLS:
        expected = M.youden_threshold(ev.has_tissue, ev.predictions[model].probs)
        assert t.set_index("model").loc[model, "threshold"] == pytest.approx(expected)
    assert (t["threshold_rule"] == "youden (test set)").all()


def test_table4_on_tissue_frames_matches_direct_computation(study):
    from endolib.data import load_mask

    root, data_dir = study
    ev = _evaluation(study)
    t = ev.table4().set_index("model")
    assert (root / "results/smoke/table4_segmenters.csv").exists()
    test = ev.test[ev.has_tissue]
    for model in SEG:
        pred = E.load_predictions(model, "smoke", root)
        assert ev.predictions[model].probs is None  # released after the reduction to per-image statistics
        keep = ev.has_tissue
        masks = np.stack([load_mask(data_dir, f, size=pred.size) > 0 for f in test["frame_id"]])
        levels = pred.probs[keep]
        c = M.seg_counts(levels >= 128, masks)
        assert t.loc[model, "n_frames"] == 16 and t.loc[model, "size"] == pred.size
        assert t.loc[model, "dsc"] == pytest.approx(np.mean(M.dice(c.tp, c.fp, c.fn)))
        assert t.loc[model, "sensitivity_pooled"] == pytest.approx(c.tp.sum() / (c.tp.sum() + c.fn.sum()))
        from sklearn.metrics import average_precision_score

        assert t.loc[model, "auprc"] == pytest.approx(average_precision_score(masks.ravel(), levels.ravel()))
        assert t.loc[model, "dsc_lo"] <= t.loc[model, "dsc"] <= t.loc[model, "dsc_hi"]


def test_pairwise_tests_file(study):
    root, _ = study
    ev = _evaluation(study)
    t = ev.pairwise()
    saved = pd.read_csv(root / "results/smoke/pairwise_tests.csv")
    assert len(saved) == len(t) == 5 + 1 + 3  # cls: 1 pair x 5 metrics + DeLong; seg: 1 pair x 3 metrics
    assert set(t["test"]) == {"paired bootstrap", "DeLong"}
    assert t["p"].between(0, 1).all() and (t["p_holm"] >= t["p"] - 1e-12).all()
    pm = E.p_matrix(t, "auroc", "DeLong")
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
    assert t.loc[(t.model == "U-Net") & (t.data == "phantom (ours)"), "dsc"].item() == E.format_ci(
        ours.loc["unet", "dsc"], ours.loc["unet", "dsc_lo"], ours.loc["unet", "dsc_hi"])


def test_figures_are_saved(study, monkeypatch):
    import endolib.plotting

    ev = _evaluation(study)
    ev.figure_pr()  # one real save (PNG + PDF)
    assert (ev.paths.figures / "fig6_pr.png").exists() and (ev.paths.figures / "fig6_pr.pdf").exists()
    saved = []  # the others: check names and folder without paying for rendering at 200 dpi
    monkeypatch.setattr(endolib.plotting, "save_figure", lambda fig, name, folder=None: saved.append((name, folder)))
    ev.figure_roc()
    comparison, sweep = ev.two_stage()
    ev.figure_two_stage(comparison, sweep)
    assert saved == [("fig5_roc", ev.paths.figures), ("fig_two_stage_sweep", ev.paths.figures)]


def test_two_stage_gate(study):
    root, _ = study
    ev = _evaluation(study)
    comparison, sweep = ev.two_stage("resnet18", "unet", gate_threshold=0.5)
    alone, gated = comparison.iloc[0], comparison.iloc[1]
    assert "paper Table 5" in alone["latency_source"]  # no table5_compute.csv yet: stated assumption
    assert alone["fps"] == pytest.approx(1000 / 27.0)
    assert gated["latency_ms"] == pytest.approx(1.2 + gated["share_passed"] * 27.0)
    assert gated["neg_false_mask"] <= alone["neg_false_mask"]
    assert gated["dsc_pos"] <= alone["dsc_pos"] + 1e-12  # a gate can only remove predictions
    assert len(sweep) == E.GATE_SWEEP_POINTS
    first = sweep.iloc[0]  # threshold 0: every frame passes
    assert first["share_passed"] == 1.0 and first["dsc_pos"] == pytest.approx(alone["dsc_pos"])
    text = E.describe_two_stage(comparison)
    assert text.startswith("Gating unet with resnet18 at p >= 0.50") and "paper Table 5" in text
    saved = pd.read_csv(root / "results/smoke/two_stage.csv")
    assert len(saved) == 2 + E.GATE_SWEEP_POINTS
    assert {"neg_false_mask_lo", "dsc_pos_hi", "fps"} <= set(saved.columns)


def test_two_stage_with_perfect_gate_and_measured_latency(study):
    root, data_dir = study
    test = pd.read_csv(data_dir / "index.csv").query("split == 'test'")
    write_predictions(root / "runs/smoke/resnet18", test["frame_id"], test["has_tissue"].to_numpy(np.float32),
                      32, "cls")
    (root / "results/smoke").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": ["resnet18", "unet"], "latency_ms": [2.0, 10.0]}).to_csv(
        root / "results/smoke/table5_compute.csv", index=False)
    ev = _evaluation(study)
    comparison, _ = ev.two_stage("resnet18", "unet")
    alone, gated = comparison.iloc[0], comparison.iloc[1]
    assert gated["neg_false_mask"] == 0.0 and gated["pos_missed"] == 0.0
    assert gated["dsc_pos"] == pytest.approx(alone["dsc_pos"])
    assert gated["share_passed"] == 0.5 and gated["fps"] == pytest.approx(1000 / (2.0 + 0.5 * 10.0))
    assert "measured" in gated["latency_source"]


def test_gate_metrics_counts_gate_misses_as_empty_predictions():
    from endolib.stats import SegmenterStats

    z = np.zeros((3, 256))
    st = SegmenterStats(np.array([4, 4, 0]), np.array([0, 2, 5]), np.array([0, 1, 0]), np.array([9, 9, 9]), z, z)
    r = E.gate_metrics(st, [1, 1, 0], [True, False, True])
    assert r["pos_missed"] == 0.5 and r["neg_false_mask"] == 1.0
    assert r["dsc_pos"] == pytest.approx((1.0 + 0.0) / 2)  # frame 2 gated out: DSC 0


def test_undefined_metrics_warn_not_crash(study, make_tiny_dataset):
    root, _ = study
    ev = _evaluation(study)
    st = ev.seg_stats["unet"].subset(~ev.has_tissue)  # no tissue: sensitivity undefined everywhere
    with pytest.warns(M.UndefinedMetricWarning):
        m = st.metrics(names=("sensitivity", "sensitivity_pooled", "dsc"))
    assert np.isnan(m["sensitivity"]) and np.isnan(m["sensitivity_pooled"]) and np.isfinite(m["dsc"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(M.auroc([0, 0], [0.1, 0.2]))


def test_metric_definitions_cover_tables():
    d = E.metric_definitions()
    assert {"table3", "table4", "two_stage"} == set(d["table"])
