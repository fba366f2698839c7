"""Tests of endolib.deploy.realtime: ISA policy, bf16 / int8 paths (equivalence with fp32 on tiny models), quantisation
errors, the knowledge-distillation loss, the threaded runtime (drops, clean stops) and realtime.csv.

Models are tiny random-weight networks; the runtime uses fake stages that sleep, so counts do not depend on the
machine's speed beyond generous margins.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from endolib.config import get_profile, study_paths
from endolib.deploy.precision import (
    FP32_OPS,
    QuantisationError,
    bf16_module,
    cpu_features,
    fastest_precision,
    precision_plan,
    quantise_int8,
)
from endolib.deploy.preprocess import sigmoid as _sigmoid
from endolib.deploy.realtime import (
    LatestSlot,
    RealtimeRunner,
    open_source,
    run_realtime,
)
from endolib.deploy.realtime_bench import (
    REALTIME_COLUMNS,
    REALTIME_FILE,
    REALTIME_SEED_COLUMNS,
    REALTIME_SEED_FILE,
    bench_realtime,
    deployable_run,
    deployable_seeds,
    pareto_figure,
    plot_realtime_pareto,
    read_realtime,
    student_run,
)
from endolib.deploy.stages import OnnxStage, TorchStage, make_stage
from endolib.models.factory import create_model
from endolib.training.losses import distillation_loss

SIZE = 32
#: bf16 keeps 8 mantissa bits: logits agree with fp32 within this share of their range (+ an absolute floor)
BF16_RTOL, BF16_ATOL = 0.05, 0.02
#: int8 (per-channel weights, MinMax-calibrated activations on the inputs themselves): probabilities within
INT8_PROB_ATOL = 0.05


def _calib(n=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _net(name, seed=0, **kw):
    torch.manual_seed(seed)
    net = create_model(name, width_mult=kw.pop("width_mult", 0.125), **kw).eval()
    # spread the logits so that a precision error is visible in the probabilities
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.2, 0.2)
    return net


def _fp32(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


# ------------------------------------------------------------------------------------------------ ISA policy
def test_precision_plan_falls_back_with_one_line_per_missing_isa():
    lines = []
    plan = precision_plan({"model": "Test CPU", "flags": ["avx2"], "torch_capability": "AVX2"}, say=lines.append)
    assert plan["fp32"]["available"] and not plan["bf16"]["available"] and plan["int8"]["available"]
    assert plan["int8"]["reduce_range"]  # no VNNI: 7-bit weights
    assert len(lines) == 2 and "bf16 -> fp32" in lines[0] and "Test CPU" in lines[0] and "reduce_range" in lines[1]
    amx = precision_plan({"model": "x", "flags": ["avx2", "amx_bf16", "amx_int8", "avx512_vnni"],
                            "torch_capability": "AVX512"}, say=lines.append)
    assert amx["bf16"]["available"] and not amx["int8"]["reduce_range"] and len(lines) == 2
    none = precision_plan({"model": "x", "flags": [], "torch_capability": "DEFAULT"}, say=None)
    assert not none["int8"]["available"] and "int8 -> fp32" in none["int8"]["reason"]


@pytest.mark.parametrize("flags, expected", [
    (["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_vnni"], "bf16"),  # Intel Xeon
    (["avx2", "avx512f", "avx512_bf16", "avx512_vnni"], "int8"),  # AMD EPYC Zen 4
    (["avx2"], "int8"),  # AVX2 only: int8 with 7-bit weights
    (["avx512_bf16"], "bf16"),
    ([], "fp32"),
])
def test_auto_precision_is_the_one_measured_fastest_on_the_cpu_kind(flags, expected):
    feats = {"model": "x", "flags": flags, "torch_capability": "AVX2"}
    assert fastest_precision(precision_plan(feats, say=None), feats) == expected


def test_cpu_features_reads_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("model name\t: Fake Xeon\nflags\t\t: fpu avx2 avx512f amx_bf16 sse\n")
    feat = cpu_features(f)
    assert feat["model"] == "Fake Xeon" and feat["flags"] == ["amx_bf16", "avx2", "avx512f"]


# ------------------------------------------------------------------------------------------------ bf16
def _tiny_classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 1)).eval()


@pytest.mark.parametrize("name", ["unet", "aunet", "classifier"])
def test_bf16_matches_fp32_and_keeps_the_final_layer_fp32(name):
    net = _tiny_classifier() if name == "classifier" else _net(name)
    x = _calib(1)
    ref = _fp32(net, x)
    out = TorchStage(net, SIZE, "seg", precision="bf16")(x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() <= BF16_ATOL + BF16_RTOL * np.abs(ref).max()
    run = bf16_module(net)
    assert any(type(m).__name__ == "_Fp32" for m in run.__closure__[0].cell_contents.modules())
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the original is untouched


# ------------------------------------------------------------------------------------------------ int8
@pytest.mark.parametrize("name", ["unet", "aunet"])
def test_int8_matches_fp32_and_excludes_ops_without_int8_kernels(name):
    net = _net(name)
    cal = _calib(6)
    blob, plan = quantise_int8(net, SIZE, cal, reduce_range=True)
    x = cal[:2]
    ref, out = _fp32(net, x), OnnxStage(blob, SIZE, "seg", precision="int8")(x)
    assert np.abs(_sigmoid(out) - _sigmoid(ref)).max() <= INT8_PROB_ATOL
    assert plan["exclude"]["/head/Conv"] == "final layer (logits) kept fp32"
    assert len(plan["quantise"]) > 10
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(blob).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    if name == "aunet":  # attention gate: Sigmoid and Mul stay fp32
        kept = set(plan["exclude"].values())
        assert FP32_OPS["Sigmoid"] in kept and FP32_OPS["Mul"] in kept


class _UpModel(nn.Module):
    """Conv -> ConvTranspose -> bilinear Resize -> Conv: both middle ops must stay fp32."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        y = self.up(torch.relu(self.a(x)))
        return self.head(nn.functional.interpolate(y, scale_factor=0.5, mode="bilinear", align_corners=False))


