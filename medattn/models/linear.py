"""The baseline head: global average pooling of the last level, then a linear layer."""

from __future__ import annotations

from torch import Tensor, nn

from medattn.models.backbones import Backbone
from medattn.models.base import MedattnModel


class LinearModel(MedattnModel):
    """GAP + linear over I_C (the backbones' usual classifier, Gonçalves et al. 2021)."""

    name = "linear"

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__(backbone, num_classes, {})
        self.classifier = nn.Linear(backbone.channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x)[-1].mean(dim=(2, 3)))
