"""Classification metrics for binary, multilabel and multiclass models, as published.

Inputs: `y_true` 0/1 labels ((N,) or (N, 1) for binary, (N, C) for multilabel, (N,) class
indices or (N, C) one-hot for multiclass) and `y_score` probabilities of the same layout
((N, C) for multiclass). Predictions: binary and multilabel predict a class when its
probability is >= its threshold (0.5 unless given or tuned); multiclass predicts the argmax.

Definitions (Gonçalves et al. 2021, Saednia et al. 2020, Wang et al. 2021):
- accuracy: fraction of images whose whole prediction is right (exact match for multilabel).
- binary_accuracy: fraction of (image, class) decisions that are right, i.e. 1 - Hamming
  loss; Saednia et al. report Keras' `binary_accuracy`, which is this at threshold 0.5.
- mean_absolute_error: mean |label - probability| over all (image, class) entries (Keras' MAE,
  Saednia et al.'s "MAE").
- precision, recall, F1 per class (one-vs-rest; 0 where undefined, as sklearn's
  zero_division=0), macro (plain mean over classes) and weighted (by positives per class).
- roc_auc per class; NaN for a class whose labels are all one value, excluded from the mean.
- confusion matrices: per class [[tn, fp], [fn, tp]] for binary and multilabel; one C × C
  matrix (rows true, columns predicted) for multiclass.
"""

from __future__ import annotations

import math
from typing import Any, Sequence, Union

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

