"""The model zoo: the paper's eleven networks behind one factory, :func:`create_model`.

Classifiers (``resnet18``, ``resnet34``, ``mobilenetv3_large``) are timm networks with one output logit.
Every model takes the same ``width_mult`` (1.0 = the paper's widths; the quick profile trains narrower ones).
Segmenters are the six U-Net variants of Table 2 (built from :class:`endolib.models.blocks.ConvBlock` and :class:`endolib.models.blocks.MergeBlock`, one
:class:`UNet` class configured by :data:`UNET_VARIANTS`) and SegFormer-B0/B1 (transformers, built from a
config, never downloaded). Every model takes ImageNet-normalised float tensors ``(N, 3, S, S)`` and returns
logits: ``(N, 1)`` for classifiers, ``(N, 1, S, S)`` for segmenters (apply the sigmoid in the loss or after).

The wiring that reproduces Table 5 follows the shared reference ``architectures.md``. In short: conv unit =
3x3 conv (bias) + BatchNorm + ReLU; standard block = two conv units through the narrow ``inter`` width;
residual block adds a ResNet projection shortcut (1x1 conv + BN; with the BN AResU-Net has 2.450 M parameters,
printed 2.5 in Table 5, without it 2.447 M); recurrent-residual block = 1x1 conv, then two recurrent units
(t = 2), plus the 1x1 output. R2U-Net's 6.4 M parameters need *separate* weights for each of the t + 1
applications inside a recurrent unit (``shared_recurrent_weights=False``, its default); with shared weights (the
reading of the paper's text) the FLOPs are the same and the parameters are 2.4 M. AR2U-Net uses the same block,
separate weights too (6.0 M; its printed 2.7 M fits neither reading, shared gives 2.1 M); see
:data:`UNET_VARIANTS`.

Example:
    >>> import torch
    >>> from endolib.models.factory import create_model
    >>> net = create_model("unet", width_mult=0.125).eval()
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from endolib.config import CLASSIFIERS, MODELS, SEGMENTERS, Profile, get_profile
from endolib.models.classifiers import TIMM_NAMES, _timm_classifier
from endolib.models.segformer import SEGFORMER_VARIANTS, SegFormer
from endolib.models.unet import UNET_VARIANTS, UNet
from endolib.models.weights import load_weights
from endolib.paper import DISPLAY_NAMES

__all__ = ["REGISTRY", "MODEL_INFO", "ModelInfo", "create_model", "model_kwargs", "model_task", "input_size",
           "paper_input_size", "count_parameters"]


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


def _check_resolved(profile) -> Profile:
    if not isinstance(profile, Profile):
        raise TypeError(f"pass a resolved Profile (endolib.config.get_profile), got {type(profile).__name__} "
                        f"{profile!r}: a run resolves its profile once, where it starts")
    return profile


def input_size(name: str, profile: Profile) -> int:
    """The input side (pixels) a profile gives this model (``cls_size``, ``seg_size`` or ``segformer_size``).

    Args:
        name: registry name.
        profile: the run's resolved :class:`endolib.config.Profile`.

    Example:
        >>> from endolib.config import get_profile
        >>> input_size("segformer_b0", get_profile("paper")), input_size("unet", get_profile("smoke"))
        (512, 32)
    """
    return int(getattr(_check_resolved(profile), _check_name(name).size_field))


def paper_input_size(name: str) -> int:
    """The paper's input side for this model (224 classifiers, 256 U-Nets, 512 SegFormers)."""
    return _check_name(name).paper_size


def model_kwargs(name: str, profile: Profile) -> dict:
    """The :func:`create_model` keyword arguments a profile implies: the profile's width multiplier.

    Args:
        name: registry name.
        profile: the run's resolved :class:`endolib.config.Profile`.

    Example:
        >>> from endolib.config import get_profile
        >>> model_kwargs("unet", get_profile("smoke")), model_kwargs("resnet18", get_profile("paper"))
        ({'width_mult': 0.125}, {'width_mult': 1.0})
    """
    _check_name(name)
    return {"width_mult": float(_check_resolved(profile).width_mult)}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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
        >>> import torch
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
