"""One inference-stage layer for every deployment path: a *stage* is a model behind ``stage(x) -> logits`` on
``float32 (N, 3, S, S)`` numpy input, with the attributes ``size``, ``task``, ``arch``, ``precision`` and
``backend``. The video tool (:mod:`endolib.deploy.video`), the real-time runtime and its benchmark
(:mod:`endolib.deploy.realtime`, :mod:`endolib.deploy.realtime_bench`) and Table 5's ONNX Runtime timing
(:func:`endolib.deploy.compute.make_runner`) all build their models here.

Backends are named once (:data:`BACKENDS`): ``torch`` (PyTorch eager; fp32, or bf16 under autocast) and
``onnxruntime`` (ONNX Runtime on the CPU; fp32, or int8 static QDQ). :func:`make_stage` builds a stage from a
network, :func:`run_stage` from a trained run folder (its fp32 ONNX export cached as ``<run>/model.onnx``).

Example:
    >>> from endolib.models.factory import create_model
    >>> st = make_stage(create_model("unet", width_mult=0.0625), 32, "seg")
    >>> st(np.zeros((1, 3, 32, 32), np.float32)).shape, st.backend, st.precision
    ((1, 1, 32, 32), 'torch', 'fp32')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from endolib.deploy.onnx_export import export_onnx
from endolib.deploy.precision import bf16_module, quantise_int8
from endolib.deploy.preprocess import frames_to_input, sigmoid
from endolib.training.load import LoadedRun, load_run

__all__ = ["BACKENDS", "ROUTES", "ONNX_ATOL", "TorchStage", "OnnxStage", "make_stage", "run_stage", "onnx_path",
           "stage_probs"]

#: Inference backends (the ``backend`` of every stage, table and command line).
BACKENDS = ("torch", "onnxruntime")
#: (precision, backend) pairs a stage can run.
ROUTES = (("fp32", "torch"), ("bf16", "torch"), ("fp32", "onnxruntime"), ("int8", "onnxruntime"))
#: Largest accepted |ONNX Runtime - PyTorch| on output probabilities (sigmoid of the logits).
ONNX_ATOL = 1e-4


class TorchStage:
    """A PyTorch model as a stage, fp32 eager or bf16 (:func:`endolib.deploy.precision.bf16_module`).

    Args:
        model: the network (put in eval mode).
        size: its input side.
        task: ``"cls"`` or ``"seg"``.
        arch: registry name (for reports).
        precision: ``fp32`` or ``bf16``.
    """

    backend = "torch"

    def __init__(self, model: nn.Module, size: int, task: str, arch: str = "", precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"the torch backend runs fp32 or bf16, got {precision!r} (int8: onnxruntime)")
        self.size, self.task, self.arch, self.precision = int(size), task, arch, precision
        self.model = model.eval()
        self._run = self.model if precision == "fp32" else bf16_module(self.model)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


class OnnxStage:
    """An ONNX model (bytes or a path) under ONNX Runtime's CPU provider as a stage.

    Args:
        onnx_model: the serialised model or its file.
        size: its input side.
        task: ``"cls"`` or ``"seg"``.
        arch: registry name (for reports).
        precision: ``fp32`` or ``int8`` (what the graph holds; for reports).
        threads: intra-op threads (inter-op: 1).
    """

    backend = "onnxruntime"

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
        self.size, self.task, self.arch, self.precision = int(size), task, arch, precision

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _check_route(precision: str, backend: str) -> None:
    if (precision, backend) not in ROUTES:
        raise ValueError(f"no {precision} path on backend {backend!r}; valid: "
                         f"{', '.join(f'{q} on {b}' for q, b in ROUTES)}")


def make_stage(model: nn.Module, size: int, task: str, precision: str = "fp32", backend: str = "torch",
               calibration: np.ndarray | None = None, arch: str = "", threads: int = 1):
    """A stage of ``model`` on one of :data:`ROUTES`.

    Args:
        model: the network.
        size: its input side.
        task: ``"cls"`` or ``"seg"``.
        precision: ``fp32``, ``bf16`` (torch) or ``int8`` (onnxruntime).
        backend: one of :data:`BACKENDS`.
        calibration: pre-processed training frames ``float32 (N, 3, S, S)``; needed by int8.
        arch: registry name (for reports).
        threads: ONNX Runtime intra-op threads.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    _check_route(precision, backend)
    if backend == "torch":
        return TorchStage(model, size, task, arch, precision)
    if precision == "fp32":
        return OnnxStage(export_onnx(model, None, size, check=False), size, task, arch, precision, threads)
    if calibration is None:
        raise ValueError("int8 needs calibration frames (training frames, pre-processed)")
    blob, _ = quantise_int8(model, size, calibration)
    return OnnxStage(blob, size, task, arch, precision, threads)


def onnx_path(run: LoadedRun | str | Path) -> Path:
    """Where a run's fp32 ONNX export is cached: ``<run>/model.onnx``."""
    return Path(run.run_dir if isinstance(run, LoadedRun) else run) / "model.onnx"


def run_stage(run: LoadedRun | str | Path, backend: str = "torch", precision: str = "fp32",
              calibration: np.ndarray | None = None, threads: int | None = None):
    """A stage of a trained run (:func:`endolib.training.load.load_run`). The fp32 ONNX export is cached as
    :func:`onnx_path` and exported again when the checkpoint is newer.

    Args:
        run: the run folder or a loaded run.
        backend: one of :data:`BACKENDS`.
        precision: as in :func:`make_stage`.
        calibration: as in :func:`make_stage`.
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``, a fair comparison with
            PyTorch).

    Example:
        >>> stage = run_stage("runs/quick/unet/seed42", "onnxruntime")  # doctest: +SKIP
    """
    run = load_run(run)
    threads = int(threads or torch.get_num_threads())
    if (precision, backend) != ("fp32", "onnxruntime"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        return make_stage(run.model, run.input_size, run.task, precision, backend, calibration, run.arch, threads)
    path, ckpt = onnx_path(run), run.checkpoint
    if not path.is_file() or (ckpt.is_file() and path.stat().st_mtime < ckpt.stat().st_mtime):
        export_onnx(run.model, path, run.input_size)
    return OnnxStage(path, run.input_size, run.task, run.arch, "fp32", threads)


def stage_probs(stage, images: np.ndarray, task: str) -> np.ndarray:
    """Probabilities of a stage on frames at its size, ``uint8 (N, S, S, 3)``, one frame at a time (as deployed):
    ``(N,)`` for a classifier, ``(N, S, S)`` for a segmenter."""
    out = [sigmoid(stage(frames_to_input(images[i:i + 1]))) for i in range(len(images))]
    return np.concatenate(out).reshape(-1) if task == "cls" else np.concatenate(out)[:, 0]
