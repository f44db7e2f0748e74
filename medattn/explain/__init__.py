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

from medattn.explain.base import Explainer, ticking
from medattn.explain.normalize import DEFAULT_SIGN, normalize
from medattn.explain.registry import METHODS, get_explainer, method_params, unavailable

__all__ = ["DEFAULT_SIGN", "METHODS", "Explainer", "explain", "get_explainer", "method_params",
           "normalize", "unavailable"]


def explain(model: torch.nn.Module, x: torch.Tensor, target: int | Sequence[int], method: str,
            device: str | torch.device | None = None, batch_size: int | None = None,
            progress: Callable[[int, int], None] | None = None, precision: str = "float32",
            **params: Any) -> np.ndarray:
    """Raw map float32 (H, W) of `method` for image x (3, H, W) or (1, 3, H, W) and class
    `target`; a batch (B, 3, H, W) with one target per image gives (B, H, W). `progress`
    (done, total) is reported by the methods that count their work (PDA: windows); the others
    call progress(0, 0) before each forward pass (`base.ticking`), so a caller can stop any
    method between two passes by raising from it. `device`, `batch_size` and `precision`
    ("float32" or "bfloat16") are the execution options of `Explainer` (medattn/explain/base.py)."""
    cls = get_explainer(method)
    options = {"progress": progress} if progress is not None and cls.reports_progress else {}
    explainer = cls(model, device=device, batch_size=batch_size, precision=precision, **options)
    with ticking(None if progress is None or options else lambda: progress(0, 0)):
        maps = explainer.attribute(x, target, **params).numpy()
    return maps[0] if x.ndim == 3 or x.shape[0] == 1 else maps
