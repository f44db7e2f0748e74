"""Class activation explainers through Captum: Grad-CAM and guided Grad-CAM.

The layer is `layer` (a dotted submodule name) when given, else the model's `gradcam_layer`
(every medattn model exposes one: a module or a submodule name), else, for plain
torchvision-like models, the last direct child that contains an nn.Conv2d (ResNet → layer4,
VGG/DenseNet → features).

The layer is read as a (B, C, h, w) grid in the layout the model declares (`gradcam_layout`,
`medattn.models.layout.FeatureLayout`): channels-last outputs (Swin) are permuted, token
outputs (vision transformers) lose their class/distillation tokens and become a grid of patches,
as pytorch-grad-cam's `reshape_transform` does. The grid passes through an identity module
(`GridTap`) inside a forward hook on the layer, and Captum's LayerGradCam reads that module, so
activations and gradients are the grid's while the network runs on its own layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from captum import attr
from torch import Tensor, nn

from medattn.errors import MedattnError
from medattn.explain.base import Explainer, counterpart, describe, evaluation_model, reduce_channels
from medattn.explain.gradients import guided_gradients
from medattn.explain.guided import guided_unavailable
from medattn.models.layout import NCHW, FeatureLayout


class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017): ReLU of the gradient-weighted layer activations,
    upsampled bilinearly to the input size. layer: submodule name, default None (see module)."""

    name = "gradcam"
    batch_invariant = True
    defaults = {"layer": None}

    def _attribute(self, x: Tensor, targets: Tensor, layer: str | None) -> Tensor:
        with _with_layer(self.model, x, layer) as (model, chosen):
            return _gradcam(model, chosen, cam_layout(self.model, layer), x, targets).squeeze(1)


class GuidedGradCAM(Explainer):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop (the guided rule on every
    activation that has one, `medattn.explain.guided`) × Grad-CAM upsampled bilinearly, |.|
    reduced over channels. layer: as gradcam; channels: as saliency, default "max_abs".
    Unavailable for models with SiLU, Hardswish, GELU or Mish."""

    name = "guided_gradcam"
    batch_invariant = True
    defaults = {"layer": None, "channels": "max_abs"}
    keyless = ("channels",)

    @classmethod
    def unavailable(cls, model: nn.Module) -> str | None:
        return guided_unavailable(cls.name, model)

    def _attribute(self, x: Tensor, targets: Tensor, layer: str | None, channels: str) -> Tensor:
        with _with_layer(self.model, x, layer) as (model, chosen):
            weights = _gradcam(model, chosen, cam_layout(self.model, layer), x, targets)
            return reduce_channels(self.name, guided_gradients(model, x, targets) * weights, channels)


def _gradcam(model: nn.Module, layer: nn.Module, layout: FeatureLayout, x: Tensor, targets: Tensor) -> Tensor:
    """Grad-CAM maps (B, 1, H, W) of `layer` read as a grid, upsampled bilinearly to x's size."""
    with as_grid(layer, layout) as tap:
        maps = attr.LayerGradCam(model, tap).attribute(x, target=targets, relu_attributions=True)
    return attr.LayerAttribution.interpolate(maps, tuple(x.shape[2:]), interpolate_mode="bilinear")


class GridTap(nn.Identity):
    """The identity a layer's output passes through as a (B, C, h, w) grid (see `as_grid`)."""


@contextlib.contextmanager
def as_grid(layer: nn.Module, layout: FeatureLayout) -> Iterator[GridTap]:
    """For the duration, `layer`'s output is converted to a grid, passed through the returned
    `GridTap` and converted back (`FeatureLayout.to_grid` / `from_grid`): hooks on the tap see
    the grid, and a forward hook on the tap that returns another grid replaces the layer's
    output. A layout without change (NCHW) still goes through the tap. What goes on is a copy,
    so an in-place operation after the layer never changes the grid the hooks saw."""
    tap = GridTap()

    def hook(_module: nn.Module, _inputs: Any, out: Tensor) -> Tensor:
        # a copy goes on, so an in-place operation after the layer (DenseNet's F.relu(features,
        # inplace=True)) cannot change the activations read here (pytorch/vision#4164)
        return layout.from_grid(tap(layout.to_grid(out)), like=out).clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


def cam_layout(model: nn.Module, layer: str | None = None) -> FeatureLayout:
    """How the Grad-CAM layer lays out its output: the model's `gradcam_layout` for its own
    layer, NCHW for a layer named by the caller or a model that declares none."""
    declared = getattr(model, "gradcam_layout", None)
    return declared if layer is None and isinstance(declared, FeatureLayout) else NCHW


@contextlib.contextmanager
def _with_layer(model: nn.Module, x: Tensor, layer: str | None) -> Iterator[tuple[nn.Module, nn.Module]]:
    """The model to run (its `evaluation_model` where the Grad-CAM layer has a twin there that
    outputs the same, else the model itself) and the layer in it."""
    chosen = cam_layer(model, layer)
    with evaluation_model(model, x) as fast:
        twin = counterpart(model, fast, chosen)
        yield (model, chosen) if twin is None else (fast, twin)


def cam_layer(model: nn.Module, layer: str | None = None) -> nn.Module:
    """The layer Grad-CAM reads (see the module docstring for the order of choice)."""
    name = layer if layer is not None else getattr(model, "gradcam_layer", None)
    if isinstance(name, nn.Module):
        return name
    if isinstance(name, str):
        try:
            return model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{describe(model)} has no submodule {name!r} for Grad-CAM") from None
    for child in reversed(list(model.children())):
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            return child
    raise MedattnError(f"{describe(model)} has no convolutional layer for Grad-CAM; "
                       "pass layer='name.of.submodule'")
