"""Faithfulness by removing what the map marks: deletion and insertion (Petsiuk et al. 2018),
pixel flipping and region perturbation (Bach et al. 2015; Samek et al. 2017), faithfulness
correlation (Bhatt et al. 2020). Conventions in `_core`'s docstring.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

from medattn.metrics.faithfulness._core import (
    DEFAULT_BATCH_SIZE, Baseline, Scorer, Targets, as_input, as_maps, as_targets, fill, image_rng, masked_copies,
    pixel_ranks, positive_int, trapezoid_auc,
)

ORDERS = ("morf", "lerf", "random")


def _counts(total: int, steps: int) -> list[int]:
    """Pixels removed after each of `steps` equal steps, 0 first and `total` last."""
    if steps > total:
        raise ValueError(f"steps ({steps}) cannot exceed the number of pixels ({total})")
    return [k * total // steps for k in range(steps + 1)]


def _curve(model: nn.Module, start: Tensor, end: Tensor, ranks: np.ndarray, counts: list[int], targets: np.ndarray,
           task: str, batch_size: int, precision: str) -> np.ndarray:
    """Class scores (B, len(counts)) of `start` with its `counts[k]` first-ranked pixels taken
    from `end`."""
    with Scorer(model, start, task, batch_size, precision) as scorer:
        flat = scorer.stream(masked_copies(start, end, ranks, counts, batch_size), targets)
    return flat.reshape(start.shape[0], len(counts))


def deletion(model: nn.Module, x: Tensor, attributions: Tensor | np.ndarray, targets: Targets, *, steps: int = 100,
             baseline: Baseline = 0.0, task: str = "multilabel", curves: bool = False, seed: int = 0,
             batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "float32") -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Deletion (Petsiuk et al. 2018, "RISE", §4.1): the area under the class score as the
    map's pixels are replaced by `baseline`, most relevant first; lower is better (the score
    falls fast when the map marks what the model uses).

    The curve has `steps + 1` points: after removing k·H·W // steps pixels, k = 0 … steps
    (all channels of a pixel at once); the area is the trapezoidal rule over [0, 1] (their
    `auc`). Checked against Quantus's PixelFlipping curve (tests/test_faithfulness_parity.py).

    Args: `x` (B, C, H, W) model input; `attributions` (B, H, W); `targets` (B,); `baseline`
    in model-input units (see `_core`); `task` picks the class score.
    Returns: (B,) areas in [0, 1] for probabilities; with `curves=True` also the (B, steps + 1)
    curves. Raises ValueError on shapes that disagree or `steps` > H·W.
    """
    x = as_input(x)
    maps, t = as_maps(attributions, x), as_targets(targets, x.shape[0])
    counts = _counts(maps[0].size, positive_int("steps", steps))
    curve = _curve(model, x, fill(x, baseline), pixel_ranks(maps, seed), counts, t, task, batch_size, precision)
    return (trapezoid_auc(curve), curve) if curves else trapezoid_auc(curve)


