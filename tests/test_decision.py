"""One decision rule per task (`medattn.metrics.decision`), and every consumer deciding through
it: the classification metrics, precompute's `predicted` (so Failure cases), the Leaderboard and
Compare's fair set agree on which images a model gets right."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from medattn.data import load_dataset
from medattn.failures import failure_cases
from medattn.inference import load_model
from medattn.jobs.precompute import precompute, targets_for
from medattn.leaderboard import classification_table
from medattn.metrics.classification import classification_report, correct_images
from medattn.metrics.decision import decision_rule
from medattn.models import build, save_checkpoint
from medattn.store import HeatmapCache, Run

# task, probabilities of one image, stated thresholds → predicted classes
RULES = {
    "multiclass: argmax below 0.5": ("multiclass", [0.45, 0.30, 0.25], None, [1, 0, 0]),
    "multiclass: thresholds never apply": ("multiclass", [0.2, 0.41, 0.39], {"a": 0.1}, [0, 1, 0]),
    "multilabel: 0.5 per class": ("multilabel", [0.45, 0.5, 0.9], None, [0, 1, 1]),
    "multilabel: stated thresholds": ("multilabel", [0.45, 0.5, 0.9], {"a": 0.4, "c": 0.95}, [1, 1, 0]),
    "binary: 0.5": ("binary", [0.49], None, [0]),
    "binary: stated": ("binary", [0.49], {"a": 0.3}, [1]),
}


@pytest.mark.parametrize("name", RULES)
def test_decision_rule_table(name):
    task, probs, stated, expected = RULES[name]
    classes = ["a", "b", "c"][: len(probs)]
    rule = decision_rule(task, classes, stated)
    assert rule.decide(np.array([probs])).tolist() == [expected]
    labels = np.array([expected])
    if task == "multiclass":
        labels = labels.argmax(axis=1)
    assert correct_images(labels, np.array([probs]), task, rule.thresholds).tolist() == [True]  # the metrics agree


def test_rule_says_what_it_is_and_refuses_bad_thresholds():
    assert "argmax" in decision_rule("multiclass", ["a", "b"]).describe()
    assert decision_rule("multilabel", ["a", "b"]).describe() == "p ≥ 0.5 per class (multilabel)"
    assert "a 0.3" in decision_rule("multilabel", ["a", "b"], {"a": 0.3}).describe()
    with pytest.raises(ValueError, match="thresholds"):
        decision_rule("multilabel", ["a"], {"a": 1.5})
    with pytest.raises(ValueError, match="task"):
        decision_rule("softmax", ["a"])
    # precompute's targets: labelled ∪ predicted by the rule (the argmax of a multiclass model)
    assert targets_for(np.array([0, 0, 1]), np.array([0.45, 0.3, 0.25]), rule=decision_rule("multiclass", "abc")) == [0, 2]


@pytest.fixture(scope="module")
def multiclass_world(tiny_demo, tmp_path_factory):
    """tiny_demo relabelled as a 3-class multiclass task, and a random-weight 3-class softmax
    model: its probabilities sit near 1/3, so its every decision is an argmax under 0.5. Half the
    test images are labelled with the model's argmax (right), half with another class (wrong)."""
    root = tmp_path_factory.mktemp("multiclass")
    folder = root / "data"
    shutil.copytree(tiny_demo, folder)
    meta = json.loads((folder / "dataset.json").read_text())
    classes = meta["classes"]
    torch.manual_seed(0)
    model = build("resnet18", "linear", len(classes))
    checkpoint = save_checkpoint(model, root / "softmax", classes=classes, task="multiclass", input_size=64)
    images = pd.read_csv(folder / "images.csv", dtype={"image_id": str})
    images[classes] = np.eye(len(classes), dtype=int)[0]  # every image class 0 until the model has spoken
    images.to_csv(folder / "images.csv", index=False)
    (folder / "dataset.json").write_text(json.dumps({**meta, "task": "multiclass"}))
    dataset = load_dataset(folder)
    test = list(dataset.split("test").index)[:6]
    loaded = load_model(checkpoint, "cpu", dataset)
    with torch.no_grad():
        probs = np.concatenate([loaded.probabilities(loaded.model(loaded.to_input(dataset.read_image(i)))).numpy()
                                for i in test])
    top = probs.argmax(axis=1)
    truth = np.where(np.arange(len(test)) % 2 == 0, top, (top + 1) % len(classes))
    images = images.set_index("image_id")
    images.loc[test, classes] = np.eye(len(classes), dtype=int)[truth]
    images.reset_index().to_csv(folder / "images.csv", index=False)
    return load_dataset(folder), checkpoint, test, probs, truth


