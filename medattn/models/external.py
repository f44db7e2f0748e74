"""Models from other libraries — TorchXRayVision, MONAI, timm, torchvision with its own head —
rebuilt from the library, the constructor and its arguments that the checkpoint json records.

    library            constructor (json `constructor.callable`)     always passed
    torchxrayvision    torchxrayvision.models.DenseNet               num_classes, weights=None
                       torchxrayvision.models.ResNet (see below)     num_classes, depth (50|101)
    monai              monai.networks.nets.<Class> (DenseNet121, …)  out_channels, spatial_dims=2
    timm               timm.create_model(model_name=…)               num_classes, pretrained=False
    torchvision        torchvision.models.<builder> (vgg16, …)       num_classes, weights=None

Nothing downloads: every constructor runs without weights; the weights come from the
checkpoint's safetensors file. Only constructors from these libraries can be named (a json
that names anything else is refused), and their arguments are plain JSON values.

TorchXRayVision's `ResNet` class cannot be built without downloading its weights; its models
are torchvision ResNets with a one-channel first convolution, so they are rebuilt that way
(the state-dict keys are torchvision's, as xrv saves them).

`ExternalModel` wraps the library's module as `net`, returns its logits (xrv's operating-point
rescaling and `apply_sigmoid` are switched off: scores and explanations are computed on logits,
like every medattn model), and names its Grad-CAM layer: timm's last `feature_info` module, the
last `layer4`/`features` block otherwise. It has no intrinsic maps, so the `wildcat` and
`attention` methods say that they do not apply.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import torchvision
from torch import Tensor, nn

LIBRARIES = ("torchxrayvision", "monai", "timm", "torchvision")
XRV_RESNET = "torchxrayvision.models.ResNet"


class ExternalModel(nn.Module):
    """A library's model as a medattn model: `arch` (e.g. 'xrv DenseNet'), `head='native'`,
    `num_classes`, `params` ({}), `library`, `constructor` ({'callable', 'kwargs'}),
    `input_channels`, `gradcam_layer`; `forward(x)` returns logits (B, num_classes)."""

    head = "native"

    def __init__(self, library: str, callable_name: str, num_classes: int, kwargs: Mapping[str, Any] | None = None):
        super().__init__()
        kwargs = dict(kwargs or {})
        self.net = construct(library, callable_name, num_classes, kwargs)
        self.library = library
        self.constructor = {"callable": callable_name, "kwargs": kwargs}
        self.num_classes = int(num_classes)
        self.params: dict[str, Any] = {}
        self.arch = f"{_SHORT[library]} {_display_name(callable_name, kwargs)}"
        self.input_channels = _input_channels(self.net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def gradcam_layer(self) -> nn.Module:
        info = getattr(self.net, "feature_info", None)
        if info is not None and len(info):
            return self.net.get_submodule(info[-1]["module"])
        for name in ("features", "layer4"):
            found = [m for n, m in self.net.named_modules() if n.split(".")[-1] == name]
            if found:
                return found[-1]
        convs = [child for child in self.net.children() if any(isinstance(m, nn.Conv2d) for m in child.modules())]
        return convs[-1]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, library={self.library!r}, constructor={self.constructor}"


_SHORT = {"torchxrayvision": "xrv", "monai": "monai", "timm": "timm", "torchvision": "torchvision"}


def construct(library: str, callable_name: str, num_classes: int, kwargs: Mapping[str, Any]) -> nn.Module:
    """The library's model with random weights; ValueError for anything not allowed."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; choose one of: {', '.join(LIBRARIES)}")
    if not callable_name.startswith(library + "."):
        raise ValueError(f"constructor {callable_name!r} is not part of {library}")
    kwargs = dict(kwargs)
    for forced in ("weights", "pretrained", "num_classes", "out_channels"):
        kwargs.pop(forced, None)
    try:
        if library == "torchxrayvision":
            return _xrv(callable_name, num_classes, kwargs)
        if library == "monai":
            cls = _member("monai.networks.nets", callable_name)
            return cls(**{"spatial_dims": 2, **kwargs, "out_channels": num_classes})
        if library == "timm":
            if callable_name != "timm.create_model":
                raise ValueError("timm models are built with timm.create_model(model_name=…)")
            import timm

            name = kwargs.pop("model_name", None)
            if not isinstance(name, str) or name not in timm.list_models():
                raise ValueError(f"timm has no model named {name!r}")
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        builder = callable_name.removeprefix("torchvision.models.")
        if builder not in torchvision.models.list_models():
            raise ValueError(f"torchvision has no model builder {builder!r}")
        return torchvision.models.get_model(builder, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{callable_name}: {exc}") from None


def _xrv(callable_name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    if callable_name == XRV_RESNET:
        depth = kwargs.pop("depth", 50)
        if depth not in (50, 101) or kwargs:
            raise ValueError(f"{XRV_RESNET} takes depth=50 or 101 only, got {kwargs | {'depth': depth}}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net
    cls = _member("torchxrayvision.models", callable_name)
    net = cls(**{**kwargs, "num_classes": num_classes, "weights": None})
    net.apply_sigmoid = False  # logits, as every medattn model returns
    return net


def _member(module_name: str, callable_name: str) -> type[nn.Module]:
    module = importlib.import_module(module_name)
    attribute = callable_name.removeprefix(module_name + ".")
    if "." in attribute or not callable_name.startswith(module_name + "."):
        raise ValueError(f"{callable_name!r}: expected {module_name}.<ModelClass>")
    cls = getattr(module, attribute, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{module_name} has no model class {attribute!r}")
    return cls


def _display_name(callable_name: str, kwargs: Mapping[str, Any]) -> str:
    if callable_name == "timm.create_model":
        return str(kwargs.get("model_name"))
    if callable_name == XRV_RESNET:
        return f"ResNet-{kwargs.get('depth', 50)}"
    return callable_name.rsplit(".", 1)[-1]


def _input_channels(net: nn.Module) -> int:
    first = next((m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    return int(first.in_channels) if first is not None else 3


def rebuild(meta: Mapping[str, Any]) -> ExternalModel:
    """The model a checkpoint json with `library` describes (random weights)."""
    constructor = meta.get("constructor")
    if not isinstance(constructor, Mapping) or not isinstance(constructor.get("callable"), str):
        raise ValueError("'constructor' must be {'callable': 'library.Class', 'kwargs': {...}}")
    return ExternalModel(str(meta["library"]), constructor["callable"], int(meta["num_classes"]),
                         constructor.get("kwargs") or {})


def strip_unused(state: dict[str, Tensor], model: ExternalModel) -> tuple[dict[str, Tensor], list[str]]:
    """Drop tensors that change outputs away from logits (xrv's `op_threshs`), with a note."""
    notes = []
    if "op_threshs" in state and "op_threshs" not in model.net.state_dict():
        state = {k: v for k, v in state.items() if k != "op_threshs"}
        notes.append("dropped xrv's op_threshs (operating-point rescaling; medattn works on logits)")
    return state, notes

