"""Failure cases from a score table: categories, one row per decision, filters and sort orders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medattn.failures import CATEGORIES, failure_cases, failure_counts, sort_failures


def row(image, checkpoint, method, target, label, probability, auprc=np.nan, hit=np.nan, n_boxes=0):
    return {"image_id": image, "checkpoint": checkpoint, "model": f"model of {checkpoint}", "method": method,
            "target": str(target), "target_class": ["nodule", "opacity"][target], "label": label,
            "probability": probability, "predicted": int(probability >= 0.5), "auprc": auprc, "hit": hit,
            "miou": 0.1, "n_boxes": n_boxes, "split": "test"}


@pytest.fixture
def scores() -> pd.DataFrame:
    rows = []
    for method in ("saliency", "gradcam"):
        rows += [
            row("fp", "a", method, 1, 0, 0.9),                                       # false positive
            row("fn", "a", method, 0, 1, 0.25, 0.7, 1, 1),                           # false negative
            row("miss", "a", method, 0, 1, 0.8, 0.9, 0, 1),                          # argmax outside
            row("good", "a", method, 0, 1, 0.7, 0.8, 1, 1),                          # well localized
            row("tn", "a", method, 1, 0, 0.1),                                       # true negative
            row("fp", "b", method, 1, 0, 0.6),                                       # other model
        ]
    rows.append(row("low", "a", "saliency", 0, 1, 0.95, 0.1, 1, 1))                 # AUPRC under threshold
    rows.append(row("low", "a", "gradcam", 0, 1, 0.95, 0.6, 1, 1))
    rows.append(row("fp", "a", "sanity:cascading", 1, 0, 0.9))                       # never a failure row
    return pd.DataFrame(rows)


def test_categories_and_one_row_per_decision(scores):
    cases = failure_cases(scores, "saliency", auprc_threshold=0.3, checkpoint="a")
    found = {(r.image_id, r.category) for r in cases.itertuples()}
    assert found == {("fp", "false_positive"), ("fn", "false_negative"), ("miss", "mislocalized"),
                     ("low", "mislocalized")}
    assert len(cases) == 4  # the fp/fn rows of both methods and the sanity row collapse to one each
    assert set(cases["category"]) <= set(CATEGORIES)
    low = cases.set_index("image_id").loc["low"]
    assert low["auprc"] == pytest.approx(0.1) and "AUPRC 0.10 < 0.30" in low["reason"]
    assert "argmax outside every box" in cases.set_index("image_id").at["miss", "reason"]


def test_mislocalization_depends_on_the_method_and_threshold(scores):
    by_gradcam = failure_cases(scores, "gradcam", auprc_threshold=0.3, checkpoint="a")
    assert "low" not in set(by_gradcam["image_id"])  # gradcam's AUPRC 0.6 is above the threshold
    strict = failure_cases(scores, "gradcam", auprc_threshold=0.85, checkpoint="a")
    assert {"low", "good", "miss"} <= set(strict.loc[strict["category"] == "mislocalized", "image_id"])


def test_filters_by_checkpoint_and_class(scores):
    everything = failure_cases(scores, "saliency")
    assert set(everything["checkpoint"]) == {"a", "b"}
    opacity = failure_cases(scores, "saliency", target_class="opacity")
    assert set(opacity["target_class"]) == {"opacity"} and set(opacity["category"]) == {"false_positive"}
    assert failure_cases(scores, "saliency", checkpoint="nobody").empty


def test_sort_orders(scores):
    cases = failure_cases(scores, "saliency", checkpoint="a")
    by_confidence = sort_failures(cases, "confidence")
    # confidence: p for false positives and mislocalized, 1 - p for false negatives
    assert list(by_confidence["image_id"]) == ["low", "fp", "miss", "fn"]
    by_score = sort_failures(cases, "score")
    assert list(by_score["image_id"][:3]) == ["low", "fn", "miss"]  # lowest AUPRC first
    assert by_score["auprc"].iloc[-1] != by_score["auprc"].iloc[-1]  # the false positive has none: last
    with pytest.raises(ValueError, match="sort by"):
        sort_failures(cases, "name")


def test_counts_per_checkpoint_class_and_category(scores):
    counts = failure_counts(failure_cases(scores, "saliency"))
    assert list(counts.columns) == list(CATEGORIES)
    assert counts.loc[("a", "nodule"), "mislocalized"] == 2
    assert counts.loc[("b", "opacity"), "false_positive"] == 1


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="predicted"):
        failure_cases(pd.DataFrame(columns=["image_id", "checkpoint", "method"]), "saliency")
