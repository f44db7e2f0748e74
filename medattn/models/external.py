"""Models from other libraries — TorchXRayVision, MONAI, timm, torchvision with its own head —
rebuilt from the library, the constructor and its arguments that the checkpoint json records.

    library            constructor (json `constructor.callable`)
    torchxrayvision    torchxrayvision.models.DenseNet, torchxrayvision.models.ResNet (below)
    monai              monai.networks.nets.<Class or builder> (DenseNet121, resnet50, SEResNet50, …)
    timm               timm.create_model(model_name=…)
    torchvision        torchvision.models.<builder> (vgg16, swin_t, …) or <Class> (VisionTransformer, …)

Arguments are read from the constructor's own signature (and, where it passes `**kwargs` on,
from the class it builds: MONAI's `resnet50` → `ResNet`, `SEResNet50` → `SENet`), not assumed:
the class count goes to the first of CLASS_COUNT it has (`num_classes`, `out_channels`, …), the
input channel count to the first of INPUT_CHANNELS (`in_channels`, `n_input_channels`,
`in_chans`, …) unless given, `spatial_dims` is 2 unless given. Nothing downloads or reads a file:
every `pretrained*` argument is False and every `weights` argument None whatever the library's
default (MONAI's EfficientNetBN defaults to pretrained=True), and arguments that would load
weights (`checkpoint_path`, `cache_dir`, `pretrained_cfg`, …) are refused; the weights come from
the checkpoint's safetensors file. Only constructors from these libraries can be named (a json
that names anything else is refused), and their arguments are plain JSON values.

TorchXRayVision's `ResNet` class cannot be built without downloading its weights; its models
are torchvision ResNets with a one-channel first convolution, so they are rebuilt that way
(the state-dict keys are torchvision's, as xrv saves them).

`ExternalModel` wraps the library's module as `net`, returns its logits (xrv's operating-point
rescaling and `apply_sigmoid` are switched off: scores and explanations are computed on logits,
like every medattn model; a model returning a tuple gives its first element), and names its
Grad-CAM layer and that layer's layout (`gradcam_layer`, `gradcam_layout`, see
`medattn.models.layout`): for vision transformers (timm's `blocks`, torchvision's
`encoder.layers`) the first norm of the last block, whose patch tokens the class token still
reads (the last block's own output reaches the logits through the class token only, so its patch
tokens get no gradient), with the class/distillation tokens dropped; for Swin the last stage,
channels last; otherwise timm's last `feature_info` module, or the last `layer4`/`features`
block, or the last child with a convolution. It has no intrinsic maps, so the `wildcat` and
`attention` methods say that they do not apply.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any, Callable, Mapping

import torchvision
from torch import Tensor, nn

from medattn.models.layout import NCHW, FeatureLayout

LIBRARIES = ("torchxrayvision", "monai", "timm", "torchvision")
XRV_RESNET = "torchxrayvision.models.ResNet"
CLASS_COUNT = ("num_classes", "out_channels", "n_classes", "num_outputs")
INPUT_CHANNELS = ("in_channels", "n_input_channels", "in_chans", "input_channels", "num_channels")
NO_DOWNLOAD = {"pretrained": False, "weights": None, "progress": False}
REFUSED = ("checkpoint_path", "cache_dir", "pretrained_cfg", "pretrained_cfg_overlay", "weights_path",
           "pretrained_path", "url")


class ExternalModel(nn.Module):
    """A library's model as a medattn model: `arch` (e.g. 'xrv DenseNet'), `head='native'`,
    `num_classes`, `params` ({}), `library`, `constructor` ({'callable', 'kwargs'}: the
    arguments as resolved, so a rebuild is exact), `input_channels`, `gradcam_layer`,
    `gradcam_layout`; `forward(x)` returns logits (B, num_classes). `channels` sets the
    constructor's input-channel argument when `kwargs` does not."""

    head = "native"

    def __init__(self, library: str, callable_name: str, num_classes: int, kwargs: Mapping[str, Any] | None = None,
                 channels: int | None = None):
        super().__init__()
        kwargs = resolve_kwargs(library, callable_name, kwargs or {}, channels)
        self.net = construct(library, callable_name, num_classes, kwargs)
        self.library = library
        self.constructor = {"callable": callable_name, "kwargs": kwargs}
        self.num_classes = int(num_classes)
        self.params: dict[str, Any] = {}
        self.arch = f"{_SHORT[library]} {_display_name(callable_name, kwargs)}"
        self.input_channels = _input_channels(self.net)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.net.get_submodule(_cam_choice(self.net)[0])

    @property
    def gradcam_layout(self) -> FeatureLayout:
        return _cam_choice(self.net)[1]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, library={self.library!r}, constructor={self.constructor}"


