"""Table 5's ``fused`` backend: a CPU-friendly copy of a model (BatchNorm folded into convolutions, transposed
convolutions for the U-Net up-sampling, channels-last, and each convolution's kernel chosen by timing among
oneDNN NCHW, oneDNN NHWC and NNPACK), numerically equal to the original within :data:`FAST_RTOL`/:data:`FAST_ATOL`.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from endolib.deploy.timing import time_runners

__all__ = ["FAST_RTOL", "FAST_ATOL", "fold_batchnorm", "rewrite_upconvs", "upconv_as_transposed", "NnpackConv2d",
           "StridedMaxPool2d", "autotune_convs", "fast_cpu_model"]


#: agreement of a fast path with eager: max|fast - eager| <= FAST_ATOL + FAST_RTOL * max|eager|
#: (fp32; Winograd and re-associated sums change rounding, not the function)
FAST_RTOL = 1e-4
FAST_ATOL = 1e-5


#: timing rounds per candidate when :func:`fast_cpu_model` picks each convolution's kernel
AUTOTUNE_REPEATS = 3


# ----------------------------------------------------------------------------------------------- fast path
def _is_plain_conv(m: nn.Module, kernel: int | None = None) -> bool:
    return (type(m) is nn.Conv2d and m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros"
            and m.stride == (1, 1) and isinstance(m.padding, tuple)
            and (kernel is None or (m.kernel_size == (kernel, kernel) and m.padding == (kernel // 2,) * 2)))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` inside an ``nn.Sequential`` into
    the convolution (in place; the BatchNorm becomes ``Identity``). Returns ``model``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                seq._modules[a] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq._modules[b] = nn.Identity()
    return model


# Output row 2i + a of "nearest 2x upsample, then 3x3 conv" sees input rows {i-1, i} (a = 0) or {i, i+1}
# (a = 1); _PHASE_TAPS[a, r] says which of the 3 kernel rows fall on its tap r, and _DECONV_TAP[a][r] is the
# row of the equivalent 4x4 stride-2 transposed-convolution kernel (padding 1) that applies that tap.
_PHASE_TAPS = torch.tensor([[[1.0, 0, 0], [0, 1, 1]],   # a = 0: input row i-1 <- kernel row 0; row i <- rows 1+2
                            [[1.0, 1, 0], [0, 0, 1]]])  # a = 1: input row i <- rows 0+1; row i+1 <- row 2
_DECONV_TAP = ((3, 1), (2, 0))


def upconv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """Exact rewrite of ``Upsample(2x, nearest)`` followed by ``conv`` (3x3, stride 1, padding 1) as one 4x4,
    stride-2, padding-1 transposed convolution of the *low*-resolution input.

    Each output pixel of the pair sees only 2x2 distinct input pixels, so per (output pixel, channel pair) it
    needs 4 instead of 9 multiply-adds: 2.25x fewer FLOPs, same function up to float rounding.

    Args:
        conv: the 3x3 convolution that followed the upsampling.

    Example:
        >>> import torch.nn.functional as F
        >>> conv = nn.Conv2d(4, 5, 3, padding=1); x = torch.randn(2, 4, 6, 7)
        >>> ref = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        >>> torch.allclose(upconv_as_transposed(conv)(x), ref, atol=1e-5)
        True
    """
    if not _is_plain_conv(conv, kernel=3):
        raise ValueError(f"the up-conv rewrite needs a 3x3, stride-1, padding-1 Conv2d, got {conv}")
    w = conv.weight.detach()
    taps = _PHASE_TAPS.to(w)
    k = torch.einsum("ary,oiyx,bsx->abrsio", taps, w, taps)  # phase (a, b), tap (r, s): (C_in, C_out) matrix
    weight = w.new_zeros(w.shape[1], w.shape[0], 4, 4)
    for a in (0, 1):
        for b in (0, 1):
            for r in (0, 1):
                for s in (0, 1):
                    weight[:, :, _DECONV_TAP[a][r], _DECONV_TAP[b][s]] = k[a, b, r, s]
    out = nn.ConvTranspose2d(w.shape[1], w.shape[0], 4, stride=2, padding=1, bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(weight)
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out.to(w.device)


class NnpackConv2d(nn.Module):
    """A stride-1 ``Conv2d`` run by NNPACK (Winograd / FFT / implicit GEMM, chosen by NNPACK), NCHW fp32.

    Args:
        conv: the convolution to run (weights are shared, not copied).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not _is_plain_conv(conv):
            raise ValueError(f"NNPACK needs a stride-1, ungrouped, undilated, zero-padded Conv2d, got {conv}")
        if not torch._nnpack_available():  # also initialises NNPACK (calls fail before that)
            raise RuntimeError("this torch build has no NNPACK")
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch._nnpack_spatial_convolution(x.contiguous(), self.conv.weight, self.conv.bias,
                                                 list(self.conv.padding))


