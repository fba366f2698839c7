"""The building blocks of the U-Net family (Table 2): the conv unit, standard / residual / recurrent-residual
conv blocks, the up-convolution, the attention gate and the merge block (concatenation or attention-gated).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBlock", "MergeBlock", "UpConv"]


#: Recurrent steps t of a recurrent unit (R2U-Net paper default; y = f(x), then t times y = f(x + y)).
RECURRENT_STEPS = 2
#: Recurrent units per recurrent-residual block.
RECURRENT_UNITS = 2


CONV_KINDS = ("standard", "residual", "recurrent")
MERGE_KINDS = ("concat", "attention")


def _scaled(width: int, width_mult: float) -> int:
    """A channel width times ``width_mult``, rounded, at least 1."""
    return max(1, int(round(width * width_mult)))


def conv_unit(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (padding 1, with bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class UpConv(nn.Sequential):
    """The "up-conv" of the standard MergeBlock: 2x nearest upsampling, then a conv unit (3x3 conv, BN, ReLU).

    A plain ``Sequential`` so that :func:`endolib.deploy.fast_cpu.fast_cpu_model` can rewrite the upsample + 3x3 conv
    pair exactly (as 2x2 convolutions at the low resolution).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), *conv_unit(in_channels, out_channels))


class RecurrentUnit(nn.Module):
    """Recurrent convolution of R2U-Net: ``y = f(x)``, then ``steps`` times ``y = f(x + y)``.

    Args:
        channels: input = output width.
        steps: recurrent steps t (t + 1 applications of a conv unit).
        shared_weights: one conv unit applied t + 1 times (True) or t + 1 separate conv units (False).
    """

    def __init__(self, channels: int, steps: int = RECURRENT_STEPS, shared_weights: bool = False):
        super().__init__()
        n = 1 if shared_weights else steps + 1
        self.steps = steps
        self.units = nn.ModuleList(conv_unit(channels, channels) for _ in range(n))

    def _unit(self, i: int) -> nn.Module:
        return self.units[min(i, len(self.units) - 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._unit(0)(x)
        for i in range(1, self.steps + 1):
            y = self._unit(i)(x + y)
        return y


class ConvBlock(nn.Module):
    """The level block of the U-Net family (Fig. 3 of the paper).

    Args:
        in_channels: input width.
        out_channels: output width (C_out of Table 2).
        kind: ``"standard"`` (two conv units through ``inter_channels``), ``"residual"`` (the same plus a
            ResNet projection shortcut, 1x1 convolution + BatchNorm, added) or ``"recurrent"`` (1x1 convolution
            to ``out_channels``, two recurrent units, plus the 1x1 output).
        inter_channels: the narrow internal width C_inter of Table 2 (standard and residual blocks).
        recurrent_steps: t of each recurrent unit.
        shared_recurrent_weights: whether the t + 1 applications inside a recurrent unit share one conv unit.

    Example:
        >>> blk = ConvBlock(3, 8, "residual", inter_channels=4)
        >>> blk(torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, kind: str = "standard", inter_channels: int | None = None,
                 recurrent_steps: int = RECURRENT_STEPS, shared_recurrent_weights: bool = False):
        super().__init__()
        if kind not in CONV_KINDS:
            raise ValueError(f"unknown ConvBlock kind {kind!r}; valid: {', '.join(CONV_KINDS)}")
        self.kind = kind
        if kind == "recurrent":
            self.entry = nn.Conv2d(in_channels, out_channels, 1)
            self.body = nn.Sequential(*(RecurrentUnit(out_channels, recurrent_steps, shared_recurrent_weights)
                                        for _ in range(RECURRENT_UNITS)))
            return
        if inter_channels is None:
            raise ValueError(f"a {kind} ConvBlock needs inter_channels (C_inter of Table 2)")
        self.body = nn.Sequential(conv_unit(in_channels, inter_channels), conv_unit(inter_channels, out_channels))
        self.shortcut = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
                         if kind == "residual" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "recurrent":
            x = self.entry(x)
            return x + self.body(x)
        y = self.body(x)
        return y + self.shortcut(x) if self.shortcut is not None else y


class AttentionGate(nn.Module):
    """Additive attention gate (Attention U-Net): weights the skip features by a map computed from both inputs.

    Args:
        gate_channels: width of the upsampled (deeper) features.
        skip_channels: width of the skip features.
        attn_channels: intermediate width C_attn of Table 2.
    """

    def __init__(self, gate_channels: int, skip_channels: int, attn_channels: int):
        super().__init__()
        self.w_gate = nn.Sequential(nn.Conv2d(gate_channels, attn_channels, 1), nn.BatchNorm2d(attn_channels))
        self.w_skip = nn.Sequential(nn.Conv2d(skip_channels, attn_channels, 1), nn.BatchNorm2d(attn_channels))
        self.psi = nn.Sequential(nn.Conv2d(attn_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(F.relu(self.w_gate(gate) + self.w_skip(skip)))


class MergeBlock(nn.Module):
    """Merges upsampled deeper features with a skip connection (Fig. 4 of the paper).

    Args:
        deep_channels: width of the deeper (coarser) features.
        skip_channels: width of the skip features.
        kind: ``"concat"`` (2x nearest upsampling, an up-conv unit to ``skip_channels``, concatenation; output
            width 2 x skip) or ``"attention"`` (2x nearest upsampling, attention gate on the skip,
            concatenation; output width skip + deep).
        attn_channels: C_attn of Table 2 (attention only).

    Example:
        >>> m = MergeBlock(16, 8, "attention", attn_channels=4)
        >>> m(torch.zeros(1, 16, 4, 4), torch.zeros(1, 8, 8, 8)).shape, m.out_channels
        (torch.Size([1, 24, 8, 8]), 24)
    """

    def __init__(self, deep_channels: int, skip_channels: int, kind: str = "concat",
                 attn_channels: int | None = None):
        super().__init__()
        if kind not in MERGE_KINDS:
            raise ValueError(f"unknown MergeBlock kind {kind!r}; valid: {', '.join(MERGE_KINDS)}")
        self.kind = kind
        if kind == "concat":
            self.up_conv = UpConv(deep_channels, skip_channels)
            self.out_channels = 2 * skip_channels
        else:
            if attn_channels is None:
                raise ValueError("an attention MergeBlock needs attn_channels (C_attn of Table 2)")
            self.gate = AttentionGate(deep_channels, skip_channels, attn_channels)
            self.out_channels = skip_channels + deep_channels

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.kind == "concat":
            return torch.cat([skip, self.up_conv(deep)], dim=1)
        up = F.interpolate(deep, scale_factor=2, mode="nearest")
        return torch.cat([self.gate(up, skip), up], dim=1)
