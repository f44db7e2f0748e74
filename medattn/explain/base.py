"""The explainer protocol every method follows, and the helpers the methods share.

An explainer is one class per method, in the manner of Captum:

    explainer = SomeExplainer(model, device=None, batch_size=None, **params)
    maps = explainer.attribute(x, target, **params)   # Tensor (B, H, W), float32, on the CPU

- `x` is (3, H, W) or (B, 3, H, W), already normalised for the model; `target` is a class index
  or one index per image.
- `params` are the method's parameters; `defaults` (a class attribute) lists every one with its
  default, so callers can canonicalise them (cache keys, UI forms). Parameters given to the
  constructor become the explainer's defaults; those given to `attribute` override them for that
  call. Unknown names raise ValueError.
- `device` and `batch_size` are execution options, not method parameters: they change speed
  and memory, not the map. `batch_size` is the number of model evaluations per forward pass
  (interpolation steps, noise samples, occluded copies); the explainer moves the model to
  `device` (`medattn.device.best_device` unless told otherwise) and keeps it there.
- `precision` is "float32" (the default: every operation in float32, so a map is the same on
  every CPU up to float32 rounding) or "bfloat16", an explicit choice of a faster, slightly
  different map: the methods with `bfloat16_stages` (integrated gradients, SmoothGrad-IG,
  occlusion, pixel PDA) then run the later backbone stages of ResNet/DenseNet models under
  bfloat16 autocast, on CPUs with native bfloat16 (`native_bfloat16`) only. `used_precision`
  says which one a map is computed in ("bfloat16" falls back to "float32" elsewhere); callers
  that store maps key and record them by it (`medattn.pipeline`).
- The map is raw (signed where the method is signed) and in the input's frame; normalisation
  for display and scoring is `medattn.explain.normalize`.

Subclasses whose maps of a batch are each image's own map (no batch statistics, no randomness
shared across the batch) set `batch_invariant`: precompute then explains the images and target
classes of a method together, one forward pass per distinct image (`medattn.explain.shared`).
Subclasses set `name`, `defaults`, `needs_grad` and implement `_attribute(x, targets, **params)`;
parameters added to a method after its maps were first cached are listed in `keyless` and left
out of cache keys while at their default (`key_params`), so those maps stay valid;
methods that read maps the model computes itself set `requires` to (model method, what it
gives), and `unavailable(model)` says why such a method cannot explain a model before any work.
The base class runs it with frozen weights (eval mode, no parameter gradients) under
`torch.enable_grad()` or, for forward-only methods (`needs_grad = False`),
`torch.inference_mode()`.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from medattn.device import best_device
from medattn.errors import MedattnError

DEFAULT_BATCH_SIZE = 32
PRECISIONS = ("float32", "bfloat16")
# Backbones whose later two stages may run in bfloat16 (evaluation_copy, mixed=True): integrated
# gradients on random-weight models at 224 kept a Spearman correlation >= 0.992 with float32
# maps (ResNet-18/50, DenseNet-121; ~1.0 on the trained demo ResNet-18) and ran 1.1-1.35x faster.
# Not VGG (0.976) nor MobileNet (no faster).
MIXED_PRECISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                         "densenet121", "densenet169")


class Explainer:
    """Base class: one subclass per method (see the module docstring for the protocol)."""

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}
    needs_grad: ClassVar[bool] = True
    requires: ClassVar[tuple[str, str] | None] = None  # e.g. ("class_maps", "class maps")
    keyless: ClassVar[tuple[str, ...]] = ()  # see key_params
    reports_progress: ClassVar[bool] = False  # takes a `progress(done, total)` option
    bfloat16_stages: ClassVar[bool] = False  # precision "bfloat16" changes its maps (see used_precision)
    # an image's map is the same (to float32 rounding) whatever batch it comes in, so callers may
    # stack images and targets into one call (`pipeline.compute_maps`); tested per method
    batch_invariant: ClassVar[bool] = False

    @classmethod
    def key_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` without the `keyless` ones that are at their default: what identifies a map."""
        return {k: v for k, v in params.items() if not (k in cls.keyless and v == cls.defaults.get(k))}

    @classmethod
    def unavailable(cls, model: nn.Module) -> str | None:
        """Why this method cannot explain `model` (it lacks `requires`), else None."""
        if cls.requires is None or callable(getattr(model, cls.requires[0], None)):
            return None
        attribute, what = cls.requires
        return f"'{cls.name}' needs a model with {what} ({attribute}()); {describe(model)} has none"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        precision: str = "float32",
        **params: Any,
    ):
        self.device = best_device("auto" if device is None else str(device))
        self.model = model.to(self.device)
        self.batch_size = (DEFAULT_BATCH_SIZE if batch_size is None
                           else positive_int(self.name, "batch_size", batch_size))
        self.precision = check_precision(self.name, precision)
        self.params = self._merge(self.defaults, params)

    @classmethod
    def used_precision(cls, model: nn.Module, device: str | torch.device, precision: str = "float32") -> str:
        """The precision this method's maps of `model` on `device` are computed in when
        `precision` is asked for: "bfloat16" only for a method with `bfloat16_stages`, on a
        CPU with native bfloat16, for a backbone in MIXED_PRECISION_ARCHS; else "float32"."""
        check_precision(cls.name, precision)
        mixed = precision == "bfloat16" and cls.bfloat16_stages and bfloat16_applies(model, torch.device(device))
        return "bfloat16" if mixed else "float32"

    @property
    def mixed(self) -> bool:
        """Whether this explainer runs the later backbone stages in bfloat16 (`used_precision`)."""
        return self.used_precision(self.model, self.device, self.precision) == "bfloat16"

    def attribute(self, x: Tensor, target: int | Sequence[int] | Tensor, **params: Any) -> Tensor:
        """Maps (B, H, W) float32 on the CPU for images `x` and their `target` classes."""
        reason = self.unavailable(self.model)
        if reason is not None:
            raise MedattnError(reason)
        # a fresh leaf, so that gradient methods never mark the caller's tensor
        batch = as_batch(x).to(self.device, torch.float32).detach().requires_grad_(self.needs_grad)
        targets = as_targets(target, len(batch)).to(self.device)
        merged = self._merge(self.params, params)
        grad_mode = torch.enable_grad() if self.needs_grad else torch.inference_mode()
        with frozen(self.model), grad_mode:
            maps = self._attribute(batch, targets, **merged)
        expected = (batch.shape[0], *batch.shape[2:])
        if tuple(maps.shape) != expected:
            raise RuntimeError(f"{self.name} produced maps of shape {tuple(maps.shape)}, "
                               f"expected {expected}")
        return maps.detach().to("cpu", torch.float32)

    def _attribute(self, x: Tensor, targets: Tensor, **params: Any) -> Tensor:
        raise NotImplementedError

    def _merge(self, base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                             f"allowed: {allowed}")
        return {**base, **given}


