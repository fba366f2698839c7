"""Where training and inference run: device choice, mixed precision and thread counts, in one place.

``resolve_device("auto")`` is CUDA when a GPU is visible, else the CPU (it prints one line when it falls
back); ``resolve_device("cuda")`` without a GPU is an error. :func:`autocast_dtype` picks the mixed-precision
type of a profile's ``amp`` setting: ``auto`` is bf16 on GPUs that support it, else fp16 (with a gradient scaler),
and full precision on a CPU; ``bf16-amx`` is bf16 only where the hardware multiplies bf16 natively (AMX tiles on a
CPU, a bf16-capable GPU), full precision elsewhere, so a CPU without AMX keeps its full-precision numbers.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> autocast_dtype("auto", torch.device("cpu")) is None
    True
"""
from __future__ import annotations

import contextlib
import os

import torch

from endolib.config import AMP_SETTINGS
from endolib.repro import cpu_info

__all__ = ["resolve_device", "AMP_SETTINGS", "cpu_has_amx_bf16", "autocast_dtype", "autocast", "grad_scaler",
           "set_threads", "default_threads", "loader_options", "memory_format"]

#: oneDNN's variables that cap the instruction set it may use (``endolib.repro.NUMERICS_ENV`` records them).
_ONEDNN_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")

_FELL_BACK = {"said": False}  # print the CPU fallback line once per process


def resolve_device(name: str = "auto", quiet: bool = False) -> torch.device:
    """The torch device of a ``device`` setting.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        quiet: do not print the line that says ``auto`` fell back to the CPU.

    Raises:
        ValueError: an unknown name; ``cuda`` asked for on a machine without a usable GPU.
    """
    name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if not quiet and not _FELL_BACK["said"]:
            print("device auto: no CUDA GPU visible, training and inference run on the CPU")
            _FELL_BACK["said"] = True
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but torch sees no CUDA GPU (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use device='auto' or 'cpu'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but only {torch.cuda.device_count()} GPU(s) are visible")
        return dev
    raise ValueError(f"unknown device {name!r}; valid: 'auto', 'cpu', 'cuda', 'cuda:N'")


def cpu_has_amx_bf16(cpuinfo: str = "/proc/cpuinfo", environ=None) -> bool:
    """Whether oneDNN may multiply bf16 on AMX tiles here: the CPU has ``amx_bf16`` and no ``ONEDNN_MAX_CPU_ISA``
    (or ``DNNL_MAX_CPU_ISA``) caps it below AMX. Without AMX, bf16 training is no faster on a CPU (measured at quick
    size on an Intel Xeon with AMX capped to AVX512_CORE_BF16, Zen 4's instruction set: U-Net 0.95x, ResNet-18
    0.94x of fp32), so ``bf16-amx`` trains such a CPU in full precision.

    Args:
        cpuinfo: the kernel's CPU description (not Linux, or unreadable: False).
        environ: the environment to read the caps from (default ``os.environ``).

    Example:
        >>> cpu_has_amx_bf16(environ={"ONEDNN_MAX_CPU_ISA": "AVX2"})
        False
    """
    environ = os.environ if environ is None else environ
    if any(v and "AMX" not in v.upper() and v.upper() != "ALL" for v in (environ.get(k) for k in _ONEDNN_ISA_CAPS)):
        return False
    return "amx_bf16" in cpu_info(cpuinfo)["flags"]


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting on ``device`` (None = full precision).

    Args:
        amp: ``auto``: bf16 on a GPU that supports it, fp16 on older GPUs, off on a CPU. ``bf16-amx``: bf16 on a
            CPU with AMX (:func:`cpu_has_amx_bf16`) and on a bf16-capable GPU, full precision elsewhere.
            ``bf16``/``fp16``: as asked (bf16 on a CPU is fast only with AMX). ``off``: None.
        device: where the model runs.

    Example:
        >>> autocast_dtype("bf16-amx", torch.device("cpu")) in (None, torch.bfloat16)
        True
    """
    if amp not in AMP_SETTINGS:
        raise ValueError(f"amp must be one of {', '.join(repr(a) for a in AMP_SETTINGS)}, got {amp!r}")
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else (torch.float16 if amp == "auto" else None)
    if amp == "bf16-amx" and device.type == "cpu" and cpu_has_amx_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None):
    """A gradient scaler for fp16 training (None otherwise: bf16 and fp32 need none)."""
    if dtype is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def default_threads() -> int:
    """The cores this process may use (its CPU affinity), the thread count when a profile leaves it unset."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(num_threads: int | None) -> int:
    """Set torch's intra-op thread count explicitly (None: :func:`default_threads`); returns it."""
    n = int(num_threads) if num_threads else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def memory_format(channels_last: bool) -> torch.memory_format:
    """The layout models and image batches are kept in: ``torch.channels_last`` (NHWC) when ``channels_last``, else
    ``torch.contiguous_format`` (NCHW). A profile's ``channels_last`` setting picks it; the numbers it gives are
    deterministic on one machine but round differently from NCHW, so it is part of a run's fingerprint.

    Example:
        >>> memory_format(True), memory_format(False)
        (torch.channels_last, torch.contiguous_format)
    """
    return torch.channels_last if channels_last else torch.contiguous_format


def loader_options(device: torch.device) -> dict:
    """DataLoader options: worker processes and pinned memory on a GPU; in-process loading on a CPU (the
    training threads already use the cores). Augmentation is seeded per (seed, epoch, item), so the number of
    workers never changes a result."""
    if device.type == "cuda":
        return {"num_workers": min(4, default_threads()), "pin_memory": True, "persistent_workers": False}
    return {"num_workers": 0}
