"""Leaderboard tables: localization with bootstrap CIs, paired differences, classification
metrics, curves and sanity rows, checked against direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medattn import leaderboard as lb
from medattn.metrics.classification import classification_report
from medattn.viz import cascading_figure

CLASSES = ["nodule", "opacity"]


@pytest.fixture
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        for target, name in enumerate(CLASSES):
            boxed = (i + target) % 3 != 0
            for checkpoint, method, shift in (("a", "saliency", 0.0), ("a", "gradcam", 0.2), ("b", "saliency", 0.1)):
                value = float(np.clip(rng.uniform(0.1, 0.6) + shift, 0, 1)) if boxed else np.nan
                rows.append({"image_id": f"im{i}", "checkpoint": checkpoint, "model": f"{checkpoint} model",
                             "method": method, "target": str(target), "target_class": name, "n_boxes": int(boxed),
                             "auprc": value, "hit": float(value > 0.4) if boxed else np.nan,
                             "miou": value / 2 if boxed else np.nan})
    rows.append({"image_id": "im0", "checkpoint": "a", "model": "a model", "method": "sanity:cascading",
                 "target": "0", "target_class": "nodule", "n_boxes": 1, "auprc": 0.5, "hit": 1.0, "miou": 0.2,
                 "spearman": 0.1})
    return pd.DataFrame(rows)


def test_localization_means_and_intervals(scores):
    table = lb.localization_table(scores, n_resamples=200)
    assert set(zip(table["checkpoint"], table["method"])) == {("a", "saliency"), ("a", "gradcam"), ("b", "saliency")}
    for record in table.itertuples():
        rows = scores[(scores["checkpoint"] == record.checkpoint) & (scores["method"] == record.method) & (scores["n_boxes"] > 0)]
        assert record.n == len(rows)
        assert record.auprc == pytest.approx(rows["auprc"].mean())
        assert record.hit == pytest.approx(rows["hit"].mean())
        assert record.auprc_low <= record.auprc <= record.auprc_high
        assert record.auprc_high - record.auprc_low > 0
    nodule = lb.localization_table(scores, target_class="nodule", n_resamples=200)
    assert (nodule["n"] < table["n"]).all()
    few = lb.localization_table(scores, image_ids=["im1", "im2"], n_resamples=50)
    assert (few["n"] <= 4).all()


def test_paired_difference_uses_shared_pairs(scores):
    result = lb.paired_comparison(scores, ("a", "gradcam"), ("a", "saliency"), "auprc", n_resamples=300)
    boxed = scores[scores["n_boxes"] > 0]
    a = boxed[(boxed["checkpoint"] == "a") & (boxed["method"] == "gradcam")]["auprc"].to_numpy()
    b = boxed[(boxed["checkpoint"] == "a") & (boxed["method"] == "saliency")]["auprc"].to_numpy()
    assert result["n"] == len(a) == len(b)
    assert result["difference"] == pytest.approx(a.mean() - b.mean())
    assert result["low"] <= result["difference"] <= result["high"]
    assert result["low"] > 0  # gradcam was built 0.2 better on every pair
    missing = lb.paired_comparison(scores, ("a", "gradcam"), ("nobody", "saliency"))
    assert missing["n"] == 0 and np.isnan(missing["difference"])


def test_classification_table_matches_the_report(tmp_path):
    labels = pd.DataFrame({"nodule": [1, 0, 1, 0, 1, 0], "opacity": [0, 0, 1, 1, 0, 1]},
                          index=[f"im{i}" for i in range(6)])
    probs = pd.DataFrame({"nodule": [0.9, 0.2, 0.4, 0.1, 0.8, 0.6], "opacity": [0.1, 0.3, 0.7, 0.9, 0.2, 0.4]},
                         index=labels.index)
    folder = tmp_path / "predictions"
    folder.mkdir()
    probs.assign(checkpoint_hash="h").to_parquet(folder / "a.parquet")
    stored = lb.stored_predictions(tmp_path)
    assert list(stored) == ["a"]
    table = lb.classification_table({"a": stored["a"][CLASSES]}, labels, CLASSES, "multilabel")
    report = classification_report(labels.to_numpy(), probs.to_numpy(), "multilabel", CLASSES)
    record = table.iloc[0]
    assert record["n"] == 6
    assert record["accuracy"] == pytest.approx(report["accuracy"])
    assert record["roc_auc_mean"] == pytest.approx(report["roc_auc_mean"])
    assert record["auc_opacity"] == pytest.approx(roc_auc_score(labels["opacity"], probs["opacity"]))

    pr, roc = lb.curves({"a": probs}, labels, "nodule")
    assert roc["a"][2] == pytest.approx(roc_auc_score(labels["nodule"], probs["nodule"]))
    assert pr["a"][0].max() == 1.0  # recall reaches 1
    constant = labels.assign(nodule=1)
    assert lb.curves({"a": probs}, constant, "nodule") == ({}, {})


def test_sanity_rows_are_kept_apart_and_summarised(scores):
    regular, sanity = lb.split_sanity(scores)
    assert not regular["method"].str.startswith("sanity:").any() and len(sanity) == 1
    assert "sanity:cascading" not in set(lb.localization_table(scores, n_resamples=50)["method"])
    generic = lb.sanity_table(scores)  # rows without the sanity runner's columns: numeric means
    assert list(generic["method"]) == ["sanity:cascading"] and generic.loc[0, "spearman"] == pytest.approx(0.1)
    assert lb.sanity_table(regular).empty

    cascade = pd.DataFrame([
        {"image_id": image, "checkpoint": "a", "method": f"sanity:cascading:saliency@{step}", "target": "0",
         "check": "cascading", "explainer": "saliency", "step": step, "layer": layer, "other_checkpoint": "",
         "ssim": 1.0 - 0.4 * step + bump, "spearman": 1.0 - 0.3 * step, "seed": 0}
        for image, bump in (("im0", 0.0), ("im1", 0.1)) for step, layer in ((0, "none"), (10, "head"), (2, "stage3"))
    ])
    table = lb.sanity_table(pd.concat([regular, cascade]))
    assert list(table["step"]) == [0, 2, 10]  # ordered by step, not by the method's text
    assert (table["images"] == 2).all()
    assert table.set_index("step").at[2, "ssim"] == pytest.approx(1.0 - 0.8 + 0.05)
    figure = cascading_figure(table)
    assert len(figure.data) == 1 and list(figure.data[0].x) == [0, 2, 10]


def test_split_scope_and_coverage_of_a_stopped_run(scores):
    """Rows of train and test images in one table: each split listed apart, named, and a
    model × method that reached part of a split said to be partial."""
    scores = scores.assign(split=["test" if int(i[2:]) < 20 else "train" for i in scores["image_id"]])
    assert lb.split_choices(scores) == ["test", "train", "all"]
    test = lb.rows_of_split(scores, "test")
    assert set(test["split"]) == {"test"} and len(lb.rows_of_split(scores, "all")) == len(scores)
    stopped = test[~((test["checkpoint"] == "b") & (test["image_id"].isin([f"im{i}" for i in range(5, 20)])))]
    coverage = lb.coverage_table(stopped, [f"im{i}" for i in range(20)]).set_index(["checkpoint", "method"])
    assert coverage.loc[("a", "saliency"), "images"] == 20 and coverage.loc[("a", "saliency"), "complete"]
    assert coverage.loc[("b", "saliency"), "images"] == 5 and not coverage.loc[("b", "saliency"), "complete"]
    assert coverage.loc[("b", "saliency"), "share"] == pytest.approx(0.25)
    assert ("a", "sanity:cascading") not in coverage.index


def test_a_difference_over_one_pair_has_no_p_value(scores):
    one = scores[scores["image_id"] == "im1"]
    result = lb.paired_comparison(one, ("a", "gradcam"), ("a", "saliency"), "auprc", target_class="nodule")
    assert result["n"] == 1 and np.isnan(result["p_value"])


def _with_faithfulness(scores: pd.DataFrame) -> pd.DataFrame:
    """Deletion (lower is better) and sparseness per row, a reference map's rows, NaN where undefined."""
    rng = np.random.default_rng(1)
    rows = scores[~scores["method"].str.startswith("sanity:")].copy()
    shift = rows["method"].map({"saliency": 0.0, "gradcam": -0.2}).fillna(0.0) + (rows["checkpoint"] == "b") * 0.1
    rows["deletion"] = np.clip(rng.uniform(0.3, 0.6, len(rows)) + shift, 0, 1)
    rows["sparseness"] = rng.uniform(0.2, 0.8, len(rows))
    rows.iloc[0, rows.columns.get_loc("sparseness")] = np.nan
    reference = rows[(rows["checkpoint"] == "a") & (rows["method"] == "saliency")].copy()
    reference["method"], reference["deletion"] = "reference:blank", 0.7
    return pd.concat([rows, reference, scores[scores["method"].str.startswith("sanity:")]], ignore_index=True)


