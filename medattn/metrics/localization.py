"""How well a heatmap points at the ground truth: AUPRC, pointing game, IoU, pointwise mAP.

Every per-image metric takes a heatmap already in the image frame (the caller resizes) and the
image's ground truth: boxes (see `medattn.metrics.boxes` for the inclusive pixel convention) or
a boolean (H, W) segmentation mask (`medattn.metrics.masks`, e.g. a decoded SIIM RLE). It
min-max normalises the map (`minmax`) and returns NaN when the ground truth has no pixel, so a
dataset figure is the mean over images that have one (`np.nanmean`, or `hit_rate` for hits).

Flat (constant) maps rank nothing and point nowhere, so every metric scores them as chance or
miss rather than by an accident of tie-breaking: AUPRC = p, the ground truth's share of the
image (the precision of a random ranking); no hit; IoU of an empty segmentation (0); no
pointwise point (`NO_POINT`). `is_flat` tells them apart and score rows flag them `degenerate`.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

from medattn.metrics import chexlocalize
from medattn.metrics.boxes import as_box_array, point_in_boxes
from medattn.metrics.masks import GroundTruth, is_mask, truth_mask

Threshold = Union[str, float]
DEFAULT_THRESHOLD_GRID = np.round(np.arange(0.05, 1.0, 0.05), 2)
NO_POINT = (-1, -1)  # where a flat class map points: in no box


def minmax(heatmap: np.ndarray) -> np.ndarray:
    """The map rescaled to [0, 1] as float64; a constant map becomes all zeros.

    Raises ValueError on NaN or infinite values, which no explainer should produce.
    """
    values = np.asarray(heatmap, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("heatmap contains NaN or infinite values")
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def is_flat(heatmap: np.ndarray) -> bool:
    """Whether the map is constant (ranks nothing): the `degenerate` flag of score rows."""
    values = np.asarray(heatmap)
    return bool(values.size == 0 or values.max() == values.min())


def _prepare(heatmap: np.ndarray, truth: GroundTruth, shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The normalised map and the ground-truth mask, after checking the map is 2-D and in the
    image frame."""
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W), got shape {heatmap.shape}")
    if shape is not None and tuple(heatmap.shape) != (int(shape[0]), int(shape[1])):
        raise ValueError(
            f"heatmap shape {heatmap.shape} differs from the image shape {tuple(shape)}; "
            "resize the map to the image frame first"
        )
    return minmax(heatmap), truth_mask(truth, heatmap.shape)


def _auprc(norm: np.ndarray, mask: np.ndarray) -> float:
    if is_flat(norm):
        return float(mask.mean())
    precision, recall, _ = precision_recall_curve(mask.ravel(), norm.ravel())
    return float(auc(recall, precision))


def _hit(norm: np.ndarray, mask: np.ndarray) -> bool:
    return False if is_flat(norm) else bool(mask.ravel()[np.argmax(norm.ravel())])


def _binarise(norm: np.ndarray, threshold: Threshold) -> np.ndarray:
    return chexlocalize.segment(norm, threshold)


def _iou(binary: np.ndarray, mask: np.ndarray) -> float:
    return float(np.logical_and(binary, mask).sum() / np.logical_or(binary, mask).sum())


def box_auprc(heatmap: np.ndarray, boxes: GroundTruth, shape: tuple[int, int] | None = None) -> float:
    """Localization utility: area under the pixel precision-recall curve of the map vs the
    ground-truth mask (boxes or a boolean mask).

    sklearn's `precision_recall_curve(mask, minmax(heatmap))` then `auc(recall, precision)`
    (Aggarwal et al. 2020; Arun et al. 2021). NaN when the mask is empty. A flat map scores
    chance, p = the mask's share of the image (sklearn's single-threshold curve would give
    (1 + p) / 2). `shape`, when given, is the image's (H, W) and must equal the map's.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    return _auprc(norm, mask) if mask.any() else float("nan")


def hit(heatmap: np.ndarray, boxes: GroundTruth, shape: tuple[int, int] | None = None) -> bool | None:
    """Pointing game (CheXlocalize): whether the map's first argmax pixel lies in the ground truth.

    Ties go to the first maximum in row-major order (`np.argmax` on the flattened map); a flat
    map points nowhere and is never a hit. None when the mask is empty: a hit is undefined there.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    return _hit(norm, mask) if mask.any() else None