def test_int8_keeps_convtranspose_and_linear_resize_fp32():
    torch.manual_seed(0)
    net = _UpModel().eval()
    cal = _calib(4)
    blob, plan = quantise_int8(net, SIZE, cal, reduce_range=True)
    reasons = set(plan["exclude"].values())
    assert FP32_OPS["ConvTranspose"] in reasons and "linear Resize: no int8 kernel" in reasons
    out = OnnxStage(blob, SIZE, "seg", precision="int8")(cal[:1])
    assert np.abs(_sigmoid(out) - _sigmoid(_fp32(net, cal[:1]))).max() <= INT8_PROB_ATOL


class _CumSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.c(torch.cumsum(x, dim=2))


def test_quantisation_errors_name_the_problem():
    with pytest.raises(QuantisationError, match="'CumSum'"):
        quantise_int8(_CumSum().eval(), 8, _calib(2, 8))
    with pytest.raises(QuantisationError, match="no Conv/Gemm/MatMul left"):
        quantise_int8(nn.Sequential(nn.Conv2d(3, 1, 1)).eval(), 8, _calib(2, 8))  # only the (fp32) head
    with pytest.raises(ValueError, match="calibration set is empty"):
        quantise_int8(_net("unet"), SIZE, np.zeros((0, 3, SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match="int8 needs calibration"):
        make_stage(_net("unet"), SIZE, "seg", "int8", "onnxruntime")
    with pytest.raises(ValueError, match="no bf16 path"):
        make_stage(_net("unet"), SIZE, "seg", "bf16", "onnxruntime")


# ------------------------------------------------------------------------------------------------ KD loss
def test_distillation_loss():
    from endolib.training.losses import dice_loss

    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)
    t = torch.rand(2, 1, 8, 8, generator=g)
    y = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    assert torch.isclose(distillation_loss(s, t, y, alpha=1.0), dice_loss(torch.sigmoid(s), y))
    # alpha = 0: the soft term is minimal (zero gradient) when the student reproduces the teacher
    s0 = torch.logit(t).clone().requires_grad_(True)
    distillation_loss(s0, t, y, alpha=0.0).backward()
    assert s0.grad.abs().max() < 1e-6
    loss = distillation_loss(s, t, y, alpha=0.5)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, t[:1], y)
    with pytest.raises(ValueError, match="probabilities"):
        distillation_loss(s, t * 3, y)