def check_precision(method: str, precision: str) -> str:
    """`precision` when it is one of PRECISIONS, else ValueError naming the method."""
    if precision not in PRECISIONS:
        raise ValueError(f"{method}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def evaluation_copy(model: nn.Module, example: Tensor, mixed: bool = False) -> nn.Module:
    """A faster stand-in for a frozen, eval-mode `model` whose outputs and input gradients are
    all an explainer uses: a copy with every BatchNorm2d folded into the Conv2d that feeds it,
    in channels-last memory format on the CPU and CUDA. `model` itself is not changed.

    Why: for integrated gradients on ResNet-50 at 224 on a 2-core CPU, BatchNorm's forward and
    backward passes took about a quarter of the time and channels-last convolutions ran about
    a quarter faster; together 1.7x the throughput of Captum's default call.

    `mixed=True` (for path methods such as integrated gradients, whose maps average many
    gradients) also runs the backbone's last two stages under bfloat16 autocast, on CPUs with
    native bfloat16 and for the backbones in MIXED_PRECISION_ARCHS: 2.4x Captum's default call
    on ResNet-50 (`python -m medattn.bench --archs resnet50 --methods integrated_gradients`).
    The first stage stays float32: in bfloat16 it cost most of the agreement with float32 maps.

    A BatchNorm is folded only where one forward pass on `example` (a batch of the images to
    explain) shows that its input is the unmodified output of a convolution that runs once and
    feeds nothing else (read from the autograd graph), so the fold is exact up to rounding.
    The copy's output on `example` is checked against the model's; if it differs by more than
    rounding, or the model cannot run on channels-last input, `model` is returned as it is.
    """
    with torch.inference_mode(False):  # occlusion calls this in inference mode
        example = example[:1].detach().clone()
        fast = copy.deepcopy(model)
        try:
            pairs, expected = _conv_bn_pairs(fast, example)
            for conv, bn in pairs:
                with torch.no_grad():
                    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                                        bn.running_var, bn.eps, bn.weight, bn.bias)
                conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
                _replace(fast, bn, nn.Identity())
            if example.device.type in ("cpu", "cuda"):
                fast = ChannelsLast(fast.to(memory_format=torch.channels_last))
            with torch.no_grad():
                got = fast(example)
        except RuntimeError:  # e.g. a model that .view()s a channels-last feature map
            return model
        if not (isinstance(got, Tensor) and isinstance(expected, Tensor)
                and got.shape == expected.shape
                and torch.allclose(got, expected, rtol=1e-3,
                                   atol=1e-4 * (1 + float(expected.abs().max())))):
            return model
        inner = fast.model if isinstance(fast, ChannelsLast) else fast
        stages = getattr(getattr(inner, "backbone", None), "stages", None)
        if mixed and bfloat16_applies(model, example.device) and isinstance(stages, nn.ModuleList):
            for i in range(1, len(stages)):
                stages[i] = BFloat16(stages[i])
        return fast


