"""Tests of endolib.evaluation.qualitative on a tiny prepared dataset with synthetic predictions of known quality.

Predictions (S = 16, the SegFormer at 32) are made from the ground truth so every score is known:
``unet`` is perfect, ``aunet`` misses one positive frame entirely, ``resunet`` paints a false blob on one
negative frame, ``segformer_b0`` is perfect except that it keeps only the top half of the mask on a third frame.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from endolib.config import get_profile, study_paths
from endolib.data.dataset import load_index, load_mask
from endolib.evaluation.architecture import (
    architecture_figure,
    architecture_table,
    table2_layout,
)
from endolib.evaluation.qualitative import (
    DISPLAY_HEIGHT,
    FIGURE_NAMES,
    GT_COLOUR,
    FigureInputs,
    FigureInputWarning,
    _contour,
    _display_frame,
    _display_prob,
    choose_frames,
    disagreement,
    failure_cases,
    failure_figure,
    frame_scores,
    load_figure_inputs,
    pipeline_figure,
    qualitative_figure,
    read_latencies,
)
from endolib.plotting import paper_style, save_figure

S = 16
#: a figure is "not blank" when its pixel standard deviation exceeds this (0-255 scale) ...
MIN_PIXEL_STD = 20.0
#: ... and fewer than this share of its pixels are pure white
MAX_WHITE_SHARE = 0.97


def _test_frames(data_dir) -> pd.DataFrame:
    idx = load_index(data_dir)
    return idx[idx["split"] == "test"].reset_index(drop=True)


def _special_frames(data_dir) -> dict[str, str]:
    test = _test_frames(data_dir)
    pos, neg = test[test.has_tissue == 1].frame_id.tolist(), test[test.has_tissue == 0].frame_id.tolist()
    return {"missed": pos[0], "halved": pos[1], "blob": neg[0]}


#: the qualitative figures draw one model instance: the first training seed (CONTRACTS.md)
SEED0 = get_profile("smoke").training_seeds[0]


def _write(runs_dir, model, ids, probs) -> None:
    run = runs_dir / model / f"seed{SEED0}"
    run.mkdir(parents=True, exist_ok=True)
    np.savez(run / "predictions.npz", frame_ids=np.array(ids), probs=np.stack(probs).astype(np.uint8),
             size=probs[0].shape[-1], task="seg")


def _top_half(mask: np.ndarray) -> np.ndarray:
    rows = np.nonzero(mask.any(axis=1))[0]
    out = mask.copy()
    out[(rows.min() + rows.max()) // 2 + 1:] = 0
    return out


@pytest.fixture
def runs(tiny_dataset, tmp_path):
    """``(data_dir, root, special)``: four segmenters' predictions in the tiny dataset's own study
    (``root/runs/smoke/<dataset>``)."""
    root = tmp_path / "root"
    runs_dir = study_paths("smoke", tiny_dataset, root=root).runs
    ids = _test_frames(tiny_dataset).frame_id.tolist()
    special = _special_frames(tiny_dataset)
    gt = {s: [load_mask(tiny_dataset, f, size=s) for f in ids] for s in (S, 2 * S)}
    perfect = [255 * m for m in gt[S]]
    _write(runs_dir, "unet", ids, perfect)
    _write(runs_dir, "aunet", ids, [np.zeros_like(m) if f == special["missed"] else 255 * m
                                    for f, m in zip(ids, gt[S])])
    blob = np.zeros((S, S), np.uint8)
    blob[2:8, 3:10] = 230
    _write(runs_dir, "resunet", ids, [blob if f == special["blob"] else 255 * m for f, m in zip(ids, gt[S])])
    _write(runs_dir, "segformer_b0", ids, [255 * (_top_half(m) if f == special["halved"] else m)
                                           for f, m in zip(ids, gt[2 * S])])
    return tiny_dataset, root, special


def _inputs(runs, models=None) -> FigureInputs:
    data_dir, root, _ = runs
    return load_figure_inputs("smoke", data_dir=data_dir, models=models, root=root)


def _image_stats(png) -> tuple[float, float]:
    """Pixel standard deviation and share of pure-white pixels of a saved figure."""
    with Image.open(png) as im:
        a = np.asarray(im.convert("RGB"), np.float32)
    return float(a.std()), float((a >= 254).all(axis=-1).mean())


def _assert_not_blank(png) -> None:
    assert png.is_file() and png.with_suffix(".pdf").is_file(), png
    std, white = _image_stats(png)
    assert std > MIN_PIXEL_STD, f"{png.name}: pixel std {std:.1f} looks blank"
    assert white < MAX_WHITE_SHARE, f"{png.name}: {white:.1%} white pixels looks blank"


def test_blank_check_rejects_blank_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 2))
    png = save_figure(fig, "blank", tmp_path)
    plt.close(fig)
    with pytest.raises(AssertionError, match="blank"):
        _assert_not_blank(png)


def test_inputs_default_to_models_with_predictions(runs):
    inputs = _inputs(runs)
    assert inputs.models == ["unet", "resunet", "aunet", "segformer_b0"]  # the paper's order
    assert inputs.summary()["size"].tolist() == [S, S, S, 2 * S]
    assert not inputs.problems


def test_missing_or_unusable_models_warn_and_name_the_problem(runs):
    data_dir, root, _ = runs
    with pytest.warns(FigureInputWarning, match=r"r2unet.*--only 03 --arch r2unet"):
        inputs = _inputs(runs, models=["unet", "r2unet"])
    assert list(inputs.predictions) == ["unet"] and inputs.models == ["unet", "r2unet"]
    assert inputs.summary().set_index("model").loc["r2unet", "status"] == "no predictions"
    with pytest.warns(FigureInputWarning, match="'resnet18' is not a segmenter"):
        _inputs(runs, models=["unet", "resnet18"])
    # predictions of another test split (a stale run) are refused, the other models still load
    stale = study_paths("smoke", data_dir, root=root).run("aunet", SEED0) / "predictions.npz"
    with np.load(stale) as z:
        np.savez(stale, **{**{k: z[k] for k in z.files}, "frame_ids": np.roll(z["frame_ids"], 1)})
    with pytest.warns(FigureInputWarning, match="aunet.*different test split"):
        inputs = _inputs(runs)
    assert "aunet" not in inputs.predictions and "unet" in inputs.predictions


def test_no_predictions_at_all_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no usable segmenter predictions.*--only 03"):
        load_figure_inputs("smoke", data_dir=tiny_dataset, root=tmp_path / "empty")


def test_choose_frames_is_seeded_and_uses_test_positives(tiny_dataset):
    index = load_index(tiny_dataset)
    test_pos = set(index[(index.split == "test") & (index.has_tissue == 1)].frame_id)
    a = choose_frames(index, n_frames=3, seed=1)
    assert a == choose_frames(index, n_frames=3, seed=1)
    assert len(a) == 3 and set(a) <= test_pos
    draws = {tuple(choose_frames(index, n_frames=3, seed=s)) for s in range(10)}
    assert len(draws) > 1, "the seed must change the draw"
    assert choose_frames(index, n_frames=100, seed=0) == sorted(test_pos)  # capped, index order


def test_choose_frames_rejects_ids_outside_the_test_split(tiny_dataset):
    index = load_index(tiny_dataset)
    train_id = index[index.split == "train"].frame_id.iloc[0]
    test_id = index[index.split == "test"].frame_id.iloc[3]
    with pytest.warns(FigureInputWarning) as rec:
        chosen = choose_frames(index, frame_ids=[train_id, "no_such_frame", test_id])
    assert chosen == [test_id]
    messages = " | ".join(str(w.message) for w in rec)
    assert f"{train_id!r} is in the train split" in messages and "'no_such_frame' is not in" in messages
    with pytest.raises(ValueError, match="none of the frame ids"), pytest.warns(FigureInputWarning):
        choose_frames(index, frame_ids=["no_such_frame"])


def test_frame_scores_match_the_constructed_errors(runs):
    special = runs[2]
    scores = frame_scores(_inputs(runs), progress=False).set_index(["model", "frame_id"])
    pos = scores[scores.has_tissue == 1]
    assert np.allclose(pos.loc["unet", "dsc"], 1.0)
    assert scores.loc[("aunet", special["missed"]), "dsc"] == 0.0
    assert 0.3 < scores.loc[("segformer_b0", special["halved"]), "dsc"] < 0.9
    assert np.allclose(scores.loc["segformer_b0"].drop(special["halved"]).query("has_tissue == 1").dsc, 1.0)
    neg = scores[scores.has_tissue == 0]
    assert neg.loc["unet", "pred_fraction"].max() == 0.0
    assert scores.loc[("resunet", special["blob"]), "pred_fraction"] == pytest.approx(6 * 7 / S**2)


def test_failure_cases_find_the_constructed_failures(runs):
    special = runs[2]
    inputs = _inputs(runs)
    scores = frame_scores(inputs, progress=False)
    d = disagreement(inputs)
    rest = d.drop([special["missed"], special["blob"], special["halved"]])
    # models at different input sizes disagree a little at boundaries; the constructed failures stand out
    assert min(d[special["missed"]], d[special["blob"]], d[special["halved"]]) > 2 * rest.max()
    assert (rest[_test_frames(runs[0]).set_index("frame_id").has_tissue[rest.index] == 0] == 0).all()
    cases = failure_cases(scores, d, n_per_category=1)
    assert cases[["category", "frame_id"]].values.tolist() == [
        ["lowest DSC", special["missed"]], ["false mask", special["blob"]], ["models disagree", special["halved"]]]
    assert cases.label.iloc[0] == "mean DSC 0.75"


def test_overlay_contours_are_aligned_with_the_image(tiny_dataset):
    import matplotlib.pyplot as plt

    fid = _test_frames(tiny_dataset).query("has_tissue == 1").frame_id.iloc[0]
    image, gt = _display_frame(tiny_dataset, fid)
    assert image.shape[:2] == gt.shape and image.shape[0] == DISPLAY_HEIGHT
    # the ground truth is the bright ellipse of the frame: the mask must cover the bright pixels
    bright = image.mean(axis=-1) > 150
    assert (bright == gt).mean() > 0.97
    fig, ax = plt.subplots()
    _contour(ax, gt, 0.5, GT_COLOUR)
    verts = np.concatenate([p.vertices for p in ax.collections[-1].get_paths()])
    plt.close(fig)
    # every contour vertex sits between a mask pixel and a background pixel (within half a pixel)
    ys, xs = np.nonzero(gt)
    edge = np.array([[y, x] for y, x in zip(ys, xs) if not gt[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].all()])
    dist = np.min(np.hypot(verts[:, None, 1] - edge[None, :, 0], verts[:, None, 0] - edge[None, :, 1]), axis=1)
    assert dist.max() <= 1.0
    # a prediction equal to the ground truth at model size lands on the ground truth after display resizing
    prob = load_mask(tiny_dataset, fid, size=S).astype(np.float32)
    shown = _display_prob(prob, gt.shape) >= 0.5
    assert (shown == gt).mean() > 0.95


def test_every_figure_renders_and_is_not_blank(runs, tmp_path):
    paper_style()
    inputs = _inputs(runs)
    out = tmp_path / "figures"
    fig7 = qualitative_figure(inputs, choose_frames(inputs.index, n_frames=1, seed=0))
    scores = frame_scores(inputs, progress=False)
    fig8 = failure_figure(inputs, failure_cases(scores, disagreement(inputs), n_per_category=1))
    table = architecture_table(width_mult=0.125, models=["unet", "ar2unet"])
    figs = {"fig7_qualitative": fig7, "fig8_failures": fig8,
            "fig1_pipeline": pipeline_figure({"resnet18": 1.5, "unet": 20.0}),
            "fig_table2_architectures": architecture_figure(table)}
    assert set(figs) == set(FIGURE_NAMES)
    for name, fig in figs.items():
        _assert_not_blank(save_figure(fig, name, figures_dir=out))
    assert len(fig7.axes) == 1 * (2 + 4)  # 1 frame x (input, ground truth, 4 models)
    assert len(fig8.axes) == 3 * (2 + 4)  # one frame per failure category


def test_bad_frame_and_missing_model_still_render(runs, tmp_path):
    inputs = None
    data_dir = runs[0]
    index = load_index(data_dir)
    train_id = index[index.split == "train"].frame_id.iloc[0]
    test_ids = index[index.split == "test"].frame_id.tolist()[:2]
    with pytest.warns(FigureInputWarning) as rec:
        inputs = _inputs(runs, models=["unet", "r2unet", "aunet"])
        frames = choose_frames(inputs.index, frame_ids=[test_ids[0], train_id, test_ids[1]])
    assert frames == test_ids
    assert any("r2unet" in str(w.message) for w in rec) and any(train_id in str(w.message) for w in rec)
    fig = qualitative_figure(inputs, frames)
    png = save_figure(fig, "fig7_qualitative", figures_dir=tmp_path)
    _assert_not_blank(png)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("no predictions") == len(frames)  # the r2unet column holds placeholders
    assert sum(t.startswith("DSC") or t.startswith("false") for t in texts) == 2 * len(frames)


def test_latencies_and_pipeline_text(tmp_path):
    path = tmp_path / "table5_compute.csv"
    with pytest.warns(FigureInputWarning, match="latency table not found"):
        assert read_latencies(path) == {}
    pd.DataFrame({"model": ["resnet18", "unet", "aunet"], "latency_ms": [1.25, 30.0, np.nan]}).to_csv(path,
                                                                                                   index=False)
    lat = read_latencies(path)
    assert lat == {"resnet18": 1.25, "unet": 30.0}
    texts = " | ".join(t.get_text() for t in pipeline_figure(lat).axes[0].texts)
    assert "ResNet-18: 1.2 ms" in texts and "AU-Net: not measured" in texts and "31.2 ms" in texts
    texts = " | ".join(t.get_text() for t in pipeline_figure({}).axes[0].texts)
    assert "latency not measured" in texts
    pd.DataFrame({"model": ["unet"], "ms": [3.0]}).to_csv(path, index=False)
    with pytest.warns(FigureInputWarning, match=r"missing column\(s\) \['latency_ms'\]"):
        assert read_latencies(path) == {}


#: Table 2 of the paper (C_inter, C_out per level L1..L4; C_attn per level L1..L3)
PAPER_TABLE2 = {
    "unet": ((16, 32, 64, 128), (64, 128, 256, 512), None),
    "resunet": ((16, 32, 64, 128), (64, 128, 256, 512), None),
    "r2unet": (None, (32, 64, 128, 256), None),
    "aunet": ((16, 32, 64, 128), (64, 128, 256, 512), (16, 32, 64)),
    "aresunet": ((16, 32, 64, 128), (64, 128, 256, 512), (16, 32, 64)),
    "ar2unet": (None, (32, 64, 128, 256), (8, 16, 32)),
}


def test_architecture_table_reproduces_paper_table2(tmp_path):
    t = architecture_table()
    assert t.groupby("model", sort=False).size().to_dict() == {m: 4 for m in PAPER_TABLE2}
    assert t[t.model == "unet"].resolution.tolist() == ["256x256", "128x128", "64x64", "32x32"]
    for m, (inter, out, attn) in PAPER_TABLE2.items():
        rows = t[t.model == m].sort_values("level")
        assert tuple(rows.c_out) == out, m
        assert (rows.c_inter.isna().all() if inter is None else tuple(rows.c_inter) == inter), m
        got_attn = rows.c_attn.iloc[:3]
        assert (got_attn.isna().all() if attn is None else tuple(got_attn) == attn), m
        assert rows.merge_block.iloc[:3].eq("attention" if attn else "concat").all() and pd.isna(rows.merge_block.iloc[3])
    assert set(t[t.model.isin(["r2unet", "ar2unet"])].conv_block) == {"recurrent residual"}
    layout = table2_layout(t)
    assert layout.loc["AR2U-Net"].tolist() == ["recurrent residual", "attention", "n/a", "32, 64, 128, 256",
                                               "8, 16, 32", "6.00"]
    half = architecture_table(width_mult=0.5, size=64, models=["aunet"])
    assert half.c_out.tolist() == [32, 64, 128, 256] and half.c_attn.tolist()[:3] == [8, 16, 32]
    assert half.resolution.tolist()[-1] == "8x8"
    with pytest.raises(ValueError, match="not a U-Net variant"):
        architecture_table(models=["segformer_b0"])


def test_no_warnings_on_good_input(runs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureInputWarning)
        inputs = _inputs(runs)
        qualitative_figure(inputs, choose_frames(inputs.index, n_frames=1, seed=0))
