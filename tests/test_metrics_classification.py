"""Classification metrics and the fair comparison set against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from medattn.metrics import (
    classification_metrics,
    classification_report,
    correct_images,
    fair_comparison_set,
    tune_thresholds,
)


def test_binary_metrics_by_hand():
    y = [1, 0, 1, 1, 0]
    s = [0.9, 0.4, 0.35, 0.7, 0.6]  # predictions at 0.5: 1 0 0 1 1 -> tp 2, fp 1, fn 1, tn 1
    m = classification_metrics(y, s, "binary")
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["binary_accuracy"] == pytest.approx(3 / 5)
    assert m["precision"][0] == pytest.approx(2 / 3) and m["recall"][0] == pytest.approx(2 / 3)
    assert m["f1_macro"] == pytest.approx(2 / 3)
    assert m["mean_absolute_error"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.3 + 0.6) / 5)
    assert m["roc_auc_mean"] == pytest.approx(4 / 6)
    assert m["confusion"].tolist() == [[[1, 1], [1, 2]]]


Y = np.array([[1, 0], [1, 1], [1, 1], [0, 0]])
S = np.array([[0.8, 0.2], [0.3, 0.4], [0.6, 0.9], [0.1, 0.7]])
# At 0.5: predictions [[1,0],[0,0],[1,1],[0,1]].
# class 0: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8, support 3; class 1: tp 1, fp 1, fn 1 -> 0.5 each, support 2.


def test_multilabel_metrics_by_hand():
    m = classification_metrics(Y, S, "multilabel")
    assert m["accuracy"] == pytest.approx(2 / 4)  # exact match
    assert m["binary_accuracy"] == pytest.approx(5 / 8)
    assert m["f1"].tolist() == pytest.approx([0.8, 0.5])
    assert m["f1_macro"] == pytest.approx(0.65)
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5) / 5)
    assert m["roc_auc"].tolist() == pytest.approx([1.0, 0.75])
    assert m["confusion"].tolist() == [[[1, 0], [1, 2]], [[1, 1], [1, 1]]]
    predicted = (S >= 0.5).astype(int)
    for average in ("macro", "weighted"):
        for name, reference in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            assert m[f"{name}_{average}"] == pytest.approx(reference(Y, predicted, average=average, zero_division=0))


def test_per_class_thresholds_change_the_decisions():
    m = classification_metrics(Y, S, "multilabel", thresholds=[0.5, 0.8])
    assert m["precision"][1] == 1.0 and m["recall"][1] == 0.5
    assert correct_images(Y, S, "multilabel", [0.5, 0.8]).tolist() == [True, False, True, True]


def test_class_with_one_label_value_has_no_auc_and_is_left_out_of_the_mean():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2]])
    report = classification_report(y, s, "multilabel", ["effusion", "mass"])
    assert report["per_class"]["mass"]["roc_auc"] is None
    assert report["roc_auc_mean"] == 1.0
    assert report["per_class"]["mass"]["f1"] == 0.0  # no positive, none predicted: zero_division=0


def test_multiclass_uses_the_argmax_and_a_full_confusion_matrix():
    labels = np.array([0, 1, 2, 2])
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.1, 0.5, 0.4]])
    m = classification_metrics(labels, scores, "multiclass")
    assert m["accuracy"] == 0.5
    assert m["confusion"].tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    one_hot = np.eye(3, dtype=int)[labels]
    assert classification_metrics(one_hot, scores, "multiclass")["f1"].tolist() == m["f1"].tolist()
    assert m["f1_weighted"] == pytest.approx(f1_score(labels, scores.argmax(1), average="weighted"))
    with pytest.raises(ValueError, match="argmax"):
        classification_metrics(labels, scores, "multiclass", thresholds=0.5)


def test_report_is_plain_json():
    report = classification_report(Y, S, "multilabel", ["effusion", "mass"], thresholds=[0.4, 0.6])
    text = json.dumps(report, allow_nan=False)
    back = json.loads(text)
    assert back["per_class"]["effusion"]["threshold"] == 0.4
    assert back["confusion"]["mass"] == [[1, 1], [1, 1]]
    assert back["n_images"] == 4 and back["classes"] == ["effusion", "mass"]
    multiclass = classification_report([0, 1], [[0.9, 0.1], [0.4, 0.6]], "multiclass", ["a", "b"])
    assert multiclass["thresholds"] is None and multiclass["confusion"] == [[1, 0], [0, 1]]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="only 0 and 1"):
        classification_metrics([[2, 0]], [[0.5, 0.5]], "multilabel")
    with pytest.raises(ValueError, match="does not match"):
        classification_metrics(Y, S[:, :1], "multilabel")
    with pytest.raises(ValueError, match="task"):
        classification_metrics(Y, S, "regression")
    with pytest.raises(ValueError, match="one per class"):
        classification_metrics(Y, S, "multilabel", thresholds=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], np.zeros((0, 1)), "binary")
    with pytest.raises(ValueError, match="class names"):
        classification_report(Y, S, "multilabel", ["only-one"])


def test_tune_thresholds_for_f1_and_youden():
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.9]
    # >= 0.35: tp 3, fp 1 -> F1 6/7 (best); >= 0.8: tp 2, fp 0 -> J = 2/3 - 0 (best Youden)
    assert tune_thresholds(y, s, "binary", "f1").tolist() == [0.35]
    assert tune_thresholds(y, s, "binary", "youden").tolist() == [0.8]
    tuned = tune_thresholds(np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.1], [0.2, 0.3]]), "multilabel")
    assert tuned.tolist() == [0.9, 0.5]  # a class with one label value keeps 0.5


def test_fair_comparison_set_keeps_images_every_model_got_right():
    correct = pd.DataFrame(
        {"vgg16": [True, True, False, True], "vgg16_mldam": [True, False, False, True]},
        index=["img1", "img2", "img3", "img4"],
    )
    assert fair_comparison_set(correct).tolist() == ["img1", "img4"]
    series = {
        "a": pd.Series([True, True, True], index=["x", "y", "z"]),
        "b": pd.Series([True, True], index=["z", "x"]),  # "y" missing: not correct for b
    }
    assert fair_comparison_set(series).tolist() == ["x", "z"]
    with pytest.raises(ValueError, match="boolean"):
        fair_comparison_set(pd.DataFrame({"a": [0.3]}, index=["x"]))