_POOL: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, list]]" = weakref.WeakKeyDictionary()
_POOL_LOCK = threading.Lock()
_AS_IS = object()  # marks a model evaluation_copy returns unchanged (nothing to fold)


@contextlib.contextmanager
def evaluation_model(model: nn.Module, example: Tensor, mixed: bool = False) -> Iterator[nn.Module]:
    """`evaluation_copy(model, example, mixed)`, built once and reused: while the model's
    weights, the device and the input shape stay the same, later calls borrow a copy made
    earlier instead of copying and checking the model again (about 0.1 s for a ResNet-18 per
    call, most of a saliency map's time). Each copy is lent to one caller at a time, so two
    threads explaining one model never share hooks (Grad-CAM's, guided backprop's)."""
    mixed = bool(mixed) and bfloat16_applies(model, example.device)  # else the same copy as float32's
    weights = tuple((id(t), t._version) for t in model.state_dict(keep_vars=True).values())
    key = (weights, example.device, tuple(example.shape[1:]), mixed)
    with _POOL_LOCK:
        pool = _POOL.setdefault(model, {})
        for stale in [k for k in pool if k[0] != weights]:  # new weights: older copies would lie
            del pool[stale]
        free = pool.setdefault(key, [])
        fast = free.pop() if free else None
    if fast is None:
        fast = evaluation_copy(model, example, mixed)
        fast = _AS_IS if fast is model else fast
    try:
        yield model if fast is _AS_IS else fast
    finally:
        with _POOL_LOCK:
            if key in _POOL.get(model, {}):
                _POOL[model][key].append(fast)


def bfloat16_applies(model: nn.Module, device: torch.device) -> bool:
    """Whether evaluation_copy's `mixed` changes anything for this model on this device: a
    backbone in MIXED_PRECISION_ARCHS on a CPU with native bfloat16."""
    return device.type == "cpu" and getattr(model, "arch", None) in MIXED_PRECISION_ARCHS and native_bfloat16()


def counterpart(model: nn.Module, fast: nn.Module, module: nn.Module) -> nn.Module | None:
    """`module` of `model` as it is in `fast` (an `evaluation_model` of `model`): the submodule
    at the same path. None when `fast` is `model`, when `module` is not a submodule of `model`,
    or when folding changed what it outputs (a convolution or BatchNorm) or its path (a
    bfloat16 stage): read such a layer on `model` itself."""
    if fast is model or isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
        return None
    name = next((n for n, m in model.named_modules() if m is module), None)
    inner = fast.model if isinstance(fast, ChannelsLast) else fast
    if name is None:
        return None
    try:
        twin = inner.get_submodule(name) if name else inner
    except AttributeError:
        return None
    return twin if type(twin) is type(module) else None


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX); without them bfloat16
    is emulated and slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


