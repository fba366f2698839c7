"""The model zoo: the paper's eleven networks behind one factory, :func:`create_model`.

Classifiers (``resnet18``, ``resnet34``, ``mobilenetv3_large``) are timm networks with one output logit.
Every model takes the same ``width_mult`` (1.0 = the paper's widths; the quick profile trains narrower ones).
Segmenters are the six U-Net variants of Table 2 (built from :class:`ConvBlock` and :class:`MergeBlock`, one
:class:`UNet` class configured by :data:`UNET_VARIANTS`) and SegFormer-B0/B1 (transformers, built from a
config, never downloaded). Every model takes ImageNet-normalised float tensors ``(N, 3, S, S)`` and returns
logits: ``(N, 1)`` for classifiers, ``(N, 1, S, S)`` for segmenters (apply the sigmoid in the loss or after).

The wiring that reproduces Table 5 follows the shared reference ``architectures.md``. In short: conv unit =
3x3 conv (bias) + BatchNorm + ReLU; standard block = two conv units through the narrow ``inter`` width;
residual block adds a ResNet projection shortcut (1x1 conv + BN; with the BN AResU-Net has 2.450 M parameters,
printed 2.5 in Table 5, without it 2.447 M); recurrent-residual block = 1x1 conv, then two recurrent units
(t = 2), plus the 1x1 output. R2U-Net's 6.4 M parameters need *separate* weights for each of the t + 1
applications inside a recurrent unit (``shared_recurrent_weights=False``, its default); with shared weights (the
reading of the paper's text) the FLOPs are the same and the parameters are 2.4 M. AR2U-Net's 2.7 M is closer to
shared weights (2.1 M, its default) than to separate ones (6.0 M); see :data:`UNET_VARIANTS`.

Example:
    >>> import torch
    >>> from endolib.models import create_model
    >>> net = create_model("unet", width_mult=0.125).eval()
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import CLASSIFIERS, MODELS, SEGMENTERS, Profile, get_profile
from .paper import DISPLAY_NAMES

__all__ = [
    "ConvBlock", "MergeBlock", "UpConv", "UNet", "SegFormer", "UNET_VARIANTS", "SEGFORMER_VARIANTS", "TIMM_NAMES",
    "REGISTRY", "MODEL_INFO", "ModelInfo", "create_model", "model_kwargs", "model_task", "input_size",
    "paper_input_size", "load_weights", "count_parameters", "UNET_SIZE_MULTIPLE",
]

#: U-Net inputs must have sides divisible by this (the contract of issue 4; three 2x2 poolings need 8).
UNET_SIZE_MULTIPLE = 16
#: Recurrent steps t of a recurrent unit (R2U-Net paper default; y = f(x), then t times y = f(x + y)).
RECURRENT_STEPS = 2
#: Recurrent units per recurrent-residual block.
RECURRENT_UNITS = 2

#: Table 2 of the paper, one plain dict per variant. ``out``/``inter``: per-level widths L1..L4; ``attn``:
#: attention-gate widths L1..L3 (None = concatenation merge). ``shared_recurrent_weights`` (recurrent variants)
#: is the reading closest to Table 5: R2U-Net's 6.4 M needs separate weights per recurrent application
#: (6.35 M; shared gives 2.43 M), while AR2U-Net's 2.7 M is nearer shared weights (2.08 M; separate: 6.00 M).
#: No wiring consistent with Table 2 reproduces AR2U-Net's parameters and FLOPs together.
UNET_VARIANTS: dict[str, dict] = {
    "unet": {"conv": "standard", "merge": "concat", "out": (64, 128, 256, 512), "inter": (16, 32, 64, 128),
             "attn": None},
    "resunet": {"conv": "residual", "merge": "concat", "out": (64, 128, 256, 512), "inter": (16, 32, 64, 128),
                "attn": None},
    "r2unet": {"conv": "recurrent", "merge": "concat", "out": (32, 64, 128, 256), "inter": None, "attn": None,
               "shared_recurrent_weights": False},
    "aunet": {"conv": "standard", "merge": "attention", "out": (64, 128, 256, 512), "inter": (16, 32, 64, 128),
              "attn": (16, 32, 64)},
    "aresunet": {"conv": "residual", "merge": "attention", "out": (64, 128, 256, 512),
                 "inter": (16, 32, 64, 128), "attn": (16, 32, 64)},
    "ar2unet": {"conv": "recurrent", "merge": "attention", "out": (32, 64, 128, 256), "inter": None,
                "attn": (8, 16, 32), "shared_recurrent_weights": True},
}

#: SegFormer encoder settings (Xie et al. 2021, MiT-B0/B1); the decode head has 256 channels for both.
SEGFORMER_VARIANTS: dict[str, dict] = {
    "segformer_b0": {"hidden_sizes": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
    "segformer_b1": {"hidden_sizes": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
}

#: Registry name -> timm architecture name.
TIMM_NAMES: dict[str, str] = {"resnet18": "resnet18", "resnet34": "resnet34",
                              "mobilenetv3_large": "mobilenetv3_large_100"}

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

    A plain ``Sequential`` so that :func:`endolib.compute.fast_cpu_model` can rewrite the upsample + 3x3 conv
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


class UNet(nn.Module):
    """The U-Net family: 4 levels, 2x2 max pooling, ConvBlocks and MergeBlocks of one kind, 1x1 head.

    Args:
        conv: ConvBlock kind (``standard``, ``residual``, ``recurrent``).
        merge: MergeBlock kind (``concat``, ``attention``).
        out: C_out per level (L1..L4).
        inter: C_inter per level (standard/residual blocks), else None.
        attn: C_attn per decoder level (L1..L3) for attention merges, else None.
        width_mult: multiplies every width (rounded, at least 1); 1.0 = the paper.
        shared_recurrent_weights: recurrent steps share one conv unit (False reproduces Table 5's R2U-Net).
        recurrent_steps: t of each recurrent unit.
        in_channels: image channels.
        out_channels: logit channels.

    Example:
        >>> net = UNet(**UNET_VARIANTS["aunet"], width_mult=0.125)
        >>> net(torch.zeros(2, 3, 32, 48)).shape
        torch.Size([2, 1, 32, 48])
    """

    def __init__(self, conv: str = "standard", merge: str = "concat", out=(64, 128, 256, 512),
                 inter=(16, 32, 64, 128), attn=None, width_mult: float = 1.0,
                 shared_recurrent_weights: bool = False, recurrent_steps: int = RECURRENT_STEPS,
                 in_channels: int = 3, out_channels: int = 1):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if merge == "attention" and attn is None:
            raise ValueError("merge='attention' needs attn widths (C_attn of Table 2)")
        levels = len(out)
        self.in_channels = in_channels
        self.size_multiple = UNET_SIZE_MULTIPLE
        out = [_scaled(c, width_mult) for c in out]
        inter = [_scaled(c, width_mult) for c in inter] if inter is not None else [None] * levels
        attn = [_scaled(c, width_mult) for c in attn] if attn is not None else [None] * (levels - 1)
        block = dict(kind=conv, recurrent_steps=recurrent_steps, shared_recurrent_weights=shared_recurrent_weights)
        self.encoder = nn.ModuleList()
        prev = in_channels
        for lvl in range(levels):
            self.encoder.append(ConvBlock(prev, out[lvl], inter_channels=inter[lvl], **block))
            prev = out[lvl]
        self.pool = nn.MaxPool2d(2)
        self.merges = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for lvl in reversed(range(levels - 1)):
            m = MergeBlock(out[lvl + 1], out[lvl], merge, attn[lvl])
            self.merges.append(m)
            self.decoder.append(ConvBlock(m.out_channels, out[lvl], inter_channels=inter[lvl], **block))
        self.head = nn.Conv2d(out[0], out_channels, 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``x`` is ``(N, in_channels, H, W)`` with H, W divisible by 16."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"U-Net input must be (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"U-Net input height and width must be divisible by {self.size_multiple}, got "
                             f"{h}x{w}; resize to e.g. {max(1, round(h / self.size_multiple)) * self.size_multiple}"
                             f"x{max(1, round(w / self.size_multiple)) * self.size_multiple}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self.check_input(x)
        skips = []
        for i, blk in enumerate(self.encoder):
            x = blk(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for merge, blk in zip(self.merges, self.decoder):
            x = blk(merge(x, skips.pop()))
        return self.head(x)


class SegFormer(nn.Module):
    """transformers' ``SegformerForSemanticSegmentation`` with one label, its quarter-resolution logits
    upsampled bilinearly to the input size. Only ``forward(x) -> logits`` is used: never the built-in loss
    (with one label it treats 255 as an ignore index).

    Args:
        hidden_sizes: encoder widths per stage.
        depths: transformer blocks per stage.
        decoder_hidden_size: all-MLP decoder width.
        width_mult: multiplies hidden and decoder widths (rounded to a multiple of the stage's head count).

    Example:
        >>> net = SegFormer(**SEGFORMER_VARIANTS["segformer_b0"], width_mult=0.125).eval()
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(self, hidden_sizes=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder_hidden_size: int = 256,
                 width_mult: float = 1.0):
        super().__init__()
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        heads = SegformerConfig().num_attention_heads
        hidden = [max(h, int(round(c * width_mult / h)) * h) for c, h in zip(hidden_sizes, heads)]
        cfg = SegformerConfig(num_labels=1, hidden_sizes=hidden, depths=list(depths),
                              decoder_hidden_size=_scaled(decoder_hidden_size, width_mult))
        self.net = SegformerForSemanticSegmentation(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


#: Base channel widths a classifier's ``width_mult`` scales (timm's ``channels``/``stem_width`` for ResNets).
RESNET_WIDTHS = {"stem_width": 64, "channels": (64, 128, 256, 512)}
#: Standard deviation of the re-initialised one-logit head (see :func:`_timm_classifier`).
HEAD_INIT_STD = 0.01


def _timm_classifier(name: str, width_mult: float = 1.0, **kw) -> nn.Module:
    """A timm classifier with one logit, optionally narrower.

    ``width_mult`` scales every channel width: the ResNets through timm's ``stem_width``/``channels`` arguments,
    MobileNetV3 through timm's ``channel_multiplier`` (rounded to multiples of 8, as timm does for its 0.75
    variant). The head is re-initialised (normal, std ``HEAD_INIT_STD``, zero bias): timm's MobileNetV3
    initialises a linear layer uniformly in +-1/sqrt(outputs), i.e. +-1 for one logit, which starts training
    from saturated logits (BCE ~ 4 instead of 0.69).
    """
    import timm

    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    kw.pop("pretrained", None)
    timm_name = TIMM_NAMES[name]
    if name.startswith("resnet"):
        widths = {"stem_width": _scaled(RESNET_WIDTHS["stem_width"], width_mult),
                  "channels": tuple(_scaled(c, width_mult) for c in RESNET_WIDTHS["channels"])}
        net = timm.create_model(timm_name, pretrained=False, num_classes=1, **widths, **kw)
    elif width_mult == 1.0:
        net = timm.create_model(timm_name, pretrained=False, num_classes=1, **kw)
    else:  # timm registers MobileNetV3-Large at fixed multipliers only; its generator takes any
        from timm.models.mobilenetv3 import _gen_mobilenet_v3

        net = _gen_mobilenet_v3(timm_name, width_mult, pretrained=False, num_classes=1, **kw)
    head = net.get_classifier()
    nn.init.normal_(head.weight, 0.0, HEAD_INIT_STD)
    nn.init.zeros_(head.bias)
    return net


def _unet_builder(name: str) -> Callable[..., nn.Module]:
    def build(width_mult: float = 1.0, **kw) -> nn.Module:
        return UNet(**{**UNET_VARIANTS[name], **kw}, width_mult=width_mult)

    build.__doc__ = f"{name}: UNet(**UNET_VARIANTS[{name!r}])"
    return build


def _segformer_builder(name: str) -> Callable[..., nn.Module]:
    def build(width_mult: float = 1.0, **kw) -> nn.Module:
        return SegFormer(**{**SEGFORMER_VARIANTS[name], **kw}, width_mult=width_mult)

    build.__doc__ = f"{name}: SegFormer(**SEGFORMER_VARIANTS[{name!r}])"
    return build


def _classifier_builder(name: str) -> Callable[..., nn.Module]:
    def build(width_mult: float = 1.0, **kw) -> nn.Module:
        return _timm_classifier(name, width_mult, **kw)

    build.__doc__ = f"{name}: timm {TIMM_NAMES[name]!r} with one logit"
    return build


#: Registry name -> builder ``(width_mult=1.0, **kw) -> nn.Module`` (weights randomly initialised).
REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{n: _classifier_builder(n) for n in TIMM_NAMES},
    **{n: _unet_builder(n) for n in UNET_VARIANTS},
    **{n: _segformer_builder(n) for n in SEGFORMER_VARIANTS},
}
assert tuple(REGISTRY) == MODELS, "the registry must hold exactly endolib.config.MODELS, in order"


@dataclass(frozen=True)
class ModelInfo:
    """What a registry name is: its task, which Profile field sets its input size, and the paper's size."""

    name: str
    label: str  # the paper's name, e.g. "ResNet-18"
    task: str  # "cls" or "seg"
    family: str  # "timm", "unet" or "segformer"
    size_field: str  # Profile field holding the input side: cls_size, seg_size or segformer_size
    paper_size: int  # input side used by the paper (and by the computational-load table)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _info(name: str) -> ModelInfo:
    family = "timm" if name in TIMM_NAMES else "unet" if name in UNET_VARIANTS else "segformer"
    field = {"timm": "cls_size", "unet": "seg_size", "segformer": "segformer_size"}[family]
    return ModelInfo(name, DISPLAY_NAMES[name], "cls" if name in CLASSIFIERS else "seg", family, field,
                     getattr(get_profile("paper"), field))


#: Registry name -> :class:`ModelInfo`.
MODEL_INFO: dict[str, ModelInfo] = {n: _info(n) for n in MODELS}
assert all(MODEL_INFO[n].task == "seg" for n in SEGMENTERS)


def _check_name(name: str) -> ModelInfo:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(REGISTRY)}")
    return MODEL_INFO[name]


def model_task(name: str) -> str:
    """``"cls"`` for the classifiers, ``"seg"`` for the segmenters.

    Example:
        >>> model_task("resnet18"), model_task("unet")
        ('cls', 'seg')
    """
    return _check_name(name).task


def input_size(name: str, profile: str | Profile = "smoke") -> int:
    """The input side (pixels) a profile gives this model (``cls_size``, ``seg_size`` or ``segformer_size``).

    Example:
        >>> input_size("segformer_b0", "paper"), input_size("unet", "smoke")
        (512, 32)
    """
    return int(getattr(get_profile(profile), _check_name(name).size_field))


def paper_input_size(name: str) -> int:
    """The paper's input side for this model (224 classifiers, 256 U-Nets, 512 SegFormers)."""
    return _check_name(name).paper_size


def model_kwargs(name: str, profile: str | Profile = "smoke") -> dict:
    """The :func:`create_model` keyword arguments a profile implies: the profile's width multiplier.

    Example:
        >>> model_kwargs("unet", "smoke"), model_kwargs("resnet18", "paper")
        ({'width_mult': 0.125}, {'width_mult': 1.0})
    """
    _check_name(name)
    return {"width_mult": float(get_profile(profile).width_mult)}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------------------------- weights
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")


def _find_weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for fname in _WEIGHT_FILES:
            if (path / fname).is_file():
                return path / fname
        found = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
        if len(found) == 1:
            return found[0]
        raise FileNotFoundError(f"{path}: expected one weights file ({', '.join(_WEIGHT_FILES)} or a single "
                                f"*{'/*'.join(_WEIGHT_SUFFIXES)}), found {[p.name for p in found] or 'none'}")
    raise FileNotFoundError(f"{path}: weights file or folder not found")


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(file), device="cpu")
        else:
            sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign files: say which file and why
        raise ValueError(f"{file}: cannot read weights ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{file}: expected a state_dict (name -> tensor), got {type(sd).__name__}")
    return sd