# ------------------------------------------------------------------------------------------------ runtime
class _SlowStage:
    def __init__(self, task, seconds, size=8, logit=1.0):
        self.task, self.seconds, self.size, self.logit, self.arch = task, seconds, size, logit, f"fake-{task}"
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        shape = (x.shape[0], 1) if self.task == "cls" else (x.shape[0], 1, self.size, self.size)
        return np.full(shape, self.logit, np.float32)


def _frames(n, size=8):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_latest_slot_counts_replaced_items():
    s = LatestSlot()
    for i in range(5):
        s.put(i)
    assert s.get() == 4 and s.dropped == 4
    s.close()
    assert s.get(timeout=0.1) is None


def test_live_source_drops_frames_and_counts_them():
    seg = _SlowStage("seg", 0.08)
    runner = RealtimeRunner(_SlowStage("cls", 0.005), seg)
    rep = runner.run(_frames(30), pace=True)  # 30 FPS source, a 12 FPS segmenter
    s = rep.summary
    assert s["frames_read"] == 30 and s["end"] == "ended"
    assert s["dropped"] > 5 and s["dropped"] == s["frames_read"] - s["frames_processed"]
    assert s["dropped_gate"] + s["dropped_seg"] == s["dropped"]
    assert seg.calls == s["frames_segmented"] < 30
    assert s["latency_p50_ms"] >= 80 and s["latency_p95_ms"] >= s["latency_p50_ms"]


def test_endless_live_source_stops_after_n_processed_frames():
    import itertools

    rep = RealtimeRunner(_SlowStage("cls", 0.0), _SlowStage("seg", 0.05)).run(itertools.cycle(_frames(3)),
                                                                               pace=True, stop_after=5)
    s = rep.summary
    assert s["end"] == "stopped" and 5 <= s["frames_processed"] <= 7 and s["dropped"] > 0
    assert s["fps"] < 1000 / 50 * 1.1  # bounded by the 50 ms segmenter, not by the 30 FPS source


def test_file_at_full_speed_loses_nothing_and_pipelines_the_two_stages():
    cls, seg = _SlowStage("cls", 0.03), _SlowStage("seg", 0.03)
    rep = RealtimeRunner(cls, seg).run(_frames(12))
    s = rep.summary
    assert s["dropped"] == 0 and s["frames_segmented"] == 12 and cls.calls == seg.calls == 12
    assert s["fps"] > 1000 / 60 * 1.2  # overlapped: better than one stage after the other (16.7 FPS)
    closed = RealtimeRunner(_SlowStage("cls", 0.0, logit=-5.0), seg, gate=0.5).run(_frames(4)).summary
    assert closed["frames_segmented"] == 0 and closed["frames_processed"] == 4


def test_stream_that_stalls_or_fails_stops_cleanly_and_writes_the_summary(tmp_path):
    def stalling():
        yield from _frames(3)
        time.sleep(3)
        yield from _frames(3)

    t0 = time.perf_counter()
    rep = run_realtime(stalling(), _SlowStage("cls", 0), _SlowStage("seg", 0), tmp_path / "a", stall_s=0.3)
    assert time.perf_counter() - t0 < 2.5
    summary = json.loads((tmp_path / "a" / "realtime_summary.json").read_text())
    assert summary["end"] == "stalled" and summary["frames_processed"] == 3
    assert len(pd.read_csv(tmp_path / "a" / "realtime_frames.csv")) == 3

    def broken():
        yield from _frames(2)
        raise OSError("connection reset")

    rep = run_realtime(broken(), _SlowStage("cls", 0), _SlowStage("seg", 0), tmp_path / "b")
    assert rep.summary["end"] == "error" and "connection reset" in rep.summary["error"]
    assert rep.summary["frames_processed"] == 2 and (tmp_path / "b" / "realtime_summary.json").is_file()