class BFloat16(nn.Module):
    """Runs `module` under CPU bfloat16 autocast and returns float32."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(x).float()


class ChannelsLast(nn.Module):
    """Runs `model` on its input converted to channels-last memory format (differentiably,
    so input gradients come back in the caller's format). Calls this thread's `ticking`
    callback first."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Any:
        tick = getattr(_TICKS, "callback", None)
        if tick is not None:
            tick()
        return self.model(x.contiguous(memory_format=torch.channels_last))


_TICKS = threading.local()


@contextlib.contextmanager
def ticking(callback: Callable[[], None] | None) -> Iterator[None]:
    """Within the block, `callback()` runs before every forward pass of an `evaluation_model`
    copy in this thread. Why: a background job can stop (the callback raises) between two
    passes of a method that reports no progress of its own (integrated gradients, SmoothGrad,
    occlusion), e.g. to hand the CPU to a reader's request; the copies are returned to their pool
    and the model is left as it was."""
    previous = getattr(_TICKS, "callback", None)
    _TICKS.callback = callback
    try:
        yield
    finally:
        _TICKS.callback = previous


def _conv_bn_pairs(model: nn.Module, example: Tensor) -> tuple[list[tuple[nn.Conv2d, nn.BatchNorm2d]], Any]:
    """(conv, bn) pairs where bn's input is conv's untouched output and nothing else uses it,
    and the model's output on `example` (detached)."""
    produced: dict[nn.Module, Any] = {}  # conv → grad_fn of its output
    fed: dict[nn.Module, Any] = {}  # bn → grad_fn of its input
    calls: dict[nn.Module, int] = {}

    def after_conv(module: nn.Module, inputs: Any, output: Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        produced[module] = output.grad_fn

    def before_bn(module: nn.Module, inputs: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        fed[module] = inputs[0].grad_fn

    hooks = [m.register_forward_hook(after_conv) for m in model.modules()
             if type(m) is nn.Conv2d]
    hooks += [m.register_forward_pre_hook(before_bn) for m in model.modules()
              if type(m) is nn.BatchNorm2d and m.track_running_stats
              and m.running_mean is not None and not m.training]
    try:
        with torch.enable_grad():
            out = model(example.requires_grad_(True))
    finally:
        for hook in hooks:
            hook.remove()
    users = _graph_users(out)
    by_grad_fn = {fn: conv for conv, fn in produced.items() if fn is not None}
    pairs = []
    for bn, fn in fed.items():
        conv = by_grad_fn.get(fn)
        if conv is not None and calls[conv] == 1 and calls[bn] == 1 and users.get(fn, 0) == 1:
            pairs.append((conv, bn))
    return pairs, out.detach() if isinstance(out, Tensor) else out


def _graph_users(output: Any) -> dict[Any, int]:
    """Autograd node → how many nodes of the graph behind `output` take its result."""
    roots = [t.grad_fn for t in (output if isinstance(output, (tuple, list)) else [output])
             if isinstance(t, Tensor) and t.grad_fn is not None]
    users: dict[Any, int] = {}
    seen, stack = set(roots), list(roots)
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            users[child] = users.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return users


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put `new` wherever `old` is registered as a submodule of `model`."""
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if child is old:
                setattr(parent, name, new)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; both restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def as_batch(x: Tensor) -> Tensor:
    """(C, H, W) or (B, C, H, W) image tensor → (B, C, H, W)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected an image tensor, got {type(x).__name__}")
    if x.ndim == 3:
        return x.unsqueeze(0)
    if x.ndim == 4 and x.shape[0] >= 1:
        return x
    raise ValueError(f"expected an image tensor (C, H, W) or (B, C, H, W), got {tuple(x.shape)}")


def as_targets(target: int | Sequence[int] | Tensor, n: int) -> Tensor:
    """A class index, or one per image, → long tensor (n,)."""
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for {n} images")
    return t


def to_input_frame(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Maps (B, h, w) → (B, H, W) by bilinear upsampling (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear",
                         align_corners=False).squeeze(1)


def describe(model: nn.Module) -> str:
    """A model in words for messages people read: "resnet18 with a linear head" for a model that
    records its arch and head (medattn's do), its arch alone, else its class name; never a
    Python repr."""
    arch, head = (getattr(model, key, None) for key in ("arch", "head"))
    if isinstance(arch, str) and isinstance(head, str):
        return f"{arch} with a {head} head"
    return arch if isinstance(arch, str) else type(model).__name__


CHANNEL_RULES = ("max_abs", "sum", "sum_abs")


def reduce_channels(method: str, a: Tensor, rule: str) -> Tensor:
    """Attributions (B, C, H, W) → maps (B, H, W): "max_abs" max |a| over channels (Simonyan et
    al. 2014), "sum" the signed sum, "sum_abs" the sum of |a| (Arun et al. 2021)."""
    if rule == "max_abs":
        return a.abs().amax(dim=1)
    if rule == "sum":
        return a.sum(dim=1)
    if rule == "sum_abs":
        return a.abs().sum(dim=1)
    raise ValueError(f"{method}: channels must be one of {', '.join(CHANNEL_RULES)}, got {rule!r}")


def positive_int(method: str, name: str, value: Any) -> int:
    """`value` as an int >= 1, else ValueError naming the method and parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 1 or value != int(value):
        raise ValueError(f"{method}: {name} must be a positive integer, got {value!r}")
    return int(value)
