"""The model zoo: the classifiers researchers bring, as the importer takes them, in one registry.

Each entry records how a published model of a library is built (library, constructor and its
arguments), how it sees an image (channels, input size and the preprocessing its library
feeds it), the layer Grad-CAM reads and its layout, the form its weights are published in,
where they come from and under which licence; `tiny` holds the smaller configuration the test
suite builds (fewer blocks, narrower layers, 64-pixel inputs) where the library allows it, so
the matrix runs in minutes on two cores. No entry downloads anything: the conformance matrix
(`medattn.explain.conformance`) builds random-weight instances and saves them in the published
form.

Lookups, as torchvision's registry: `list_models(include=None, exclude=None)` (glob
patterns) and `get_entry(name)`. Names are `library/architecture`.

    weights form            what the file holds (`ZooEntry.weights_form`)
    state_dict              torch.save(model.state_dict()) (torchvision, MONAI bundles' model.pt, xrv ResNet)
    safetensors             model.safetensors (timm on the Hugging Face hub)
    training_checkpoint     {epoch, state_dict ('module.' prefix), best_auc: numpy.float64, optimizer}
                            (CheXNet reproductions' model_best.pth.tar)
    whole_model             torch.save(model): TorchXRayVision's DenseNet files; refused by the
                            importer with its re-save recipe, then imported as the recipe says
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WEIGHTS_FORMS = ("state_dict", "safetensors", "training_checkpoint", "whole_model")
LAYOUTS = ("nchw", "nhwc", "tokens")


@dataclass(frozen=True)
class Tiny:
    """The test-sized instance: `callable` and `kwargs` replace the entry's (None/empty: the
    entry's own), inputs of `size` pixels."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    callable: str | None = None
    size: int = 64
    arch: str | None = None  # another medattn backbone, where the library offers no smaller configuration


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo (see the module docstring). `library` None: a torchvision
    architecture imported onto medattn's own backbone (`--arch resnet50`); `arch` is the
    importer's `--arch`; `callable` the constructor as the checkpoint json records it;
    `importer_args` the preprocessing options beyond the library's defaults."""

    name: str
    library: str | None
    arch: str
    callable: str
    kwargs: Mapping[str, Any]
    channels: int
    input_size: int
    classes: int
    weights_form: str
    gradcam_layer: str
    layout: str
    source: str
    licence: str
    importer_args: tuple[str, ...] = ()
    tiny: Tiny = field(default_factory=Tiny)

    def constructor(self, tiny: bool = False) -> tuple[str, dict[str, Any]]:
        """(callable, kwargs) of the full-size or the tiny instance."""
        if not tiny:
            return self.callable, dict(self.kwargs)
        return self.tiny.callable or self.callable, {**self.kwargs, **self.tiny.kwargs}

    def size(self, tiny: bool = False) -> int:
        return self.tiny.size if tiny else self.input_size

    def importer_arch(self, tiny: bool = False) -> str:
        """The importer's --arch for the full-size or the tiny instance."""
        if tiny and self.tiny.arch:
            return self.tiny.arch
        callable_name = self.constructor(tiny)[0]
        return self.arch if callable_name == self.callable else callable_name.rsplit(".", 1)[-1]


_REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """File `entry` under its name; ValueError for a name already taken."""
    if entry.name in _REGISTRY:
        raise ValueError(f"a zoo entry named {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def list_models(include: str | Sequence[str] | None = None, exclude: str | Sequence[str] | None = None) -> list[str]:
    """Entry names, sorted, matching any `include` glob and no `exclude` glob."""
    def patterns(value: str | Sequence[str] | None) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    names = sorted(_REGISTRY)
    if include is not None:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns(include))]
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in patterns(exclude))]