def test_video_file_source_ends_cleanly(tmp_path):
    from endolib.data.video_io import write_video

    path = write_video(tmp_path / "clip.mp4", list(_frames(5, 32)), 30)
    rep = RealtimeRunner(_SlowStage("cls", 0), _SlowStage("seg", 0)).run(path)
    assert rep.summary["frames_read"] == 5 and rep.summary["end"] == "ended" and rep.summary["source_fps"] == 30
    with pytest.raises(FileNotFoundError, match="no such video"):
        open_source(tmp_path / "missing.mp4")


# ------------------------------------------------------------------------------------------------ runs + bench
def _save_run(folder: Path, arch: str, size: int, width: float, seed: int | None = None, val_dsc: float = 0.0) -> Path:
    """A hand-made run folder: seeded random weights and a config.json with the chosen trial's validation DSC
    ``val_dsc`` (a teacher of 0.0 accepts any student)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_net(arch, seed=seed or 0, width_mult=width).state_dict(), str(folder / "model.safetensors"))
    cfg = {"arch": arch, "model_kwargs": {"width_mult": width}, "input_size": size,
           "trials": [{"trial": 0, "mean_val_metric": val_dsc, "chosen": True}]}
    (folder / "config.json").write_text(json.dumps(cfg if seed is None else {**cfg, "training_seed": seed}))
    return folder


def test_deployable_run_accepts_both_layouts(tmp_path):
    p = get_profile("smoke")
    flat = _save_run(tmp_path / "runs" / "smoke" / "unet", "unet", SIZE, 0.0625)
    assert deployable_run("unet", p, root=tmp_path) == flat
    seeded = _save_run(flat / f"seed{p.training_seeds[0]}", "unet", SIZE, 0.0625)
    assert deployable_run("unet", p, root=tmp_path) == seeded
    assert student_run(0.5, "unet", p, root=tmp_path) is None


def test_bench_realtime_writes_the_columns(tmp_path, tiny_dataset, monkeypatch, one_thread):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    study = study_paths("smoke", tiny_dataset, root=tmp_path)  # the tiny dataset's own study
    p = get_profile("smoke", n_boot=50, bench_warmup=0)
    _save_run(study.runs / "resnet18", "resnet18", SIZE, 0.125)
    _save_run(study.runs / "unet", "unet", SIZE, 0.125)
    lines = []
    table = bench_realtime(p, widths=(1.0, 0.5), precisions=("int8",), sizes=(SIZE, SIZE), n_frames=3,
                             routes=(("int8", "onnxruntime"),),  # + the fp32 eager reference, always there
                             classifier_width=0.125, train_students=False, n_passes=2,
                             data_dir=tiny_dataset, progress=False, say=lines.append)
    assert tuple(table.columns) == REALTIME_COLUMNS
    assert (table.fps_min <= table.fps).all() and (table.fps <= table.fps_max).all()
    env = json.loads((study.results / "realtime_environment.json").read_text())
    assert all(len(s["passes"]) == 2 for s in env["speed"].values())
    saved = pd.read_csv(study.results / REALTIME_FILE)
    assert tuple(saved.columns) == REALTIME_COLUMNS and len(saved) == len(table) == 3
    ref = table[(table.width == 1.0) & (table.precision == "fp32") & (table.backend == "torch")].iloc[0]
    assert ref.dsc_drop == 0 and ref.dsc_drop_lo == 0 and ref.speedup_vs_eager == 1.0
    full = table[table.width == 1.0]
    assert full.dsc.notna().all() and full.gate_auroc.between(0, 1).all()
    assert (full.dsc_drop_lo <= full.dsc_drop + 1e-12).all() and (full.dsc_drop <= full.dsc_drop_hi + 1e-12).all()
    assert table[table.width == 0.5].dsc.isna().all() and any("not measured" in s for s in lines)
    assert (table.fps > 0).all() and (table.latency_p95_ms >= table.latency_p50_ms).all()
    fig = plot_realtime_pareto(table)
    assert len(fig.axes[0].collections) >= len(table)


def test_bench_realtime_trains_distilled_students_once(tmp_path, tiny_dataset, monkeypatch, one_thread):
    from endolib.training.settings import student_settings

    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    study = study_paths("smoke", tiny_dataset, root=tmp_path)  # the tiny dataset's own study
    p = get_profile("smoke", n_boot=20, bench_warmup=0)
    _save_run(study.runs / "resnet18", "resnet18", SIZE, 0.125)
    teacher = _save_run(study.runs / "unet", "unet", SIZE, 0.125)
    kw = dict(widths=(1.0, 0.5), precisions=("fp32",), sizes=(SIZE, SIZE), n_frames=2, routes=(("fp32", "torch"),),
              classifier_width=0.125, data_dir=tiny_dataset, progress=False)
    lines = []
    table = bench_realtime(p, say=lines.append, **kw)
    run = study.runs / "unet_w0.5" / f"seed{p.training_seeds[0]}"
    assert student_run(0.5, "unet", p, root=tmp_path, dataset=study.dataset) == run
    assert json.loads((run / "acceptance.json").read_text())["accepted"] == 0  # checked before it was used
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["teacher"] == str(teacher) and cfg["loss"].startswith("distillation")
    assert cfg["model_kwargs"] == {"width_mult": 0.0625}  # half the teacher's own width
    student = table[table.width == 0.5].iloc[0]
    assert 0 <= student.dsc <= 1 and student.dsc_drop_lo <= student.dsc_drop <= student.dsc_drop_hi
    assert not any("not measured" in s for s in lines)
    stamp = (run / "model.safetensors").stat().st_mtime_ns
    bench_realtime(p, say=None, **kw)  # finished with the same teacher: loaded, not retrained
    assert (run / "model.safetensors").stat().st_mtime_ns == stamp
    from endolib.training.frames import prepare_data

    def fingerprint():
        s = student_settings(0.5, p, data_dir=tiny_dataset, teacher_run=teacher)
        return prepare_data(s, False).fingerprint(s)

    before = fingerprint()
    # a retrained teacher (other weights) retrains its students
    save_file(_net("unet", seed=1, width_mult=0.125).state_dict(), str(teacher / "model.safetensors"))
    assert fingerprint() != before


def test_distillation_changes_what_the_student_learns(tmp_path, tiny_dataset, one_thread):
    """A student trained only on its teacher's probabilities (kd_alpha=0) is not the ground-truth-trained model."""
    from endolib.training.runs import train_model
    from endolib.training.settings import student_settings

    teacher = _save_run(tmp_path / "teacher", "unet", SIZE, 0.125)
    runs = {}
    for alpha in (0.0, 1.0):
        s = student_settings(0.5, "smoke", data_dir=tiny_dataset, teacher_run=teacher, kd_alpha=alpha)
        s = dataclasses.replace(s, model_dir=tmp_path / f"alpha{alpha:g}")
        runs[alpha] = pd.read_csv(train_model(s, progress=False, figure=False).run_dir / "history.csv")
    assert runs[0.0].train_loss.iloc[0] != pytest.approx(runs[1.0].train_loss.iloc[0], abs=1e-6)
    assert (runs[1.0].train_loss <= 1.0).all()  # Dice alone is in [0, 1]; BCE need not be


