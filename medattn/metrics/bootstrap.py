"""Bootstrap confidence intervals by image, and paired differences between two model/method pairs.

Resampling draws images with replacement (default 1000 resamples, 95% percentile interval)
from a seeded `numpy.random.default_rng`, so a figure is reproducible from its seed. The
resamples are one index matrix (resamples × images), processed in blocks to bound memory.
NaN values (images where a metric is undefined, e.g. without boxes) are dropped before
resampling: they are not part of the population being measured.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

Statistic = Callable[..., np.ndarray]
# Elements of the resample index matrix held at once (~32 MB of int64).
_BLOCK_ELEMENTS = 1 << 22


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


class PairedDifference(NamedTuple):
    difference: float
    low: float
    high: float
    p_value: float


def _resampled(columns: list[np.ndarray], statistic: Statistic, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, len(columns)) statistic of each column on the same resampled images."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    out = np.empty((n_resamples, len(columns)))
    for start in range(0, n_resamples, block):
        index = rng.integers(0, n, size=(min(block, n_resamples - start), n))
        for j, column in enumerate(columns):
            out[start : start + len(index), j] = statistic(column[index], axis=1)
    return out


def _bounds(samples: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: np.ndarray, n_resamples: int = 1000, seed: int = 0, statistic: Statistic = np.nanmean, level: float = 0.95
) -> Interval:
    """(estimate, low, high): the statistic over all images and its percentile bootstrap interval.

    `statistic` is called as `statistic(matrix, axis=1)` on resampled rows, like `np.nanmean`
    or `np.median`. All NaN if no value is finite.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    estimate = float(statistic(values[None, :], axis=1)[0])
    low, high = _bounds(_resampled([values], statistic, n_resamples, seed)[:, 0], level)
    return Interval(estimate, low, high)


def paired_difference(
    a: np.ndarray | pd.Series,
    b: np.ndarray | pd.Series,
    n_resamples: int = 1000,
    seed: int = 0,
    statistic: Statistic = np.mean,
    level: float = 0.95,
) -> PairedDifference:
    """statistic(a) - statistic(b) over the same images, with its bootstrap interval and p-value.

    `a` and `b` hold one value per image for two model/method pairs: aligned arrays of equal
    length, or two Series aligned on their index (images in only one are dropped). Pairs where
    either value is NaN are dropped. Each resample draws the same images for both. `p_value` is
    two-sided: twice the smaller share of resampled differences on either side of zero, counted
    as a Monte Carlo p-value, (count + 1) / (n_resamples + 1) (Davison & Hinkley 1997, §4.2;
    capped at 1), so it is never 0: B resamples cannot resolve less than 2 / (B + 1). With fewer
    than 2 pairs there is nothing to resample: the interval and `p_value` are NaN (the difference
    of one image is not evidence either way).
    """
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        a, b = a.align(b, join="inner")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values must be aligned: {a.size} values against {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return PairedDifference(float("nan"), float("nan"), float("nan"), float("nan"))
    difference = float(statistic(a[None, :], axis=1)[0] - statistic(b[None, :], axis=1)[0])
    if a.size < 2:
        return PairedDifference(difference, float("nan"), float("nan"), float("nan"))
    samples = _resampled([a, b], statistic, n_resamples, seed)
    resampled = samples[:, 0] - samples[:, 1]
    low, high = _bounds(resampled, level)
    tail = min(int(np.sum(resampled <= 0)), int(np.sum(resampled >= 0)))
    p_value = min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    return PairedDifference(difference, low, high, p_value)
