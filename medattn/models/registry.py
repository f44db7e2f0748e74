"""Head names → model classes, the valid arch × head combinations, and `build`."""

from __future__ import annotations

import numbers
from typing import Any

from medattn.models.backbones import ARCHS, Backbone
from medattn.models.base import MedattnModel
from medattn.models.channel_attention import ChannelAttentionModel
from medattn.models.linear import LinearModel
from medattn.models.mldam import MLDAMModel
from medattn.models.recurrent import RecurrentAttentionModel
from medattn.models.residual_attention import ResidualAttentionModel
from medattn.models.wildcat import WildcatModel

HEADS: dict[str, type[MedattnModel]] = {
    cls.name: cls
    for cls in (LinearModel, MLDAMModel, WildcatModel, RecurrentAttentionModel,
                ChannelAttentionModel, ResidualAttentionModel)
}


def archs_for(head: str) -> tuple[str, ...]:
    """The backbones `head` can be built on."""
    return HEADS[head].archs or ARCHS


COMBINATIONS: tuple[tuple[str, str], ...] = tuple(
    (arch, head) for head in HEADS for arch in archs_for(head))


def head_params(head: str) -> dict[str, Any]:
    """Every parameter of `head` with its default."""
    _check_head(head)
    return dict(HEADS[head].defaults)


def build(arch: str, head: str, num_classes: int, pretrained: bool = False,
          **params: Any) -> MedattnModel:
    """A model of backbone `arch` and head `head` with `num_classes` outputs (logits).

    `params` are the head's parameters (see `head_params`; missing ones take their defaults).
    `pretrained=True` starts the backbone from torchvision's ImageNet weights (downloaded once;
    it is not part of the model's recorded parameters). Raises ValueError naming the valid
    choices for an unknown arch, head, parameter or an unsupported combination.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    if head not in HEADS:
        available = [h for h in HEADS if arch in archs_for(h)]
        raise ValueError(f"unknown head {head!r}; heads available on {arch!r}: {', '.join(available)}")
    if arch not in archs_for(head):
        raise ValueError(f"head {head!r} is not available on {arch!r}; it supports: "
                         f"{', '.join(archs_for(head))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    defaults = HEADS[head].defaults
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
        raise ValueError(f"head {head!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"allowed: {allowed}")
    return HEADS[head](Backbone(arch, pretrained), int(num_classes), **{**defaults, **params})


def _check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