def get_entry(name: str) -> ZooEntry:
    """The entry `name`; ValueError listing the names for an unknown one."""
    if name not in _REGISTRY:
        raise ValueError(f"no zoo entry {name!r}; entries: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


TORCHVISION = ("https://pytorch.org/vision/stable/models.html", "BSD-3-Clause (code); weights per model card")
TIMM = ("https://huggingface.co/timm", "Apache-2.0 (code); weights per model card")
MONAI = ("https://docs.monai.io/en/stable/networks.html", "Apache-2.0")
XRV = ("https://github.com/mlmed/torchxrayvision (Cohen et al., MIDL 2022)", "Apache-2.0")
TINY_VIT = {"embed_dim": 48, "depth": 2, "num_heads": 2, "img_size": 64}
TINY_SWIN = {"embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2, "img_size": 64}

# torchvision: ResNet-50 and DenseNet-121 onto medattn's backbones (the CheXNet path), the rest
# with their own heads
register(ZooEntry("torchvision/resnet50", None, "resnet50", "torchvision.models.resnet50", {}, 3, 224, 14,
                  "state_dict", "backbone.stages.3", "nchw", *TORCHVISION,
                  tiny=Tiny(arch="resnet18")))  # torchvision's builders take no depth: its smallest ResNet
register(ZooEntry("torchvision/densenet121-chexnet", None, "densenet121", "torchvision.models.densenet121", {}, 3,
                  224, 14, "training_checkpoint", "backbone.stages.2", "nchw",
                  "CheXNet reproductions (arnoweng/CheXNet: model.pth.tar)", "per repository",
                  ("--resize", "shorter_side_center_crop", "--resize-size", "256", "--interpolation", "bilinear")))
register(ZooEntry("torchvision/efficientnet_b0", "torchvision", "efficientnet_b0", "torchvision.models.efficientnet_b0",
                  {}, 3, 224, 14, "state_dict", "net.features", "nchw", *TORCHVISION))
register(ZooEntry("torchvision/convnext_tiny", "torchvision", "convnext_tiny", "torchvision.models.convnext_tiny", {},
                  3, 224, 14, "state_dict", "net.features", "nchw", *TORCHVISION))
register(ZooEntry("torchvision/vit_b_16", "torchvision", "vit_b_16", "torchvision.models.vit_b_16", {}, 3, 224, 14,
                  "state_dict", "net.encoder.layers.11.ln_1", "tokens", *TORCHVISION,
                  tiny=Tiny({"image_size": 64, "patch_size": 16, "num_layers": 2, "num_heads": 2, "hidden_dim": 48,
                             "mlp_dim": 96}, callable="torchvision.models.VisionTransformer")))
register(ZooEntry("torchvision/swin_t", "torchvision", "swin_t", "torchvision.models.swin_t", {}, 3, 224, 14,
                  "state_dict", "net.features", "nhwc", *TORCHVISION,
                  tiny=Tiny({"patch_size": [4, 4], "embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
                             "window_size": [2, 2]}, callable="torchvision.models.SwinTransformer")))
# timm: a ResNet, EfficientNet, ConvNeXt, ViT, DeiT (distilled: two prefix tokens), Swin
register(ZooEntry("timm/resnet50", "timm", "resnet50", "timm.create_model", {"model_name": "resnet50"}, 3, 224, 14,
                  "safetensors", "net.layer4", "nchw", *TIMM, tiny=Tiny({"layers": [1, 1, 1, 1]})))
register(ZooEntry("timm/efficientnet_b0", "timm", "efficientnet_b0", "timm.create_model",
                  {"model_name": "efficientnet_b0"}, 3, 224, 14, "safetensors", "net.blocks.6", "nchw", *TIMM))
register(ZooEntry("timm/convnext_tiny", "timm", "convnext_tiny", "timm.create_model", {"model_name": "convnext_tiny"},
                  3, 224, 14, "safetensors", "net.stages.3", "nchw", *TIMM,
                  tiny=Tiny({"depths": [1, 1, 1, 1], "dims": [24, 48, 96, 192]})))
register(ZooEntry("timm/vit_base_patch16_224", "timm", "vit_base_patch16_224", "timm.create_model",
                  {"model_name": "vit_base_patch16_224"}, 3, 224, 14, "safetensors", "net.blocks.11.norm1", "tokens",
                  *TIMM, tiny=Tiny(TINY_VIT)))
register(ZooEntry("timm/deit_small_distilled_patch16_224", "timm", "deit_small_distilled_patch16_224",
                  "timm.create_model", {"model_name": "deit_small_distilled_patch16_224"}, 3, 224, 14, "safetensors",
                  "net.blocks.11.norm1", "tokens", *TIMM, tiny=Tiny(TINY_VIT)))
register(ZooEntry("timm/swin_tiny_patch4_window7_224", "timm", "swin_tiny_patch4_window7_224", "timm.create_model",
                  {"model_name": "swin_tiny_patch4_window7_224"}, 3, 224, 14, "safetensors", "net.layers.3", "nhwc",
                  *TIMM, tiny=Tiny(TINY_SWIN)))
# MONAI (1-channel, unit intensity by default)
register(ZooEntry("monai/DenseNet121", "monai", "DenseNet121", "monai.networks.nets.DenseNet121", {}, 1, 224, 14,
                  "state_dict", "net.features", "nchw", *MONAI,
                  tiny=Tiny({"init_features": 16, "growth_rate": 8, "block_config": [2, 2, 2, 2]})))
register(ZooEntry("monai/resnet50", "monai", "resnet50", "monai.networks.nets.resnet50", {}, 1, 224, 14,
                  "state_dict", "net.layer4", "nchw", *MONAI,
                  tiny=Tiny({"block": "bottleneck", "layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128]},
                            callable="monai.networks.nets.ResNet")))
register(ZooEntry("monai/SEResNet50", "monai", "SEResNet50", "monai.networks.nets.SEResNet50", {}, 1, 224, 14,
                  "state_dict", "net.layer4", "nchw", *MONAI, tiny=Tiny({"layers": [1, 1, 1, 1]})))
register(ZooEntry("monai/EfficientNetBN", "monai", "EfficientNetBN", "monai.networks.nets.EfficientNetBN",
                  {"model_name": "efficientnet-b0"}, 1, 224, 14, "state_dict", "net._conv_head", "nchw", *MONAI))
# TorchXRayVision (1-channel, its own geometry and [-1024, 1024] scale)
register(ZooEntry("xrv/densenet121-res224-all", "torchxrayvision", "DenseNet", "torchxrayvision.models.DenseNet", {},
                  1, 224, 18, "whole_model", "net.features", "nchw", *XRV,
                  tiny=Tiny({"num_init_features": 16, "growth_rate": 8, "block_config": [2, 2, 2, 2]})))
register(ZooEntry("xrv/resnet50-res512-all", "torchxrayvision", "ResNet", "torchxrayvision.models.ResNet",
                  {"depth": 50}, 1, 512, 18, "state_dict", "net.layer4", "nchw", *XRV))
