"""Tests of endolib.deploy.video: video I/O, the two-stage pipeline, temporal smoothing, flicker, ONNX export.

Runs are tiny random-weight models saved as run folders in tmp; videos are synthetic, written with PyAV.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from endolib.data.video_io import (
    count_frames,
    iter_frames,
    read_video,
    video_info,
    write_video,
)
from endolib.deploy.backends import benchmark_backends, compare_backends
from endolib.deploy.demo import phantom_video
from endolib.deploy.onnx_export import ONNX_OPSET, export_onnx
from endolib.deploy.smoothing import (
    EMA_ALPHA,
    Smoothing,
    ema_filter,
    hysteresis_gate,
    parse_hysteresis,
    parse_smooth,
)
from endolib.deploy.stages import ONNX_ATOL, onnx_path, run_stage
from endolib.deploy.video import (
    STAGES,
    TwoStagePipeline,
    annotate_video,
    evaluate_video,
    flicker,
    format_report,
    overlay_mask,
    smoothing_table,
    video_main,
)
from endolib.models.factory import create_model
from endolib.training.load import load_run

CLS_SIZE, SEG_SIZE = 32, 32
N_FRAMES, HEIGHT, WIDTH, FPS = 6, 48, 64, Fraction(5)


def _save_run(root: Path, arch: str, size: int, seed: int, **model_kwargs) -> Path:
    torch.manual_seed(seed)
    model = create_model(arch, **model_kwargs).eval()
    root.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"arch": arch, "model_kwargs": model_kwargs, "input_size": size}))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    cls = _save_run(root / "mobilenetv3_large", "mobilenetv3_large", CLS_SIZE, 0)  # the smallest classifier
    seg = _save_run(root / "unet", "unet", SEG_SIZE, 1, width_mult=0.125)
    return cls, seg


def _synthetic_frames(n: int = N_FRAMES, h: int = HEIGHT, w: int = WIDTH) -> np.ndarray:
    """A bright disc drifting over dark-red noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    frames = np.zeros((n, h, w, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = rng.integers(90, 150, (h, w))
        disc = (yy - h / 2) ** 2 + (xx - (w / 4 + 3 * t)) ** 2 <= (h / 4) ** 2
        frames[t][disc] = (230, 220, 150)
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "in.mp4"
    return write_video(path, _synthetic_frames(), FPS)


# ------------------------------------------------------------------------------------------------ video I/O
def test_write_read_roundtrip_keeps_count_rate_and_size(tmp_path):
    frames = _synthetic_frames()
    path = write_video(tmp_path / "v.mp4", frames, Fraction(30000, 1001))
    info = video_info(path)
    assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, Fraction(30000, 1001))
    back, fps = read_video(path)
    assert back.shape == frames.shape and count_frames(path) == N_FRAMES
    # lossy codec, but the picture is the same picture
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12


def test_odd_frame_size_is_kept(tmp_path):
    frames = _synthetic_frames(3, 47, 63)
    path = write_video(tmp_path / "odd.mp4", frames, 2)
    info = video_info(path)
    assert (info.height, info.width) == (47, 63) and count_frames(path) == 3


def test_not_a_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    with pytest.raises(ValueError, match=r"notes\.mp4: not a readable video"):
        video_info(bad)
    with pytest.raises(FileNotFoundError, match="missing.mp4: file not found"):
        video_info(tmp_path / "missing.mp4")


def _zero_frame_video(path: Path, codec: str) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=2)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
        for p in s.encode():
            c.mux(p)
    return path


def test_zero_frame_videos_are_clear_errors(tmp_path, runs):
    avi = _zero_frame_video(tmp_path / "empty.avi", "mpeg4")  # keeps a video stream with 0 frames
    mp4 = _zero_frame_video(tmp_path / "empty.mp4", "libx264")  # mp4 drops the stream entirely
    with pytest.raises(ValueError, match=r"empty\.avi: the video has zero frames"):
        list(iter_frames(avi))
    with pytest.raises(ValueError, match=r"empty\.mp4: contains no video stream"):
        list(iter_frames(mp4))
    out = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="zero frames"):
        annotate_video(avi, out, *runs, progress=False)
    assert not out.exists()