TASKS = ("binary", "multilabel", "multiclass")
Thresholds = Union[float, Sequence[float], np.ndarray, None]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def as_indicators(y_true: np.ndarray, y_score: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as aligned (N, C) arrays: int 0/1 labels and float probabilities."""
    _check_task(task)
    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    if len(labels) == 0 or len(scores) == 0:
        raise ValueError("no images to score: y_true and y_score are empty")
    if task == "binary":
        labels, scores = labels.reshape(len(labels), -1), scores.reshape(len(scores), -1)
        if labels.shape[1] != 1 or scores.shape[1] != 1:
            raise ValueError(f"binary labels and scores need one column, got {labels.shape} and {scores.shape}")
    if scores.ndim != 2:
        raise ValueError(f"y_score must be (N, C) for task {task!r}, got shape {scores.shape}")
    if task == "multiclass" and labels.ndim == 1:
        if (labels.min() < 0 or labels.max() >= scores.shape[1] or np.any(labels % 1)):
            raise ValueError(f"multiclass labels must be class indices in 0..{scores.shape[1] - 1}")
        labels = np.eye(scores.shape[1], dtype=int)[labels.astype(int)]
    if labels.shape != scores.shape:
        raise ValueError(f"y_true shape {labels.shape} does not match y_score shape {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if task == "multiclass" and not (labels.sum(axis=1) == 1).all():
        raise ValueError("multiclass y_true rows must each have exactly one positive class")
    if not np.isfinite(scores).all():
        raise ValueError("y_score contains NaN or infinite values")
    return labels.astype(int), scores


def _threshold_vector(thresholds: Thresholds, n_classes: int, task: str) -> np.ndarray | None:
    if task == "multiclass":
        if thresholds is not None:
            raise ValueError("multiclass predictions are the argmax; thresholds do not apply")
        return None
    given = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64)
    if given.ndim > 1 or (given.ndim == 1 and given.size != n_classes):
        raise ValueError(f"need one threshold or one per class ({n_classes}), got {given.tolist()}")
    if not np.isfinite(given).all():
        raise ValueError(f"thresholds must be finite numbers, got {given.tolist()}")
    return np.broadcast_to(given, (n_classes,)).copy()


def predictions(y_score: np.ndarray, task: str, thresholds: Thresholds = None) -> np.ndarray:
    """(N, C) 0/1 predictions: score >= threshold per class, or one-hot argmax for multiclass."""
    _check_task(task)
    scores = np.asarray(y_score, dtype=np.float64)
    scores = scores.reshape(len(scores), -1)
    vector = _threshold_vector(thresholds, scores.shape[1], task)
    if vector is None:
        return np.eye(scores.shape[1], dtype=int)[np.argmax(scores, axis=1)]
    return (scores >= vector).astype(int)


def correct_images(y_true: np.ndarray, y_score: np.ndarray, task: str, thresholds: Thresholds = None) -> np.ndarray:
    """(N,) bool: whether each image's whole prediction is right (the input of the fair set)."""
    labels, scores = as_indicators(y_true, y_score, task)
    return (predictions(scores, task, thresholds) == labels).all(axis=1)


def roc_auc_per_class(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each (N, C) column; NaN where the labels are all one value."""
    return np.array(
        [
            roc_auc_score(labels[:, c], scores[:, c]) if np.unique(labels[:, c]).size == 2 else np.nan
            for c in range(labels.shape[1])
        ]
    )


def tune_thresholds(y_true: np.ndarray, y_score: np.ndarray, task: str, criterion: str = "f1") -> np.ndarray:
    """Per-class thresholds maximising F1 or Youden's J (tpr - fpr) on a validation split.

    Candidates are sklearn's curve thresholds (a score >= threshold is positive, as in
    `predictions`); ties go to the first maximum along the curve. A class whose validation
    labels are all one value keeps 0.5.
    """
    if criterion not in ("f1", "youden"):
        raise ValueError(f"criterion must be 'f1' or 'youden', got {criterion!r}")
    if task == "multiclass":
        raise ValueError("multiclass predictions are the argmax; there are no thresholds to tune")
    labels, scores = as_indicators(y_true, y_score, task)
    tuned = np.full(labels.shape[1], 0.5)
    for c in range(labels.shape[1]):
        y, s = labels[:, c], scores[:, c]
        if np.unique(y).size < 2:
            continue
        if criterion == "f1":
            precision, recall, candidates = precision_recall_curve(y, s)
            with np.errstate(invalid="ignore", divide="ignore"):
                f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
            tuned[c] = candidates[int(np.argmax(f1[: len(candidates)]))]
        else:
            fpr, tpr, candidates = roc_curve(y, s)
            finite = np.isfinite(candidates)
            best = int(np.argmax((tpr - fpr)[finite]))
            tuned[c] = candidates[finite][best]
    return tuned


def _confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    truth, guess = labels.astype(bool), predicted.astype(bool)
    return {
        "tp": (truth & guess).sum(axis=0),
        "fp": (~truth & guess).sum(axis=0),
        "fn": (truth & ~guess).sum(axis=0),
        "tn": (~truth & ~guess).sum(axis=0),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0 where the denominator is 0 (sklearn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _weighted(values: np.ndarray, support: np.ndarray) -> float:
    total = support.sum()
    return float((values * support).sum() / total) if total > 0 else 0.0


def classification_metrics(
    y_true: np.ndarray, y_score: np.ndarray, task: str, thresholds: Thresholds = None
) -> dict[str, Any]:
    """Every metric in this module's docstring as numpy values (see `classification_report`)."""
    labels, scores = as_indicators(y_true, y_score, task)
    vector = _threshold_vector(thresholds, labels.shape[1], task)
    predicted = predictions(scores, task, vector)
    counts = _confusion_counts(labels, predicted)
    precision = _ratio(counts["tp"], counts["tp"] + counts["fp"])
    recall = _ratio(counts["tp"], counts["tp"] + counts["fn"])
    f1 = _ratio(2 * precision * recall, precision + recall)
    support = labels.sum(axis=0)
    auc = roc_auc_per_class(labels, scores)
    if task == "multiclass":
        classes = range(labels.shape[1])
        confusion = confusion_matrix(labels.argmax(axis=1), predicted.argmax(axis=1), labels=classes)
    else:
        # (C, 2, 2): [[tn, fp], [fn, tp]] per class
        confusion = np.stack([counts["tn"], counts["fp"], counts["fn"], counts["tp"]], axis=1).reshape(-1, 2, 2)
    return {
        "n_images": len(labels),
        "thresholds": vector,
        "accuracy": float((predicted == labels).all(axis=1).mean()),
        "binary_accuracy": float((predicted == labels).mean()),
        "mean_absolute_error": float(np.abs(labels - scores).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "roc_auc": auc,
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "precision_weighted": _weighted(precision, support),
        "recall_weighted": _weighted(recall, support),
        "f1_weighted": _weighted(f1, support),
        "roc_auc_mean": float(np.nanmean(auc)) if np.isfinite(auc).any() else math.nan,
        "confusion": confusion,
    }


def to_json_safe(value: Any) -> Any:
    """Plain Python values for json.dump: numpy scalars and arrays unpacked, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def classification_report(
    y_true: np.ndarray, y_score: np.ndarray, task: str, classes: Sequence[str], thresholds: Thresholds = None
) -> dict[str, Any]:
    """The metrics of a model on one split, as a JSON-safe dict for a checkpoint's json.

    Top level: task, classes, n_images, thresholds (None for multiclass), accuracy,
    binary_accuracy, mean_absolute_error, {precision,recall,f1}_{macro,weighted},
    roc_auc_mean. `per_class[name]`: precision, recall, f1, support, roc_auc, threshold.
    `confusion`: per class name [[tn, fp], [fn, tp]], or for multiclass one C × C list.
    Undefined values (NaN) are written as None.
    """
    metrics = classification_metrics(y_true, y_score, task, thresholds)
    classes = [str(name) for name in classes]
    if len(classes) != len(metrics["support"]):
        raise ValueError(f"{len(classes)} class names for {len(metrics['support'])} score columns")
    per_class = {
        name: {
            "precision": metrics["precision"][c],
            "recall": metrics["recall"][c],
            "f1": metrics["f1"][c],
            "support": metrics["support"][c],
            "roc_auc": metrics["roc_auc"][c],
            "threshold": None if metrics["thresholds"] is None else metrics["thresholds"][c],
        }
        for c, name in enumerate(classes)
    }
    confusion = metrics["confusion"] if task == "multiclass" else dict(zip(classes, metrics["confusion"]))
    per_class_keys = ("precision", "recall", "f1", "support", "roc_auc", "confusion")
    summary = {key: value for key, value in metrics.items() if key not in per_class_keys}
    report = {"task": task, "classes": classes, **summary, "per_class": per_class, "confusion": confusion}
    return to_json_safe(report)
