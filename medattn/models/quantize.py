"""Reduced-precision storage of checkpoint weights: float16 (half of float32) and int8 (a
quarter, for shipping demo models small).

int8: conv and linear weights (tensors with two or more dimensions) are stored as int8 with one
symmetric float32 scale per output channel under KEY + SCALE_SUFFIX; other floating tensors
(biases, norm statistics) as float16. Loading restores float32 tensors; the model evaluated
after a round trip is the one whose metrics a checkpoint should report.

A tensor that float16 cannot hold (a value beyond ±65504 becomes inf: a BatchNorm running
variance of ~1e6, as TorchXRayVision's first layers have on their [-1024, 1024] inputs) is kept
in float32 (`store` names it); `save_checkpoint` then checks the reloaded model's logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCALE_SUFFIX = ".__int8_scale"


FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def fits_float16(value: Tensor) -> bool:
    """Whether float16 holds every finite value of `value` (nothing becomes inf)."""
    finite = value[torch.isfinite(value)]
    return finite.numel() == 0 or float(finite.abs().max()) <= FLOAT16_MAX


def store(tensors: dict[str, Tensor], dtype: str) -> tuple[dict[str, Tensor], list[str]]:
    """(tensors as stored for `dtype` "float16" or "int8", names kept in float32 because
    float16 cannot hold them)."""
    kept: list[str] = []

    def half(key: str, value: Tensor) -> Tensor:
        if fits_float16(value):
            return value.to(torch.float16)
        kept.append(key)
        return value.float()

    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if dtype == "int8" and value.is_floating_point() and value.ndim >= 2 and value.numel() >= 256:
            flat = value.float().reshape(value.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[key] = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            out[key + SCALE_SUFFIX] = scale
        elif value.is_floating_point():
            out[key] = half(key, value)
        else:
            out[key] = value
    return out, kept


def dequantize(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(key + SCALE_SUFFIX)
        if scale is not None:
            shape = (-1,) + (1,) * (value.ndim - 1)
            out[key] = value.float() * scale.view(shape)
        else:
            out[key] = value.float() if value.is_floating_point() else value
    return out
