"""Real-time deployment on CPU (issue 15): reduced precision, smaller students, a threaded runtime, a benchmark.

* **What the CPU can do** (:func:`cpu_features`, :func:`precision_plan`): bf16 needs AMX-BF16 or AVX512_BF16
  (oneDNN emulates bf16 without them, slower than fp32), int8 needs AVX2 (ONNX Runtime's u8s8 kernels); without
  VNNI (AVX512_VNNI / AVX_VNNI / AMX-INT8) the weights are quantised to 7 bits (``reduce_range``), because the
  AVX2 ``vpmaddubsw`` path can saturate on full 8-bit weights. A precision the CPU lacks falls back to fp32
  with one printed line saying why.
* **bf16** (:func:`bf16_module`): ``torch.autocast("cpu", bfloat16)`` over a channels-last copy (oneDNN); the
  final layer (1x1 head conv / classifier fc) runs in fp32, the sigmoid is applied in fp32 outside the model.
* **int8** (:func:`quantise_int8`): ONNX Runtime static quantisation, QDQ format, per-channel weights, calibrated
  on training frames (:class:`FrameCalibrationReader`). Ops in :data:`INT8_OPS` are quantised; ops without fast
  int8 kernels are kept fp32 deliberately (:data:`FP32_OPS`: ConvTranspose, linear Resize, the attention
  gate's Sigmoid/Mul, LayerNorm/GELU(Erf)/Softmax of SegFormer) and so is the node producing the logits (the
  final conv; the sigmoid is outside). An op the policy does not know raises :class:`QuantisationError`
  naming it; so does a graph with nothing to quantise; an empty calibration set raises ValueError.
* **Students** (:func:`endolib.train.train_students`): 1/2-, 1/4- and 1/8-width U-Nets distilled from the
  profile's U-Net (:func:`distillation_loss`: teacher probabilities + ground truth) by the one training loop;
  ``bench realtime`` trains the missing ones (one per training seed, from the teacher of that seed) before it
  measures their accuracy.
* **Runtime** (:class:`RealtimeRunner`, ``python -m endolib video --realtime IN ...``): reader, gate and
  segmenter in three threads (the two model threads one core each), a latest-frame policy for live sources
  (frames are dropped, and counted, rather than falling behind), per-frame latency p50/p95 and sustained FPS,
  saved as ``<out>/realtime_frames.csv`` + ``realtime_summary.json``; an ended or stalled source stops cleanly.
* **Benchmark** (:func:`bench_realtime`, ``python -m endolib bench realtime --profile P``): one row per
  deployable variant (width x precision x backend) in ``results/<profile>/realtime.csv`` (:data:`REALTIME_COLUMNS`)
  and the Pareto figure ``fig_realtime_pareto``. Speed at paper resolution (224 / 256 px) with widths relative to
  the paper model; accuracy on the profile's trained models (NaN, said in the output, for students not trained).

Example:
    >>> kept = FP32_OPS["ConvTranspose"]; kept
    'no fast int8 kernel in ONNX Runtime (MLAS)'
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import CLASSIFIERS, Profile, get_profile, paths, repo_root, require
from .train import distillation_loss  # noqa: F401  (the students' loss; trained by endolib.train.train_students)

__all__ = [
    "REALTIME_FILE", "REALTIME_COLUMNS", "REALTIME_SEED_FILE", "REALTIME_SEED_COLUMNS", "PRECISIONS", "WIDTHS",
    "INT8_OPS", "FP32_OPS", "NEUTRAL_OPS",
    "QuantisationError", "cpu_features", "precision_plan", "fastest_precision", "deployable_run", "student_run",
    "bf16_module",
    "FrameCalibrationReader", "int8_plan", "quantise_int8", "ModelStage", "OnnxModelStage", "make_variant_stage",
    "distillation_loss", "LatestSlot", "RealtimeRunner", "RealtimeReport", "open_source", "run_realtime",
    "evaluate_variant", "dsc_drop_ci", "combine_passes", "deployable_seeds", "bench_realtime", "matmul_peaks",
    "precision_table", "plot_realtime_pareto", "pareto_figure", "read_realtime",
    "realtime_main", "bench_main",
]

REALTIME_FILE = "realtime.csv"
REALTIME_COLUMNS = ("classifier", "segmenter", "width", "precision", "backend", "dsc", "dsc_drop", "dsc_drop_lo",
                    "dsc_drop_hi", "gate_auroc", "fps", "latency_p50_ms", "latency_p95_ms", "speedup_vs_eager",
                    "machine", "n_seeds", "dsc_drop_seed_sd", "fps_min", "fps_max")
#: the long table beside it: one row per variant and training seed (the values the seed level combines)
REALTIME_SEED_FILE = "realtime_by_seed.csv"
REALTIME_SEED_COLUMNS = ("classifier", "segmenter", "width", "precision", "backend", "seed", "dsc", "dsc_drop",
                         "dsc_segmenter", "gate_auroc")
PRECISIONS = ("fp32", "bf16", "int8")
#: segmenter widths of the deployable variants, relative to the paper model (1.0 = paper width); 1/8 is the
#: width a single AVX2 core without VNNI needs to come near 25 FPS
WIDTHS = (1.0, 0.5, 0.25, 0.125)
#: ISA flags (``/proc/cpuinfo``) that make each reduced precision fast
BF16_ISA = ("amx_bf16", "avx512_bf16")
VNNI_ISA = ("amx_int8", "avx512_vnni", "avx_vnni")
INT8_MIN_ISA = ("avx2",)
#: ONNX op types quantised to int8 (QDQ); Concat/MaxPool/nearest Resize only move int8 data
INT8_OPS = ("Conv", "Gemm", "MatMul", "MaxPool", "Concat", "Resize")
#: op types kept fp32 on purpose, with the reason
FP32_OPS = {
    "ConvTranspose": "no fast int8 kernel in ONNX Runtime (MLAS)",
    "Sigmoid": "attention-gate map / output probabilities need the fp32 range",
    "Mul": "attention-gate weighting of the skip (elementwise, memory bound)",
    "LayerNormalization": "normalisation statistics lose precision in int8",
    "Erf": "GELU: no int8 kernel",
    "Softmax": "attention softmax: no int8 kernel",
    "Div": "elementwise (GELU / attention scaling)",
}
#: op types that need no decision (data movement, elementwise fp32, shapes); anything else is refused
NEUTRAL_OPS = frozenset("""Relu Add Sub Pow Sqrt ReduceMean Reshape Flatten Transpose Shape Gather Unsqueeze Squeeze
Constant Identity Slice Split Cast GlobalAveragePool AveragePool BatchNormalization Pad Where Expand
ConstantOfShape Equal Range Clip HardSigmoid HardSwish Neg Tanh""".split())
#: the latency percentiles reported
PERCENTILES = (50, 95)
#: frames timed per variant by :func:`bench_realtime` (after ``bench_warmup`` untimed ones)
BENCH_FRAMES = {"smoke": 6, "quick": 40, "paper": 100}
#: timed passes over all variants (median reported): two runs of one pass differed by up to 25% in FPS
BENCH_PASSES = {"smoke": 1, "quick": 3, "paper": 5}
#: frame rate of an in-memory source (and of the benchmark's simulated camera): the phantom clips' 30 FPS
LIVE_FPS = 30.0
#: seconds without a new frame after which a source counts as stalled
STALL_S = 5.0
#: the frame-rate target of issue 15 (paper: "25-40 FPS, suitable for real-time surgical video streams")
TARGET_FPS = 25.0


class QuantisationError(ValueError):
    """A model cannot be quantised by :func:`quantise_int8` (the message names the op and node)."""


# ----------------------------------------------------------------------------------------------- the CPU
def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The CPU model and the ISA flags that matter for reduced precision.

    Returns:
        ``{"model": str, "flags": sorted relevant flags present, "torch_capability": str}``.

    Example:
        >>> sorted(cpu_features())
        ['flags', 'model', 'torch_capability']
    """
    model, flags = "unknown CPU", set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = set(BF16_ISA) | set(VNNI_ISA) | set(INT8_MIN_ISA) | {"avx512f", "amx_tile"}
    return {"model": model, "flags": sorted(flags & wanted),
            "torch_capability": str(torch.backends.cpu.get_cpu_capability())}


