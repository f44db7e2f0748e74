"""Metrics we publish: classification, localization against boxes, bootstrap comparisons.

Definitions live in each module's docstring and are tested on hand-built cases.
"""

from medattn.metrics.bootstrap import Interval, PairedDifference, bootstrap_ci, paired_difference
from medattn.metrics.boxes import as_box_array, box_mask, boxes_by_class, point_in_boxes
from medattn.metrics.classification import (
    classification_metrics,
    classification_report,
    correct_images,
    predictions,
    tune_thresholds,
)
from medattn.metrics.fair_set import fair_comparison_set
from medattn.metrics.localization import (
    argmax_point,
    box_auprc,
    hit,
    hit_at,
    hit_rate,
    localization_scores,
    minmax,
    miou,
    pointwise_ap,
    pointwise_map,
    tune_threshold,
)
from medattn.metrics.similarity import spearman, ssim

__all__ = [
    "Interval",
    "PairedDifference",
    "argmax_point",
    "as_box_array",
    "bootstrap_ci",
    "box_auprc",
    "box_mask",
    "boxes_by_class",
    "classification_metrics",
    "classification_report",
    "correct_images",
    "fair_comparison_set",
    "hit",
    "hit_at",
    "hit_rate",
    "localization_scores",
    "minmax",
    "miou",
    "paired_difference",
    "point_in_boxes",
    "pointwise_ap",
    "pointwise_map",
    "predictions",
    "spearman",
    "ssim",
    "tune_threshold",
    "tune_thresholds",
]
