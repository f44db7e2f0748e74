"""Residual attention (Wang et al. 2017; RAN-ResNet-50 in Wang et al. 2021): attention modules
between the ResNet stages, then GAP + linear over the last stage.

Each module has a trunk branch T (two pre-activation bottleneck residual units) and a soft mask
branch M: a bottom-up top-down hourglass (max-pool, residual unit, ..., bilinear up-sampling
with skip connections) ending in BN-ReLU-1×1 conv ×2 and a sigmoid. Output (1 + M) · T
(attention residual learning). Modules sit after I_A (two poolings: 28 → 14 → 7 at 224) and
after I_B (one pooling: 14 → 7), so every mask reaches the 7×7 scale; (p, t, r) = (0, 2, 1),
the backbone's own residual stages taking the place of the pre/post units. Parameter `levels`
(default ["a", "b"]) chooses the modules; the ResNet-50 demo model keeps only "a" (the module
after I_B alone holds 7 M parameters at 1024 channels).

Only ResNet backbones are accepted: the modules are residual units inserted between residual
stages, as in the paper.

Intrinsic maps: `attention_maps(x)` = {"mask_a": (B, C_A, 28, 28), "mask_b": (B, C_B, 14, 14)},
the soft masks per module (per channel); `class_maps(x)`: class-weighted maps (B, C, h, w), the
CAM of the linear classifier over the last stage (whose input the masks have modulated).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from medattn.models.backbones import LEVELS, Backbone
from medattn.models.base import MedattnModel, check_levels, class_activation_maps


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit (He et al. 2016), width channels // 4."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 4)
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, inner, 1, bias=False),
            nn.BatchNorm2d(inner), nn.ReLU(), nn.Conv2d(inner, inner, 3, padding=1, bias=False),
            nn.BatchNorm2d(inner), nn.ReLU(), nn.Conv2d(inner, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Hourglass(nn.Module):
    """Bottom-up top-down mask body: max-pool, a unit, (deeper hourglass + skip unit), a unit,
    bilinear up-sampling back to the input size."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.down = PreActBottleneck(channels)
        self.inner = Hourglass(channels, depth - 1) if depth > 1 else None
        self.skip = PreActBottleneck(channels) if depth > 1 else None
        self.up = PreActBottleneck(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.down(F.max_pool2d(x, 3, stride=2, padding=1))
        if self.inner is not None:
            y = self.inner(y) + self.skip(y)
        return F.interpolate(self.up(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


class AttentionModule(nn.Module):
    """Trunk T and soft mask M; returns ((1 + M) · T, M)."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.trunk = nn.Sequential(PreActBottleneck(channels), PreActBottleneck(channels))
        self.mask = nn.Sequential(
            Hourglass(channels, depth),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mask = self.mask(x)
        return (1 + mask) * self.trunk(x), mask


class ResidualAttentionModel(MedattnModel):
    """ResNet stages with attention modules after I_A and I_B → GAP + linear over I_C."""

    name = "residual_attention"
    archs = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    defaults = {"levels": ["a", "b"]}
    depths = {"a": 2, "b": 1}  # hourglass depth: every mask reaches the 7×7 scale at 224

    def __init__(self, backbone: Backbone, num_classes: int, levels: list[str]):
        params = {"levels": check_levels(self.name, levels, allowed=tuple(self.depths))}
        super().__init__(backbone, num_classes, params)
        self.attention = nn.ModuleDict({
            level: AttentionModule(channels, depth=self.depths[level])
            for level, channels in zip(LEVELS, backbone.channels) if level in params["levels"]})
        self.classifier = nn.Linear(backbone.channels[-1], num_classes)

    def _run(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        masks = {}
        for level, stage in zip(LEVELS, self.backbone.stages):
            x = stage(x)
            if level in self.attention:
                x, masks[f"mask_{level}"] = self.attention[level](x)
        return x, masks

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self._run(x)[0].mean(dim=(2, 3)))

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        return self._run(x)[1]

    def class_maps(self, x: Tensor) -> Tensor:
        return class_activation_maps([self._run(x)[0]], self.classifier)
