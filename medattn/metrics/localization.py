"""How well a heatmap points at radiologist boxes: AUPRC, pointing game, IoU, pointwise mAP.

Every per-image metric takes a heatmap already in the image frame (the caller resizes) and the
image's boxes (see `medattn.metrics.boxes` for the inclusive pixel convention), min-max
normalises the map (`minmax`) and returns NaN when the image has no box pixel, so a dataset
figure is the mean over images that have boxes (`np.nanmean`, or `hit_rate` for hits).
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

from medattn.metrics.boxes import BoxesLike, as_box_array, box_mask, point_in_boxes

Threshold = Union[str, float]
DEFAULT_THRESHOLD_GRID = np.round(np.arange(0.05, 1.0, 0.05), 2)


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


def _prepare(heatmap: np.ndarray, boxes: BoxesLike, shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The normalised map and the box mask, after checking the map is 2-D and in the image frame."""
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W), got shape {heatmap.shape}")
    if shape is not None and tuple(heatmap.shape) != (int(shape[0]), int(shape[1])):
        raise ValueError(
            f"heatmap shape {heatmap.shape} differs from the image shape {tuple(shape)}; "
            "resize the map to the image frame first"
        )
    return minmax(heatmap), box_mask(boxes, heatmap.shape)


def _auprc(norm: np.ndarray, mask: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(mask.ravel(), norm.ravel())
    return float(auc(recall, precision))


def _hit(norm: np.ndarray, mask: np.ndarray) -> bool:
    return bool(mask.ravel()[np.argmax(norm.ravel())])


def _binarise(norm: np.ndarray, threshold: Threshold) -> np.ndarray:
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be 'otsu' or a number in [0, 1], got {threshold!r}")
        if norm.max() == norm.min():
            return np.zeros(norm.shape, dtype=bool)
        from skimage.filters import threshold_otsu

        threshold = float(threshold_otsu(norm))
    return norm > float(threshold)


def _iou(binary: np.ndarray, mask: np.ndarray) -> float:
    return float(np.logical_and(binary, mask).sum() / np.logical_or(binary, mask).sum())


def box_auprc(heatmap: np.ndarray, boxes: BoxesLike, shape: tuple[int, int] | None = None) -> float:
    """Localization utility: area under the pixel precision-recall curve of the map vs the box mask.

    sklearn's `precision_recall_curve(mask, minmax(heatmap))` then `auc(recall, precision)`
    (Aggarwal et al. 2020). NaN when the mask is empty. A constant map scores
    `(1 + p) / 2`, p the fraction of box pixels: sklearn's single-threshold curve.
    `shape`, when given, is the image's (H, W) and must equal the map's.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    return _auprc(norm, mask) if mask.any() else float("nan")


def hit(heatmap: np.ndarray, boxes: BoxesLike, shape: tuple[int, int] | None = None) -> bool | None:
    """Pointing game (CheXlocalize): whether the map's first argmax pixel lies in a box.

    Ties go to the first maximum in row-major order (`np.argmax` on the flattened map), so a
    constant map points at pixel (0, 0). None when the mask is empty: a hit is undefined there.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    return _hit(norm, mask) if mask.any() else None


def hit_at(point: tuple[int, int], boxes: BoxesLike, shape: tuple[int, int]) -> bool | None:
    """Pointing game at a given pixel (row, col) of an image of `shape`: whether it lies in the
    box mask; None when the mask is empty. `hit` is this at the map's first argmax pixel.

    For callers that know where a map's maximum is better than the map they score does, e.g. a
    map whose top percentile was clipped into a plateau for display (`medattn.pipeline`).
    """
    row, col = int(point[0]), int(point[1])
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(f"point {(row, col)} lies outside the image of shape {tuple(shape)}")
    mask = box_mask(boxes, shape)
    return bool(mask[row, col]) if mask.any() else None


def hit_rate(hits: Iterable[bool | float | None]) -> float:
    """Fraction of hits over the images where a hit is defined (None and NaN skipped); NaN if none."""
    defined = [float(h) for h in hits if h is not None and not (isinstance(h, float) and np.isnan(h))]
    return float(np.mean(defined)) if defined else float("nan")


def miou(
    heatmap: np.ndarray, boxes: BoxesLike, threshold: Threshold = "otsu", shape: tuple[int, int] | None = None
) -> float:
    """IoU of the binarised map with the box mask; the dataset mIoU is its mean over images.

    The min-max normalised map is kept where it is strictly above the threshold: Otsu's
    (`skimage.filters.threshold_otsu` on its 256-bin histogram, the same "above" convention) or a
    fixed number in [0, 1] such as one chosen by `tune_threshold`. A constant map keeps nothing
    and scores 0. NaN when the mask is empty.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    return _iou(_binarise(norm, threshold), mask) if mask.any() else float("nan")


def tune_threshold(
    heatmaps: Sequence[np.ndarray], boxes_list: Sequence[BoxesLike], grid: Sequence[float] = DEFAULT_THRESHOLD_GRID
) -> float:
    """The grid threshold with the highest mean IoU over the images that have boxes (CheXlocalize).

    Tune on a validation split, then pass the result to `miou` on the test split. Ties go to
    the first grid value.
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
    heatmap: np.ndarray, boxes: BoxesLike, shape: tuple[int, int] | None = None, threshold: Threshold = "otsu"
) -> dict[str, float]:
    """All per-image scores at once, for score tables: `auprc`, `hit` (1.0/0.0) and `miou`.

    Same definitions as `box_auprc`, `hit` and `miou`; every value is NaN when the mask is empty.
    """
    norm, mask = _prepare(heatmap, boxes, shape)
    if not mask.any():
        return {"auprc": float("nan"), "hit": float("nan"), "miou": float("nan")}
    return {
        "auprc": _auprc(norm, mask),
        "hit": float(_hit(norm, mask)),
        "miou": _iou(_binarise(norm, threshold), mask),
    }


