"""CheXlocalize's published segmentation and mIoU protocol (Saporta et al. 2022,
rajpurkarlab/cheXlocalize: heatmap_to_segmentation*.py, tune_heatmap_threshold.py,
tune_probability_threshold.py, eval.py), step for step.

Segmentation of a heatmap (already in the image frame; CheXlocalize upsamples bilinearly):
- `threshold="otsu"`: m − min(m), scaled by 255 / its maximum in float32, cast to uint8
  (truncation), OpenCV's Otsu level (`cv2.threshold(..., 0, max, THRESH_OTSU)`: kept where
  strictly above it), then the segmentation is redrawn from the contours
  (`cv2.findContours`, RETR_TREE, CHAIN_APPROX_SIMPLE): every contour of more than one point is
  drawn as a filled polygon with its outline (PIL ImageDraw), so holes are filled and isolated
  one-point contours dropped.
- a number t: the min-max normalised map strictly above t (no contour step).
A flat (constant) map segments nothing (CheXlocalize's code divides by zero there).

IoU per image (`iou`): "true_positive" mode (the default) leaves out (NaN) images whose
prediction or ground truth is empty; "full" mode leaves out only those without ground truth
(an empty prediction scores 0). The dataset mIoU of a class is the mean over images, NaN left
out. Thresholds are tuned per class on validation images (`tune_threshold`, grid 0.2…0.8 step
0.1, true-positive mode); for the full-dataset mode a per-class probability cutoff is tuned too
(`tune_cutoff`, grid 0…0.9 step 0.1): an image whose probability for the class is below the
cutoff predicts nothing.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from medattn.metrics.masks import GroundTruth, truth_mask

THRESHOLD_GRID = np.round(np.arange(0.2, 0.8 + 1e-9, 0.1), 1)  # 0.2, 0.3, ..., 0.8
CUTOFF_GRID = np.round(np.arange(0.0, 0.9 + 1e-9, 0.1), 1)  # 0.0, 0.1, ..., 0.9
MODES = ("true_positive", "full")


def segment(heatmap: np.ndarray, threshold: str | float = "otsu") -> np.ndarray:
    """Boolean (H, W) segmentation of a 2-D map by CheXlocalize's rule (module docstring)."""
    values = np.asarray(heatmap)
    if values.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("heatmap contains NaN or infinite values")
    if values.max() == values.min():
        return np.zeros(values.shape, dtype=bool)
    if not isinstance(threshold, str):
        low, high = values.min(), values.max()
        return (values.astype(np.float64) - low) / (float(high) - float(low)) > float(threshold)
    if threshold != "otsu":
        raise ValueError(f"threshold must be 'otsu' or a number in [0, 1], got {threshold!r}")
    shifted = values.astype(np.float32) - np.float32(values.min())
    scaled = (np.float32(255) * (shifted / shifted.max())).astype(np.uint8)
    _, binary = cv2.threshold(scaled, 0, int(scaled.max()), cv2.THRESH_OTSU)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    canvas = Image.new("1", (values.shape[1], values.shape[0]))
    draw = ImageDraw.Draw(canvas)
    for contour in contours:
        if len(contour) > 1:
            draw.polygon([(int(p[0][0]), int(p[0][1])) for p in contour], outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def iou(prediction: np.ndarray, truth: np.ndarray, mode: str = "true_positive") -> float:
    """IoU of two boolean masks under CheXlocalize's evaluation mode (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not truth.any() or (mode == "true_positive" and not prediction.any()):
        return float("nan")
    return float(np.logical_and(prediction, truth).sum() / np.logical_or(prediction, truth).sum())


def image_iou(heatmap: np.ndarray, truth: GroundTruth, threshold: str | float = "otsu", mode: str = "true_positive",
              probability: float | None = None, cutoff: float = 0.0) -> float:
    """One image's IoU: `segment(heatmap, threshold)` (nothing when `probability` is below
    `cutoff`) against the ground truth (boxes or a boolean mask)."""
    mask = truth_mask(truth, np.shape(heatmap))
    if probability is not None and probability < cutoff:
        prediction = np.zeros(mask.shape, dtype=bool)
    else:
        prediction = segment(heatmap, threshold)
    return iou(prediction, mask, mode)


def class_miou(heatmaps: Sequence[np.ndarray], truths: Sequence[GroundTruth], threshold: str | float = "otsu",
               mode: str = "true_positive", probabilities: Sequence[float] | None = None,
               cutoff: float = 0.0) -> float:
    """mIoU of one class over images: the mean of `image_iou`, NaN left out; NaN if none counts."""
    if len(heatmaps) != len(truths):
        raise ValueError(f"{len(heatmaps)} heatmaps but {len(truths)} ground truths")
    probs = [None] * len(heatmaps) if probabilities is None else list(probabilities)
    if len(probs) != len(heatmaps):
        raise ValueError(f"{len(heatmaps)} heatmaps but {len(probs)} probabilities")
    scores = np.array([image_iou(h, t, threshold, mode, p, cutoff) for h, t, p in zip(heatmaps, truths, probs)])
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def tune_threshold(heatmaps: Sequence[np.ndarray], truths: Sequence[GroundTruth],
                   grid: Sequence[float] = THRESHOLD_GRID) -> float:
    """The grid threshold with the highest true-positive mIoU on one class's validation images
    (ties: the first). ValueError when no image counts at any threshold."""
    scores = [class_miou(heatmaps, truths, float(t)) for t in grid]
    if not np.isfinite(scores).any():
        raise ValueError("no validation image has both a predicted and a ground-truth segmentation")
    return float(grid[int(np.nanargmax(scores))])


def tune_cutoff(heatmaps: Sequence[np.ndarray], truths: Sequence[GroundTruth], probabilities: Sequence[float],
                threshold: str | float = "otsu", grid: Sequence[float] = CUTOFF_GRID) -> float:
    """The probability cutoff with the highest full-dataset mIoU on one class's validation
    images (ties: the first), for the full-dataset mode."""
    scores = [class_miou(heatmaps, truths, threshold, "full", probabilities, float(c)) for c in grid]
    if not np.isfinite(scores).any():
        raise ValueError("no validation image has a ground-truth segmentation")
    return float(grid[int(np.nanargmax(scores))])