def precision_plan(features: dict | None = None, say: Callable[[str], None] | None = print) -> dict:
    """Which precision runs how on this CPU.

    Returns:
        ``{precision: {"available": bool, "reason": str, "reduce_range": bool (int8)}}``; for an unavailable
        precision ``say`` gets one line saying why it falls back to fp32.

    Example:
        >>> plan = precision_plan({"model": "x", "flags": ["avx2"], "torch_capability": "AVX2"}, say=None)
        >>> plan["bf16"]["available"], plan["int8"]["available"], plan["int8"]["reduce_range"]
        (False, True, True)
    """
    features = features or cpu_features()
    flags = set(features["flags"])
    bf16 = [f for f in BF16_ISA if f in flags]
    vnni = [f for f in VNNI_ISA if f in flags]
    plan = {"fp32": {"available": True, "reason": "reference"}}
    plan["bf16"] = {"available": bool(bf16),
                    "reason": f"oneDNN bf16 via {'/'.join(bf16)}" if bf16 else
                    f"bf16 -> fp32: the CPU has none of {'/'.join(BF16_ISA)} (oneDNN would emulate bf16, slower "
                    f"than fp32)"}
    has_int8 = all(f in flags for f in INT8_MIN_ISA)
    plan["int8"] = {"available": has_int8, "reduce_range": not vnni,
                    "reason": (f"int8 u8s8 via {'/'.join(vnni)}" if vnni else
                               "int8 u8s8 via AVX2 without VNNI: 7-bit weights (reduce_range) against vpmaddubsw "
                               "saturation") if has_int8 else
                    f"int8 -> fp32: the CPU lacks {'/'.join(INT8_MIN_ISA)}"}
    if say is not None:
        for prec in ("bf16", "int8"):
            if not plan[prec]["available"] or (prec == "int8" and plan[prec]["reduce_range"]):
                say(f"{features['model']}: {plan[prec]['reason']}")
    return plan


def fastest_precision(plan: dict, features: dict) -> str:
    """The precision ``--precision auto`` deploys: bf16 where AMX multiplies bf16 tiles, else int8 where the CPU
    has it, else bf16, else fp32. Measured at paper size, batch 1: Intel Xeon with AMX, U-Net bf16 46 ms vs int8
    51 ms; AMD EPYC Zen 4 (AVX512_BF16 and VNNI, no AMX), bf16 2.4x and int8 4.5x eager fp32 (issue 15).

    Example:
        >>> feats = {"model": "x", "flags": ["avx2", "avx512_bf16", "avx512_vnni", "avx512f"], "torch_capability": ""}
        >>> fastest_precision(precision_plan(feats, say=None), feats)
        'int8'
    """
    if plan["bf16"]["available"] and any(f.startswith("amx") for f in features["flags"]):
        return "bf16"
    return next((p for p in ("int8", "bf16") if plan[p]["available"]), "fp32")


def machine_label(features: dict, plan: dict, precision: str) -> str:
    """CPU model + the ISA feature a variant used, e.g. ``AMD EPYC (avx2; int8 reduce_range)``."""
    flags = set(features["flags"])
    if precision == "bf16":
        isa = "/".join(f for f in BF16_ISA if f in flags) or "emulated"
    elif precision == "int8":
        isa = "/".join(f for f in VNNI_ISA if f in flags) or "avx2 u8s8, reduce_range"
    else:
        isa = "avx512f" if "avx512f" in flags else ("avx2" if "avx2" in flags else features["torch_capability"])
    return f"{features['model']} ({isa})"


# ----------------------------------------------------------------------------------------------- runs
def deployable_run(model: str, profile: str | Profile = "smoke", root=None, seed: int | None = None) -> Path:
    """The run folder a deployment uses: ``runs/<p>/<model>/seed<s>/`` of training seed ``seed`` (default the
    first, CONTRACTS.md), or the pre-seed layout ``runs/<p>/<model>/`` for the first seed while only that exists.

    Raises:
        FileNotFoundError: neither holds a ``config.json`` (names the training command).

    Example:
        >>> deployable_run("unet", "quick", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/runs/quick/unet/seed42: no trained unet run ...
    """
    p = get_profile(profile)
    seed = p.training_seeds[0] if seed is None else int(seed)
    seeded, flat = paths(p, root).run(model, seed), paths(p, root).run(model)
    for cand in (seeded, flat) if seed == p.training_seeds[0] else (seeded,):
        if (cand / "config.json").is_file():
            return cand
    task = "02" if model in CLASSIFIERS else "03"
    raise FileNotFoundError(f"{seeded}: no trained {model} run (nor {flat}); train it with "
                            f"`python -m endolib run --profile {p.name} --only {task} --arch {model}`")


def deployable_seeds(models: Sequence[str], profile: str | Profile = "smoke", root=None) -> dict[int, list[Path]]:
    """Training seed -> the run folders of ``models`` (:func:`deployable_run`), for every seed of the profile
    with all of them trained; the accuracy of a deployed variant is averaged over these seeds (issue 14).

    Raises:
        FileNotFoundError: no seed has all of them (the first seed's missing run, with its training command).

    Example:
        >>> deployable_seeds(["resnet18", "unet"], "quick", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/runs/quick/resnet18/seed42: no trained resnet18 run ...
    """
    p = get_profile(profile)
    out = {}
    for s in p.training_seeds:
        try:
            out[s] = [deployable_run(m, p, root, s) for m in models]
        except FileNotFoundError:
            continue
    if not out:
        for m in models:
            deployable_run(m, p, root)  # raises, naming the missing run
    return out


def student_run(width: float, segmenter: str = "unet", profile: str | Profile = "smoke", root=None,
                seed: int | None = None) -> Path | None:
    """A distilled student of ``width`` (relative to the paper model) if one was trained: the run folder
    ``runs/<p>/<segmenter>_w<width>/seed<s>/`` (training seed ``seed``, default the first; or the flat layout),
    else None.

    Example:
        >>> student_run(0.5, profile="quick", root="/nonexistent") is None
        True
    """
    try:
        return deployable_run(f"{segmenter}_w{width:g}", profile, root, seed)
    except FileNotFoundError:
        return None


# ----------------------------------------------------------------------------------------------- bf16
class _Fp32(nn.Module):
    """Runs ``module`` in fp32 inside an autocast region (the final layer of a bf16 model)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            if x.dim() == 4:
                x = x.contiguous()
            return self.module(x.float())


def _final_layer(model: nn.Module) -> str:
    last = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__}: no Conv2d/Linear layer to keep in fp32")
    return last


def bf16_module(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable running a copy of ``model`` under ``torch.autocast("cpu", torch.bfloat16)`` in channels-last
    memory format (oneDNN); the final Conv2d/Linear (the logits) runs in fp32 and the output is fp32.

    Example:
        >>> from endolib.models import create_model
        >>> f = bf16_module(create_model("unet", width_mult=0.0625).eval())
        >>> f(torch.zeros(1, 3, 32, 32)).dtype
        torch.float32
    """
    net = copy.deepcopy(model).eval()
    name = _final_layer(net)
    parent, _, leaf = name.rpartition(".")
    owner = net.get_submodule(parent) if parent else net
    setattr(owner, leaf, _Fp32(getattr(owner, leaf)))
    net = net.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x.contiguous(memory_format=torch.channels_last)).float()
    return run