def hit_at(point: tuple[int, int] | None, boxes: GroundTruth, shape: tuple[int, int]) -> bool | None:
    """Pointing game at a given pixel (row, col) of an image of `shape`: whether it lies in the
    ground truth; None when the mask is empty. `hit` is this at the map's first argmax pixel;
    `point=None` (a flat map points nowhere) is a miss.

    For callers that know where a map's maximum is better than the map they score does, e.g. a
    map whose top percentile was clipped into a plateau for display (`medattn.pipeline`).
    """
    mask = truth_mask(boxes, shape)
    if not mask.any():
        return None
    if point is None:
        return False
    row, col = int(point[0]), int(point[1])
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(f"point {(row, col)} lies outside the image of shape {tuple(shape)}")
    return bool(mask[row, col])


def hit_rate(hits: Iterable[bool | float | None]) -> float:
    """Fraction of hits over the images where a hit is defined (None and NaN skipped); NaN if none."""
    defined = [float(h) for h in hits if h is not None and not (isinstance(h, float) and np.isnan(h))]
    return float(np.mean(defined)) if defined else float("nan")


def miou(
    heatmap: np.ndarray, boxes: GroundTruth, threshold: Threshold = "otsu", shape: tuple[int, int] | None = None
) -> float:
    """IoU of the segmented map with the ground truth; the dataset mIoU is its mean over images.

    Segmentation by CheXlocalize's published rule (`medattn.metrics.chexlocalize.segment`):
    "otsu" is their uint8 OpenCV Otsu level with the segmentation redrawn from filled contours;
    a number t in [0, 1] (e.g. from `tune_threshold`) keeps the min-max normalised map strictly
    above t. A flat map segments nothing and scores 0. NaN when the mask is empty. Every image
    with ground truth counts (CheXlocalize's "full" mode without a probability cutoff); their
    true-positive-only and cutoff modes are in `medattn.metrics.chexlocalize`.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    return _iou(_binarise(norm, threshold), mask) if mask.any() else float("nan")


def tune_threshold(
    heatmaps: Sequence[np.ndarray], boxes_list: Sequence[GroundTruth], grid: Sequence[float] = DEFAULT_THRESHOLD_GRID
) -> float:
    """The grid threshold with the highest mean IoU (`miou`) over the images that have ground truth.

    Tune on a validation split, then pass the result to `miou` on the test split. Ties go to
    the first grid value. medattn's finer grid (0.05…0.95) over every image; CheXlocalize's
    published tuning (0.2…0.8, true positives only) is `medattn.metrics.chexlocalize.tune_threshold`.
    """
    if len(heatmaps) != len(boxes_list):
        raise ValueError(f"{len(heatmaps)} heatmaps but {len(boxes_list)} box lists")
    grid = [float(t) for t in grid]
    if not grid:
        raise ValueError("the threshold grid is empty")
    totals, counted = np.zeros(len(grid)), 0
    for heatmap, boxes in zip(heatmaps, boxes_list):
        norm, mask = _prepare(heatmap, boxes, None)
        if mask.any():
            totals += [_iou(norm > t, mask) for t in grid]
            counted += 1
    if counted == 0:
        raise ValueError("no image has a box pixel; cannot tune a threshold")
    return grid[int(np.argmax(totals))]


def localization_scores(
    heatmap: np.ndarray, boxes: GroundTruth, shape: tuple[int, int] | None = None, threshold: Threshold = "otsu",
    point: tuple[int, int] | None | str = "argmax",
) -> dict[str, float | bool]:
    """All per-image scores at once, for score tables: `auprc`, `hit` (1.0/0.0), `miou` and
    `degenerate` (the map is flat).

    Same definitions as `box_auprc`, `hit` and `miou`; the scores are NaN when the mask is empty.
    `point`: where the pointing game is played, the map's first argmax by default, or a given
    (row, col) as in `hit_at` (None: nowhere).
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    flat = is_flat(norm)
    if not mask.any():
        return {"auprc": float("nan"), "hit": float("nan"), "miou": float("nan"), "degenerate": flat}
    pointed = _hit(norm, mask) if point == "argmax" else hit_at(None if flat else point, mask, mask.shape)
    return {
        "auprc": _auprc(norm, mask),
        "hit": float(pointed),
        "miou": _iou(_binarise(norm, threshold), mask),
        "degenerate": flat,
    }


