"""Multi-level dual attention (MLDAM; Mishra et al. 2019 as adapted by Gonçalves et al. 2021):
DANet-style position and channel self-attention (Fu et al. 2019) on each of the three feature
levels I_A, I_B, I_C; each level's attended features are globally averaged and the three
vectors are concatenated for a linear classifier.

Intrinsic maps:
- `attention_maps(x)`: {"level_a", "level_b", "level_c"} → (B, h, w), the position attention
  received by each cell (the mean over query positions of the softmax attention; sums to 1).
- `class_maps(x)`: class-weighted maps (B, C, h_A, w_A): the CAM of the fused classifier over
  the attended features of all three levels (see `base.class_activation_maps`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medattn.models.backbones import Backbone
from medattn.models.base import MedattnModel, check_int, class_activation_maps


def full_precision(x: Tensor) -> torch.autocast:
    """Autocast off: the affinities are sums over hundreds of cells or channels, which overflow
    float16 under mixed-precision training; they are computed in float32."""
    return torch.autocast(x.device.type, enabled=False)


class PositionSelfAttention(nn.Module):
    """DANet position attention: every cell attends to every cell through query/key
    projections (channels // reduction); out = gamma · attended values + x (gamma starts at 0).
    Returns (out, attention (B, N, N), rows = query cells)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q = self.query(x).flatten(2).transpose(1, 2)
        k, v = self.key(x).flatten(2), self.value(x).flatten(2)
        with full_precision(x):
            attention = torch.softmax(q.float() @ k.float(), dim=-1)
            out = (v.float() @ attention.transpose(1, 2)).view(x.shape)
        return self.gamma * out + x, attention


class ChannelSelfAttention(nn.Module):
    """DANet channel attention: channel affinities X·Xᵀ, softmax over (max - energy);
    out = gamma · attention · X + x (gamma starts at 0)."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        with full_precision(x):
            flat = x.float().flatten(2)
            energy = flat @ flat.transpose(1, 2)
            attention = torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
            out = (attention @ flat).view(x.shape)
        return self.gamma * out + x


class DualAttention(nn.Module):
    """Position + channel self-attention summed (DANet). Returns (features, spatial map (B, h, w))."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.position = PositionSelfAttention(channels, reduction)
        self.channel = ChannelSelfAttention()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        positioned, attention = self.position(x)
        received = attention.mean(dim=1).view(x.shape[0], *x.shape[2:])
        return positioned + self.channel(x), received


class MLDAMModel(MedattnModel):
    """Dual attention on I_A, I_B, I_C → GAP each → concatenate → linear. Parameter:
    reduction (query/key channel reduction of position attention, 8 as in DANet)."""

    name = "mldam"
    defaults = {"reduction": 8}

    def __init__(self, backbone: Backbone, num_classes: int, reduction: int):
        reduction = check_int(self.name, "reduction", reduction)
        super().__init__(backbone, num_classes, {"reduction": reduction})
        self.attention = nn.ModuleList(DualAttention(c, reduction) for c in backbone.channels)
        self.classifier = nn.Linear(sum(backbone.channels), num_classes)

    def _attend(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        pairs = [att(level) for att, level in zip(self.attention, self.backbone(x))]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def forward(self, x: Tensor) -> Tensor:
        features, _ = self._attend(x)
        return self.classifier(torch.cat([f.mean(dim=(2, 3)) for f in features], dim=1))

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        _, maps = self._attend(x)
        return dict(zip(("level_a", "level_b", "level_c"), maps))

    def class_maps(self, x: Tensor) -> Tensor:
        features, _ = self._attend(x)
        return class_activation_maps(features, self.classifier)
