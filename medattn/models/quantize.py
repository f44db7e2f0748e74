"""Int8 storage of checkpoint weights: a quarter of float32, for shipping demo models small.

Conv and linear weights (tensors with two or more dimensions) are stored as int8 with one
symmetric float32 scale per output channel under KEY + SCALE_SUFFIX; other floating tensors
(biases, norm statistics) as float16. Loading restores float32 tensors; the model evaluated
after a round trip is the one whose metrics a checkpoint should report.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCALE_SUFFIX = ".__int8_scale"


def quantize(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if value.is_floating_point() and value.ndim >= 2 and value.numel() >= 256:
            flat = value.float().reshape(value.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[key] = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            out[key + SCALE_SUFFIX] = scale
        elif value.is_floating_point():
            out[key] = value.to(torch.float16)
        else:
            out[key] = value
    return out


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
