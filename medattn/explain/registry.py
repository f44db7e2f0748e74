"""Method names → explainer classes, imported lazily so one family's import cost or absence
never affects the others."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from medattn.explain.base import Explainer

_CLASSES: dict[str, tuple[str, str]] = {
    "saliency": ("medattn.explain.gradients", "Saliency"),
    "smoothgrad": ("medattn.explain.gradients", "SmoothGrad"),
    "integrated_gradients": ("medattn.explain.gradients", "IntegratedGradients"),
    "smoothgrad_ig": ("medattn.explain.gradients", "SmoothGradIG"),
    "guided_backprop": ("medattn.explain.gradients", "GuidedBackprop"),
    "gradcam": ("medattn.explain.cam", "GradCAM"),
    "guided_gradcam": ("medattn.explain.cam", "GuidedGradCAM"),
    "occlusion": ("medattn.explain.gradients", "Occlusion"),
    "pda": ("medattn.explain.pda", "PredictionDifference"),
    "pda_features": ("medattn.explain.pda", "FeaturePredictionDifference"),
    "wildcat": ("medattn.explain.intrinsic", "Wildcat"),
    "attention": ("medattn.explain.intrinsic", "Attention"),
}

METHODS: tuple[str, ...] = tuple(_CLASSES)


def get_explainer(method: str) -> type[Explainer]:
    """The explainer class for `method`; ValueError listing METHODS for an unknown name."""
    if method not in _CLASSES:
        raise ValueError(f"unknown explanation method {method!r}; choose one of: "
                         f"{', '.join(METHODS)}")
    module, cls = _CLASSES[method]
    return getattr(importlib.import_module(module), cls)


def method_params(method: str) -> dict[str, Any]:
    """Every parameter of `method` with its default (see each class's docstring)."""
    return dict(get_explainer(method).defaults)


def unavailable(model: nn.Module, method: str) -> str | None:
    """Why `method` cannot explain `model` (e.g. WILDCAT maps of a linear head), else None."""
    return get_explainer(method).unavailable(model)
