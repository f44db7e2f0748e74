"""How much one explainer pass computes on a CPU, sized by the model's cost, so that the app stays
responsive whatever the model: per image, a ResNet-18 at 128 px and a DenseNet-121 at 224 px
differ 5-fold in multiply-accumulates and 10-fold in time on a 2-core CPU.

`batch_size`: model evaluations per pass such that a forward and backward pass takes about
PASS_SECONDS at MACS_PER_SECOND. The app's background worker hands a prefetch over to a
reader's request only between two passes (`medattn.ui.background`): at the explainers' default
of 32 evaluations a DenseNet-121 pass at 224 px took 4.7 s here, and a new target class waited
for it; at 3, 0.45 s. `pipeline.compute_maps` (the app's panels and precompute alike) uses it
when no batch size is asked for, so both compute a map the same way; batch sizes change speed
and float32 rounding, not the map's cache key (`explain.base`). On a GPU: the explainers' default.

`evaluations`: how many evaluations fit in a time, for the app's previews
(`medattn.ui.methods.preview_params`). The counts depend on the model and its input size alone,
not on the machine's load, so the same model always gets the same sizes.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

from medattn.explain.base import DEFAULT_BATCH_SIZE

# Forward multiply-accumulates per second of this project's 2-core Xeon (AVX512, float32), the
# slower end of what it ran in forward and backward passes at batch 32: DenseNet-121 at 224 px
# 58 G/s, ResNet-18 at 128-192 px 118-132 G/s (counting a backward as two forwards).
MACS_PER_SECOND = 60e9
PASS_SECONDS = 0.5
_MACS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → {input shape: MACs per image}
_LOCK = threading.Lock()


def known_macs(model: nn.Module, shape: tuple[int, ...]) -> int | None:
    """`macs` for an image of `shape` (C, H, W) if already counted (never runs the model)."""
    with _LOCK:
        return _MACS.get(model, {}).get(tuple(shape))


def macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of one image shaped like `example` (1, C, H, W)
    through `model`'s convolutions and linear layers (counted once per model and shape: it runs
    the model, so the caller must hold the model's lock)."""
    shape = tuple(example.shape[1:])
    known = known_macs(model, shape)
    if known is not None:
        return known
    total = [0]

    def count(module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for hook in hooks:
            hook.remove()
    with _LOCK:
        _MACS.setdefault(model, {})[shape] = total[0]
    return total[0]


def evaluations(per_image: int, seconds: float, backward: bool) -> int:
    """Model evaluations of `per_image` MACs that fit in `seconds` (a backward counts as two
    forwards), at least 1."""
    return max(1, int(seconds * MACS_PER_SECOND / (per_image * (3 if backward else 1) or 1)))


def batch_size(model: nn.Module, example: torch.Tensor, backward: bool = True) -> int | None:
    """Evaluations per pass: about PASS_SECONDS of forward (and, with `backward`, backward
    passes) on a CPU; None (the explainer's own default) where that is 32 or more, and on any
    other device."""
    if example.device.type != "cpu":
        return None
    fitting = evaluations(macs(model, example), PASS_SECONDS, backward)
    return fitting if fitting < DEFAULT_BATCH_SIZE else None