def insertion(model: nn.Module, x: Tensor, attributions: Tensor | np.ndarray, targets: Targets, *, steps: int = 100,
              baseline: Baseline = "blur", task: str = "multilabel", curves: bool = False, seed: int = 0,
              batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "float32") -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Insertion (Petsiuk et al. 2018, §4.1): the area under the class score as the image's
    pixels are put into `baseline` (default their blurred copy), most relevant first; higher
    is better. Same steps, area and returns as `deletion`."""
    x = as_input(x)
    maps, t = as_maps(attributions, x), as_targets(targets, x.shape[0])
    counts = _counts(maps[0].size, positive_int("steps", steps))
    curve = _curve(model, fill(x, baseline), x, pixel_ranks(maps, seed), counts, t, task, batch_size, precision)
    return (trapezoid_auc(curve), curve) if curves else trapezoid_auc(curve)


def _region_ranks(maps: np.ndarray, patch_size: int, order: str, seed: int) -> tuple[np.ndarray, int]:
    """Each pixel's region's place in the perturbation order (B, H, W), and the region count.
    Regions are the cells of a grid of `patch_size` squares centred on the image (a side that
    `patch_size` does not divide leaves cut cells at both edges, the extra pixel of an odd
    remainder at the far edge, as Quantus pads), ordered by their summed attribution."""
    batch, height, width = maps.shape
    rows, cols = -(-height // patch_size), -(-width // patch_size)
    top, left = (rows * patch_size - height) // 2, (cols * patch_size - width) // 2
    cell = ((np.arange(height)[:, None] + top) // patch_size) * cols + (np.arange(width)[None, :] + left) // patch_size
    sums = np.zeros((batch, rows * cols))
    for i in range(batch):
        sums[i] = np.bincount(cell.ravel(), weights=maps[i].ravel(), minlength=rows * cols)
    rng = image_rng(seed)
    if order == "random":
        region_order = np.tile(rng.permutation(rows * cols), (batch, 1))
        region_rank = np.argsort(region_order, axis=1)
    else:
        region_rank = pixel_ranks(sums.reshape(batch, 1, -1), seed, descending=order == "morf").reshape(batch, -1)
    return np.take_along_axis(region_rank, np.broadcast_to(cell.ravel(), (batch, cell.size)), 1).reshape(maps.shape), rows * cols


def _aopc(model: nn.Module, x: Tensor, baseline: Baseline, ranks: np.ndarray, counts: list[int], t: np.ndarray,
          task: str, curves: bool, batch_size: int, precision: str) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """AOPC (Samek et al. 2017, eq. 12): mean over k = 0 … L of f(x) − f(x⁽ᵏ⁾)."""
    scores = _curve(model, x, fill(x, baseline), ranks, counts, t, task, batch_size, precision)
    drop = scores[:, :1] - scores
    return (drop.mean(axis=1), drop) if curves else drop.mean(axis=1)


def region_perturbation(model: nn.Module, x: Tensor, attributions: Tensor | np.ndarray, targets: Targets, *,
                        patch_size: int = 8, regions: int = 100, order: str = "morf", baseline: Baseline = 0.0,
                        task: str = "multilabel", curves: bool = False, seed: int = 0,
                        batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "float32") -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Region perturbation (Samek et al. 2017, "Evaluating the visualization of what a deep
    neural network has learned", §III): the image's `patch_size` grid cells are replaced by
    `baseline` one more at a time, in the order of their summed attribution ("morf": most
    relevant first, "lerf": least, "random": a seeded permutation), for `regions` steps.

    Returns AOPC = mean over k = 0 … L of f(x) − f(x⁽ᵏ⁾), L = min(regions, cells) (eq. 12):
    higher is better under "morf", lower under "lerf". With `curves=True` also the (B, L + 1)
    drops f(x) − f(x⁽ᵏ⁾). The grid, order and drops equal Quantus's RegionPerturbation
    (which pads the image; its drops exclude k = 0).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    x = as_input(x)
    maps, t = as_maps(attributions, x), as_targets(targets, x.shape[0])
    ranks, cells = _region_ranks(maps, positive_int("patch_size", patch_size), order, seed)
    counts = list(range(min(positive_int("regions", regions), cells) + 1))
    return _aopc(model, x, baseline, ranks, counts, t, task, curves, batch_size, precision)


def pixel_flipping(model: nn.Module, x: Tensor, attributions: Tensor | np.ndarray, targets: Targets, *,
                   steps: int = 100, order: str = "morf", baseline: Baseline = 0.0, task: str = "multilabel",
                   curves: bool = False, seed: int = 0,
                   batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "float32") -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pixel flipping (Bach et al. 2015; scored as Samek et al. 2017's AOPC): every pixel is
    replaced by `baseline` in `steps` equal steps, most relevant first ("morf"; "lerf": least
    first, "random": seeded), and the value is AOPC = mean over k = 0 … steps of
    f(x) − f(x⁽ᵏ⁾); higher is better under "morf". Region perturbation with one-pixel regions
    and H·W // steps of them per step; the drops equal Quantus's PixelFlipping curve
    (f(x) minus it; Quantus flips each channel of a pixel as its own feature, which is the same
    when the map is broadcast over channels and its values are distinct)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    x = as_input(x)
    maps, t = as_maps(attributions, x), as_targets(targets, x.shape[0])
    counts = _counts(maps[0].size, positive_int("steps", steps))
    if order == "random":
        ranks = pixel_ranks(np.zeros_like(maps), seed)  # all tied: the seeded order
    else:
        ranks = pixel_ranks(maps, seed, descending=order == "morf")
    return _aopc(model, x, baseline, ranks, counts, t, task, curves, batch_size, precision)


def faithfulness_correlation(model: nn.Module, x: Tensor, attributions: Tensor | np.ndarray, targets: Targets, *,
                             n_subsets: int = 100, subset_size: int | None = None, baseline: Baseline = 0.0,
                             task: str = "multilabel", seed: int = 0,
                             batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "float32") -> np.ndarray:
    """Faithfulness correlation (Bhatt et al. 2020, "Evaluating and aggregating feature-based
    model explanations", eq. 2): the Pearson correlation, over `n_subsets` random pixel sets S
    of `subset_size` pixels (default 2% of the image), between Σ_{p∈S} φ_p and
    f(x) − f(x with S set to `baseline`); higher is better, in [-1, 1].

    The sets are `RandomState(seed).choice(H·W, subset_size, replace=False)`, one call per set:
    Quantus's draws after `np.random.seed(seed)` for a one-channel image (Quantus draws
    channel entries, not pixels, on several channels). NaN, with a RuntimeWarning, where the
    correlation is undefined: a flat map (every set sums alike) or a score no set changes.
    """
    x = as_input(x)
    maps, t = as_maps(attributions, x), as_targets(targets, x.shape[0])
    pixels = maps[0].size
    size = max(1, round(0.02 * pixels)) if subset_size is None else positive_int("subset_size", subset_size)
    if size > pixels:
        raise ValueError(f"subset_size ({size}) cannot exceed the number of pixels ({pixels})")
    rng = image_rng(seed)
    subsets = np.stack([rng.choice(pixels, size, replace=False) for _ in range(positive_int("n_subsets", n_subsets))])
    chosen = np.zeros((len(subsets), pixels), dtype=bool)
    np.put_along_axis(chosen, subsets, True, axis=1)
    masks = torch.from_numpy(chosen.reshape(len(subsets), 1, *maps.shape[1:]))
    fills = fill(x, baseline)

    def copies():
        for i in range(x.shape[0]):
            yield x[i:i + 1], np.array([i])
            for start in range(0, len(masks), batch_size):
                part = masks[start:start + batch_size]
                yield torch.where(part, fills[i:i + 1], x[i:i + 1]), np.full(len(part), i)

    with Scorer(model, x, task, batch_size, precision) as scorer:
        scores = scorer.stream(copies(), t).reshape(x.shape[0], len(subsets) + 1)
    deltas = scores[:, :1] - scores[:, 1:]
    sums = maps.reshape(len(maps), -1) @ chosen.T.astype(np.float64)  # (B, n_subsets)
    return _pearson(sums, deltas)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; NaN (and one RuntimeWarning) for rows where either side is
    constant (its spread is rounding: below 1e-9 of its magnitude)."""
    def centred(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = v - v.mean(axis=1, keepdims=True)
        spread = np.sqrt((c * c).sum(axis=1))
        return c, spread <= 1e-9 * np.sqrt((v * v).sum(axis=1))

    (a, flat_a), (b, flat_b) = centred(a), centred(b)
    undefined = flat_a | flat_b
    if undefined.any():
        warnings.warn(f"faithfulness correlation undefined (constant sums or scores) for {int(undefined.sum())} "
                      "image(s): NaN", RuntimeWarning, stacklevel=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(undefined, np.nan, np.clip(r, -1.0, 1.0))