# ----------------------------------------------------------------------------------------------- int8
class FrameCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over pre-processed frames ``float32 (N, 3, S, S)``, one at a time.

    Raises:
        ValueError: no frames (an empty calibration set), or frames of the wrong shape.

    Example:
        >>> r = FrameCalibrationReader(np.zeros((2, 3, 8, 8), np.float32))
        >>> r.get_next()["input"].shape, r.get_next() is not None, r.get_next()
        ((1, 3, 8, 8), True, None)
    """

    def __init__(self, frames: np.ndarray, input_name: str = "input", where: str = "calibration frames"):
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"{where}: need float32 (N, 3, S, S), got {frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError(f"{where}: the calibration set is empty (0 frames); int8 needs training frames to "
                             f"calibrate activation ranges")
        self.frames, self.input_name, self._i = frames, input_name, 0

    def get_next(self) -> dict | None:
        if self._i >= len(self.frames):
            return None
        self._i += 1
        return {self.input_name: self.frames[self._i - 1:self._i]}

    def rewind(self) -> None:
        self._i = 0


def _export_fp32(model: nn.Module, size: int, path: Path) -> Path:
    model = copy.deepcopy(model).eval()
    dummy = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def int8_plan(onnx_model) -> dict:
    """Which nodes of an ONNX graph :func:`quantise_int8` quantises and which stay fp32 (and why).

    Returns:
        ``{"quantise": [node names], "exclude": {node name: reason}}``.

    Raises:
        QuantisationError: an op type outside :data:`INT8_OPS`, :data:`FP32_OPS` and :data:`NEUTRAL_OPS`
            (named with its node), or no node left to quantise.
    """
    graph = onnx_model.graph
    outputs = {o.name for o in graph.output}
    quantise, exclude = [], {}
    for node in graph.node:
        op = node.op_type
        if set(node.output) & outputs and op in ("Conv", "Gemm", "MatMul"):
            exclude[node.name] = "final layer (logits) kept fp32"
        elif op in FP32_OPS:
            exclude[node.name] = FP32_OPS[op]
        elif op == "Resize":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
            if mode == "nearest":
                quantise.append(node.name)
            else:
                exclude[node.name] = f"{mode} Resize: no int8 kernel"
        elif op in INT8_OPS:
            quantise.append(node.name)
        elif op not in NEUTRAL_OPS:
            raise QuantisationError(f"cannot quantise: op {op!r} (node {node.name!r}) has no int8 policy "
                                    f"(quantised: {', '.join(INT8_OPS)}; kept fp32: {', '.join(FP32_OPS)})")
    if not any(n.op_type in ("Conv", "Gemm", "MatMul") for n in graph.node if n.name in set(quantise)):
        raise QuantisationError("cannot quantise: no Conv/Gemm/MatMul left to quantise after keeping "
                                f"{sorted(set(n.op_type for n in graph.node if n.name in exclude))} in fp32")
    return {"quantise": quantise, "exclude": exclude}


def quantise_int8(model: nn.Module, size: int, calibration: np.ndarray, out: str | Path | None = None,
                  reduce_range: bool | None = None) -> tuple[bytes, dict]:
    """Static int8 quantisation with ONNX Runtime: QDQ, per-channel weights (s8), u8 activations, calibrated
    (MinMax) on ``calibration`` frames; the ops of :func:`int8_plan` ``exclude`` stay fp32.

    Args:
        model: the fp32 network (not modified).
        size: input side S.
        calibration: pre-processed training frames ``float32 (N, 3, S, S)``.
        out: optionally also write the quantised model here.
        reduce_range: 7-bit weights (None = from :func:`precision_plan`: True without VNNI).

    Returns:
        ``(model bytes, int8_plan dict)``.

    Raises:
        ValueError: empty calibration set. QuantisationError: an op without a policy, nothing to quantise.

    Example:
        >>> from endolib.models import create_model
        >>> blob, plan = quantise_int8(create_model("unet", width_mult=0.0625), 32,
        ...                            np.random.rand(2, 3, 32, 32).astype(np.float32))
        >>> len(plan["quantise"]) > 10, plan["exclude"]["/head/Conv"]
        (True, 'final layer (logits) kept fp32')
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = FrameCalibrationReader(calibration)
    if reduce_range is None:
        reduce_range = precision_plan(say=None)["int8"]["reduce_range"]
    with tempfile.TemporaryDirectory() as tmp:
        raw, pre, q = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        _export_fp32(model, size, raw)
        plan = int8_plan(onnx.load(str(raw)))  # refuse unknown ops before the slow steps
        quant_pre_process(str(raw), str(pre), skip_symbolic_shape=True)  # folds BatchNorm into the convs
        plan = int8_plan(onnx.load(str(pre)))
        try:
            quantize_static(str(pre), str(q), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(INT8_OPS), nodes_to_exclude=list(plan["exclude"]))
        except Exception as e:  # noqa: BLE001 - re-raised with the model named
            raise QuantisationError(f"{type(model).__name__}: ONNX Runtime quantisation failed: {e}") from e
        blob = q.read_bytes()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(blob)
    return blob, plan


# ----------------------------------------------------------------------------------------------- stages
class ModelStage:
    """A PyTorch model as a pipeline stage: ``stage(x float32 (N, 3, S, S)) -> logits`` (numpy), fp32 eager or
    bf16 (:func:`bf16_module`). Attributes ``size``, ``task``, ``arch``, ``precision``, ``backend``."""

    def __init__(self, model: nn.Module, size: int, task: str, arch: str = "", precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"ModelStage runs fp32 or bf16, got {precision!r} (int8: OnnxModelStage)")
        self.size, self.task, self.arch, self.precision = int(size), task, arch, precision
        self.backend = "torch" if precision == "fp32" else "torch-autocast"
        model = model.eval()
        self._run = model if precision == "fp32" else bf16_module(model)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


class OnnxModelStage:
    """An ONNX model (bytes or path) under ONNX Runtime as a pipeline stage, ``threads`` intra-op threads."""

    def __init__(self, onnx_model: bytes | str | Path, size: int, task: str, arch: str = "", precision: str = "fp32",
                 threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        src = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
        self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.size, self.task, self.arch, self.precision, self.backend = int(size), task, arch, precision, "onnxruntime"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]


def make_variant_stage(model: nn.Module, size: int, task: str, precision: str, backend: str,
                       calibration: np.ndarray | None = None, arch: str = "", threads: int = 1):
    """One deployable stage: (``fp32``, ``torch``) eager, (``fp32``, ``onnxruntime``), (``bf16``, ``torch``)
    autocast, (``int8``, ``onnxruntime``) static QDQ (needs ``calibration``)."""
    if (precision, backend) == ("fp32", "torch") or (precision, backend) == ("bf16", "torch"):
        return ModelStage(model, size, task, arch, precision)
    if backend != "onnxruntime" or precision not in ("fp32", "int8"):
        raise ValueError(f"no {precision} path on backend {backend!r}; valid: fp32/bf16 on torch, fp32/int8 on "
                         f"onnxruntime")
    if precision == "fp32":
        with tempfile.TemporaryDirectory() as tmp:
            blob = _export_fp32(model, size, Path(tmp) / "m.onnx").read_bytes()
    else:
        if calibration is None:
            raise ValueError("int8 needs calibration frames (training frames, pre-processed)")
        blob, _ = quantise_int8(model, size, calibration)
    return OnnxModelStage(blob, size, task, arch, precision, threads)