def test_multiclass_decisions_agree_everywhere(multiclass_world, tmp_path):
    dataset, checkpoint, test, probs, truth = multiclass_world
    assert probs.max() < 0.5  # every decision is an argmax below 0.5
    run = Run(tmp_path / "run")
    rows = precompute(dataset, [checkpoint], ["saliency"], image_ids=test, run=run, cache=HeatmapCache(tmp_path / "c"),
                      device="cpu")
    top = probs.argmax(axis=1)
    for row in rows.itertuples():
        assert row.predicted == int(int(row.target) == top[test.index(row.image_id)])
    cases = failure_cases(rows, "saliency")
    wrong_by_pages = set(cases.loc[cases["category"].isin(["false_positive", "false_negative"]), "image_id"])
    labels = dataset.label_matrix(test)
    correct = correct_images(labels, probs, "multiclass")
    assert correct.tolist() == [t == p for t, p in zip(truth, top)] and correct.any() and not correct.all()
    assert wrong_by_pages == {i for i, ok in zip(test, correct) if not ok}  # Failure cases = the metrics
    report = classification_report(labels, probs, "multiclass", dataset.classes)
    stored = pd.DataFrame(probs, index=test, columns=dataset.classes)
    table = classification_table({"softmax": stored}, dataset.images, dataset.classes, "multiclass")
    assert report["accuracy"] == table.at[0, "accuracy"] == correct.mean()


def test_stated_thresholds_decide_precompute_and_survive_a_class_mapping(tiny_demo, tiny_checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), folder / f"stated{suffix}")
    meta = json.loads((folder / "stated.json").read_text())
    thresholds = {meta["classes"][0]: 0.0, meta["classes"][1]: 1.0}  # always / never predicted
    (folder / "stated.json").write_text(json.dumps({**meta, "thresholds": thresholds}))
    dataset = load_dataset(tiny_demo)
    loaded = load_model(folder / "stated", "cpu", dataset)
    assert loaded.decision(dataset.task).thresholds == (0.0, 1.0, 0.5)
    ids = list(dataset.split("test").index)[:3]
    rows = precompute(dataset, [folder / "stated"], ["gradcam"], image_ids=ids, run=Run(tmp_path / "run"),
                      cache=HeatmapCache(tmp_path / "cache"), device="cpu")
    by_class = rows.groupby("target_class")["predicted"].agg(set)
    assert by_class[meta["classes"][0]] == {1} and by_class.get(meta["classes"][1], {0}) == {0}
    assert set(rows.loc[rows["target_class"] == meta["classes"][0], "image_id"]) == set(ids)  # targets follow
    reordered = tmp_path / "reordered"  # the dataset's classes in another order: the outputs are selected by name
    shutil.copytree(tiny_demo, reordered)
    data_meta = json.loads((reordered / "dataset.json").read_text())
    (reordered / "dataset.json").write_text(json.dumps({**data_meta, "classes": data_meta["classes"][::-1]}))
    mapped = load_model(folder / "stated", "cpu", load_dataset(reordered))
    assert mapped.decision().thresholds == (0.5, 1.0, 0.0)
