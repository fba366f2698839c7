"""The one ONNX export of a model (TorchScript exporter, opset :data:`ONNX_OPSET`), used by the ONNX Runtime stages
of the video tool and the real-time runtime, by Table 5's ``onnxruntime`` timing and by int8 quantisation.

Example:
    >>> from endolib.models.factory import create_model
    >>> blob = export_onnx(create_model("unet", width_mult=0.0625), None, 32)
    >>> blob[:2] != b""
    True
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["ONNX_OPSET", "export_onnx"]

#: ONNX opset of every export (17: LayerNormalization for SegFormer).
ONNX_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path | None, size: int, opset: int = ONNX_OPSET,
                dynamic_batch: bool = True, check: bool = True) -> Path | bytes:
    """Export ``model`` (in eval mode; its training flag is restored) for ``float32 (N, 3, size, size)`` input.

    Args:
        model: the network.
        path: the ``.onnx`` file to write (parents created), or None to get the serialised model as bytes.
        size: input side ``S``.
        opset: ONNX opset (at least :data:`ONNX_OPSET`).
        dynamic_batch: a dynamic batch axis (else the graph is fixed to batch 1).
        check: run ``onnx.checker`` on the result.

    Returns:
        The path, or the bytes when ``path`` is None.
    """
    import onnx

    if opset < ONNX_OPSET:
        raise ValueError(f"opset must be >= {ONNX_OPSET}, got {opset}")
    target = io.BytesIO() if path is None else Path(path)
    if path is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings of transformers' SegFormer, exporter deprecation notes
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), target if path is None else str(target),
                              dynamo=False, opset_version=opset, input_names=["input"], output_names=["logits"],
                              dynamic_axes=axes)
    finally:
        model.train(was_training)
    out = target.getvalue() if path is None else target
    if check:
        onnx.checker.check_model(out if path is None else str(out))
    return out
