"""Similarity between two heatmaps, for sanity checks (Adebayo et al. style randomisation tests).

A map computed on a randomised model should differ from the trained model's map; these scores
say how much. Both take maps of the same shape and compare them after the same min-max
normalisation as the localization metrics.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from medattn.metrics.localization import minmax


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"maps must be 2-D and of one shape, got {a.shape} and {b.shape}")
    return minmax(a), minmax(b)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of the two min-max normalised maps (data_range=1, skimage defaults).

    Both maps must be at least 7 × 7 (skimage's default window). Two constant maps score 1.
    """
    a, b = _pair(a, b)
    return float(structural_similarity(a, b, data_range=1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the flattened maps; NaN when either map is constant."""
    a, b = _pair(a, b)
    if a.max() == a.min() or b.max() == b.min():
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)
