"""Display normalisation shared across panels: one scale for all maps of a method, so equal
values look equal from model to model. (Per panel, the display uses the published policy,
`medattn.explain.normalize`, which is also what every score is computed on.)"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from medattn.data.transforms import resize


def shared_normalize(raws: Sequence[np.ndarray], sign: str, shape: tuple[int, int],
                     clip_percentile: float = 99.5,
                     places: Sequence[Callable[[np.ndarray, tuple[int, int]], np.ndarray]] | None = None
                     ) -> list[np.ndarray]:
    """Raw maps of one method → [0, 1] maps of `shape` on a common scale: the sign policy of
    `normalize` ("absolute", "positive" or "all"), then one range for all, from zero (or the
    symmetric ±clip for "all") to the `clip_percentile` of the pooled values. `places`: per map,
    how it goes to the image frame (`Preprocessing.place`; default a plain resize)."""
    if sign == "absolute":
        signed = [np.abs(m) for m in raws]
    elif sign == "positive":
        signed = [np.maximum(m, 0) for m in raws]
    elif sign == "all":
        signed = [np.asarray(m) for m in raws]
    else:
        raise ValueError(f"sign must be absolute, positive or all, got {sign!r}")
    if not signed:
        return []
    pooled = np.concatenate([m.ravel() for m in signed]).astype(np.float64)
    if sign == "all":
        high = float(np.percentile(np.abs(pooled), clip_percentile))
        low = -high
    else:
        low, high = 0.0, float(np.percentile(pooled, clip_percentile))
    if high <= low:
        return [np.zeros(shape, np.float32) for _ in signed]
    scaled = [np.clip((m.astype(np.float32) - low) / (high - low), 0.0, 1.0) for m in signed]
    places = places or [resize] * len(scaled)
    return [np.clip(place(m, shape), 0.0, 1.0) for m, place in zip(scaled, places)]