def argmax_point(class_map: np.ndarray, image_shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (row, col) a class map points at, in the image frame.

    The first argmax cell (row-major) of an (h, w) map; with `image_shape` (H, W) it maps to
    the centre of that cell's H/h × W/w block of the image, as when WILDCAT's class map is
    upsampled to the input (Aggarwal et al. 2020).
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"class map must be 2-D (h, w), got shape {class_map.shape}")
    row, col = np.unravel_index(int(np.argmax(class_map)), class_map.shape)
    if image_shape is None:
        return int(row), int(col)
    height, width = class_map.shape
    return int((row + 0.5) * image_shape[0] / height), int((col + 0.5) * image_shape[1] / width)


def pointwise_ap(
    points: np.ndarray, probabilities: np.ndarray, boxes: Sequence[dict[int, BoxesLike]]
) -> np.ndarray:
    """Per-class average precision of WILDCAT pointwise localization (Durand et al. 2017).

    points: (N, C, 2) integer (row, col) per image and class in the image frame, e.g. from
    `argmax_point(class_maps[i, c], image_shape)`. probabilities: (N, C) class probabilities.
    boxes: per image, `{class index: boxes}` (see `medattn.metrics.boxes.boxes_by_class`).

    For class c, image i is a positive when its point lies in a box of class c (images without
    such a box are negatives) and is ranked by `probabilities[i, c]`;
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
    class_boxes = [{c: as_box_array(b) for c, b in per_image.items()} for per_image in boxes]
    for c in range(n_classes):
        if not any(len(per_image.get(c, ())) for per_image in class_boxes):
            continue
        hits = np.array(
            [point_in_boxes(tuple(points[i, c]), class_boxes[i].get(c)) for i in range(n_images)]
        )
        aps[c] = average_precision_score(hits, probabilities[:, c]) if hits.any() else 0.0
    return aps


def pointwise_map(
    points: np.ndarray, probabilities: np.ndarray, boxes: Sequence[dict[int, BoxesLike]]
) -> float:
    """Mean of `pointwise_ap` over the classes that have boxes; NaN if none has."""
    aps = pointwise_ap(points, probabilities, boxes)
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
