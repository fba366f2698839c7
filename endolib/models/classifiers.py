"""The three stage-1 classifiers (ResNet-18, ResNet-34, MobileNetV3-Large) built with timm without downloading
weights, with a one-logit head; ``width_mult`` scales the ResNets' widths.
"""
from __future__ import annotations

from torch import nn

from endolib.models.blocks import _scaled

__all__ = ["TIMM_NAMES"]


#: Registry name -> timm architecture name.
TIMM_NAMES: dict[str, str] = {"resnet18": "resnet18", "resnet34": "resnet34",
                              "mobilenetv3_large": "mobilenetv3_large_100"}


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