# ----------------------------------------------------------------------------------------------- students
# ----------------------------------------------------------------------------------------------- runtime
class LatestSlot:
    """A one-frame mailbox between threads. ``put(item, drop=True)`` replaces an item not yet taken (counted in
    ``dropped``: the latest-frame policy of a live source); ``drop=False`` waits until it was taken (a file
    read as fast as possible: nothing is lost). ``close()`` wakes the reader; ``get`` then returns None.

    Example:
        >>> s = LatestSlot(); s.put(1); s.put(2); s.get(), s.dropped
        (2, 1)
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item, self._full, self.closed, self.dropped = None, False, False, 0

    def put(self, item, drop: bool = True) -> None:
        with self._cond:
            if self._full:
                if drop:
                    self.dropped += 1
                else:
                    while self._full and not self.closed:
                        self._cond.wait(0.1)
            self._item, self._full = item, True
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        with self._cond:
            end = None if timeout is None else time.perf_counter() + timeout
            while not self._full and not self.closed:
                left = None if end is None else end - time.perf_counter()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(0.1 if left is None else min(0.1, left))
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def open_source(source, max_frames: int | None = None,
                timeout_s: float = STALL_S) -> tuple[Iterator[np.ndarray], float]:
    """Frames of a file, a capture device or a stream URL (anything PyAV opens), and its frame rate.

    ``source`` may also be a sequence of RGB frames (tests, in-memory clips; rate 30).
    A digit or ``/dev/video*`` opens a V4L2 capture device; ``scheme://`` a stream with a ``timeout_s`` network
    timeout. Returns ``(iterator of RGB uint8 (H, W, 3), fps)``.
    """
    if not isinstance(source, (str, Path)):
        return itertools.islice(iter(source), max_frames), LIVE_FPS
    import av

    text = str(source)
    kw = {}
    if text.isdigit() or text.startswith("/dev/video"):
        kw = {"format": "v4l2"}
        text = f"/dev/video{text}" if text.isdigit() else text
    elif "://" in text:
        kw = {"options": {"rw_timeout": str(int(timeout_s * 1e6)), "timeout": str(int(timeout_s * 1e6))},
              "timeout": timeout_s}
    elif not Path(text).is_file():
        raise FileNotFoundError(f"{text}: no such video file (nor a device or stream URL)")
    try:
        container = av.open(text, **kw)
    except (av.FFmpegError, EOFError, OSError) as e:
        raise ValueError(f"{text}: cannot open as video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{text}: contains no video stream")
    stream = container.streams.video[0]
    rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 30)

    def gen():
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
                if max_frames and n >= max_frames:
                    break
        except (av.FFmpegError, EOFError, OSError):
            return  # a broken / ended stream ends the source; the runner reports how far it got
        finally:
            container.close()
    return gen(), rate


@dataclass
class RealtimeReport:
    """Outcome of a real-time run: one row per frame read (``frames``) and the summary printed and saved."""

    frames: pd.DataFrame
    summary: dict
    files: dict = field(default_factory=dict)


class RealtimeRunner:
    """Gate and segmenter in separate threads (one core each) fed by a reader thread.

    Every frame is stamped when read; the gate thread pre-processes and classifies it, passes open frames on to
    the segmenter thread and the segmenter thread produces the mask. Latency = finished - read. With
    ``live=True`` (devices, streams, ``--pace``) the reader never waits: a frame not yet taken by the gate is
    replaced by the newer one (``dropped_gate``), a frame waiting for the segmenter likewise (``dropped_seg``).
    With ``live=False`` (a file read as fast as possible) nothing is dropped and the threads apply
    back-pressure; the sustained FPS is then the pipelined throughput.

    Args:
        classifier: stage ``f(x) -> logit`` with ``size`` (``ModelStage`` / ``OnnxModelStage`` / video stages).
        segmenter: stage ``f(x) -> logits map`` with ``size``.
        gate: classifier probability at which the segmenter runs.
        force_open: run the segmenter on every frame (the worst case: every frame with tissue).
        torch_threads: torch intra-op threads while running (1: one core per model thread).
    """

    def __init__(self, classifier, segmenter, gate: float = 0.5, force_open: bool = False,
                 torch_threads: int | None = 1):
        self.classifier, self.segmenter = classifier, segmenter
        self.gate, self.force_open, self.torch_threads = gate, force_open, torch_threads

    def run(self, source, live: bool = False, pace: bool = False, max_frames: int | None = None,
            stall_s: float = STALL_S, progress: bool = False, keep_masks: bool = False,
            stop_after: int | None = None) -> RealtimeReport:
        """Process ``source`` (see :func:`open_source`); ``pace`` replays a file at its native rate (implies
        live). Stops cleanly when the source ends, yields nothing for ``stall_s`` seconds, or (``stop_after``)
        once that many frames were processed (an endless live source, e.g. a camera in a benchmark)."""
        from .video import _sigmoid, preprocess

        frames_it, rate = open_source(source, max_frames, stall_s)
        live = live or pace
        slot_gate, slot_seg = LatestSlot(), LatestSlot()
        records: dict[int, dict] = {}
        lock = threading.Lock()
        state = {"last_read": time.perf_counter(), "reader_done": False, "error": None, "stalled": False}
        stop = threading.Event()
        masks = {}

        def record(i, **kw):
            with lock:
                records[i].update(kw)

        def reader():
            t0 = time.perf_counter()
            try:
                for i, frame in enumerate(frames_it):
                    if stop.is_set():
                        break
                    if pace:
                        delay = t0 + i / rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    now = time.perf_counter()
                    state["last_read"] = now
                    with lock:
                        records[i] = {"frame": i, "t_read": now}
                    slot_gate.put((i, now, frame), drop=live)
            except Exception as e:  # noqa: BLE001 - reported in the summary, the run still stops cleanly
                state["error"] = f"{type(e).__name__}: {e}"
            finally:
                state["reader_done"] = True
                slot_gate.close()

        def gate_worker():
            while True:
                item = slot_gate.get()
                if item is None:
                    break
                i, t_read, frame = item
                t0 = time.perf_counter()
                x = preprocess(frame, self.classifier.size)
                prob = float(_sigmoid(self.classifier(x)).reshape(-1)[0])
                t1 = time.perf_counter()
                is_open = self.force_open or prob >= self.gate
                record(i, gate_prob=prob, gate_open=is_open, classifier_ms=1e3 * (t1 - t0))
                if is_open:
                    slot_seg.put((i, t_read, frame, x), drop=live)
                else:
                    record(i, t_done=t1)
            slot_seg.close()

        def seg_worker():
            while True:
                item = slot_seg.get()
                if item is None:
                    break
                i, t_read, frame, x_cls = item
                t0 = time.perf_counter()
                x = x_cls if self.segmenter.size == self.classifier.size else preprocess(frame, self.segmenter.size)
                prob = _sigmoid(self.segmenter(x))[0, 0]
                t1 = time.perf_counter()
                if keep_masks:
                    masks[i] = prob
                record(i, segmenter_ms=1e3 * (t1 - t0), t_done=t1, segmented=True)

        before = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(int(self.torch_threads))
        threads = [threading.Thread(target=f, name=f"endolib-{n}", daemon=True)
                   for n, f in (("reader", reader), ("gate", gate_worker), ("segmenter", seg_worker))]
        t_start = time.perf_counter()
        bar = tqdm(desc="realtime", unit="frame", disable=not progress, leave=False)
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads[1:]):
                threads[2].join(0.05)
                bar.n = len(records)
                bar.refresh()
                if stop_after and not stop.is_set():
                    with lock:
                        n_done = sum("t_done" in r for r in records.values())
                    if n_done >= stop_after:
                        stop.set()
                        slot_gate.close()  # frames already past the gate still finish
                if not state["reader_done"] and time.perf_counter() - state["last_read"] > stall_s:
                    state["stalled"] = True  # the reader may be blocked inside the demuxer: stop without it
                    stop.set()
                    slot_gate.close()
        finally:
            bar.close()
            stop.set()
            slot_gate.close()
            slot_seg.close()
            torch.set_num_threads(before)
        wall = time.perf_counter() - t_start
        with lock:
            df = pd.DataFrame(sorted(records.values(), key=lambda r: r["frame"]))
        summary = self._summary(df, wall, rate, live, pace, slot_gate.dropped, slot_seg.dropped, state,
                                bool(stop_after) and not state["stalled"] and len(df) > 0
                                and sum(df.get("t_done", pd.Series(dtype=float)).notna()) >= stop_after)
        return RealtimeReport(df, summary, {"masks": masks} if keep_masks else {})

    def _summary(self, df: pd.DataFrame, wall: float, rate: float, live: bool, pace: bool, dropped_gate: int,
                 dropped_seg: int, state: dict, stop_requested: bool = False) -> dict:
        for col in ("t_done", "gate_open", "segmented", "classifier_ms", "segmenter_ms"):
            if col not in df:
                df[col] = np.nan
        done = df.dropna(subset=["t_done"]) if len(df) else df
        lat = 1e3 * (done["t_done"] - done["t_read"]) if len(done) else pd.Series(dtype=float)
        seg_done = done[done["segmented"].eq(True)] if len(done) else done
        span = (done["t_done"].max() - df["t_read"].min()) if len(done) else float("nan")
        pct = {f"latency_p{q}_ms": float(np.percentile(lat, q)) if len(lat) else float("nan") for q in PERCENTILES}
        end = "stalled" if state["stalled"] else ("error" if state["error"] else
                                                  ("stopped" if stop_requested else "ended"))
        return {"frames_read": int(len(df)), "frames_processed": int(len(done)), "frames_segmented": int(len(seg_done)),
                "dropped_gate": int(dropped_gate), "dropped_seg": int(dropped_seg),
                "dropped": int(len(df) - len(done)), "fps": float(len(done) / span) if len(done) else 0.0,
                "segmented_fps": float(len(seg_done) / span) if len(seg_done) else 0.0, **pct,
                "classifier_ms_p50": float(np.nanmedian(df["classifier_ms"])) if df["classifier_ms"].notna().any()
                else float("nan"),
                "segmenter_ms_p50": float(np.nanmedian(df["segmenter_ms"])) if df["segmenter_ms"].notna().any()
                else float("nan"),
                "source_fps": rate, "live": live, "paced": pace, "wall_s": wall, "end": end,
                "error": state["error"] or "", "classifier": getattr(self.classifier, "arch", ""),
                "segmenter": getattr(self.segmenter, "arch", ""),
                "precision": getattr(self.segmenter, "precision", "fp32"),
                "backend": getattr(self.segmenter, "backend", ""), "torch_threads": self.torch_threads,
                "load_average": [round(v, 2) for v in os.getloadavg()]}


def format_summary(s: dict) -> str:
    """The printed summary of a real-time run."""
    return (f"{s['frames_read']} frames read ({s['source_fps']:.1f} FPS source, {'live' if s['live'] else 'file'}"
            f"{', paced' if s['paced'] else ''}), {s['frames_processed']} processed, {s['frames_segmented']} "
            f"segmented, dropped {s['dropped']} (at gate {s['dropped_gate']}, at segmenter {s['dropped_seg']}); "
            f"stream {s['end']}{': ' + s['error'] if s['error'] else ''}\n"
            f"sustained {s['fps']:.1f} FPS ({s['segmented_fps']:.1f} FPS segmented); latency p50 "
            f"{s['latency_p50_ms']:.1f} ms, p95 {s['latency_p95_ms']:.1f} ms; per frame classifier "
            f"{s['classifier_ms_p50']:.1f} ms, segmenter {s['segmenter_ms_p50']:.1f} ms (medians); load average "
            f"{s['load_average']}")


def save_report(report: RealtimeReport, out_dir: str | Path) -> dict:
    """Write ``realtime_frames.csv`` (per frame) and ``realtime_summary.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f_csv, f_json = out / "realtime_frames.csv", out / "realtime_summary.json"
    report.frames.to_csv(f_csv, index=False)
    f_json.write_text(json.dumps(report.summary, indent=2, default=float) + "\n")
    report.files.update(frames=f_csv, summary=f_json)
    return {"frames": f_csv, "summary": f_json}


