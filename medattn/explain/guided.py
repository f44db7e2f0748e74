"""The guided backpropagation rule (Springenberg et al. 2015) on every activation module that has
one, for guided_backprop and guided_gradcam.

Guided backprop passes, through each rectifier, only positive gradient where the unit is active:
R_in = f'(x) · max(R_out, 0). Captum applies it to `nn.ReLU` modules only, so a MobileNetV2 (ReLU6
everywhere) got plain gradients, silently. The rule is defined wherever f is monotone
non-decreasing (f' >= 0: gating by the forward pass, then dropping negative signal is the same
as clamping the result): the ReLU family (ReLU, ReLU6, Hardtanh, LeakyReLU, PReLU, RReLU, ELU,
CELU, SELU, Threshold, Softplus). Non-monotone activations (SiLU/Swish, Hardswish, GELU, Mish)
have no such rule: a model that has them (as torch's modules or a library's own, timm's GELU or
MONAI's MemoryEfficientSwish) cannot be explained by guided methods (`guided_unavailable`). Activations applied as functions (`F.relu` in a forward) cannot be
hooked and pass plain gradients, as in Captum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor, nn

from medattn.explain.base import describe

GUIDED: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU,
                                       nn.CELU, nn.SELU, nn.Threshold, nn.Softplus)
NO_RULE: tuple[type[nn.Module], ...] = (nn.SiLU, nn.Hardswish, nn.GELU, nn.Mish)
# the same functions as other libraries' own modules (timm's GELU, MONAI's MemoryEfficientSwish, …)
NO_RULE_NAMES = ("GELU", "GELUTanh", "QuickGELU", "SiLU", "Swish", "SwishMe", "MemoryEfficientSwish", "HardSwish",
                 "HardSwishMe", "Hardswish", "Mish", "MishMe")


def guided_unavailable(method: str, model: nn.Module) -> str | None:
    """Why guided backprop cannot explain `model` (an activation without a guided rule), else None."""
    found = sorted({type(m).__name__ for m in model.modules()
                    if isinstance(m, NO_RULE) or type(m).__name__ in NO_RULE_NAMES})
    if not found:
        return None
    return (f"'{method}' needs activations with a guided-backpropagation rule (the ReLU family); "
            f"{describe(model)} uses {', '.join(found)}, which is not monotone")


def _clamp(grad: Tensor) -> Tensor:
    return grad.clamp(min=0)


@contextlib.contextmanager
def guided(model: nn.Module) -> Iterator[nn.Module]:
    """Apply the guided rule to every `GUIDED` activation module of `model` for the duration:
    a hook clamps the gradient at each activation's output to >= 0 (the activation's own
    backward then gates it by f'(x)). In-place activations run out of place meanwhile, so the
    hooked output is never overwritten; both are restored afterwards."""
    handles, inplace = [], []

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if isinstance(output, Tensor) and output.requires_grad:
            output.register_hook(_clamp)

    for module in model.modules():
        if isinstance(module, GUIDED):
            if getattr(module, "inplace", False):
                inplace.append(module)
                module.inplace = False
            handles.append(module.register_forward_hook(hook))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True
