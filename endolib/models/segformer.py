"""SegFormer-B0/B1 (the paper's 512 px segmenters) from transformers' configuration, randomly initialised (no
download), with the logits up-sampled to the input size; the size variants are data (:data:`SEGFORMER_VARIANTS`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from endolib.models.blocks import _scaled

__all__ = ["SegFormer", "SEGFORMER_VARIANTS"]


#: SegFormer encoder settings (Xie et al. 2021, MiT-B0/B1); the decode head has 256 channels for both.
SEGFORMER_VARIANTS: dict[str, dict] = {
    "segformer_b0": {"hidden_sizes": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
    "segformer_b1": {"hidden_sizes": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
}


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
