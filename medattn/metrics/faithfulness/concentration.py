"""How concentrated a map is, from the map alone: sparseness (Gini index, Chalasani et al.
2020) and complexity (entropy, Bhatt et al. 2020)."""

from __future__ import annotations

import warnings

import numpy as np
from torch import Tensor


def _flat_abs(attributions: Tensor | np.ndarray) -> np.ndarray:
    maps = attributions.detach().cpu().numpy() if isinstance(attributions, Tensor) else np.asarray(attributions)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[0] < 1:
        raise ValueError(f"attributions must be maps (B, H, W), got shape {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("attributions contain NaN or infinite values")
    return np.abs(maps.astype(np.float64)).reshape(len(maps), -1)


def sparseness(attributions: Tensor | np.ndarray) -> np.ndarray:
    """Gini index of |φ| per map (Chalasani et al. 2020, "Concise explanations of neural
    networks using adversarial training", ICML; Hurley & Rickard 2009's G): with |φ| sorted
    ascending as v₁ … vₙ, G = Σᵢ (2i − n − 1) vᵢ / (n Σ vᵢ). In [0, 1 − 1/n]; higher is
    sparser. A flat map (including all zeros) scores 0. Equals Quantus's Sparseness (which adds
    1e-7 to every value first) to that offset. Returns (B,) float64."""
    values = np.sort(_flat_abs(attributions), axis=1)
    n = values.shape[1]
    total = values.sum(axis=1)
    weights = 2 * np.arange(1, n + 1) - n - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        gini = (values @ weights) / (n * total)
    return np.where(total > 0, gini, 0.0)


def complexity(attributions: Tensor | np.ndarray) -> np.ndarray:
    """Entropy (natural log) of the map's share of evidence per pixel, p = |φ| / Σ|φ| (Bhatt
    et al. 2020, "Evaluating and aggregating feature-based model explanations", IJCAI, §4.2),
    with 0 · log 0 = 0. In [0, log n]; lower is simpler. A flat non-zero map scores log n; an
    all-zero map has no distribution: NaN with a RuntimeWarning. Equals Quantus's Complexity
    (which adds 1e-12 inside the log) to that offset. Returns (B,) float64."""
    values = _flat_abs(attributions)
    total = values.sum(axis=1, keepdims=True)
    empty = total[:, 0] == 0
    if empty.any():
        warnings.warn(f"complexity undefined for {int(empty.sum())} all-zero map(s): NaN", RuntimeWarning, stacklevel=2)
    p = values / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return np.where(empty, np.nan, -terms.sum(axis=1))