def _align_prefixes(sd: dict, expected: set[str]) -> dict:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``) or add the model's own (``net.``) when that makes
    more keys match."""
    candidates = [sd]
    for pre in _STRIP_PREFIXES:
        if any(k.startswith(pre) for k in sd):
            candidates.append({k[len(pre):] if k.startswith(pre) else k: v for k, v in sd.items()})
    own = {k.split(".", 1)[0] + "." for k in expected if "." in k}
    for pre in own:
        candidates.append({pre + k: v for k, v in sd.items()})
    return max(candidates, key=lambda c: len(expected & set(c)))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict:
    """Load local weights (safetensors or torch file, or a folder holding one) into ``model``. Never downloads.

    Args:
        model: the network built by :func:`create_model`.
        path: a ``.safetensors``/``.pt``/``.pth``/``.bin`` file or a folder with ``model.safetensors`` etc.
        strict: raise on any missing, unexpected or shape-mismatched key (True); else load what matches and
            warn with the lists (e.g. ImageNet weights into a one-logit classifier).

    Returns:
        ``{"file", "missing", "unexpected", "mismatched"}`` (the key lists).

    Example:
        >>> import tempfile, os; from safetensors.torch import save_file
        >>> net = create_model("unet", width_mult=0.125); f = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> save_file(net.state_dict(), f); load_weights(net, f)["missing"]
        []
    """
    file = _find_weights_file(Path(path))
    own = model.state_dict()
    sd = _align_prefixes(_read_state_dict(file), set(own))
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    report = {"file": str(file), "missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    if missing or unexpected or mismatched:
        msg = (f"{file}: weights do not match {type(model).__name__} ({len(own)} tensors expected): "
               f"missing {len(missing)} {missing[:10]}, unexpected {len(unexpected)} {unexpected[:10]}, "
               f"shape-mismatched {len(mismatched)} {mismatched[:10]}")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg + "; loading the matching tensors only", stacklevel=2)
    bad = {m.split(":", 1)[0] for m in mismatched}
    model.load_state_dict({k: v for k, v in sd.items() if k in own and k not in bad}, strict=False)
    return report


def create_model(name: str, width_mult: float = 1.0, pretrained: str | Path | None = None, **kw) -> nn.Module:
    """Build a registry model (random init unless ``pretrained`` names local weights).

    Args:
        name: one of :data:`endolib.config.MODELS` (``resnet18`` ... ``segformer_b1``).
        width_mult: width multiplier for the segmenters (classifiers must use 1.0).
        pretrained: None/False for random initialisation, or a local weights file/folder (see
            :func:`load_weights`, strict). Nothing is ever downloaded.
        **kw: passed to the builder, e.g. ``shared_recurrent_weights=True`` for the R2 variants.

    Returns:
        A ``torch.nn.Module`` mapping ``(N, 3, S, S)`` to logits ``(N, 1)`` or ``(N, 1, S, S)``.

    Example:
        >>> create_model("resnet18")(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 1])
    """
    _check_name(name)
    if pretrained is True:
        raise ValueError("pretrained=True would need a download; pass the path of a local weights file or folder")
    model = REGISTRY[name](width_mult=width_mult, **kw)
    if pretrained:
        load_weights(model, pretrained, strict=True)
    return model