_SHORT = {"torchxrayvision": "xrv", "monai": "monai", "timm": "timm", "torchvision": "torchvision"}


def _cam_choice(net: nn.Module) -> tuple[str, FeatureLayout]:
    """(submodule name, layout) of the Grad-CAM layer (see the module docstring)."""
    blocks = getattr(net, "blocks", None)
    prefix = getattr(net, "num_prefix_tokens", None)
    if isinstance(blocks, nn.Sequential) and len(blocks) and isinstance(prefix, int) \
            and hasattr(blocks[-1], "norm1"):  # timm vision transformers (ViT, DeiT, …)
        return f"blocks.{len(blocks) - 1}.norm1", FeatureLayout(prefix_tokens=prefix)
    if isinstance(net, torchvision.models.VisionTransformer):
        last = net.encoder.layers[-1].ln_1
        return next(n for n, m in net.named_modules() if m is last), FeatureLayout(prefix_tokens=1)
    if isinstance(net, torchvision.models.SwinTransformer):
        return "features", FeatureLayout(channels_last=True)
    info = getattr(net, "feature_info", None)
    if info is not None and len(info):  # timm: its last feature level, in its output format
        channels_last = str(getattr(net, "output_fmt", "NCHW")).endswith("NHWC")
        return info[-1]["module"], FeatureLayout(channels_last=channels_last)
    for name in ("features", "layer4"):
        found = [n for n, _ in net.named_modules() if n.split(".")[-1] == name]
        if found:
            return found[-1], NCHW
    convs = [n for n, child in net.named_children() if any(isinstance(m, nn.Conv2d) for m in child.modules())]
    return convs[-1], NCHW


