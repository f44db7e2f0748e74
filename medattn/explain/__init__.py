"""Explanation maps for classifiers: one explainer class per method, a registry, and one
normalisation policy.

`explain(model, x, target, method, **params)` returns the RAW map (signed where the method is
signed) in the input's frame; apply `normalize(map, sign=DEFAULT_SIGN[method])` before display
or scoring. See medattn/explain/README.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from medattn.explain.base import Explainer
from medattn.explain.normalize import DEFAULT_SIGN, normalize
from medattn.explain.registry import METHODS, get_explainer, method_params, unavailable

__all__ = ["DEFAULT_SIGN", "METHODS", "Explainer", "explain", "get_explainer", "method_params",
           "normalize", "unavailable"]


def explain(model: torch.nn.Module, x: torch.Tensor, target: int | Sequence[int], method: str,
            device: str | torch.device | None = None, batch_size: int | None = None,
            progress: Callable[[int, int], None] | None = None, precision: str = "auto",
            **params: Any) -> np.ndarray:
    """Raw map float32 (H, W) of `method` for image x (3, H, W) or (1, 3, H, W) and class
    `target`; a batch (B, 3, H, W) with one target per image gives (B, H, W). `progress`
    (done, total) is reported by the long methods (PDA) that accept it; `device`,
    `batch_size` and `precision` ("auto" or "float32") are the execution options of
    `Explainer` (medattn/explain/base.py)."""
    options = {} if progress is None else {"progress": progress}
    explainer = get_explainer(method)(model, device=device, batch_size=batch_size, precision=precision,
                                      **options)
    maps = explainer.attribute(x, target, **params).numpy()
    return maps[0] if x.ndim == 3 or x.shape[0] == 1 else maps