def run_realtime(source, classifier, segmenter, out_dir: str | Path | None = None, **kw) -> RealtimeReport:
    """:class:`RealtimeRunner` on ``source``; saves the per-frame CSV and the summary JSON when ``out_dir``
    is given (also after a stream ended or stalled)."""
    runner_kw = {k: kw.pop(k) for k in ("gate", "force_open", "torch_threads") if k in kw}
    report = RealtimeRunner(classifier, segmenter, **runner_kw).run(source, **kw)
    if out_dir is not None:
        save_report(report, out_dir)
    return report


# ----------------------------------------------------------------------------------------------- latency
#: widths notebook 05 times per precision (smoke keeps it to the quarter-width U-Net)
PRECISION_WIDTHS = {"smoke": (0.25,)}


def matmul_peaks(plan: dict | None = None, threads: int | None = 1, repeats: int = 3) -> dict:
    """Measured square-matmul GFLOP/s of fp32 and bf16 (``torch.mm``) on ``threads`` threads: the ceiling each
    precision is compared with. Without bf16 hardware the bf16 rate (emulated) is measured at n = 512 only
    (it is slow); int8 has no comparable torch matmul on CPU and is not measured (None)."""
    from .compute import MATMUL_SIZES, time_runners, torch_threads

    plan = plan or precision_plan(say=None)
    out = {}
    with torch_threads(threads):
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            sizes = MATMUL_SIZES if prec == "fp32" or plan["bf16"]["available"] else (512,)
            g = torch.Generator().manual_seed(0)
            best = 0.0
            for n in sizes:
                a = torch.randn(n, n, generator=g).to(dtype)
                t = time_runners({"mm": lambda _: torch.mm(a, a)}, a, warmup=1, repeats=repeats)["mm"]
                best = max(best, 2 * n**3 / (np.median(t) / 1e3) / 1e9)
            out[prec] = best
    out["int8"] = None
    return out


def precision_table(profile: str | Profile = "smoke", models: Sequence[str] = ("resnet18", "unet"),
                    widths: Sequence[float] | None = None, data_dir=None, progress: bool = False,
                    say: Callable[[str], None] | None = print) -> tuple[pd.DataFrame, dict]:
    """Batch-1 latency of every precision path the CPU supports beside fp32 eager and fp32 ONNX Runtime, timed
    interleaved in the same run (:func:`endolib.compute.time_runners`), one thread (the runtime gives each model
    one core), at the paper's input sizes; U-Nets at ``widths`` relative to the paper model.

    Returns:
        ``(table, peaks)``: table columns ``model, width, precision, backend, median_ms, iqr_ms, fps, gflops,
        effective_gflops, peak_gflops, peak_fraction, speedup_vs_eager, max_abs_diff_prob``; ``peaks`` from
        :func:`matmul_peaks` (``peak_gflops`` is the peak of the row's precision; int8: NaN, not measured).
    """
    from .compute import count_flops, latency_summary, time_runners, torch_threads
    from .models import create_model, model_task, paper_input_size

    p = get_profile(profile)
    data_dir = Path(data_dir) if data_dir is not None else paths(p).phantom
    widths = tuple(widths or PRECISION_WIDTHS.get(p.name, WIDTHS))
    plan = precision_plan(say=say)
    peaks = matmul_peaks(plan)
    combos = [(q, b) for q, b in (("fp32", "torch"), ("fp32", "onnxruntime"), ("bf16", "torch"),
                                  ("int8", "onnxruntime")) if plan[q]["available"]]
    rows = []
    with torch_threads(1):
        for name in tqdm(models, desc="models", disable=not progress):
            task, size = model_task(name), paper_input_size(name)
            for w in (widths if task == "seg" else (1.0,)):
                torch.manual_seed(p.seed)
                net = create_model(name, width_mult=w).eval()
                flops = count_flops(net, size)
                x = _as_input(np.random.default_rng(p.seed).integers(0, 256, (1, size, size, 3), dtype=np.uint8))
                cal = _calibration(p, data_dir, size) if any(q == "int8" for q, _ in combos) else None
                stages = {(q, b): make_variant_stage(net, size, task, q, b, cal) for q, b in combos}
                ref = _sigmoid_np(stages[("fp32", "torch")](x))
                diffs = {k: float(np.abs(_sigmoid_np(st(x)) - ref).max()) for k, st in stages.items()}
                times = time_runners({f"{q}/{b}": (lambda st: lambda _: st(x))(st) for (q, b), st in stages.items()},
                                     x, warmup=p.bench_warmup, repeats=p.bench_repeats)
                eager = np.median(times["fp32/torch"])
                for (q, b) in combos:
                    lat = latency_summary(times[f"{q}/{b}"])
                    eff = flops / 1e9 / (lat["median_ms"] / 1e3)
                    peak = peaks[q] if peaks[q] else np.nan
                    rows.append({"model": name, "width": w, "precision": q, "backend": b,
                                 "median_ms": lat["median_ms"], "iqr_ms": lat["iqr_ms"], "fps": 1e3 / lat["median_ms"],
                                 "gflops": flops / 1e9, "effective_gflops": eff, "peak_gflops": peak,
                                 "peak_fraction": eff / peak, "speedup_vs_eager": eager / lat["median_ms"],
                                 "max_abs_diff_prob": diffs[(q, b)]})
    return pd.DataFrame(rows), peaks


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    from .video import _sigmoid

    return _sigmoid(x)


# ----------------------------------------------------------------------------------------------- accuracy
def _as_input(images: np.ndarray) -> np.ndarray:
    from .train import normalise

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return normalise(x).numpy()


def _probs(stage, images: np.ndarray, task: str) -> np.ndarray:
    from .video import _sigmoid

    out = [_sigmoid(stage(_as_input(images[i:i + 1]))) for i in range(len(images))]
    return np.concatenate(out).reshape(-1) if task == "cls" else np.concatenate(out)[:, 0]


def evaluate_variant(cls_probs: np.ndarray, seg_probs: np.ndarray, masks: np.ndarray, has_tissue: np.ndarray,
                     threshold: float = 0.5) -> dict:
    """The deployed pipeline's accuracy with the Table 3/4 code: ``gate_auroc`` (:func:`endolib.metrics.auroc`),
    per-image DSC/IoU from :class:`endolib.stats.SegmenterStats`, and the two-stage outcome
    (:func:`endolib.evaluate.gate_metrics`: frames the gate closes get an empty mask). ``dsc`` is the two-stage
    per-image DSC over the frames with tissue. Returns the metrics and the ``stats`` for paired bootstraps."""
    from . import metrics as M
    from . import stats as S
    from .evaluate import gate_metrics

    levels = np.round(255 * np.asarray(seg_probs, dtype=np.float32)).astype(np.uint8)
    seg = S.SegmenterStats.from_levels(levels, np.asarray(masks) > 0, threshold)
    y = np.asarray(has_tissue).astype(bool)
    passed = np.asarray(cls_probs) >= threshold
    two = gate_metrics(seg, y, passed)
    seg_only = seg.subset(y).metrics(names=("dsc", "iou")) if y.any() else {"dsc": np.nan, "iou": np.nan}
    return {"dsc": two["dsc_pos"], "iou": two["iou_pos"], "dsc_segmenter": float(seg_only["dsc"]),
            "iou_segmenter": float(seg_only["iou"]), "gate_auroc": M.auroc(y, cls_probs),
            "share_passed": two["share_passed"], "stats": seg, "passed": passed}


