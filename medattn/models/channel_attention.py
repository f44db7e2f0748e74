"""Residual channel attention (Wang et al. 2021, RCAN-DenseNet-121 for SIPaKMeD): a residual
channel attention block (RCAB, Zhang et al. 2018) after backbone stages, then GAP + linear.

RCAB: x + CA(conv3×3 → ReLU → conv3×3 (x)), where the channel attention CA rescales each channel
by sigmoid(conv1×1(ReLU(conv1×1(GAP(·))))) with a channel reduction r = 16.

Parameters: reduction (16), levels: after which stages a block sits ("a", "b", "c"; default all
three). Each block holds two 3×3 convolutions at the level's width (about 18·C² weights: 19M at
C = 1024), so `levels="c"` keeps wide backbones small. This head has no spatial maps.
"""

from __future__ import annotations

from torch import Tensor, nn

from medattn.models.backbones import LEVELS, Backbone
from medattn.models.base import MedattnModel, check_int, check_levels


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel rescaling (RCAN's CA layer)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        inner = max(1, channels // reduction)
        self.weights = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, inner, 1), nn.ReLU(inplace=True),
            nn.Conv2d(inner, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class ResidualChannelAttentionBlock(nn.Module):
    """RCAB: x + CA(conv3×3 → ReLU → conv3×3 (x))."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), ChannelAttention(channels, reduction))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ChannelAttentionModel(MedattnModel):
    """Backbone stages with an RCAB after each chosen level → GAP + linear over I_C."""

    name = "channel_attention"
    defaults = {"reduction": 16, "levels": ["a", "b", "c"]}

    def __init__(self, backbone: Backbone, num_classes: int, reduction: int, levels: list[str]):
        params = {"reduction": check_int(self.name, "reduction", reduction),
                  "levels": check_levels(self.name, levels)}
        super().__init__(backbone, num_classes, params)
        self.blocks = nn.ModuleDict({
            level: ResidualChannelAttentionBlock(channels, params["reduction"])
            for level, channels in zip(LEVELS, backbone.channels) if level in params["levels"]})
        self.classifier = nn.Linear(backbone.channels[-1], num_classes)

    @property
    def gradcam_layer(self) -> nn.Module:
        """The block after the last stage when there is one, else the last stage."""
        return self.blocks["c"] if "c" in self.blocks else self.backbone.stages[-1]

    def forward(self, x: Tensor) -> Tensor:
        for level, stage in zip(LEVELS, self.backbone.stages):
            x = stage(x)
            if level in self.blocks:
                x = self.blocks[level](x)
        return self.classifier(x.mean(dim=(2, 3)))
