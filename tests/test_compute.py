"""Computational load: FLOP counting, the exact fast-path rewrites, fast path vs eager, timing, pipeline, bench."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from endolib.config import MODELS
from endolib.deploy import timing
from endolib.deploy.compute import (
    TABLE5_COLUMNS,
    TABLE5_FILE,
    agreement_tolerance,
    bench,
    bench_main,
    count_flops,
    make_runner,
    matches_paper,
    max_abs_diff,
    measure_pipeline,
    pipeline_fps,
    pipeline_table,
)
from endolib.deploy.fast_cpu import (
    StridedMaxPool2d,
    fast_cpu_model,
    fold_batchnorm,
    rewrite_upconvs,
    upconv_as_transposed,
)
from endolib.deploy.timing import latency_summary, matmul_peak, time_runners
from endolib.models.factory import create_model

TINY = 0.125


pytestmark = pytest.mark.usefixtures("one_thread")


def test_conv_flops_count_multiply_add_as_two():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, 16) == 2 * 3 * 9 * 8 * 16 * 16


def test_segformer_attention_is_counted():
    # the CPU SDPA kernel has no FlopCounterMode formula: counting on CPU and on meta must agree
    net = create_model("segformer_b0", width_mult=TINY)
    with torch.device("meta"):
        meta = create_model("segformer_b0", width_mult=TINY)
    assert count_flops(net, 64) == count_flops(meta, 64) > 0


@pytest.mark.parametrize("shape", [(1, 4, 6, 7), (2, 3, 5, 5), (1, 8, 16, 16)])
def test_upconv_rewrite_is_exact(shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 5, 3, padding=1)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        assert torch.allclose(upconv_as_transposed(conv)(x), ref, atol=1e-5)
        seq = rewrite_upconvs(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv))
        assert isinstance(seq[1], nn.ConvTranspose2d) and torch.allclose(seq(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="3x3"):
        upconv_as_transposed(nn.Conv2d(3, 3, 5, padding=2))


def test_fold_batchnorm_and_strided_maxpool_are_exact():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
    seq[1].running_mean.uniform_(-1, 1)
    seq[1].running_var.uniform_(0.5, 2)
    seq.eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        ref = seq(x)
        assert torch.allclose(fold_batchnorm(seq)(x), ref, atol=1e-5)
    assert isinstance(seq[1], nn.Identity)
    assert torch.equal(StridedMaxPool2d()(x), F.max_pool2d(x, 2))


@pytest.mark.parametrize("name", ["unet", "resunet", "r2unet", "aunet", "ar2unet", "resnet18"])
def test_fast_path_agrees_with_eager(name):
    torch.manual_seed(0)
    net = create_model(name, **({} if name == "resnet18" else {"width_mult": TINY})).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        out = fast_cpu_model(net, x, repeats=1)(x)
    assert (out - ref).abs().max() <= agreement_tolerance(float(ref.abs().max()))


@pytest.mark.parametrize("backend", ["channels_last", "fused", "onnxruntime"])
def test_backends_agree_with_eager(backend):
    torch.manual_seed(0)
    net = create_model("unet", width_mult=TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        ref = net(x)
        out = make_runner(net, backend, x)(x)
    assert out.shape == ref.shape
    assert max_abs_diff(out, ref) <= agreement_tolerance(float(ref.abs().max()))


def test_unknown_backend():
    with pytest.raises(ValueError, match="valid: eager, channels_last, fused, onnxruntime"):
        make_runner(nn.Identity(), "tensorrt", torch.zeros(1))


def test_timing_and_summary():
    t = time_runners({"a": lambda x: x + 1, "b": lambda x: x * 2}, torch.zeros(4), warmup=1, repeats=5)
    assert set(t) == {"a", "b"} and all(v.shape == (5,) and (v >= 0).all() for v in t.values())
    s = latency_summary(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert s == {"median_ms": 3.0, "q1_ms": 2.0, "q3_ms": 4.0, "iqr_ms": 2.0}


def test_matmul_peak_positive():
    p = matmul_peak(sizes=(64, 128), repeats=2)
    assert p["gflops"] > 0 and p["size"] in (64, 128) and set(p["per_size"]) == {64, 128}


def test_pipeline():
    assert pipeline_fps(10.0, 90.0, 1.0) == pytest.approx(100.0)
    assert pipeline_fps(10.0, 90.0, 0.0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipeline_fps(1.0, 1.0, 1.5)
    tab = pipeline_table(10.0, 90.0, shares=(0.0, 0.5))
    assert list(tab.fps.round(3)) == [10.0, round(1000 / 55, 3)]
    calls = []
    r = measure_pipeline(lambda x: calls.append("c"), lambda x: calls.append("s"), 0.5, 40, 8, 8)
    assert r["n_frames"] == 40 and calls.count("c") == 41 and calls.count("s") == r["n_segmented"] + 1
    assert 0 < r["n_segmented"] < 40 and r["fps"] > 0


def test_matches_paper():
    assert matches_paper(46.57, 46.6) and matches_paper(0.43, 0.4) and not matches_paper(13.4, 2.7)


def test_bench_writes_table5(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    monkeypatch.setattr(timing, "MATMUL_SIZES", (128,))  # keep the test fast
    out = bench("smoke", models=["mobilenetv3_large"], backends=("eager", "channels_last"), progress=False,
                  num_threads=1)
    table = pd.read_csv(tmp_path / "results" / "smoke" / TABLE5_FILE)
    assert tuple(table.columns) == TABLE5_COLUMNS and list(table.model) == list(MODELS)
    row = table.set_index("model").loc["mobilenetv3_large"]
    assert row.backend in ("eager", "channels_last") and row.latency_ms > 0 and row.peak_fraction > 0
    assert row.fps == pytest.approx(1000 / row.latency_ms, rel=1e-4)
    assert table.set_index("model").loc["unet", "params_m"] == pytest.approx(3.306, abs=1e-3)
    assert table.latency_ms.isna().sum() == len(MODELS) - 1
    assert out["environment"]["bench_threads"] == 1


def test_bench_rejects_unknown_model():
    with pytest.raises(ValueError, match="valid names"):
        bench("smoke", models=["vgg16"], save=False)


def test_bench_main_prints_both_ratios(capsys, monkeypatch):
    monkeypatch.setattr(timing, "MATMUL_SIZES", (128,))
    rc = bench_main(["compute", "--model", "unet", "--size", "32", "--repeats", "2", "--warmup", "0",
                       "--backends", "eager", "fused", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    for text in ("speedup over eager", "effective GFLOP/s over matmul peak", "max abs difference", "matmul peak"):
        assert text in out