def dsc_drop_ci(refs: dict, variants: dict, has_tissue, groups, n_boot: int, seed: int,
                name: str = "variant") -> tuple[float, float, float, float]:
    """Two-stage DSC drop ``ref - variant`` over training seeds: ``(mean, ci_lo, ci_hi, seed_sd)``.

    Per training seed ``k`` the drop of the variant against the fp32 paper-width pipeline of the same seed, on
    the same patient-cluster resamples for both (paired; :func:`endolib.stats.resample_weights`); the seeds are
    combined by the two-level bootstrap of Tables 3/4 (:func:`endolib.stats.combine_seeds`, seed level drawn by
    :func:`endolib.stats.seed_rng` of ``name``), so the CI holds the seed spread as well as the test frames'. With
    one seed it is the paired frame bootstrap and ``seed_sd`` is NaN.

    Args:
        refs, variants: training seed -> :func:`evaluate_variant` result (the same seeds in both).
        has_tissue, groups: the test frames' labels and patient ids.
        n_boot, seed: resamples and the data seed.
        name: names the variant's seed-level draws.

    Example:
        >>> y = np.r_[np.zeros(4, bool), np.ones(8, bool)]; m = np.zeros((12, 8, 8), bool); m[4:, 2:6, 2:6] = 1
        >>> ref = {42: evaluate_variant(y.astype(float), m.astype(float), m, y)}
        >>> dsc_drop_ci(ref, ref, y, None, n_boot=50, seed=0)[:3]
        (0.0, 0.0, 0.0)
    """
    from . import stats as S
    from .evaluate import gate_metrics

    if set(refs) != set(variants) or not refs:
        raise ValueError(f"the variant's training seeds {sorted(variants)} differ from the reference's {sorted(refs)}")
    w = S.resample_weights(len(has_tissue), n_boot, seed, groups=groups)
    seeds = sorted(refs)
    est = [refs[k]["dsc"] - variants[k]["dsc"] for k in seeds]
    samples = np.stack([gate_metrics(refs[k]["stats"], has_tissue, refs[k]["passed"], weights=w)["dsc_pos"]
                        - gate_metrics(variants[k]["stats"], has_tissue, variants[k]["passed"], weights=w)["dsc_pos"]
                        for k in seeds])
    mean, pooled = S.combine_seeds(est, samples, S.seed_rng(seed, name) if len(seeds) > 1 else None)
    lo, hi = S.percentile_ci(pooled)
    return mean, lo, hi, float(np.std(est, ddof=1)) if len(est) > 1 else float("nan")


# ----------------------------------------------------------------------------------------------- bench
#: the (precision, backend) paths of a deployable variant
PATHS = (("fp32", "torch"), ("fp32", "onnxruntime"), ("bf16", "torch"), ("int8", "onnxruntime"))


def _variants(plan: dict, widths: Sequence[float], precisions: Sequence[str],
              routes: Sequence[tuple[str, str]] = PATHS) -> list[tuple]:
    """(width, precision, backend) of every deployable variant the CPU supports; the reference (paper width,
    fp32 eager) always comes first."""
    out = [(1.0, "fp32", "torch")]
    for w in widths:
        out += [(w, prec, be) for prec, be in routes if prec in precisions and plan[prec]["available"]
                and (w, prec, be) not in out]
    return out


def _calibration(p: Profile, data_dir: Path, size: int, n: int = 16) -> np.ndarray:
    from .data import load_index
    from .train import load_frames

    index = load_index(data_dir)
    rows = index[index["split"] == "train"]
    rows = rows.sample(min(n, len(rows)), random_state=p.seed) if len(rows) else rows
    return _as_input(load_frames(data_dir, rows, size, masks=False, progress=False).images)


