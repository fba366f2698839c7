"""Tests of endolib.training: folds, augmentation, Dice loss, resume, NaN stop, outputs, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from endolib.config import get_profile
from endolib.training import losses
from endolib.training.augment import (
    FrameDataset,
    apply_affine,
    colour_jitter,
    random_affine,
)
from endolib.training.fingerprint import _fingerprint
from endolib.training.folds import patient_folds
from endolib.training.frames import IMAGENET_MEAN, IMAGENET_STD, FrameSet
from endolib.training.losses import dice_loss
from endolib.training.runs import finish_run, train_final_unit, train_model, train_seeds
from endolib.training.settings import FINAL_FOLD, HISTORY_COLUMNS, training_settings
from endolib.training.unit import (
    NonFiniteLossError,
    _unit_seed,
    search_units,
    train_unit,
    unit_dir,
)


def _settings(data_dir, tmp_path, arch="unet", name="run", **kw):
    kw.setdefault("num_threads", 1)
    return training_settings(arch, "smoke", data_dir=data_dir, model_dir=tmp_path / name,
                             figures_dir=tmp_path / "figures", **kw)


# ------------------------------------------------------------------------------------------------- folds
@pytest.mark.parametrize("folds", [1, 2, 3, 5])
def test_grouped_folds_never_share_a_patient(folds):
    rng = np.random.default_rng(folds)
    patients = rng.choice([f"P{i:02d}" for i in range(11)], size=300)
    labels = rng.integers(0, 2, size=300)
    splits = patient_folds(patients, labels, folds, seed=3)
    assert len(splits) == folds
    for tr, va in splits:
        assert len(va) and len(tr)
        assert set(patients[tr]).isdisjoint(patients[va])
        assert len(tr) + len(va) == len(patients)
    if folds > 1:  # every patient validates exactly once
        val_pats = [set(patients[va]) for _, va in splits]
        assert sum(len(v) for v in val_pats) == len(set(patients))
    else:  # hold-out of ~20% of the patients
        assert len(set(patients[splits[0][1]])) in (2, 3)


def test_folds_need_enough_patients():
    with pytest.raises(ValueError, match="needs at least 3 training patients; the training split has 2"):
        patient_folds(np.array(["a", "a", "b", "b"]), np.array([0, 1, 0, 1]), 3, seed=0)


# ------------------------------------------------------------------------------------------- augmentation
def _blob_frames(n=4, size=32):
    rng = np.random.default_rng(0)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(2, size // 2, 2)
        masks[i, y:y + 12, x:x + 6] = 1  # asymmetric blobs off-centre: any rotation/flip moves them
    images = np.repeat((masks * 255)[..., None], 3, axis=-1).astype(np.uint8)
    return FrameSet(np.array([f"f{i}" for i in range(n)]), np.array(["p"] * n), np.ones(n, np.int64), images, masks)


def test_augmentation_moves_image_and_mask_together():
    frames = _blob_frames()
    ds = FrameDataset(frames, "seg", augment=True, expand=3, rotation_deg=45.0, seed=1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    moved = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x, y = ds[i]
            img = (x * std + mean)[0]  # back to [0, 1]; the image is the mask painted white
            agree = ((img > 0.5) == (y[0] > 0.5)).float().mean()
            assert agree > 0.97, (epoch, i, float(agree))
            moved += not torch.equal(y[0], torch.from_numpy(frames.masks[i % len(frames)]).float())
    assert moved > 0.8 * 3 * len(ds)  # the augmentation really moved the frames


def test_affine_identity_flips_and_determinism():
    img = torch.rand(3, 16, 16)
    mask = (torch.rand(1, 16, 16) > 0.5).float()
    out, m = apply_affine(img, mask)
    assert torch.allclose(out, img, atol=1e-6) and torch.equal(m, mask)
    out, m = apply_affine(img, mask, hflip=True, vflip=True)
    assert torch.allclose(out, img.flip(-1).flip(-2), atol=1e-6) and torch.equal(m, mask.flip(-1).flip(-2))
    a = random_affine(np.random.default_rng([1, 2, 3]), 20.0, 0.1)
    assert a == random_affine(np.random.default_rng([1, 2, 3]), 20.0, 0.1)
    assert -20 <= a["angle"] <= 20 and 0.9 <= a["scale"] <= 1.1
    ds = FrameDataset(_blob_frames(), "seg", augment=True, rotation_deg=30.0, seed=5)
    ds.set_epoch(2)
    x1, _ = ds[1]
    ds.set_epoch(3)
    x2, _ = ds[1]
    ds.set_epoch(2)
    assert torch.equal(ds[1][0], x1) and not torch.equal(x1, x2)


def test_colour_jitter_changes_the_image_only_and_is_seeded():
    frames = _blob_frames()
    plain = FrameDataset(frames, "seg", augment=True, rotation_deg=30.0, seed=5)
    jit = FrameDataset(frames, "seg", augment=True, rotation_deg=30.0, colour_jitter=0.3, seed=5)
    for i in range(len(frames)):
        (x0, y0), (x1, y1) = plain[i], jit[i]
        assert torch.equal(y0, y1)  # same geometry, the mask untouched
        assert not torch.equal(x0, x1)
        assert torch.equal(jit[i][0], x1)  # seeded by (seed, epoch, i)
    img = torch.full((3, 4, 4), 0.5)
    gains = [colour_jitter(img, np.random.default_rng(k), 0.3)[:, 0, 0] / 0.5 for k in range(200)]
    g = torch.stack(gains)
    assert float(g.min()) >= 0.7 * 0.7 - 1e-6 and float(g.max()) <= 1.3 * 1.3 + 1e-6
    assert float(g.std(0).min()) > 0.1  # every channel varies
    with pytest.raises(ValueError, match="colour_jitter must be in"):
        FrameDataset(frames, "seg", colour_jitter=1.0)


# --------------------------------------------------------------------------------------------------- loss
def test_dice_loss_matches_hand_computation():
    p = torch.tensor([[0.2, 0.8], [0.6, 0.0]]).view(1, 1, 2, 2)
    y = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    # Eq. 1: 1 - 2 * (0.8 + 0.6) / ((0.2 + 0.8 + 0.6 + 0.0) + 3 + eps)
    assert float(dice_loss(p, y, eps=1e-6)) == pytest.approx(1 - 2.8 / (4.6 + 1e-6), abs=1e-7)
    # a batch: the sums run over both images
    p2 = torch.cat([p, torch.full_like(p, 0.5)])
    y2 = torch.cat([y, torch.zeros_like(y)])
    assert float(dice_loss(p2, y2, eps=0.0)) == pytest.approx(1 - 2.8 / (4.6 + 2.0), abs=1e-7)
    assert float(dice_loss(y, y, eps=1e-6)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        dice_loss(p, y[..., :1])


# ------------------------------------------------------------------------------------------ training runs
@pytest.mark.parametrize("extra", [{}, {"weight_average": 0.9, "grad_clip_norm": 0.5}], ids=["plain", "averaged"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tiny_dataset, tmp_path, extra):
    # with a weight average its state is in the checkpoint too, so a resumed run keeps the same average
    kw = dict(epochs=2, folds=2, search_trials=2, expand=2, **extra)
    full = train_model(_settings(tiny_dataset, tmp_path, name="full", **kw), progress=False)

    class Interrupt(Exception):
        pass

    seen = []

    def stop_after_three(row):
        seen.append(row)
        if len(seen) == 3:  # in the middle of the second (trial, fold) training
            raise Interrupt

    s = _settings(tiny_dataset, tmp_path, name="resumed", **kw)
    with pytest.raises(Interrupt):
        train_model(s, progress=False, on_epoch_end=stop_after_three)
    # the first unit (trial 0, fold 0) is finished, the second has a one-epoch checkpoint
    assert (unit_dir(s, 0, 0) / "unit.json").exists() and not (unit_dir(s, 0, 0) / "resume.pt").exists()
    assert (unit_dir(s, 0, 1) / "resume.pt").exists() and not (unit_dir(s, 0, 1) / "unit.json").exists()
    assert not (s.run_dir / "model.safetensors").exists()
    after = []
    resumed = train_model(s, progress=False, on_epoch_end=after.append)
    assert not list(s.run_dir.glob("units/*/resume.pt"))
    assert len(after) == len(full.history) - 3  # it continued; the first three epochs were not redone

    a, b = load_file(full.run_dir / "model.safetensors"), load_file(s.run_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cols = ["trial", "fold", "epoch", "train_loss", "val_loss", "val_metric", "lr"]
    pd.testing.assert_frame_equal(full.history[cols], resumed.history[cols])
    assert (full.history["fold"] == FINAL_FOLD).sum() >= 1  # folds > 1: final retraining on all data
    pa, pb = np.load(full.run_dir / "predictions.npz"), np.load(s.run_dir / "predictions.npz")
    assert np.array_equal(pa["probs"], pb["probs"])
    assert full.test_summary == resumed.test_summary


def test_weight_average_and_gradient_clipping(tiny_dataset, tmp_path):
    def weights(name, **kw):
        run = train_model(_settings(tiny_dataset, tmp_path, name=name, epochs=2, **kw), progress=False)
        return load_file(run.run_dir / "model.safetensors")

    plain = weights("plain")
    # a clipping norm no gradient reaches scales every gradient by exactly 1: the same weights, bit for bit
    assert all(torch.equal(plain[k], v) for k, v in weights("loose", grad_clip_norm=1e9).items())
    tight = weights("tight", grad_clip_norm=1e-3)
    averaged = weights("averaged", weight_average=0.9)
    assert averaged.keys() == plain.keys()  # the average is saved as the model itself
    for other in (tight, averaged):
        assert any(not torch.equal(plain[k], other[k]) for k in plain if plain[k].is_floating_point())
    for bad in ({"weight_average": 1.0}, {"weight_average": -0.1}, {"grad_clip_norm": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            get_profile("smoke", **bad)


def test_channels_last_training_is_deterministic_and_agrees_with_nchw(tiny_dataset, tmp_path):
    # the quick profile trains in channels-last layout: the same seed gives the same run, and the layout changes
    # only the rounding of the convolutions, not what is learned
    kw = dict(epochs=2)
    nhwc = [train_model(_settings(tiny_dataset, tmp_path, name=f"nhwc{i}", channels_last=True, **kw), progress=False)
            for i in range(2)]
    nchw = train_model(_settings(tiny_dataset, tmp_path, name="nchw", channels_last=False, **kw), progress=False)
    a, b, c = (load_file(r.run_dir / "model.safetensors") for r in (*nhwc, nchw))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.is_contiguous() for v in a.values())  # weights are saved in the usual layout
    cols = ["train_loss", "val_loss", "val_metric"]
    pd.testing.assert_frame_equal(nhwc[0].history[cols], nhwc[1].history[cols])
    np.testing.assert_allclose(nhwc[0].history[cols].to_numpy(), nchw.history[cols].to_numpy(), atol=1e-3)
    assert nhwc[0].config["fingerprint"] != nchw.config["fingerprint"]  # a layout change retrains


def test_segmenter_run_writes_the_layout(tiny_dataset, tmp_path):
    res = train_model(_settings(tiny_dataset, tmp_path, epochs=2), progress=False)
    d = res.run_dir
    for f in ("config.json", "model.safetensors", "history.csv", "environment.json", "predictions.npz",
              "test_summary.json"):
        assert (d / f).exists(), f
    assert (tmp_path / "figures" / "learning_curve_unet.png").exists()
    index = pd.read_csv(tiny_dataset / "index.csv", dtype=str)
    test_ids = index.loc[index["split"] == "test", "frame_id"].tolist()
    pred = np.load(d / "predictions.npz")
    assert pred["frame_ids"].tolist() == test_ids  # all test frames, positives and negatives, index order
    assert pred["probs"].dtype == np.uint8 and pred["probs"].shape == (len(test_ids), 32, 32)
    assert int(pred["size"]) == 32 and str(pred["task"]) == "seg"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["final_model"]["method"] == "holdout_best" and cfg["input_size"] == 32
    assert cfg["model_kwargs"] == {"width_mult": 0.125}
    assert list(pd.read_csv(d / "history.csv").columns) == HISTORY_COLUMNS
    summary = json.loads((d / "test_summary.json").read_text())
    assert summary["metric"] == "dsc" and 0.0 <= summary["dsc"] <= 1.0
    # validation and training patients never mix, and only frames with tissue are used by default
    f = res.folds
    assert set(f.loc[f.part == "train", "patients"].iloc[0].split()).isdisjoint(
        f.loc[f.part == "val", "patients"].iloc[0].split())
    assert (f["frames"] == f["with_tissue"]).all()


def test_classifier_run_predicts_probabilities(tiny_dataset, tmp_path):
    res = train_model(_settings(tiny_dataset, tmp_path, arch="resnet18", epochs=1), progress=False)
    pred = np.load(res.run_dir / "predictions.npz")
    assert pred["probs"].dtype == np.float32 and pred["probs"].shape == (12,)
    assert ((pred["probs"] >= 0) & (pred["probs"] <= 1)).all() and str(pred["task"]) == "cls"
    assert res.test_summary["metric"] == "auroc" and 0.0 <= res.test_summary["auroc"] <= 1.0
    assert (res.folds["frames"] > res.folds["with_tissue"]).all()  # classifiers see negatives too


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    poison = {"on": False}
    real = dice_loss

    def poisoned(probs, target, eps=1e-6):
        loss = real(probs, target, eps)
        return loss * float("nan") if poison["on"] and probs.requires_grad else loss

    def after_epoch(row):
        poison["on"] = row["epoch"] >= 1  # from the second epoch on, the training loss is NaN

    monkeypatch.setattr(losses, "dice_loss", poisoned)
    s = _settings(tiny_dataset, tmp_path, epochs=3, batch_size=2)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training \(batch \d+\) loss .* epoch 2 .*"
                                                 r"last good checkpoint .* epoch 1\) is kept"):
        train_model(s, progress=False, on_epoch_end=after_epoch)
    ckpt = torch.load(unit_dir(s, 0, 0) / "resume.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (s.run_dir / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------- bad input
def test_unknown_architecture_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture 'unet3'; valid names: resnet18, .*segformer_b1"):
        training_settings("unet3", "smoke")
    with pytest.raises(ValueError, match="unet is a segmenter, but this notebook trains classifiers: resnet18"):
        training_settings("unet", "smoke", task="cls")


def test_empty_training_split_is_an_error(make_tiny_dataset, tmp_path):
    data_dir = make_tiny_dataset(n_patients=2, n_test=2)
    with pytest.raises(ValueError, match=r"index.csv: the training split is empty"):
        train_model(_settings(data_dir, tmp_path), progress=False)


def test_fold_without_positives_is_an_error(tiny_dataset, tmp_path):
    index = pd.read_csv(tiny_dataset / "index.csv", dtype={"frame_id": str})
    index.loc[index["split"] == "train", "has_tissue"] = 0
    index.to_csv(tiny_dataset / "index.csv", index=False)
    for f in (tiny_dataset / "masks").glob("*.png"):  # keep masks consistent with the labels
        if index.set_index("frame_id").loc[f.stem, "split"] == "train":
            from PIL import Image

            Image.fromarray(np.zeros((40, 48), np.uint8)).save(f)
    with pytest.raises(ValueError, match=r"fold 0 training part .* has no frames with tissue"):
        train_model(_settings(tiny_dataset, tmp_path), progress=False)


# ------------------------------------------------------------------------------------------ seeds and units
def test_training_seeds_change_weights_not_the_data(tiny_dataset, tmp_path):
    s = _settings(tiny_dataset, tmp_path, epochs=1)
    res = train_seeds(s, progress=False)
    assert res.seeds == [42, 43] and [r.run_dir.name for r in res.runs] == ["seed42", "seed43"]
    a, b = (load_file(r.run_dir / "model.safetensors") for r in res.runs)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # initialisation, batches and augmentation differ
    c0, c1 = (json.loads((r.run_dir / "config.json").read_text()) for r in res.runs)
    assert c0["folds"] == c1["folds"] and c0["test_frame_ids_sha256"] == c1["test_frame_ids_sha256"]
    assert (c0["training_seed"], c1["training_seed"], c0["data_seed"]) == (42, 43, 42)
    mean, sd = res.mean_sd()
    assert mean == pytest.approx(np.mean([r.value for r in res.runs])) and sd >= 0
    assert "mean +- SD over 2 seeds" in res.headline() and "seed 43:" in res.headline()
    assert res.figure.exists() and list(res.table()["training_seed"]) == [42, 43]


def test_unit_seed_depends_on_seed_model_trial_fold_only():
    seeds = {_unit_seed(s, a, t, k) for s in (42, 43) for a in ("unet", "resnet18") for t in (0, 1)
             for k in (0, 1, FINAL_FOLD)}
    assert len(seeds) == 24  # every unit its own stream
    assert _unit_seed(42, "unet", 1, 0) == _unit_seed(42, "unet", 1, 0)


def test_units_run_in_any_order_give_the_same_run(tiny_dataset, tmp_path):
    kw = dict(epochs=1, folds=2, search_trials=2)
    ref = train_model(_settings(tiny_dataset, tmp_path, name="ref", **kw), progress=False)
    s = _settings(tiny_dataset, tmp_path, name="shuffled", **kw)
    with pytest.raises(FileNotFoundError, match=r"unit\(s\) t0_f0, t0_f1, t1_f0, t1_f1 .* are not finished"):
        finish_run(s, progress=False)
    for t, k in reversed(search_units(s)):  # the reverse of the serial order, as a Dask cluster may do
        train_unit(s, t, k, progress=False)
    train_final_unit(s, progress=False)
    got = finish_run(s, progress=False)
    a, b = load_file(ref.run_dir / "model.safetensors"), load_file(got.run_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (ref.run_dir / "predictions.npz").read_bytes() == (got.run_dir / "predictions.npz").read_bytes()
    # a finished unit is loaded, never retrained
    seen = []
    train_unit(s, 0, 0, progress=False, on_epoch_end=seen.append)
    assert seen == []


# ------------------------------------------------------------------------------------------------- device
def test_device_resolution_and_errors(monkeypatch, capsys):
    from endolib.device import _FELL_BACK, autocast_dtype, resolve_device, set_threads

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(_FELL_BACK, "said", False)
    assert resolve_device("auto") == torch.device("cpu")
    assert "no CUDA GPU visible" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"device='cuda' but torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        training_settings("unet", "smoke", device="tpu")
    assert autocast_dtype("auto", torch.device("cpu")) is None  # CPU numbers stay full precision
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert set_threads(1) == 1 and torch.get_num_threads() == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (CPU-only CI)")
def test_cuda_training_writes_cpu_checkpoints(tiny_dataset, tmp_path):
    res = train_model(_settings(tiny_dataset, tmp_path, epochs=1, device="cuda", amp="auto"), progress=False)
    w = load_file(res.run_dir / "model.safetensors")
    assert all(v.device.type == "cpu" for v in w.values())
    assert json.loads((res.run_dir / "config.json").read_text())["units"]["t0_f0"]["device"].startswith("cuda")
    assert 0.0 <= res.test_summary["dsc"] <= 1.0


# ------------------------------------------------------------------------------------------------- fingerprints
def _fp(arch, profile, **kw):
    index = pd.DataFrame({"frame_id": ["a", "b"], "patient_id": ["p1", "p2"], "split": ["train", "val"],
                          "has_tissue": [True, False]})
    return _fingerprint(training_settings(arch, profile, model_dir="m", data_dir="d", **kw), index)


def test_one_models_setting_retrains_only_that_model():
    # a unit is keyed by its resolved settings: a per_model entry for AR2U-Net retrains AR2U-Net, not U-Net
    q = get_profile("quick")
    other = q.replace(per_model={**q.per_model, "ar2unet": {"colour_jitter": 0.05}})
    assert _fp("unet", q) == _fp("unet", other)
    assert _fp("ar2unet", q) != _fp("ar2unet", other)
    # the same resolved value reached through per_task or set directly is the same unit
    assert _fp("unet", q) == _fp("unet", q.replace(per_task={**q.per_task, "seg": {}}, lr=q.for_model("unet").lr))


def test_student_settings_do_not_retrain_teachers():
    q = get_profile("quick")
    assert _fp("unet", q) == _fp("unet", q.replace(student_epochs=q.student_epochs + 5, kd_alpha=0.3,
                                                   student_widths=(0.5,)))
    assert _fp("unet", q) != _fp("unet", q.replace(seg_epochs=q.seg_epochs + 1))


def test_a_unit_trains_with_the_profiles_training_threads(tiny_dataset, tmp_path):
    # the thread count decides how a convolution's gradient is summed: a unit runs with train_threads whatever
    # num_threads (the process's, or a Dask worker's) says, and only train_threads keys it
    seen = []

    def threads(name, **kw):
        run = train_model(_settings(tiny_dataset, tmp_path, name=name, epochs=1, **kw), progress=False,
                          on_epoch_end=lambda row: seen.append(torch.get_num_threads()))
        return load_file(run.run_dir / "model.safetensors")

    one = threads("one", num_threads=1)
    pinned = threads("pinned", num_threads=2, train_threads=1)
    assert seen == [1, 1] and all(torch.equal(one[k], pinned[k]) for k in one)
    q = get_profile("quick")
    assert q.unit_threads == 1
    assert _fp("unet", q) == _fp("unet", q.replace(num_threads=2))
    assert _fp("unet", q) != _fp("unet", q.replace(train_threads=2))
    with pytest.raises(ValueError, match="train_threads must be an integer >= 1"):
        get_profile("smoke", train_threads=0)


def test_bf16_amx_trains_bf16_only_with_amx_and_keys_the_unit(tiny_dataset, tmp_path, monkeypatch):
    # amp="bf16-amx" (opt-in; the quick profile measured it and trains in fp32): bf16 autocast where the CPU has AMX,
    # else exactly full precision; the dtype a unit trained with keys it, so a machine without AMX never reuses a
    # bf16 unit
    from endolib import device

    runs = {}
    for has in (False, True):
        monkeypatch.setattr(device, "cpu_has_amx_bf16", lambda has=has: has)
        runs[has] = train_model(_settings(tiny_dataset, tmp_path, name=f"amx_{has}", epochs=1, amp="bf16-amx"),
                                progress=False)
    off = train_model(_settings(tiny_dataset, tmp_path, name="off", epochs=1, amp="off"), progress=False)
    units = {k: json.loads((r.run_dir / "units" / "t0_f0" / "unit.json").read_text()) for k, r in runs.items()}
    assert units[True]["amp"] == "bfloat16" and units[False]["amp"] == "off"
    assert units[True]["fingerprint"] != units[False]["fingerprint"]
    w_off, w_no_amx, w_amx = (load_file(r.run_dir / "model.safetensors") for r in (off, runs[False], runs[True]))
    assert all(torch.equal(w_off[k], w_no_amx[k]) for k in w_off)
    assert not all(torch.equal(w_off[k], w_amx[k]) for k in w_off)
    assert all(v.dtype == torch.float32 for v in w_amx.values() if v.is_floating_point())  # autocast: weights stay fp32


def test_resized_frames_are_kept_and_renewed_when_their_files_change(tiny_dataset):
    import os
    import shutil
    import warnings

    from endolib.data.dataset import FRAME_CACHE, load_index
    from endolib.study.provenance import dataset_fingerprint
    from endolib.training.frames import load_frames

    rows = load_index(tiny_dataset).iloc[::-1]  # any order: the cache keeps the order asked for
    fingerprint = dataset_fingerprint(tiny_dataset)
    plain = load_frames(tiny_dataset, rows, 24, masks=True, progress=False, cache=False)
    assert not (tiny_dataset / FRAME_CACHE).exists()
    first = load_frames(tiny_dataset, rows, 24, masks=True, progress=False)
    cached = sorted((tiny_dataset / FRAME_CACHE).iterdir())
    assert len(cached) == 1 and dataset_fingerprint(tiny_dataset) == fingerprint  # derived, not part of the data
    again = load_frames(tiny_dataset, rows, 24, masks=True, progress=False)
    for fs in (first, again):
        assert np.array_equal(fs.images, plain.images) and np.array_equal(fs.masks, plain.masks)
        assert list(fs.frame_ids) == list(plain.frame_ids)
    assert load_frames(tiny_dataset, rows, 24, masks=False, progress=False).masks is None  # its own entry
    # a cache file that is not an .npz any more (cut short, overwritten): resized again and rewritten
    cached[0].write_bytes(b"not an npz")
    assert np.array_equal(load_frames(tiny_dataset, rows, 24, masks=True, progress=False).images, plain.images)
    assert np.array_equal(np.load(cached[0])["images"], plain.images)
    # a frame rewritten in place (another image, same name): resized again, not served from the cache
    fid = str(rows["frame_id"].iloc[0])
    src = tiny_dataset / "images" / f"{fid}.png"
    other = tiny_dataset / "images" / f"{rows['frame_id'].iloc[1]}.png"
    shutil.copyfile(other, src)
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    renewed = load_frames(tiny_dataset, rows, 24, masks=True, progress=False)
    assert np.array_equal(renewed.images[0], renewed.images[1])
    assert not np.array_equal(renewed.images[0], plain.images[0])
    # a dataset folder that cannot be written: loaded without the cache, with a warning naming the folder
    shutil.rmtree(tiny_dataset / FRAME_CACHE)
    (tiny_dataset / FRAME_CACHE).write_text("a file where the cache folder would be")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fs = load_frames(tiny_dataset, rows, 24, masks=True, progress=False)
    assert np.array_equal(fs.images, renewed.images)
    assert any(FRAME_CACHE in str(w.message) and "resized again" in str(w.message) for w in caught)
    (tiny_dataset / FRAME_CACHE).unlink()