def test_truncated_video_fails_clearly_and_leaves_no_partial_output(tmp_path, runs):
    rng = np.random.default_rng(0)
    full = write_video(tmp_path / "full.avi", rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8), 5,
                         codec="mpeg4")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "cut_annotated.mp4"
    with pytest.raises(ValueError, match=r"cut\.avi: decoding failed after frame \d+"):
        annotate_video(cut, out, *runs, progress=False)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ runs
def test_load_run(runs):
    run = load_run(runs[1])
    assert (run.arch, run.task, run.input_size) == ("unet", "seg", SEG_SIZE)
    assert not run.model.training


def test_run_without_checkpoint_is_a_clear_error(tmp_path, runs):
    broken = tmp_path / "unet"
    broken.mkdir()
    (broken / "config.json").write_text((runs[1] / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"unet: no checkpoint \(model\.safetensors\)"):
        load_run(broken)
    (tmp_path / "resume.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="training was interrupted"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        load_run(tmp_path / "nope")


def test_swapped_runs_are_rejected(runs):
    with pytest.raises(ValueError, match="expected a classifier"):
        TwoStagePipeline(run_stage(runs[1]), run_stage(runs[0]))


# ------------------------------------------------------------------------------------------------ annotate
def test_annotate_keeps_frame_count_rate_and_size(tmp_path, runs, video):
    out = tmp_path / "annotated.mp4"
    rep = annotate_video(video, out, *runs, Smoothing(gate=0.0), progress=False)
    info = video_info(out)
    assert rep.summary["frames_in"] == rep.summary["frames_out"] == count_frames(out) == N_FRAMES
    assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, FPS)
    assert len(rep.frames) == N_FRAMES and rep.summary["gate_share"] == 1.0  # gate 0 passes every frame
    assert rep.summary["fps_end_to_end"] > 0 and all(rep.summary[f"{s}_ms"] > 0 for s in STAGES)
    assert (rep.frames["segmenter_ms"] > 0).all()


def test_closed_gate_draws_nothing_and_skips_the_segmenter(tmp_path, runs, video):
    out = tmp_path / "closed.mp4"
    rep = annotate_video(video, out, *runs, Smoothing(gate=1.0), progress=False)
    assert rep.summary["gate_share"] == 0.0 and (rep.frames["segmenter_ms"] == 0).all()
    assert np.isnan(rep.summary["segmenter_ms"]) and "the gate passed no frame" in format_report(rep)
    assert (rep.frames["mask_fraction"] == 0).all()
    frames_in, _ = read_video(video)
    frames_out, _ = read_video(out)
    # nothing drawn: output differs from input by the codec's loss only
    assert np.abs(frames_out.astype(int) - frames_in.astype(int)).mean() < 6


def test_cli_prints_latency_fps_and_gate_share(tmp_path, runs, video, capsys):
    out = tmp_path / "cli.mp4"
    rc = video_main([str(video), "--out", str(out), "--classifier", str(runs[0]), "--segmenter", str(runs[1]),
                       "--gate", "0.5", "--smooth", "ema:0.6", "--hysteresis", "0.4,0.6", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and count_frames(out) == N_FRAMES
    assert f"frames: {N_FRAMES} in, {N_FRAMES} out" in text
    assert "end-to-end:" in text and "FPS" in text and "gate passed" in text
    for stage in STAGES:
        assert stage in text


def test_cli_bad_arguments(tmp_path, runs, video):
    base = [str(video), "--out", str(tmp_path / "o.mp4"), "--classifier", str(runs[0]), "--segmenter", str(runs[1])]
    with pytest.raises(ValueError, match="--smooth"):
        video_main(base + ["--smooth", "median:3"])
    with pytest.raises(ValueError, match="low <= high"):
        video_main(base + ["--hysteresis", "0.7,0.3"])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        bad = tmp_path / "empty_run"
        bad.mkdir()
        (bad / "config.json").write_text((runs[0] / "config.json").read_text())
        video_main(base[:-1] + [str(bad)])


# ------------------------------------------------------------------------------------------------ smoothing
def test_hysteresis_on_a_hand_made_sequence():
    probs = [0.1, 0.5, 0.59, 0.6, 0.5, 0.41, 0.4, 0.39, 0.55, 0.61, 0.2]
    expect = [0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0]
    assert hysteresis_gate(probs, 0.4, 0.6).astype(int).tolist() == expect
    # a plain threshold would flicker on the same sequence
    plain = hysteresis_gate(probs, 0.5, 0.5).astype(int).tolist()
    assert plain == [0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]


def test_ema_on_a_hand_made_sequence():
    x = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(ema_filter(x, 0.6), [1.0, 0.4, 0.16, 0.664, 0.8656], rtol=1e-6)
    np.testing.assert_allclose(ema_filter(x, 1.0), x)
    reset = [False, False, False, True, False]
    np.testing.assert_allclose(ema_filter(x, 0.6, reset=reset), [1.0, 0.4, 0.16, 1.0, 1.0], rtol=1e-6)
    maps = np.stack([np.full((2, 2), v, np.float32) for v in x])  # works per pixel on maps too
    np.testing.assert_allclose(ema_filter(maps, 0.6)[:, 1, 1], ema_filter(x, 0.6), rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(ema_alpha=0.0), dict(ema_alpha=1.5), dict(gate=-0.1),
                                 dict(hysteresis=(0.6, 0.4)), dict(hysteresis=(0.2, 1.2))])
def test_smoothing_validation(bad):
    with pytest.raises(ValueError):
        Smoothing(**bad)


def test_parsers():
    assert parse_smooth("ema:0.25") == 0.25 and parse_smooth("ema") == EMA_ALPHA
    assert parse_smooth("none") is None and parse_hysteresis(None) is None
    assert parse_hysteresis("0.3,0.7") == (0.3, 0.7)
    for bad in ("ema:x", "ema:0", "blur"):
        with pytest.raises(ValueError):
            parse_smooth(bad)
    with pytest.raises(ValueError, match="LOW,HIGH"):
        parse_hysteresis("0.5")


class _Scripted:
    """A fake stage returning scripted logits, one call per frame (what the pipeline sees of a model)."""

    backend = "test"

    def __init__(self, task: str, logits: list):
        self.task, self.arch, self.size = task, f"scripted_{task}", 8
        self.logits, self.calls = list(logits), 0

    def __call__(self, x):
        out = np.asarray(self.logits[self.calls], np.float32)
        self.calls += 1
        return out.reshape(1, 1) if self.task == "cls" else np.broadcast_to(out, (1, 1, 8, 8)).copy()


def _logit(p):
    return float(np.log(p / (1 - p)))


def test_pipeline_ema_resets_when_the_gate_closes_and_skips_the_segmenter():
    gate = [_logit(p) for p in (0.9, 0.9, 0.1, 0.9)]
    seg = [_logit(p) for p in (0.8, 0.2, 0.8)]  # only called when the gate is open
    pipe = TwoStagePipeline(_Scripted("cls", gate), _Scripted("seg", seg), Smoothing(ema_alpha=0.5))
    res = [pipe(np.zeros((8, 8, 3), np.uint8)) for _ in range(4)]
    assert [r.gate_open for r in res] == [True, True, False, True]
    assert pipe.segmenter.calls == 3 and res[2].prob is None
    np.testing.assert_allclose([float(res[i].prob[0, 0]) for i in (0, 1, 3)], [0.8, 0.5, 0.8], rtol=1e-5)


def test_flicker_on_hand_made_masks():
    gt = np.zeros((4, 1, 4), bool)
    gt[2:, 0, :2] = True  # ground truth changes on pixels 0-1 between frames 1 and 2
    pred = np.zeros_like(gt)
    pred[1, 0, 3] = True  # a one-pixel blip on a stable pixel: 1/4 flips 0->1, 1/4 flips 1->0
    pred[2:, 0, :2] = True  # follows the ground truth change: not flicker
    # pairs: (0,1) 1/4 stable pixels flip; (1,2) 1 of 2 stable pixels flips; (2,3) none
    assert flicker(pred, gt) == pytest.approx((0.25 + 0.5 + 0.0) / 3)
    assert flicker(np.zeros_like(gt), gt) == 0.0
    with pytest.raises(ValueError):
        flicker(pred[:, 0], gt)


def test_ema_and_hysteresis_reduce_flicker_on_a_noisy_sequence():
    rng = np.random.default_rng(0)
    n = 40
    gate_p = np.clip(0.55 + 0.1 * rng.standard_normal(n), 0.01, 0.99)  # hovers around 0.5-0.6
    seg_p = np.clip(0.5 + 0.2 * rng.standard_normal(n), 0.01, 0.99)
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    gt = np.ones((n, 8, 8), bool)

    def run(smoothing):
        pipe = TwoStagePipeline(_Scripted("cls", [_logit(p) for p in gate_p]),
                                  _Scripted("seg", [_logit(p) for p in seg_p]), smoothing)
        return evaluate_video(frames, gt, pipe)[1]

    raw = flicker(run(Smoothing()), gt)
    smooth = flicker(run(Smoothing(ema_alpha=0.3, hysteresis=(0.4, 0.6))), gt)
    assert smooth < raw


def test_smoothing_table_and_per_frame_dsc(runs):
    frames = _synthetic_frames()
    gt = frames[..., 1] > 200  # the disc
    table, per_frame = smoothing_table(frames, gt, *runs, {"none": Smoothing(gate=0.0),
                                                             "ema": Smoothing(gate=0.0, ema_alpha=0.5)},
                                         progress=False)
    assert table["setting"].tolist() == ["none", "ema"]
    assert table["flicker"].between(0, 1).all() and table["dsc"].between(0, 1).all()
    assert len(per_frame["ema"]) == N_FRAMES and per_frame["none"]["has_tissue"].all()


def test_overlay_fill_and_contour():
    frame = np.full((16, 16, 3), 100, np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    out = overlay_mask(frame, mask, colour=(0, 255, 0), alpha=0.5, contour_px=1)
    assert out[4, 4].tolist() == [0, 255, 0] and out[11, 8].tolist() == [0, 255, 0]  # contour
    assert out[8, 8].tolist() == [50, 178, 50]  # fill: half-way to the colour
    assert (out[~mask] == 100).all()  # outside untouched
    assert (overlay_mask(frame, np.zeros((16, 16), bool)) == frame).all()


# ------------------------------------------------------------------------------------------------ ONNX
def test_onnx_matches_torch_within_tolerance(runs):
    for run in runs:
        c = compare_backends(run, n=2)
        assert c["agree"] and c["max_abs_diff_prob"] <= ONNX_ATOL, c
        assert c["max_abs_diff_logits"] < 1e-3, c
        assert onnx_path(run).is_file()


def test_onnx_export_passes_the_checker_and_opset(tmp_path):
    import onnx

    path = export_onnx(create_model("aunet", width_mult=0.125), tmp_path / "aunet.onnx", 32)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= ONNX_OPSET
    with pytest.raises(ValueError, match="opset"):
        export_onnx(create_model("unet", width_mult=0.125), tmp_path / "u.onnx", 32, opset=11)


def test_onnx_backend_annotates_like_torch(tmp_path, runs, video):
    a = annotate_video(video, tmp_path / "t.mp4", *runs, backend="torch", progress=False)
    b = annotate_video(video, tmp_path / "o.mp4", *runs, backend="onnxruntime", progress=False)
    assert b.summary["backend"] == "onnxruntime" and b.summary["frames_out"] == N_FRAMES
    np.testing.assert_allclose(a.frames["gate_prob"], b.frames["gate_prob"], atol=ONNX_ATOL)


def test_benchmark_backends(runs):
    df = benchmark_backends([runs[1]], warmup=1, repeats=2, progress=False)
    assert df["backend"].tolist() == ["torch", "onnxruntime"] and (df["ms_mean"] > 0).all()


# ------------------------------------------------------------------------------------------------ phantom video
def test_phantom_video_pairs_frames_with_ground_truth(tmp_path):
    from endolib.data.phantom import generate_phantom

    tiny = dict(frames_per_operation=2, phantom_size=32, interval_s=1.0, video_fps=2.0)  # 4 video frames
    raw = generate_phantom("smoke", out_dir=tmp_path / "raw", progress=False, **tiny)
    v = phantom_video(raw_dir=raw)
    manifest = pd.read_csv(raw / "manifest.csv")
    assert v.split == "test" and v.operation_id == sorted(manifest.query("split == 'test'").operation_id)[0]
    assert v.frames.shape[:3] == v.masks.shape and len(v.frames) == count_frames(v.path) == 4
    assert v.masks.dtype == bool
    # a different video under the same name must not be paired with this phantom's ground truth
    write_video(v.path, v.frames[:, ::-1], v.fps)
    with pytest.raises(ValueError, match="does not match the phantom's re-rendering"):
        phantom_video(raw_dir=raw)
    with pytest.raises(FileNotFoundError, match="no phantom here"):
        phantom_video(raw_dir=tmp_path)