def combine_passes(summaries: Sequence[dict]) -> dict:
    """One variant's timing over several passes: the median of each figure (``fps``, ``latency_p50_ms``,
    ``latency_p95_ms``, the stages' per-frame times), ``fps_min``/``fps_max`` over the passes and ``passes``
    (the FPS of each pass).

    Example:
        >>> s = combine_passes([{"fps": f, "latency_p50_ms": 100 / f} for f in (20.0, 28.0, 25.0)])
        >>> s["fps"], s["fps_min"], s["fps_max"], s["latency_p50_ms"], s["passes"]
        (25.0, 20.0, 28.0, 4.0, [20.0, 28.0, 25.0])
    """
    if not summaries:
        raise ValueError("no timed pass to combine")
    keys = [k for k, v in summaries[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {k: float(np.median([x[k] for x in summaries])) for k in keys}
    fps = [float(x["fps"]) for x in summaries]
    return {**out, "fps_min": min(fps), "fps_max": max(fps), "passes": fps}


def bench_realtime(profile: str | Profile = "smoke", widths: Sequence[float] = WIDTHS,
                   precisions: Sequence[str] = PRECISIONS, classifier: str = "resnet18", segmenter: str = "unet",
                   sizes: tuple[int, int] | None = None, n_frames: int | None = None, data_dir=None,
                   classifier_width: float = 1.0, routes: Sequence[tuple[str, str]] = PATHS,
                   train_students: bool = True, n_passes: int | None = None, save: bool = True,
                   progress: bool = True, say: Callable[[str], None] | None = print) -> pd.DataFrame:
    """``results/<profile>/realtime.csv``: one row per deployable variant (see :data:`REALTIME_COLUMNS`).

    Speed: paper-size models (``sizes`` = (classifier, segmenter) input sides, default the paper's 224 / 256;
    widths relative to the paper model, seeded random weights: speed does not depend on the weights) run through
    :class:`RealtimeRunner` with the gate forced open (every frame with tissue: the worst case) on a simulated
    live camera at :data:`LIVE_FPS` (latest-frame policy: ``fps`` is at most 30, latency is capture to mask)
    until ``n_frames`` frames were segmented, every variant in the same run, ``n_passes`` times over all variants
    (default :data:`BENCH_PASSES`; :func:`combine_passes`: median FPS and latency, ``fps_min``/``fps_max`` over
    the passes); ``speedup_vs_eager`` is over the fp32 eager paper-width pipeline. Accuracy: for every training seed
    with both trained (:func:`deployable_seeds`), the profile's classifier and segmenter of that seed converted to
    the same precision and evaluated on the test set (:func:`evaluate_variant`); ``dsc`` and ``gate_auroc`` are
    means over the ``n_seeds`` seeds, the DSC drop against the fp32 pipeline of the same seed has a two-level CI
    (training seeds x patient clusters, :func:`dsc_drop_ci`) and ``dsc_drop_seed_sd`` its spread over seeds (per
    seed: :data:`REALTIME_SEED_FILE`; ``dsc_segmenter`` there is the segmenter alone, without the gate). Widths
    below 1.0 use the distilled student of each seed (:func:`student_run`), trained first (or loaded when finished
    with the same settings and teacher) when ``train_students``; without one for every seed their accuracy is NaN
    (said).
    ``classifier_width`` scales the gate for speed (1.0 = paper; tests use less); ``routes`` restricts the
    (precision, backend) paths (default :data:`PATHS`, each where the CPU supports it).
    """
    from .data import load_index
    from .models import create_model, paper_input_size
    from .train import load_frames
    from .video import load_run

    p = get_profile(profile)
    data_dir = Path(data_dir) if data_dir is not None else paths(p).phantom
    require(data_dir / "index.csv", "the prepared dataset", f"python -m endolib run --profile {p.name} --only 01")
    features = cpu_features()
    plan = precision_plan(features, say=say)
    variants = _variants(plan, widths, precisions, routes)
    cls_size, seg_size = sizes or (paper_input_size(classifier), paper_input_size(segmenter))
    n_frames = n_frames or BENCH_FRAMES.get(p.name, 40)
    rng = np.random.default_rng(p.seed)
    stream = rng.integers(0, 256, size=(n_frames + p.bench_warmup, seg_size, seg_size, 3), dtype=np.uint8)
    # ---- speed, paper size
    calib, runners, gates = {}, {}, {}
    for w, prec, be in variants:  # build every variant first, then time them interleaved
        if prec == "int8":
            for s in (cls_size, seg_size):
                if s not in calib:
                    calib[s] = _calibration(p, data_dir, s)
        if (prec, be) not in gates:  # the same paper-size gate for every width
            torch.manual_seed(p.seed)
            gates[(prec, be)] = make_variant_stage(create_model(classifier, width_mult=classifier_width), cls_size,
                                                   "cls", prec, be, calib.get(cls_size), arch=classifier)
        torch.manual_seed(p.seed)
        seg_stage = make_variant_stage(create_model(segmenter, width_mult=w), seg_size, "seg", prec, be,
                                       calib.get(seg_size), arch=segmenter)
        runners[(w, prec, be)] = RealtimeRunner(gates[(prec, be)], seg_stage, force_open=True)
    passes = n_passes or BENCH_PASSES.get(p.name, 1)
    timed = {v: [] for v in variants}
    with tqdm(total=passes * len(variants), desc="speed", disable=not progress) as bar:
        for _ in range(passes):  # every pass visits every variant: a slow spell of the machine hits them all
            for v, runner in runners.items():
                if p.bench_warmup:
                    runner.run(stream[:p.bench_warmup])
                # a live 30 FPS source (latest-frame policy) until n_frames were segmented: sustained FPS and
                # latency from capture to mask as a camera would see them
                timed[v].append(runner.run(itertools.cycle(stream[p.bench_warmup:]), pace=True,
                                           stop_after=n_frames).summary)
                bar.update()
    speed = {v: combine_passes(t) for v, t in timed.items()}
    if say is not None:
        for (w, prec, be), s in speed.items():
            say(f"  width {w:g} {prec}/{be}: {s['fps']:.1f} FPS (passes {s['fps_min']:.1f}-{s['fps_max']:.1f}), "
                f"latency p50 {s['latency_p50_ms']:.0f} ms, p95 {s['latency_p95_ms']:.0f} ms (gate "
                f"{s['classifier_ms_p50']:.1f} ms, segmenter {s['segmenter_ms_p50']:.1f} ms per frame)")
    eager = speed.get((1.0, "fp32", "torch"))
    # ---- accuracy, the profile's trained models of every training seed (NaN, said, when they are not trained)
    refs, accs, used = {}, {v: {} for v in variants}, {}
    try:
        seed_runs = deployable_seeds((classifier, segmenter), p)
    except FileNotFoundError as e:
        seed_runs = {}
        if say is not None:
            say(f"accuracy not measured (NaN) for every variant: {e}")
    student_widths = [w for w in widths if w < 1.0]
    for k, (cls_dir, seg_dir) in seed_runs.items():
        cls_run, seg_run = load_run(cls_dir), load_run(seg_dir)
        used[k] = [_shown(cls_run.run_dir), _shown(seg_run.run_dir)]
        if k == next(iter(seed_runs)):  # the test frames, once (every seed's runs have the same input sizes)
            index = load_index(data_dir)
            test = index[index["split"] == "test"].reset_index(drop=True)
            cls_frames = load_frames(data_dir, test, cls_run.input_size, masks=False, progress=False)
            seg_frames = load_frames(data_dir, test, seg_run.input_size, masks=True, progress=False)
            y, groups = cls_frames.labels.astype(bool), cls_frames.patient_ids
        if (cls_run.input_size, seg_run.input_size) != (cls_frames.images.shape[1], seg_frames.images.shape[1]):
            raise ValueError(f"{cls_run.run_dir}, {seg_run.run_dir}: input sizes differ from the first training "
                             f"seed's ({cls_frames.images.shape[1]}, {seg_frames.images.shape[1]}); retrain them")

        def accuracy(prec, be, seg_model):
            for size in {cls_run.input_size, seg_run.input_size} if prec == "int8" else ():
                if size not in calib:
                    calib[size] = _calibration(p, data_dir, size)
            cs = make_variant_stage(cls_run.model, cls_run.input_size, "cls", prec, be, calib.get(cls_run.input_size))
            ss = make_variant_stage(seg_model, seg_run.input_size, "seg", prec, be, calib.get(seg_run.input_size))
            return evaluate_variant(_probs(cs, cls_frames.images, "cls"), _probs(ss, seg_frames.images, "seg"),
                                    seg_frames.masks, y, p.threshold)

        refs[k] = accuracy("fp32", "torch", seg_run.model)
        if train_students and student_widths:
            from .train import train_students as _train

            if say is not None:
                say(f"distilled students of {_shown(seg_run.run_dir)} at width(s) {student_widths} (trained unless "
                    f"finished)")
            _train(p, widths=student_widths, teacher=segmenter, training_seed=k, data_dir=data_dir,
                   teacher_run=seg_run.run_dir, progress=progress)
        for (w, prec, be) in tqdm(variants, desc=f"accuracy, seed {k}", disable=not progress):
            if w == 1.0:
                accs[(w, prec, be)][k] = refs[k] if (prec, be) == ("fp32", "torch") else \
                    accuracy(prec, be, seg_run.model)
            elif (student := student_run(w, segmenter, p, seed=k)) is not None:
                accs[(w, prec, be)][k] = accuracy(prec, be, load_run(student).model)
    rows, by_seed = [], []
    for (w, prec, be) in variants:
        s, acc = speed[(w, prec, be)], accs[(w, prec, be)]
        by_seed += [{"classifier": classifier, "segmenter": segmenter, "width": w, "precision": prec, "backend": be,
                     "seed": k, "dsc": a["dsc"], "dsc_drop": refs[k]["dsc"] - a["dsc"],
                     "dsc_segmenter": a["dsc_segmenter"], "gate_auroc": a["gate_auroc"]} for k, a in acc.items()]
        drop = (np.nan,) * 4
        if acc and set(acc) == set(refs):
            drop = dsc_drop_ci(refs, acc, y, groups, p.n_boot, p.seed, name=f"realtime/{w:g}/{prec}/{be}")
        elif acc:  # a student missing for some seeds: not comparable with the others, said below
            acc = {}
        mean = (lambda m: float(np.mean([a[m] for a in acc.values()]))) if acc else (lambda m: np.nan)
        rows.append({"classifier": classifier, "segmenter": segmenter, "width": w, "precision": prec,
                     "backend": be, "dsc": mean("dsc"), "dsc_drop": drop[0], "dsc_drop_lo": drop[1],
                     "dsc_drop_hi": drop[2], "gate_auroc": mean("gate_auroc"), "fps": s["fps"],
                     "latency_p50_ms": s["latency_p50_ms"], "latency_p95_ms": s["latency_p95_ms"],
                     "speedup_vs_eager": s["fps"] / eager["fps"] if eager else np.nan,
                     "machine": machine_label(features, plan, prec), "n_seeds": len(acc),
                     "dsc_drop_seed_sd": drop[3], "fps_min": s["fps_min"], "fps_max": s["fps_max"]})
    table = pd.DataFrame(rows, columns=list(REALTIME_COLUMNS))
    if say is not None and refs:
        missing = sorted({r.width for r in table.itertuples() if np.isnan(r.dsc)})
        if missing:
            say(f"accuracy not measured (NaN) for width(s) {missing}: no distilled student run for every training "
                f"seed {sorted(refs)} (runs/{p.name}/{segmenter}_w<width>/seed<k>/); their speed is measured")
    if save:
        from .repro import save_json, write_table

        out = paths(p).results
        write_table(table, out / REALTIME_FILE)
        write_table(pd.DataFrame(by_seed, columns=REALTIME_SEED_COLUMNS), out / REALTIME_SEED_FILE)
        save_json({"features": features, "plan": plan, "sizes": [cls_size, seg_size], "n_frames": n_frames,
                   "speed": {f"{w:g}/{prec}/{be}": s for (w, prec, be), s in speed.items()},
                   "reference": {str(k): {m: v for m, v in r.items() if m not in ("stats", "passed")}
                                 for k, r in refs.items()},
                   "runs": {str(k): {"classifier": c, "segmenter": g} for k, (c, g) in used.items()}},
                  out / "realtime_environment.json")
    return table


def read_realtime(path: str | Path) -> pd.DataFrame:
    """``realtime.csv`` as :func:`bench_realtime` writes it (:data:`REALTIME_COLUMNS`, in that order).

    Raises:
        ValueError: a column is missing or extra (e.g. a file from an older endolib: rerun the benchmark).

    Example:
        >>> import tempfile; f = Path(tempfile.mkdtemp()) / REALTIME_FILE; _ = f.write_text("fps\\n3.0\\n")
        >>> read_realtime(f)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../realtime.csv: missing column(s) classifier, ...; rerun ... with this endolib
    """
    t = pd.read_csv(path)
    if tuple(t.columns) != REALTIME_COLUMNS:
        missing = [c for c in REALTIME_COLUMNS if c not in t.columns]
        extra = [c for c in t.columns if c not in REALTIME_COLUMNS]
        what = "; ".join(x for x in (f"missing column(s) {', '.join(missing)}" if missing else "",
                                      f"unknown column(s) {', '.join(extra)}" if extra else "") if x) \
            or f"columns in another order than {', '.join(REALTIME_COLUMNS)}"
        raise ValueError(f"{path}: {what}; rerun `python -m endolib bench realtime --profile "
                         f"{Path(path).parent.name}` with this endolib")
    return t


def _shown(path) -> str:
    """A run folder as saved in committed files: relative to the repository when inside it (no checkout path)."""
    path = Path(path).resolve()
    return str(path.relative_to(repo_root())) if path.is_relative_to(repo_root()) else str(path)


def plot_realtime_pareto(table: pd.DataFrame, target_fps: float = TARGET_FPS,
                         by_seed: pd.DataFrame | None = None):
    """DSC (two-stage, frames with tissue; mean over training seeds) against sustained FPS (median of the timed
    passes, bar from the slowest to the fastest pass), one point per variant; with ``by_seed``
    (:data:`REALTIME_SEED_FILE`) each seed's DSC as a small faint point beside it. Variants without measured
    accuracy (no trained student) are drawn on a strip below the axis. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    from .plotting import PALETTE, paper_style

    paper_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    markers = {("fp32", "torch"): ("o", "fp32 eager"), ("fp32", "onnxruntime"): ("D", "fp32 ONNX Runtime"),
               ("bf16", "torch"): ("s", "bf16 autocast"), ("int8", "onnxruntime"): ("^", "int8 ONNX Runtime")}
    widths = sorted(table["width"].unique(), reverse=True)
    colour = {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(widths)}
    known = table.dropna(subset=["dsc"])
    floor = (known["dsc"].min() - 0.05) if len(known) else 0.0
    if by_seed is not None and len(by_seed):
        floor = min(floor, by_seed["dsc"].min() - 0.05)
    key = ["width", "precision", "backend"]
    for r in table.itertuples():
        y = r.dsc if not np.isnan(r.dsc) else floor
        marker = markers.get((r.precision, r.backend), ("o", ""))[0]
        ax.scatter(r.fps, y, marker=marker, s=40, zorder=3,
                   facecolors=colour[r.width] if not np.isnan(r.dsc) else "none", edgecolors=colour[r.width])
        if {"fps_min", "fps_max"} <= set(table.columns) and np.isfinite([r.fps_min, r.fps_max]).all():
            ax.plot([r.fps_min, r.fps_max], [y, y], color=colour[r.width], lw=0.8, zorder=2)
        if by_seed is not None and not np.isnan(r.dsc):
            seeds = by_seed[(by_seed[key] == [r.width, r.precision, r.backend]).all(axis=1)]
            ax.scatter(np.full(len(seeds), r.fps), seeds["dsc"], marker=marker, s=12, alpha=0.35, lw=0,
                       color=colour[r.width], zorder=1)
    ax.axvline(target_fps, color="grey", ls="--", lw=0.8)
    ax.text(target_fps, ax.get_ylim()[1], f" {target_fps:g} FPS", fontsize=6, va="top", color="grey")
    for w in widths:
        ax.scatter([], [], color=colour[w], label=f"width {w:g}")
    for k, (m, label) in markers.items():
        if ((table["precision"] == k[0]) & (table["backend"] == k[1])).any():
            ax.scatter([], [], color="grey", marker=m, label=label)
    if by_seed is not None and len(by_seed):
        ax.scatter([], [], color="grey", s=12, alpha=0.35, lw=0, label="one training seed")
    if known.shape[0] < len(table):
        ax.axhline(floor, color="lightgrey", lw=0.6)
        ax.scatter([], [], facecolors="none", edgecolors="grey", label="accuracy not measured\n(no trained student)")
    machine = table["machine"].iloc[0].split(" (")[0] if len(table) else ""
    ax.set(xscale="log", xlabel="sustained FPS, frames with tissue (2 threads; bar: range of passes)",
           ylabel="two-stage DSC (frames with tissue)", title=f"Accuracy vs speed of deployable variants\n{machine}")
    ax.xaxis.set_major_locator(FixedLocator([1, 2, 3, 5, 10, 20, 30, 50, 100]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=6, frameon=False, loc="best")
    return fig


def pareto_figure(results_dir: str | Path, target_fps: float = TARGET_FPS):
    """:func:`plot_realtime_pareto` of ``<results_dir>/realtime.csv`` (:func:`read_realtime`), with the seeds of
    :data:`REALTIME_SEED_FILE` when it is there."""
    results_dir = Path(results_dir)
    seed_file = results_dir / REALTIME_SEED_FILE
    return plot_realtime_pareto(read_realtime(results_dir / REALTIME_FILE), target_fps,
                                pd.read_csv(seed_file) if seed_file.is_file() else None)


# ----------------------------------------------------------------------------------------------- CLI
def _stage_for_run(run_dir, precision: str, data_dir: Path | None, p: Profile):
    from .video import load_run

    run = load_run(run_dir)
    backend = "torch" if precision in ("fp32", "bf16") else "onnxruntime"
    cal = _calibration(p, data_dir, run.input_size) if precision == "int8" else None
    return make_variant_stage(run.model, run.input_size, run.task, precision, backend, cal, arch=run.arch)


def realtime_main(argv: list[str]) -> int:
    """``python -m endolib video --realtime IN --classifier RUN --segmenter RUN [--precision auto] [--pace]``."""
    ap = argparse.ArgumentParser(prog="python -m endolib video --realtime",
                                 description="Real-time two-stage runtime: gate and segmenter in separate threads, "
                                             "latest-frame policy for live sources; prints and saves latency p50/p95, "
                                             "sustained FPS and dropped frames.")
    ap.add_argument("--realtime", required=True, metavar="IN", help="video file, capture device (0, /dev/video0) or "
                                                                    "stream URL")
    ap.add_argument("--classifier", required=True, metavar="RUN")
    ap.add_argument("--segmenter", required=True, metavar="RUN")
    ap.add_argument("--precision", default="fp32", choices=("auto",) + PRECISIONS,
                    help="fp32 | bf16 | int8 | auto (the fastest measured on this CPU kind: fastest_precision); a "
                         "precision the CPU lacks falls back to fp32 with a printed reason")
    ap.add_argument("--profile", default="quick", help="profile whose training frames calibrate int8")
    ap.add_argument("--pace", action="store_true", help="replay a file at its native frame rate, as if live")
    ap.add_argument("--live", action="store_true", help="latest-frame policy even for a file read at full speed")
    ap.add_argument("--gate", type=float, default=0.5)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--stall", type=float, default=STALL_S, help="seconds without a frame = stalled stream")
    ap.add_argument("--out-dir", default=None, help="where realtime_frames.csv / realtime_summary.json go "
                                                    "(default: next to IN, or ./realtime_out)")
    args = ap.parse_args(argv)
    p = get_profile(args.profile)
    plan = precision_plan()
    prec = args.precision
    if prec == "auto":
        prec = fastest_precision(plan, cpu_features())
    elif not plan[prec]["available"]:
        prec = "fp32"
    src = args.realtime
    out_dir = Path(args.out_dir) if args.out_dir else (Path(src).with_suffix("").parent / f"{Path(src).stem}_realtime"
                                                      if Path(src).is_file() else Path("realtime_out"))
    data_dir = paths(p).phantom
    cls = _stage_for_run(args.classifier, prec, data_dir, p)
    seg = _stage_for_run(args.segmenter, prec, data_dir, p)
    print(f"precision {prec} ({plan[prec]['reason']}); gate {cls.arch} @ {cls.size}px, segmenter {seg.arch} @ "
          f"{seg.size}px, one thread each")
    report = run_realtime(src, cls, seg, out_dir, gate=args.gate, live=args.live, pace=args.pace,
                          max_frames=args.max_frames, stall_s=args.stall, progress=True)
    print(format_summary(report.summary))
    print(f"saved {report.files['frames']} and {report.files['summary']}")
    return 0


def bench_main(argv: list[str]) -> int:
    """``python -m endolib bench realtime --profile P``: writes ``results/<P>/realtime.csv`` and the Pareto figure."""
    ap = argparse.ArgumentParser(prog="python -m endolib bench realtime", description=bench_realtime.__doc__.split(
        "\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--widths", nargs="+", type=float, default=list(WIDTHS))
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--frames", type=int, default=None, help="segmented frames timed per variant and pass")
    ap.add_argument("--passes", type=int, default=None,
                    help=f"timed passes over all variants, median reported (default per profile: {BENCH_PASSES})")
    ap.add_argument("--no-train-students", action="store_true",
                    help="do not train missing distilled students (their accuracy is then NaN)")
    ap.add_argument("--classifier", default="resnet18", choices=CLASSIFIERS,
                    help="the gate (a lighter one: mobilenetv3_large; needs its trained run for accuracy)")
    argv = argv[1:] if argv[:1] == ["realtime"] else argv
    args = ap.parse_args(argv)
    p = get_profile(args.profile)
    load = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    table = bench_realtime(p, widths=args.widths, precisions=args.precisions, n_frames=args.frames,
                           classifier=args.classifier, train_students=not args.no_train_students,
                           n_passes=args.passes)
    import matplotlib
    matplotlib.use("Agg")
    from .plotting import save_figure

    fig = pareto_figure(paths(p).results) if (paths(p).results / REALTIME_FILE).is_file() else \
        plot_realtime_pareto(table)
    png = save_figure(fig, "fig_realtime_pareto", figures_dir=paths(p).figures)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["machine"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"machine: {table['machine'].iloc[0] if len(table) else '?'}; load average before {load}, after "
          f"{[round(v, 2) for v in os.getloadavg()]}; {time.perf_counter() - t0:.0f} s")
    from .claims import DEPLOY_MAX_DSC_DROP, deployable_accuracy

    ok = table[(table.fps >= TARGET_FPS) & deployable_accuracy(table)[0]]  # the rule of the live-stream claim
    print(f"target (>= {TARGET_FPS:g} FPS with DSC drop <= {DEPLOY_MAX_DSC_DROP:g}, upper end of its 95% CI over "
          f"training seeds x test patients): "
          + (", ".join(f"width {r.width:g} {r.precision}/{r.backend} {r.fps:.1f} FPS" for r in ok.itertuples())
             if len(ok) else "not reached by any variant with measured accuracy"))
    print(f"saved {paths(p).results / REALTIME_FILE} and {png}")
    return 0