# ------------------------------------------------------------------------------------------------ 30 FPS clips
def test_phantom_clip_at_30_fps_with_ground_truth_and_realtime_replay(tmp_path):
    from endolib.data.phantom import phantom_params, read_clip_masks, write_clip
    from endolib.data.video_io import read_video

    raw = tmp_path / "raw"  # the clip needs only the phantom's parameters
    raw.mkdir()
    (raw / "phantom.json").write_text(json.dumps({"params": phantom_params("smoke")}))
    path = write_clip("smoke", "OP23", raw_dir=raw)  # smoke: 2 s
    frames, fps = read_video(path)
    masks = read_clip_masks(path)
    assert fps == 30 and frames.shape[0] == masks.shape[0] == 60 and masks.shape[1:] == frames.shape[1:3]
    with_tissue = masks.reshape(60, -1).any(1)
    assert with_tissue.any() and not with_tissue.all()  # tissue enters or leaves the view
    mtime = path.stat().st_mtime_ns
    assert write_clip("smoke", "OP23", raw_dir=raw) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not re-rendered
    from endolib.deploy.demo import phantom_clip

    clip = phantom_clip("smoke", "OP23", raw_dir=raw)
    assert clip.path == path and (clip.masks == masks).all() and clip.operation_id == "OP23"
    rep = RealtimeRunner(_SlowStage("cls", 0.0), _SlowStage("seg", 0.0)).run(path, pace=True)
    assert rep.summary["frames_read"] == 60 and rep.summary["source_fps"] == 30 and rep.summary["end"] == "ended"
    assert rep.summary["wall_s"] >= 59 / 30 * 0.95  # paced at the native rate