def constructor_parameters(fn: Callable[..., Any]) -> list[str]:
    """The argument names `fn` (a class or a builder function) takes, following `**kwargs` to
    the class it passes them on to: the base classes' constructors for a class, the returned
    class (its annotation) for a function."""
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    names = [n for n, p in signature.parameters.items()
             if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        return names
    if isinstance(fn, type):
        onward = [base for base in fn.__mro__[1:] if base not in (nn.Module, object)][:1]
    else:
        try:
            returned = typing.get_type_hints(fn).get("return")
        except Exception:  # noqa: BLE001 - an annotation that does not resolve: nothing more to read
            returned = None
        onward = [returned] if isinstance(returned, type) and issubclass(returned, nn.Module) else []
    return names + [n for base in onward for n in constructor_parameters(base) if n not in names]


def resolve_kwargs(library: str, callable_name: str, kwargs: Mapping[str, Any],
                   channels: int | None = None) -> dict[str, Any]:
    """The constructor's arguments as the checkpoint records them: `kwargs`, with the input
    channel count (`channels`) and `spatial_dims=2` filled in where the constructor takes them
    and they are not given. ValueError for arguments that would load or download weights, or
    that name the class count (it is the checkpoint's `classes`)."""
    out = dict(kwargs)
    refused = sorted(k for k in out if k in REFUSED or k in NO_DOWNLOAD)
    if refused:
        raise ValueError(f"{callable_name}: {', '.join(refused)} cannot be given: medattn builds the model without "
                         "weights and loads them from the imported file, never from a library's download or cache")
    given_count = sorted(k for k in out if k in CLASS_COUNT)
    if given_count:
        raise ValueError(f"{callable_name}: {', '.join(given_count)} is the class count, set from --classes; "
                         "do not pass it as a constructor argument")
    names = _parameters(library, callable_name)
    if channels is not None and not any(k in out for k in INPUT_CHANNELS):
        name = next((n for n in INPUT_CHANNELS if n in names), None)
        if name is not None:
            out[name] = int(channels)
    if "spatial_dims" in names and "spatial_dims" not in out:
        out["spatial_dims"] = 2
    return out


def _parameters(library: str, callable_name: str) -> list[str]:
    if library == "timm":
        return ["num_classes", "in_chans"]  # every timm model takes these (timm's convention)
    if callable_name == XRV_RESNET:
        return ["depth"]
    return constructor_parameters(_member(_MODULES[library], callable_name))


_MODULES = {"torchxrayvision": "torchxrayvision.models", "monai": "monai.networks.nets",
            "torchvision": "torchvision.models"}


def construct(library: str, callable_name: str, num_classes: int, kwargs: Mapping[str, Any]) -> nn.Module:
    """The library's model with random weights (`kwargs` as `resolve_kwargs` gives them);
    ValueError for anything not allowed or a constructor without a class-count argument."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; choose one of: {', '.join(LIBRARIES)}")
    if not callable_name.startswith(library + "."):
        raise ValueError(f"constructor {callable_name!r} is not part of {library}")
    kwargs = dict(kwargs)
    try:
        if callable_name == XRV_RESNET:
            return _xrv_resnet(num_classes, kwargs)
        if library == "timm":
            if callable_name != "timm.create_model":
                raise ValueError("timm models are built with timm.create_model(model_name=…)")
            import timm

            name = kwargs.pop("model_name", None)
            if not isinstance(name, str) or name not in timm.list_models():
                raise ValueError(f"timm has no model named {name!r}")
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        if library == "torchvision" and callable_name.removeprefix("torchvision.models.") in torchvision.models.list_models():
            builder = callable_name.removeprefix("torchvision.models.")
            return torchvision.models.get_model(builder, weights=None, num_classes=num_classes, **kwargs)
        fn = _member(_MODULES[library], callable_name)
        names = constructor_parameters(fn)
        count = next((n for n in CLASS_COUNT if n in names), None)
        if count is None:
            raise ValueError(f"{callable_name} takes none of {', '.join(CLASS_COUNT)}: not a classifier medattn "
                             "can set the class count of")
        forced = {k: v for k, v in NO_DOWNLOAD.items() if k in names}
        net = fn(**{**kwargs, **forced, count: num_classes})
    except TypeError as exc:
        raise ValueError(f"{callable_name}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"{callable_name} returned {type(net).__name__}, not a model")
    if library == "torchxrayvision":
        net.apply_sigmoid = False  # logits, as every medattn model returns
    return net


def _xrv_resnet(num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    depth = kwargs.pop("depth", 50)
    if depth not in (50, 101) or kwargs:
        raise ValueError(f"{XRV_RESNET} takes depth=50 or 101 only, got {kwargs | {'depth': depth}}")
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def _member(module_name: str, callable_name: str) -> Callable[..., Any]:
    """The class or builder function `callable_name` of `module_name`."""
    module = importlib.import_module(module_name)
    attribute = callable_name.removeprefix(module_name + ".")
    if "." in attribute or not callable_name.startswith(module_name + ".") or attribute.startswith("_"):
        raise ValueError(f"{callable_name!r}: expected {module_name}.<model class or builder>")
    found = getattr(module, attribute, None)
    if isinstance(found, type) and issubclass(found, nn.Module):
        return found
    if inspect.isfunction(found):
        return found
    raise ValueError(f"{module_name} has no model class or builder {attribute!r}")


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