def argmax_point(class_map: np.ndarray, image_shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (row, col) a class map points at, in the image frame.

    The first argmax cell (row-major) of an (h, w) map; with `image_shape` (H, W) it maps to
    the centre of that cell's H/h × W/w block of the image, as when WILDCAT's class map is
    upsampled to the input (Aggarwal et al. 2020). A flat map points nowhere: `NO_POINT`,
    which lies in no box.
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"class map must be 2-D (h, w), got shape {class_map.shape}")
    if is_flat(class_map):
        return NO_POINT
    row, col = np.unravel_index(int(np.argmax(class_map)), class_map.shape)
    if image_shape is None:
        return int(row), int(col)
    height, width = class_map.shape
    return int((row + 0.5) * image_shape[0] / height), int((col + 0.5) * image_shape[1] / width)


def _has_truth(truth: GroundTruth) -> bool:
    return bool(truth.any()) if is_mask(truth) else len(as_box_array(truth)) > 0


def _point_in(point: tuple[int, int], truth: GroundTruth) -> bool:
    """Whether a point lies in the ground truth (boxes, or a boolean mask of the image frame)."""
    if not is_mask(truth):
        return point_in_boxes(point, truth)
    row, col = int(point[0]), int(point[1])
    return 0 <= row < truth.shape[0] and 0 <= col < truth.shape[1] and bool(truth[row, col])


def pointwise_ap(
    points: np.ndarray, probabilities: np.ndarray, boxes: Sequence[dict[int, GroundTruth]]
) -> np.ndarray:
    """Per-class average precision of WILDCAT pointwise localization (Durand et al. 2017).

    points: (N, C, 2) integer (row, col) per image and class in the image frame, e.g. from
    `argmax_point(class_maps[i, c], image_shape)`. probabilities: (N, C) class probabilities.
    boxes: per image, `{class index: boxes}` (see `medattn.metrics.boxes.boxes_by_class`) or
    `{class index: boolean (H, W) mask}` where the ground truth is a segmentation.

    For class c, image i is a positive when its point lies in a box of class c (images without
    such a box are negatives; so is a `NO_POINT`) and is ranked by `probabilities[i, c]`;
    AP = `sklearn.metrics.average_precision_score`. A class no image has a box of is NaN (not
    evaluable); a class with boxes but no hit scores 0.0 rather than being skipped, so a model
    that never points right is not rewarded.
    """
    points = np.asarray(points)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (N, C), got shape {probabilities.shape}")
    n_images, n_classes = probabilities.shape
    if points.shape != (n_images, n_classes, 2):
        raise ValueError(f"points must be (N, C, 2) = {(n_images, n_classes, 2)}, got {points.shape}")
    if len(boxes) != n_images:
        raise ValueError(f"{n_images} images of points but {len(boxes)} box entries")
    aps = np.full(n_classes, np.nan)
    for c in range(n_classes):
        if not any(_has_truth(per_image.get(c)) for per_image in boxes):
            continue
        hits = np.array([_point_in(tuple(points[i, c]), boxes[i].get(c)) for i in range(n_images)])
        aps[c] = average_precision_score(hits, probabilities[:, c]) if hits.any() else 0.0
    return aps


def pointwise_map(
    points: np.ndarray, probabilities: np.ndarray, boxes: Sequence[dict[int, GroundTruth]]
) -> float:
    """Mean of `pointwise_ap` over the classes that have boxes; NaN if none has."""
    aps = pointwise_ap(points, probabilities, boxes)
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