def test_render_group_draws_the_pareto_figure_from_realtime_csv(tmp_path, monkeypatch):
    from endolib.study.render import _realtime

    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    p = get_profile("smoke")
    with pytest.raises(FileNotFoundError, match="bench realtime --profile smoke"):
        _realtime(p, tmp_path)
    rows = [{"classifier": "resnet18", "segmenter": "unet", "width": w, "precision": q, "backend": b,
             "dsc": d, "dsc_drop": 0.0, "dsc_drop_lo": 0.0, "dsc_drop_hi": 0.0, "gate_auroc": 0.9, "fps": f,
             "latency_p50_ms": 10.0, "latency_p95_ms": 12.0, "speedup_vs_eager": 1.0, "machine": "CPU (avx2)",
             "n_seeds": 3, "n_accepted": 3, "dsc_drop_seed_sd": 0.0, "fps_min": f, "fps_max": f,
             "student_candidates": "" if w == 1.0 else "1/1/2"}
            for w, q, b, d, f in ((1.0, "fp32", "torch", 0.8, 3.0), (1.0, "int8", "onnxruntime", 0.79, 6.0),
                                  (0.25, "fp32", "onnxruntime", np.nan, 30.0))]
    (tmp_path / "results" / "smoke").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "smoke" / REALTIME_FILE, index=False)
    assert _realtime(p, tmp_path) == ["fig_realtime_pareto"]
    assert (tmp_path / "runs" / "smoke" / "figures" / "fig_realtime_pareto.png").is_file()


def test_deployable_seeds_pairs_the_runs_of_each_training_seed(tmp_path):
    p = get_profile("smoke")
    s0, s1 = p.training_seeds
    runs = tmp_path / "runs" / "smoke"
    with pytest.raises(FileNotFoundError, match=f"resnet18/seed{s0}: no trained resnet18 run"):
        deployable_seeds(["resnet18", "unet"], p, root=tmp_path)
    for k in (s0, s1):
        _save_run(runs / "unet" / f"seed{k}", "unet", SIZE, 0.125, seed=k)
    _save_run(runs / "resnet18" / f"seed{s1}", "resnet18", SIZE, 0.125, seed=s1)
    assert deployable_seeds(["resnet18", "unet"], p, root=tmp_path) == {
        s1: [runs / "resnet18" / f"seed{s1}", runs / "unet" / f"seed{s1}"]}
    assert student_run(0.5, "unet", p, root=tmp_path, seed=s1) is None


