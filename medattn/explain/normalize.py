"""The one normalisation policy applied to every map before display and scoring.

`explain()` returns raw maps (signed where the method is signed); callers turn them into
[0, 1] maps with `normalize(map, sign=DEFAULT_SIGN[method])`:

1. Sign: "absolute" takes |m| (evidence of either sign counts), "positive" keeps max(m, 0)
   (only evidence for the class counts), "all" keeps the signed values (negative → low end).
2. Clipping: values above the `clip_percentile` percentile are set to it, so a few extreme
   pixels (common in gradient maps) do not flatten the rest. For "all" the clip is symmetric:
   to ±percentile(|m|). Skipped when it would make the map constant (maps whose support is
   smaller than the clipped tail), and with `clip_percentile=None` or 100.
3. Min-max to [0, 1]; a constant map becomes all zeros (it points nowhere).

Each (H, W) map of a stack (..., H, W) is normalised on its own.
"""

from __future__ import annotations

import numpy as np
import torch

SIGNS = ("absolute", "positive", "all")

DEFAULT_SIGN: dict[str, str] = {
    "saliency": "absolute",
    "smoothgrad": "absolute",
    "integrated_gradients": "absolute",
    "smoothgrad_ig": "absolute",
    "guided_backprop": "absolute",
    "gradcam": "positive",
    "guided_gradcam": "absolute",
    "occlusion": "positive",
    "pda": "positive",
    "pda_features": "positive",
    "wildcat": "positive",
    "attention": "positive",
}


def normalize(map: np.ndarray | torch.Tensor, sign: str = "absolute",
              clip_percentile: float | None = 99.5) -> np.ndarray:
    """Map(s) (..., H, W) → float32 in [0, 1] under the policy in the module docstring."""
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    if clip_percentile is not None and not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    m = map.detach().cpu().numpy() if isinstance(map, torch.Tensor) else np.asarray(map)
    if m.ndim < 2:
        raise ValueError(f"expected a map (H, W) or a stack (..., H, W), got shape {m.shape}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise ValueError("map contains NaN or infinite values")
    if sign == "absolute":
        m = np.abs(m)
    elif sign == "positive":
        m = np.maximum(m, 0.0)
    flat = m.reshape(-1, *m.shape[-2:])
    out = np.stack([_clip_and_scale(one, sign, clip_percentile) for one in flat])
    return out.reshape(m.shape).astype(np.float32)


def _clip_and_scale(m: np.ndarray, sign: str, clip_percentile: float | None) -> np.ndarray:
    if clip_percentile is not None and clip_percentile < 100:
        if sign == "all":
            c = np.percentile(np.abs(m), clip_percentile)
            clipped = np.clip(m, -c, c)
        else:
            clipped = np.minimum(m, np.percentile(m, clip_percentile))
        if clipped.max() > clipped.min():
            m = clipped
    lo, hi = m.min(), m.max()
    if hi <= lo:
        return np.zeros_like(m)
    return (m - lo) / (hi - lo)
