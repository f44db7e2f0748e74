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
- `device` and `batch_size` are execution options, not method parameters: they change speed and
  memory, never the map. `batch_size` is the number of model evaluations per forward pass
  (interpolation steps, noise samples, occluded copies); the explainer moves the model to
  `device` (`medattn.device.best_device` unless told otherwise) and keeps it there.
- The map is raw (signed where the method is signed) and in the input's frame; normalisation
  for display and scoring is `medattn.explain.normalize`.

Subclasses set `name`, `defaults`, `needs_grad` and implement `_attribute(x, targets, **params)`.
The base class runs it with frozen weights (eval mode, no parameter gradients) under
`torch.enable_grad()` or, for forward-only methods (`needs_grad = False`),
`torch.inference_mode()`.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medattn.device import best_device

DEFAULT_BATCH_SIZE = 32


class Explainer:
    """Base class: one subclass per method (see the module docstring for the protocol)."""

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}
    needs_grad: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        **params: Any,
    ):
        self.device = best_device("auto" if device is None else str(device))
        self.model = model.to(self.device)
        self.batch_size = (DEFAULT_BATCH_SIZE if batch_size is None
                           else positive_int(self.name, "batch_size", batch_size))
        self.params = self._merge(self.defaults, params)

    def attribute(self, x: Tensor, target: int | Sequence[int] | Tensor, **params: Any) -> Tensor:
        """Maps (B, H, W) float32 on the CPU for images `x` and their `target` classes."""
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
    """A short name for a model in error messages, with its arch and head when it records them
    (medattn models do)."""
    parts = [f"{key}={getattr(model, key)}" for key in ("arch", "head")
             if isinstance(getattr(model, key, None), str)]
    return f"{type(model).__name__}({', '.join(parts)})" if parts else type(model).__name__


def positive_int(method: str, name: str, value: Any) -> int:
    """`value` as an int >= 1, else ValueError naming the method and parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 1 or value != int(value):
        raise ValueError(f"{method}: {name} must be a positive integer, got {value!r}")
    return int(value)
