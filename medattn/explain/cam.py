"""Class activation explainers through Captum: Grad-CAM and guided Grad-CAM.

The layer is `layer` (a dotted submodule name) when given, else the model's `gradcam_layer`
(every medattn model exposes one: a module or a submodule name), else, for plain
torchvision-like models, the last direct child that contains an nn.Conv2d (ResNet → layer4,
VGG/DenseNet → features).
"""

from __future__ import annotations

from captum import attr
from torch import Tensor, nn

from medattn.errors import MedattnError
from medattn.explain.base import Explainer, describe
from medattn.explain.gradients import quiet_relu_hooks


class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017): ReLU of the gradient-weighted layer activations,
    upsampled bilinearly to the input size. layer: submodule name, default None (see module)."""

    name = "gradcam"
    defaults = {"layer": None}

    def _attribute(self, x: Tensor, targets: Tensor, layer: str | None) -> Tensor:
        cam = attr.LayerGradCam(self.model, cam_layer(self.model, layer))
        maps = cam.attribute(x, target=targets, relu_attributions=True)
        return attr.LayerAttribution.interpolate(maps, tuple(x.shape[2:]),
                                                 interpolate_mode="bilinear").squeeze(1)


class GuidedGradCAM(Explainer):
    """Guided Grad-CAM: guided backprop × upsampled (bilinear) Grad-CAM, max |.| over
    channels. layer: as gradcam."""

    name = "guided_gradcam"
    defaults = {"layer": None}

    def _attribute(self, x: Tensor, targets: Tensor, layer: str | None) -> Tensor:
        ggc = attr.GuidedGradCam(self.model, cam_layer(self.model, layer))
        with quiet_relu_hooks():
            maps = ggc.attribute(x, target=targets, interpolate_mode="bilinear")
        return maps.abs().amax(dim=1)


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
