"""Reader-study rules and analyses: order, arms, answer checks, agreement against hand-computed
values, rating/box/tag analyses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from argon2 import PasswordHasher
from statsmodels.stats.inter_rater import cohens_kappa

from medattn.data import load_dataset
from medattn.reader import agreement, analysis
from medattn.reader.arms import WITH_AI, WITHOUT_AI, crossed_order, split_arms
from medattn.reader.blinding import ALPHABET, panel_codes, panel_order
from medattn.reader.errors import InvalidAnswerError
from medattn.reader.order import case_order
from medattn.reader.presets import FAILURE_REGIONS, default_questions, failure_review_cases
from medattn.reader.questions import check_answer, check_questions
from medattn.store.annotations import AnnotationStore

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CASES = [f"case-{i:04d}" for i in range(1, 11)]


def test_case_order_is_seeded_per_reader():
    ana = case_order(CASES, 3, "ana")
    assert sorted(ana) == CASES and ana == case_order(CASES, 3, "ana")
    assert ana != case_order(CASES, 3, "ben") and ana != case_order(CASES, 4, "ana")


def test_split_arms_are_counterbalanced_across_readers():
    first, second = split_arms(CASES, 7, 0), split_arms(CASES, 7, 1)
    assert all(first[c] != second[c] for c in CASES)
    assert sum(arm == WITH_AI for arm in first.values()) == 5
    assert split_arms(CASES, 7, 2) == first and set(first.values()) == {WITH_AI, WITHOUT_AI}


def test_crossed_sessions_alternate_which_arm_comes_first():
    arms = {case: (WITH_AI if i % 2 else WITHOUT_AI) for i, case in enumerate(CASES)}
    for index, first_arm in ((0, WITHOUT_AI), (1, WITH_AI), (2, WITHOUT_AI)):
        order = crossed_order(arms, 7, f"reader{index}", index)
        assert sorted(order) == CASES
        assert [arms[c] for c in order] == [first_arm] * 5 + [WITH_AI if first_arm == WITHOUT_AI else WITHOUT_AI] * 5


def test_panel_codes_are_random_and_unrevealing():
    codes = panel_codes(12)
    assert len(set(codes)) == 12 and all(len(c) == 4 and set(c) <= set(ALPHABET) for c in codes)
    assert panel_codes(12) != codes  # not derived from anything the study shows
    assert sorted(panel_order(codes, 1, "ana", "case-0001")) == sorted(codes)


SCALE = {"id": "q", "type": "scale", "min": 1, "max": 5, "required": True}


@pytest.mark.parametrize("question, value, expected", [
    ({"id": "q", "type": "yes_no"}, False, False),
    (SCALE, 3.0, 3),
    ({**SCALE, "per_panel": True}, {"B": 2, "A": 5}, {"A": 5, "B": 2}),
    ({"id": "q", "type": "choice", "options": ["a", "b"]}, "b", "b"),
    ({"id": "q", "type": "tags", "options": ["hilum", "ribs"]}, [], []),
    ({"id": "q", "type": "rank"}, ["B", "A"], ["B", "A"]),
    ({"id": "q", "type": "boxes"}, [], []),
    ({"id": "q", "type": "boxes"}, [{"x": 1, "y": 2.5, "w": 3, "h": 4}], [{"x": 1.0, "y": 2.5, "w": 3.0, "h": 4.0,
                                                                         "label": ""}]),
])
def test_valid_answers_are_canonicalised(question, value, expected):
    (question,) = check_questions([question])
    assert check_answer(question, value, panels=["A", "B"]) == expected


@pytest.mark.parametrize("question, value, field", [
    ({"id": "q", "type": "yes_no"}, 1, "value"),
    (SCALE, True, "value"),
    (SCALE, 2.5, "value"),
    (SCALE, 0, "outside"),
    ({**SCALE, "per_panel": True}, {"A": 2}, "each panel"),
    ({**SCALE, "per_panel": True}, {"A": 2, "B": 9}, r"value\[B\]"),
    ({"id": "q", "type": "choice", "options": ["a"]}, "z", "not one of"),
    ({"id": "q", "type": "tags", "options": ["hilum"]}, ["hilum", "hilum"], "distinct"),
    ({"id": "q", "type": "tags", "options": ["hilum"]}, ["knee"], "unknown tag"),
    ({"id": "q", "type": "text"}, 5, "expected text"),
    ({"id": "q", "type": "rank"}, ["A", "A"], "once"),
    ({"id": "q", "type": "boxes"}, {"x": 1}, "list of boxes"),
    ({"id": "q", "type": "boxes"}, [{"x": 1, "y": 1, "w": float("nan"), "h": 1}], r"value\[0\]\.w"),
    ({"id": "q", "type": "boxes", "labels": ["nodule"]}, [{"x": 1, "y": 1, "w": 1, "h": 1, "label": "cat"}],
     r"value\[0\]\.label"),
])
def test_invalid_answers_name_question_and_field(question, value, field):
    (question,) = check_questions([question])
    with pytest.raises(InvalidAnswerError, match=field):
        check_answer(question, value, panels=["A", "B"])


def _table(columns: dict) -> pd.DataFrame:
    return pd.DataFrame(columns, index=[f"u{i}" for i in range(len(next(iter(columns.values()))))])


def test_cohen_kappa_matches_hand_computation():
    # p_o = 3/4, p_e = 2/4 * 1/4 + 2/4 * 3/4 = 1/2 → kappa = (3/4 - 1/2) / (1/2) = 1/2
    pairs = agreement.cohen_pairs(_table({"a": [1, 1, 0, 0], "b": [1, 0, 0, 0]}))
    assert pairs.loc[0, "n"] == 4 and pairs.loc[0, "kappa"] == pytest.approx(0.5)
    # quadratic weights (i - j)^2: observed disagreement 1, chance 8/3 + 1 + 4/3 = 5 → 1 - 1/5
    weighted = agreement.cohen_pairs(_table({"a": [1, 2, 3], "b": [1, 3, 3]}), weights="quadratic")
    assert weighted.loc[0, "kappa"] == pytest.approx(0.8)


def test_weighted_kappa_is_on_the_declared_scale_with_unused_levels():
    # a 1-5 scale on which nobody answered 3 or 4: quadratic weights count scale steps, so 1 vs 5
    # is 16 apart, not 4 (positions of the values used). Observed Σ w·O = 1 (one 1-vs-2 unit);
    # chance Σ w·E = (2·(1·2 + 16·1) + (1·1 + 9·1) + (16·1 + 9·2)) / 4 = 20 → kappa = 1 − 1/20.
    a, b = [1, 2, 5, 1], [2, 2, 5, 1]
    answers = pd.DataFrame([{"reader": reader, "case_id": f"case-{i}", "question_id": "q", "value": v}
                            for reader, values in (("a", a), ("b", b)) for i, v in enumerate(values)])
    result = agreement.agreement(answers, SCALE)
    assert result["pairs"].loc[0, "kappa"] == pytest.approx(0.95)  # the positions of {1, 2, 5} gave 0.8
    assert result["categories"] == [1, 2, 3, 4, 5]
    table = np.zeros((5, 5))
    for x, y in zip(a, b):
        table[x - 1, y - 1] += 1
    assert result["pairs"].loc[0, "kappa"] == pytest.approx(cohens_kappa(table, wt="quadratic").kappa)
    linear = agreement.cohen_pairs(agreement.rating_table(answers, SCALE), "linear", [1, 2, 3, 4, 5])
    assert linear.loc[0, "kappa"] == pytest.approx(cohens_kappa(table, wt="linear").kappa)
    rows = agreement.measures(SCALE, result).set_index("measure")
    assert rows.loc["Cohen's kappa (mean over reader pairs)", "level"] == "ordinal: quadratic weights over 1–5"
    assert rows.loc["Krippendorff's alpha", "level"] == "ordinal"
    assert rows.loc["Fleiss' kappa", "level"].startswith("nominal")


def test_fleiss_kappa_and_krippendorff_alpha_match_hand_computation():
    table = _table({"a": [1, 0, 1, 0], "b": [1, 0, 1, 0], "c": [1, 0, 0, 1]})
    # P_i = 1, 1, 1/3, 1/3 → P̄ = 2/3; p_j = 1/2, 1/2 → P_e = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3
    kappa, n = agreement.fleiss(table)
    assert n == 4 and kappa == pytest.approx(1 / 3)
    # coincidences o_00 = o_11 = 4, o_01 = o_10 = 2, n = 12: D_o = 4/12, D_e = 2·6·6/(12·11) → 1 - 11/18
    assert agreement.alpha(table, "nominal") == pytest.approx(7 / 18)


def test_tag_agreement_compares_each_tag_as_chosen_or_not():
    # "hilum" chosen like the Fleiss table above (a, b: 1 0 1 0; c: 1 0 0 1) → kappa 1/3, alpha 7/18
    picks = {"a": [1, 0, 1, 0], "b": [1, 0, 1, 0], "c": [1, 0, 0, 1]}
    answers = pd.DataFrame([{"reader": reader, "case_id": f"case-{i}", "question_id": "regions",
                             "value": ["hilum", "ribs"] if pick else ["ribs"]}
                            for reader, row in picks.items() for i, pick in enumerate(row)])
    question = {"id": "regions", "type": "tags", "options": ["hilum", "ribs", "other"]}
    table = agreement.tag_agreement(answers, question).set_index("tag")
    assert table.loc["hilum", "fleiss_kappa"] == pytest.approx(1 / 3)
    assert table.loc["hilum", "alpha"] == pytest.approx(7 / 18)
    assert table.loc["ribs", "n_chosen"] == 12 and table.loc["other", "n_chosen"] == 0
    assert math.isnan(table.loc["other", "alpha"])  # one value throughout: undefined


def test_agreement_skips_units_not_everyone_answered():
    table = _table({"a": [1, 2, 3, 4], "b": [1, 2, 3, np.nan]})
    pairs = agreement.cohen_pairs(table, "quadratic")
    assert pairs.loc[0, "n"] == 3 and pairs.loc[0, "kappa"] == pytest.approx(1.0)
    assert agreement.alpha(table, "ordinal") == pytest.approx(1.0)
    assert math.isnan(agreement.fleiss(_table({"a": [1, 2]}))[0])


@pytest.fixture
def rated(tmp_path):
    """A heatmap-rating study with two panels and three readers who rate panel order 5/1 or 4/2."""
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    panels = [{"checkpoint": "ckpt/good.safetensors", "method": "gradcam"},
              {"checkpoint": "ckpt/bad", "method": "saliency"}]
    study = store.create_study({"name": "rating", "kind": "heatmap_rating", "dataset": str(tmp_path),
                                "cases": ["img0", "img1", "img2", "img3"], "panels": panels,
                                "questions": default_questions("heatmap_rating")})
    key = store.panel_key(study).set_index("checkpoint")["code"]
    for k, reader in enumerate(("ana", "ben", "cy")):
        store.add_reader(study, reader, "correct horse")
        for i, case in enumerate(store.cases_for(study, reader)):
            good = 5 if (i + k) % 2 else 4
            store.submit(study, reader, case, "rating", {key["ckpt/good.safetensors"]: good, key["ckpt/bad"]: 6 - good})
    return store, study


def test_mean_ratings_per_model_and_method_with_ci(rated):
    store, study = rated
    ratings = analysis.panel_ratings(store, study)
    assert len(ratings) == 3 * 4 * 2 and set(ratings["method"]) == {"gradcam", "saliency"}
    table = analysis.mean_ratings(ratings, n_resamples=200).set_index("method")
    assert table.loc["gradcam", "n_cases"] == 4 and table.loc["gradcam", "n_ratings"] == 12
    assert table.loc["gradcam", "mean"] == pytest.approx(ratings[ratings["method"] == "gradcam"]["rating"].mean())
    assert table.loc["gradcam", "low"] <= table.loc["gradcam", "mean"] <= table.loc["gradcam", "high"]
    assert table.loc["saliency", "high"] < table.loc["gradcam", "low"]
    result = agreement.agreement(store.answers(study), default_questions("heatmap_rating")[0])
    assert result["weights"] == "quadratic" and len(result["pairs"]) == 3 and result["fleiss_n"] == 8


def test_ratings_correlate_with_score_table(rated):
    store, study = rated
    ratings = analysis.panel_ratings(store, study)
    per_map = ratings.groupby(["image_id", "checkpoint", "method"])["rating"].mean().reset_index()
    scores = pd.DataFrame({"image_id": per_map["image_id"],
                           "checkpoint": per_map["checkpoint"].map(analysis.checkpoint_name),
                           "method": per_map["method"], "target_class": "nodule", "n_boxes": 1,
                           "auprc": per_map["rating"] / 10, "hit": (per_map["rating"] >= 3).astype(float)})
    table = analysis.rating_score_correlation(ratings, scores).set_index(["checkpoint", "method"])
    assert table.loc[("all", "all"), "n"] == len(ratings)
    assert table.loc[("all", "all"), "rho_auprc"] > 0.8 and table.loc[("all", "all"), "rho_hit"] > 0.8


def test_failure_review_tags_counted_per_model_and_method(tmp_path):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    failures = pd.DataFrame({"image_id": ["i1", "i1", "i2"], "checkpoint": ["m1", "m2", "m1"],
                             "method": ["gradcam"] * 3, "target_class": ["pneumonia"] * 3,
                             "category": ["false_positive", "mislocalized", "false_negative"]})
    cases = failure_review_cases(failures, categories=("false_positive", "mislocalized"))
    assert cases["cases"] == ["i1", "i1"] and [m["checkpoint"] for m in cases["case_meta"]] == ["m1", "m2"]
    study = store.create_study({"name": "fr", "kind": "failure_review", "dataset": str(tmp_path),
                                "questions": default_questions("failure_review"), **cases})
    store.add_reader(study, "ana", "correct horse")
    for case in store.cases_for(study, "ana"):
        (code,) = store.panels_for(study, "ana", case)
        target = store.panel_target(study, "ana", case, code)
        tags = ["hilum", "clavicle/apex"] if target["checkpoint"] == "m1" else ["hilum"]
        store.submit_case(study, "ana", case, {"regions": tags, "finding_real": False})
    counts = analysis.tag_counts(store, study)
    assert counts.set_index(["checkpoint", "tag"])["count"].to_dict() == {
        ("m1", "clavicle/apex"): 1, ("m1", "hilum"): 1, ("m2", "hilum"): 1}
    assert set(counts["category"]) == {"false_positive", "mislocalized"}
    assert default_questions("failure_review", regions=["a", "b"])[0]["options"] == ["a", "b"]
    assert FAILURE_REGIONS[0] == "hilum" and FAILURE_REGIONS[-1] == "other"


def test_reader_boxes_against_ground_truth_and_as_ground_truth(tiny_demo, tmp_path):
    dataset = load_dataset(tiny_demo)
    with_box = dataset.boxes[dataset.boxes["label"] == "nodule"]["image_id"].unique()[:2].tolist()
    without = next(i for i in dataset.images.index if not dataset.images.at[i, "nodule"])
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    study = store.create_study({"name": "det", "kind": "detection", "dataset": str(tiny_demo),
                                "cases": with_box + [without],
                                "target_class": "nodule", "questions": default_questions("detection")})
    store.add_reader(study, "ana", "correct horse")
    key = store.case_key(study).set_index("image_id")["case_id"]
    exact = dataset.boxes_for(with_box[0], "nodule").iloc[0]
    truth = {"x": float(exact.x), "y": float(exact.y), "w": float(exact.w), "h": float(exact.h)}
    store.submit(study, "ana", key[with_box[0]], "boxes", [truth])
    store.submit(study, "ana", key[with_box[1]], "boxes", [{"x": 0, "y": 0, "w": 2, "h": 2}])
    accuracy = analysis.box_accuracy(store, study).set_index("case_id")
    assert accuracy.loc[key[with_box[0]], "iou"] == pytest.approx(1.0) and accuracy.loc[key[with_box[0]], "hit"]
    assert accuracy.loc[key[with_box[1]], "iou"] == 0 and not accuracy.loc[key[with_box[1]], "hit"]
    boxes = analysis.reader_ground_truth(store, study)
    assert list(boxes.columns) == ["image_id", "label", "x", "y", "w", "h", "reader", "arm"]
    assert set(boxes["image_id"]) == set(with_box) and set(boxes["label"]) == {"nodule"}
    derived = load_dataset(analysis.write_reader_truth(store, study, tmp_path / "reader_truth"))
    assert sorted(derived.images.index) == sorted(with_box + [without]) and derived.classes == dataset.classes
    assert derived.boxes[["x", "y", "w", "h"]].to_numpy().tolist() == boxes[["x", "y", "w", "h"]].to_numpy().tolist()
    assert derived.read_image(with_box[0]).shape == (64, 64)


def test_questions_name_the_finding_readers_look_for():
    from medattn.reader.presets import default_questions

    classes = ["nodule", "opacity", "effusion"]
    labels = [q["label"] for q in default_questions("detection", finding="effusion", classes=classes)]
    assert labels[0] == "Is effusion present?" and "around each effusion" in labels[2]
    anything = default_questions("detection", classes=classes)[0]["label"]
    assert anything == "Is any finding (nodule, opacity, effusion) present?"
    rating = default_questions("heatmap_rating", classes=classes)[0]["label"]
    assert "the image's labelled finding" in rating


def test_rating_and_failure_review_questions_name_the_class_the_case_maps_explain(tiny_demo, tiny_checkpoint, tmp_path):
    """A rating study for 'any finding' asked how well each map points at "the image's labelled
    finding" on images with two or three labels, without saying which one its maps explain (the
    first labelled class); a failure review asked "Is the model's finding real?" without naming
    it. The reader page now names the case's class."""
    from medattn.ui.reader_maps import case_finding
    from medattn.ui.reader_questions import name_finding

    data = load_dataset(tiny_demo)
    labelled = [i for i in data.images.index if data.labels(i).sum() > 0][:2]
    first = {i: data.classes[int(np.flatnonzero(data.labels(i))[0])] for i in labelled}
    store = AnnotationStore(tmp_path / "studies.sqlite")
    panels = [{"checkpoint": str(tiny_checkpoint), "method": "gradcam"}]
    rating = store.create_study({"name": "any", "kind": "heatmap_rating", "dataset": str(tiny_demo), "cases": labelled,
                                 "questions": default_questions("heatmap_rating", None, None, data.classes),
                                 "panels": panels})
    review = store.create_study({"name": "review", "kind": "failure_review", "dataset": str(tiny_demo),
                                 "cases": labelled[:1], "questions": default_questions("failure_review", None, None, data.classes),
                                 "case_meta": [{**panels[0], "target_class": data.classes[-1]}]})
    for study in (rating, review):
        store.add_reader(study, "ana", "long enough")
    for case in store.cases_for(rating, "ana"):
        finding = case_finding(store, rating, "ana", case, store.panels_for(rating, "ana", case))
        assert finding == first[store.case_source(rating, "ana", case)[1]]
        label = name_finding(store.study(rating)["questions"][0], finding)["label"]
        assert f"point at {finding}?" in label and "labelled finding" not in label
    case = store.cases_for(review, "ana")[0]
    finding = case_finding(store, review, "ana", case, store.panels_for(review, "ana", case))
    question = next(q for q in store.study(review)["questions"] if q["id"] == "finding_real")
    assert name_finding(question, finding)["label"] == f"Is the model's finding ({data.classes[-1]}) real?"
    assert case_finding(store, rating, "ana", case, []) is None and name_finding(question, None) == question