def test_bench_realtime_averages_accuracy_over_training_seeds(tmp_path, tiny_dataset, monkeypatch, one_thread):
    """Every training seed's pipeline and its own distilled student: means over seeds, a drop CI with the seed
    spread in it (issue 14's two-level bootstrap), n_seeds and the seed SD in the table."""
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    study = study_paths("smoke", tiny_dataset, root=tmp_path)  # the tiny dataset's own study
    p = get_profile("smoke", n_boot=50, bench_warmup=0)
    runs = study.runs
    for k in p.training_seeds:  # other weights per seed
        _save_run(runs / "resnet18" / f"seed{k}", "resnet18", SIZE, 0.125, seed=k)
        _save_run(runs / "unet" / f"seed{k}", "unet", SIZE, 0.125, seed=k)
    table = bench_realtime(p, widths=(1.0, 0.5), precisions=("fp32",), sizes=(SIZE, SIZE), n_frames=2,
                             routes=(("fp32", "torch"),), classifier_width=0.125, data_dir=tiny_dataset,
                             progress=False, say=None)
    for k in p.training_seeds:  # one student per seed, distilled from the teacher of that seed
        cfg = json.loads((runs / "unet_w0.5" / f"seed{k}" / "config.json").read_text())
        assert cfg["teacher"] == str(runs / "unet" / f"seed{k}")
    assert (table.n_seeds == len(p.training_seeds)).all()
    ref, student = table.iloc[0], table[table.width == 0.5].iloc[0]
    assert ref.dsc_drop == ref.dsc_drop_lo == ref.dsc_drop_hi == ref.dsc_drop_seed_sd == 0
    env = json.loads((study.results / "realtime_environment.json").read_text())
    per_seed = [env["reference"][str(k)]["dsc"] for k in p.training_seeds]
    assert per_seed[0] != per_seed[1] and ref.dsc == pytest.approx(np.mean(per_seed))
    assert student.dsc_drop_seed_sd > 0 and student.dsc_drop_lo <= student.dsc_drop <= student.dsc_drop_hi
    long = pd.read_csv(study.results / REALTIME_SEED_FILE)
    assert tuple(long.columns) == REALTIME_SEED_COLUMNS and len(long) == len(table) * len(p.training_seeds)
    per_seed = long[long.width == 0.5].set_index("seed").dsc_drop
    assert student.dsc_drop == pytest.approx(per_seed.mean(), abs=1e-5)  # the csv keeps 6 decimals
    assert student.dsc_drop_seed_sd == pytest.approx(per_seed.std(ddof=1), abs=1e-5)
    fig = pareto_figure(study.results)  # one faint point per seed beside each variant
    seed_points = [c for c in fig.axes[0].collections if c.get_alpha() == pytest.approx(0.35) and len(c.get_offsets())]
    assert len(seed_points) == len(table) and all(len(c.get_offsets()) == 2 for c in seed_points)


def test_bench_realtime_without_trained_runs_measures_speed_only(tmp_path, tiny_dataset, monkeypatch, one_thread):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    lines = []
    table = bench_realtime(get_profile("smoke", bench_warmup=0), widths=(1.0,), precisions=("fp32",),
                             routes=(("fp32", "torch"),), sizes=(SIZE, SIZE), n_frames=2, classifier_width=0.125,
                             data_dir=tiny_dataset, progress=False, say=lines.append)
    assert len(table) == 1 and table.dsc.isna().all() and table.gate_auroc.isna().all() and (table.fps > 0).all()
    assert any("accuracy not measured (NaN) for every variant" in s and "no trained resnet18 run" in s
               and "--only 02 --arch resnet18 --data-dir" in s for s in lines)  # the tiny dataset's own study


def test_realtime_csv_from_an_older_endolib_is_refused_with_the_fix(tmp_path):
    f = tmp_path / "results" / "quick" / REALTIME_FILE
    f.parent.mkdir(parents=True)
    pd.DataFrame([{c: 1.0 for c in REALTIME_COLUMNS[:-6]}]).to_csv(f, index=False)  # before n_seeds
    with pytest.raises(ValueError, match=r"realtime.csv: missing column\(s\) n_seeds, n_accepted, dsc_drop_seed_sd, "
                                         r"fps_min, fps_max, student_candidates; rerun "
                                         r"`python -m endolib bench realtime --profile quick`"):
        read_realtime(f)
    pd.DataFrame([{c: 1.0 for c in REALTIME_COLUMNS}]).to_csv(f, index=False)
    assert len(read_realtime(f)) == 1
