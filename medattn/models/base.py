"""What every medattn model shares: the backbone, the attributes that make a model savable
without more information, the Grad-CAM layer, and parameter checks for the heads."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medattn.models.backbones import Backbone


class MedattnModel(nn.Module):
    """Base class of every head: `backbone` (a `Backbone`) plus the head's own layers.

    Attributes every model carries: `arch`, `head` (the head's name), `num_classes`, `params`
    (the head's parameters, defaults filled in, JSON types) and `input_channels = 3`.
    `forward(x)` returns logits (B, num_classes). Subclasses set `name`, `defaults` (every
    parameter with its default) and, where they support only some backbones, `archs`.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    archs: ClassVar[tuple[str, ...] | None] = None
    input_channels: ClassVar[int] = 3

    def __init__(self, backbone: Backbone, num_classes: int, params: dict[str, Any]):
        super().__init__()
        self.backbone = backbone
        self.arch = backbone.arch
        self.head = self.name
        self.num_classes = num_classes
        self.params = dict(params)

    @property
    def gradcam_layer(self) -> nn.Module:
        """The module whose output Grad-CAM targets: the backbone's last stage."""
        return self.backbone.stages[-1]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, head={self.head!r}, num_classes={self.num_classes}, params={self.params}"


def class_activation_maps(levels: list[Tensor], classifier: nn.Linear) -> Tensor:
    """CAM (Zhou et al. 2016) of a linear classifier over the concatenated global averages of
    `levels`: per level W_c · F (B, C, h, w), nearest-upsampled to the first level's size and
    summed. At sizes where each level divides the first, the spatial mean of a class map plus
    the classifier's bias equals that class's logit."""
    weights = classifier.weight.split([f.shape[1] for f in levels], dim=1)
    size = levels[0].shape[-2:]
    maps = [F.interpolate(torch.einsum("kc,bchw->bkhw", w, f), size=size, mode="nearest")
            for w, f in zip(weights, levels)]
    return torch.stack(maps).sum(dim=0)


def check_int(head: str, name: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int >= minimum, else ValueError naming the head and parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value) \
            or value < minimum:
        raise ValueError(f"{head}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(head: str, name: str, value: Any) -> float:
    """`value` as a finite float, else ValueError naming the head and parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value \
            or abs(value) == float("inf"):
        raise ValueError(f"{head}: {name} must be a finite number, got {value!r}")
    return float(value)


def check_levels(head: str, value: Any, allowed: tuple[str, ...] = ("a", "b", "c")) -> list[str]:
    """A non-empty selection of feature levels (e.g. "abc" or ["b", "c"]), sorted."""
    chosen = list(value) if isinstance(value, (str, list, tuple)) else None
    if not chosen or any(level not in allowed for level in chosen):
        raise ValueError(f"{head}: levels must be a non-empty selection of {list(allowed)}, "
                         f"got {value!r}")
    return sorted(set(chosen))
