"""torchvision backbones cut into three stages whose outputs are the multi-level features
I_A, I_B, I_C of Gonçalves et al. 2021 (strides 8, 16 and 32: 28, 14 and 7 cells at 224).

    arch                 I_A        I_B        I_C       stage ends
    vgg16, vgg19         256@28     512@14     512@7     after pool3, pool4, pool5
    resnet18, resnet34   128@28     256@14     512@7     layer2, layer3, layer4
    resnet50/101/152     512@28     1024@14    2048@7    layer2, layer3, layer4
    densenet121          512@28     1024@14    1024@7    denseblock2, denseblock3, ReLU(norm5)
    densenet169          512@28     1280@14    1664@7    as densenet121
    mobilenet_v2         32@28      96@14      1280@7    features[:7], [7:14], [14:]
    mobilenet_v3_large   40@28      112@14     960@7     features[:7], [7:13], [13:]
    mobilenet_v3_small   24@28      48@14      576@7     features[:4], [4:9], [9:]

The first stage includes the stem. DenseNet taps are the dense blocks' outputs (before the
transition layers), the only points with the published shapes. torchvision's classifiers are
dropped; heads bring their own.
"""

from __future__ import annotations

from collections import OrderedDict

import torchvision
from torch import Tensor, nn

LEVEL_CHANNELS: dict[str, tuple[int, int, int]] = {
    "vgg16": (256, 512, 512),
    "vgg19": (256, 512, 512),
    "resnet18": (128, 256, 512),
    "resnet34": (128, 256, 512),
    "resnet50": (512, 1024, 2048),
    "resnet101": (512, 1024, 2048),
    "resnet152": (512, 1024, 2048),
    "densenet121": (512, 1024, 1024),
    "densenet169": (512, 1280, 1664),
    "mobilenet_v2": (32, 96, 1280),
    "mobilenet_v3_large": (40, 112, 960),
    "mobilenet_v3_small": (24, 48, 576),
}
ARCHS: tuple[str, ...] = tuple(LEVEL_CHANNELS)
LEVELS: tuple[str, ...] = ("a", "b", "c")

_MOBILENET_CUTS = {"mobilenet_v2": (7, 14), "mobilenet_v3_large": (7, 13), "mobilenet_v3_small": (4, 9)}


class Backbone(nn.Module):
    """A torchvision classification network as three stages; `forward(x)` returns the three
    levels [I_A, I_B, I_C]. `channels` gives their channel counts. `pretrained=True` loads
    torchvision's ImageNet weights (downloads them once; needs internet)."""

    def __init__(self, arch: str, pretrained: bool = False):
        super().__init__()
        if arch not in LEVEL_CHANNELS:
            raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
        self.arch = arch
        self.channels = LEVEL_CHANNELS[arch]
        self.stages = nn.ModuleList(_stages(arch, pretrained))

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels


def _stages(arch: str, pretrained: bool) -> list[nn.Module]:
    if arch.startswith("vgg"):
        return _vgg(arch, pretrained)
    return cut(arch, getattr(torchvision.models, arch)(weights="DEFAULT" if pretrained else None))


def cut(arch: str, net: nn.Module) -> list[nn.Module]:
    """The three stages of torchvision's `net` of architecture `arch`, sharing its modules
    (so its parameters are theirs: `medattn.models.keymap` reads the name map off them)."""
    if arch.startswith("vgg"):
        return _vgg_stages(net.features)
    if arch.startswith("resnet"):
        stem = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]
        return [_named(net, stem), _named(net, ["layer3"]), _named(net, ["layer4"])]
    if arch.startswith("densenet"):
        f = net.features
        names = list(f._modules)
        first = names[: names.index("denseblock2") + 1]
        stages = [_named(f, first), _named(f, ["transition2", "denseblock3"]),
                  _named(f, ["transition3", "denseblock4", "norm5"])]
        stages[-1].add_module("relu5", nn.ReLU())
        return stages
    a, b = _MOBILENET_CUTS[arch]
    f = net.features
    return [f[:a], f[a:b], f[b:]]


def _vgg(arch: str, pretrained: bool) -> list[nn.Module]:
    """VGG features cut after pool3, pool4 and pool5. Without weights only the convolutional
    part is built (the 120M-parameter classifier would be dropped anyway), initialised as
    torchvision does."""
    if pretrained:
        features = getattr(torchvision.models, arch)(weights="DEFAULT").features
    else:
        vgg = torchvision.models.vgg
        features = vgg.make_layers(vgg.cfgs["D" if arch == "vgg16" else "E"])
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return _vgg_stages(features)


def _vgg_stages(features: nn.Sequential) -> list[nn.Module]:
    pools = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    return [features[: pools[2]], features[pools[2]: pools[3]], features[pools[3]: pools[4]]]


def _named(parent: nn.Module, names: list[str]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((n, getattr(parent, n)) for n in names))
