"""Reduced precision on the CPU, and which precision each CPU kind runs fastest:

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

Example:
    >>> sorted(INT8_OPS)[:3]
    ['Concat', 'Conv', 'Gemm']
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from endolib.config import Profile
from endolib.deploy.onnx_export import export_onnx
from endolib.deploy.preprocess import frames_to_input
from endolib.repro import cpu_info

__all__ = ["PRECISIONS", "NEUTRAL_OPS", "QuantisationError", "cpu_features", "precision_plan", "fastest_precision",
           "bf16_module", "FrameCalibrationReader", "int8_plan", "quantise_int8"]


PRECISIONS = ("fp32", "bf16", "int8")


VNNI_ISA = ("amx_int8", "avx512_vnni", "avx_vnni")


#: op types that need no decision (data movement, elementwise fp32, shapes); anything else is refused
NEUTRAL_OPS = frozenset("""Relu Add Sub Pow Sqrt ReduceMean Reshape Flatten Transpose Shape Gather Unsqueeze Squeeze
Constant Identity Slice Split Cast GlobalAveragePool AveragePool BatchNormalization Pad Where Expand
ConstantOfShape Equal Range Clip HardSigmoid HardSwish Neg Tanh""".split())


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
    info = cpu_info(cpuinfo)
    wanted = set(BF16_ISA) | set(VNNI_ISA) | set(INT8_MIN_ISA) | {"avx512f", "amx_tile"}
    return {"model": info["model"], "flags": sorted(info["flags"] & wanted),
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
        >>> from endolib.models.factory import create_model
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
        >>> from endolib.models.factory import create_model
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
        export_onnx(model, raw, size, check=False)
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


#: ISA flags (``/proc/cpuinfo``) that make each reduced precision fast
BF16_ISA = ("amx_bf16", "avx512_bf16")


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


def _calibration(p: Profile, data_dir: Path, size: int, n: int = 16) -> np.ndarray:
    from endolib.data.dataset import load_index
    from endolib.training.frames import load_frames

    index = load_index(data_dir)
    rows = index[index["split"] == "train"]
    rows = rows.sample(min(n, len(rows)), random_state=p.seed) if len(rows) else rows
    return frames_to_input(load_frames(data_dir, rows, size, masks=False, progress=False).images)