def test_faithfulness_table_means_intervals_and_reference_rows(scores):
    frame = _with_faithfulness(scores)
    assert lb.faithfulness_metrics(frame) == ["deletion", "sparseness"]
    table = lb.faithfulness_table(frame, n_resamples=200)
    assert list(table["method"][table["checkpoint"] == "a"]) == ["gradcam", "saliency", "reference:blank"]
    assert table["reference"].tolist() == [False, False, True, False]
    row = table[(table["checkpoint"] == "a") & (table["method"] == "saliency")].iloc[0]
    chosen = frame[(frame["checkpoint"] == "a") & (frame["method"] == "saliency")]
    assert row["n"] == 60  # every pair, with or without boxes
    assert row["deletion"] == pytest.approx(chosen["deletion"].mean())
    assert row["sparseness"] == pytest.approx(chosen["sparseness"].mean())  # NaN left out
    assert row["deletion_low"] < row["deletion"] < row["deletion_high"]
    only = lb.faithfulness_table(frame, ["deletion"], target_class="nodule", n_resamples=200)
    assert (only["n"][~only["reference"]] == 30).all() and "sparseness" not in only
    assert lb.faithfulness_table(scores).empty


def test_rank_agreement_orders_methods_in_each_metric_s_better_direction(scores):
    loc = pd.DataFrame({"checkpoint": ["a"] * 4, "method": ["m1", "m2", "m3", "reference:center"],
                        "auprc": [0.9, 0.5, 0.1, 0.95]})
    faith = pd.DataFrame({"checkpoint": ["a"] * 4, "method": ["m1", "m2", "m3", "reference:center"],
                          "deletion": [0.1, 0.2, 0.3, 0.9], "insertion": [0.1, 0.2, 0.3, 0.9]})
    agree = lb.rank_agreement(loc, faith, "auprc", "deletion").iloc[0]
    assert agree["tau"] == pytest.approx(1.0) and agree["methods"] == 3  # low deletion is good: same order
    assert agree["best_localization"] == agree["best_faithfulness"] == "m1"
    assert lb.rank_agreement(loc, faith, "auprc", "insertion").iloc[0]["tau"] == pytest.approx(-1.0)
    with_refs = lb.rank_agreement(loc, faith, "auprc", "deletion", references=True).iloc[0]
    assert with_refs["methods"] == 4 and with_refs["tau"] < 1
    two = pd.concat([loc, loc.assign(checkpoint="b")]), pd.concat([faith, faith.assign(checkpoint="b")])
    pooled = lb.rank_agreement(*two, "auprc", "deletion")
    assert list(pooled["checkpoint"]) == ["a", "b", "all"] and pooled["methods"].tolist() == [3, 3, 6]
    assert np.isnan(lb.rank_agreement(loc[:2], faith[:2], "auprc", "deletion").iloc[0]["tau"])