class ChannelsLast(nn.Module):
    """Runs a (transposed) convolution in NHWC (oneDNN's faster layout for some shapes); returns NCHW."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.contiguous(memory_format=torch.channels_last)).contiguous()


class StridedMaxPool2d(nn.Module):
    """2x2 / stride-2 max pooling as three elementwise maxima of strided views (no argmax indices kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _is_pool2(m: nn.Module) -> bool:
    return (type(m) is nn.MaxPool2d and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2))
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)


def rewrite_upconvs(model: nn.Module) -> nn.Module:
    """Replace each ``Upsample(2, nearest)`` + 3x3 ``Conv2d`` pair inside an ``nn.Sequential`` by the
    equivalent transposed convolution (:func:`upconv_as_transposed`), in place. Returns ``model``."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:]):
            up, conv = seq._modules[a], seq._modules[b]
            if (type(up) is nn.Upsample and up.mode == "nearest" and up.scale_factor in (2, 2.0, (2.0, 2.0))
                    and _is_plain_conv(conv, kernel=3)):
                seq._modules[a] = nn.Identity()
                seq._modules[b] = upconv_as_transposed(conv)
    return model


def _tunable_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Size]:
    """Input shape of every plain ``Conv2d``, ``ConvTranspose2d`` and 2x2 ``MaxPool2d`` during one forward pass
    (first call)."""
    shapes, hooks = {}, []

    def record(name):
        def hook(module, inputs):
            shapes.setdefault(name, inputs[0].shape)  # returns None: the input is left unchanged
        return hook

    for name, m in model.named_modules():
        if _is_plain_conv(m) or type(m) is nn.ConvTranspose2d or _is_pool2(m):
            hooks.append(m.register_forward_pre_hook(record(name)))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _candidates(module: nn.Module, nnpack: bool) -> dict[str, nn.Module]:
    if _is_pool2(module):
        return {"maxpool": module, "strided_max": StridedMaxPool2d()}
    cands = {"onednn_nchw": module, "onednn_nhwc": ChannelsLast(copy.deepcopy(module))}
    if nnpack and type(module) is nn.Conv2d:
        cands["nnpack"] = NnpackConv2d(module)
    return cands


def autotune_convs(model: nn.Module, x: torch.Tensor, repeats: int = AUTOTUNE_REPEATS,
                   progress: bool = False, nnpack: bool = True) -> dict[str, str]:
    """For each plain stride-1 ``Conv2d`` time oneDNN NCHW, oneDNN NHWC and NNPACK, for each ``ConvTranspose2d``
    oneDNN NCHW and NHWC, for each 2x2 ``MaxPool2d`` torch's kernel and :class:`StridedMaxPool2d`, on the real
    input shape, and keep the fastest (in place).

    Returns:
        module name -> chosen implementation.
    """
    choice = {}
    nnpack = nnpack and torch._nnpack_available()
    g = torch.Generator().manual_seed(0)
    for name, shape in tqdm(_tunable_inputs(model, x).items(), desc="autotune", disable=not progress,
                            leave=False):
        cands = _candidates(model.get_submodule(name), nnpack)
        t = time_runners(cands, torch.randn(shape, generator=g), warmup=1, repeats=repeats)
        choice[name] = min(t, key=lambda k: np.median(t[k]))
        model.set_submodule(name, cands[choice[name]])
    return choice


def fast_cpu_model(model: nn.Module, example: torch.Tensor, autotune: bool = True,
                   repeats: int = AUTOTUNE_REPEATS, progress: bool = False, nnpack: bool = True) -> nn.Module:
    """The ``fused`` CPU path (inference only): an eval-mode copy with BatchNorm folded, nearest-upsample + 3x3
    conv pairs rewritten as transposed convolutions (:func:`upconv_as_transposed`), and (``autotune``) each convolution's kernel (and each 2x2
    max pooling) chosen by timing on its real input shape.

    Only ``nn.Sequential`` children are rewritten (the U-Net family's conv units); other models keep their
    structure and only get the kernel choice. NNPACK's thread pool is sized once per process, by torch's
    thread count at its first use.

    Args:
        model: the network (not modified).
        example: an input of the shape to optimise for.
        autotune: time kernels per convolution (else keep oneDNN NCHW everywhere; exportable to ONNX).
        repeats: timing rounds per candidate kernel.
        nnpack: include NNPACK among the candidates.
        progress: tqdm over convolutions.

    Example:
        >>> from endolib.models.factory import create_model
        >>> net = create_model("unet", width_mult=0.125).eval(); x = torch.randn(1, 3, 32, 32)
        >>> fast = fast_cpu_model(net, x, repeats=1)
        >>> torch.allclose(fast(x), net(x), rtol=FAST_RTOL, atol=FAST_ATOL)
        True
    """
    fast = rewrite_upconvs(fold_batchnorm(copy.deepcopy(model).eval())).requires_grad_(False)
    if autotune:
        fast.autotune = autotune_convs(fast, example, repeats=repeats, progress=progress, nnpack=nnpack)
    return fast
