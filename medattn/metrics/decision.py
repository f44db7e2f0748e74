"""One decision rule per task: which classes a model predicts for an image.

- multiclass: the argmax of the class probabilities (softmax); no threshold applies, so a
  3-class model predicts a class at p = 0.45 when that is its largest probability;
- multilabel and binary: probability >= the class's threshold, independently per class: 0.5
  unless the checkpoint states its own (`"thresholds": {"Nodule": 0.3, ...}` in NAME.json, e.g.
  tuned on validation with `classification.tune_thresholds`).
Classification metrics (`classification_report`), the score rows' `predicted` (and so Failure
cases), the Leaderboard, Compare's prediction filters and fair set, and the failure cases a
reader study draws all decide through `DecisionRule.decide`, so no page calls an image a false
negative that the metrics count as correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from medattn.metrics.classification import TASKS, predictions

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class DecisionRule:
    """The rule of one task over `classes`: `thresholds` per class (None for multiclass)."""

    task: str
    classes: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, C) probabilities in `classes` order → (N, C) 0/1 predictions."""
        return predictions(probabilities, self.task, self.thresholds)

    def describe(self) -> str:
        """The rule in a page's words: 'argmax (multiclass)', 'p ≥ 0.5 per class' or the
        stated thresholds."""
        if self.thresholds is None:
            return "argmax of the class probabilities (multiclass)"
        if all(t == DEFAULT_THRESHOLD for t in self.thresholds):
            return f"p ≥ {DEFAULT_THRESHOLD:g} per class ({self.task})"
        stated = ", ".join(f"{c} {t:g}" for c, t in zip(self.classes, self.thresholds))
        return f"p ≥ the checkpoint's threshold per class ({self.task}: {stated})"


def decision_rule(task: str, classes: Sequence[str], stated: Mapping[str, float] | None = None) -> DecisionRule:
    """The rule for `task` over `classes`, with `stated` thresholds by class name (the others
    0.5; ignored for multiclass). ValueError for an unknown task or a threshold outside [0, 1]."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "multiclass":
        return DecisionRule(task, tuple(classes))
    stated = dict(stated or {})
    bad = {c: t for c, t in stated.items() if not (isinstance(t, (int, float)) and 0 <= t <= 1)}
    if bad:
        raise ValueError(f"decision thresholds must be numbers in [0, 1], got {bad}")
    return DecisionRule(task, tuple(classes), tuple(float(stated.get(c, DEFAULT_THRESHOLD)) for c in classes))
