"""load_dataset validates the folder contract and reports every problem with file, row, field."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from medattn.data import load_dataset, write_dataset
from medattn.errors import DatasetError

CLASSES = ["nodule", "opacity"]


def _make(tmp_path, images=None, boxes=None, task="multilabel", classes=CLASSES):
    (tmp_path / "images").mkdir(exist_ok=True)
    if images is None:
        images = pd.DataFrame(
            {
                "image_id": ["a", "b", "c"],
                "path": ["a.png", "b.png", "c.png"],
                "split": ["train", "val", "test"],
                "patient_id": ["p1", "p2", "p3"],
                "width": [40, 40, 40],
                "height": [30, 30, 30],
                "nodule": [1, 0, 0],
                "opacity": [0, 1, 0],
            }
        )
    for rel in images["path"]:
        cv2.imwrite(str(tmp_path / "images" / rel), np.zeros((30, 40), np.uint8))
    if boxes is None:
        boxes = pd.DataFrame({"image_id": ["a"], "label": ["nodule"], "x": [1.0], "y": [2.0], "w": [5.0], "h": [6.0]})
    return write_dataset(tmp_path, name="t", classes=classes, task=task, images=images, boxes=boxes)


def _problems(path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_valid_roundtrip(tmp_path):
    ds = load_dataset(_make(tmp_path))
    assert ds.classes == CLASSES and ds.task == "multilabel"
    assert list(ds.images.index) == ["a", "b", "c"]
    np.testing.assert_array_equal(ds.labels("b"), [0, 1])
    assert ds.read_image("a").shape == (30, 40)
    assert ds.boxes_for("a").iloc[0][["x", "y", "w", "h"]].tolist() == [1, 2, 5, 6]
    assert len(ds.split("test")) == 1
    assert len(ds.hash) == 16


def test_every_problem_reported_with_row_and_field(tmp_path):
    images = pd.DataFrame(
        {
            "image_id": ["a", "a", "c", "d"],
            "path": ["a.png", "b.png", "c.png", "d.png"],
            "split": ["train", "val", "holdout", "test"],
            "patient_id": ["p1", "p2", "p3", "p1"],
            "width": [40, 40, -1, 40],
            "height": [30, 30, 30, 30],
            "nodule": [1, 0, 2, 0],
            "opacity": [0, 1, 0, 0],
        }
    )
    boxes = pd.DataFrame(
        {
            "image_id": ["a", "a", "zzz", "d", "d"],
            "label": ["nodule", "tumour", "nodule", "nodule", "opacity"],
            "x": [1, 1, 1, 30, 1],
            "y": [2, 2, 2, 2, 2],
            "w": [5, 5, 5, 20, 0],
            "h": [6, 6, 6, 6, 6],
        }
    )
    path = _make(tmp_path, images, boxes)
    (tmp_path / "images" / "d.png").unlink()
    problems = "\n".join(_problems(path))
    expected = [
        "images.csv line 3 (image_id=a): duplicate image_id",
        "images.csv line 4 (image_id=c): field 'split' is 'holdout'",
        "images.csv line 4 (image_id=c): field 'width' must be a positive number",
        "images.csv line 4 (image_id=c): label column 'nodule' must be 0 or 1, got 2",
        "patient p1 appears in more than one split: line 2 (train), line 5 (test)",
        "images.csv line 5 (image_id=d): image file",
        "boxes.csv line 3 (image_id=a): field 'label' is 'tumour'",
        "boxes.csv line 4 (image_id=zzz): image_id is not in images.csv",
        "boxes.csv line 5 (image_id=d): box x=30, y=2, w=20, h=6 lies outside the 40x30 image",
        "boxes.csv line 6 (image_id=d): box has non-positive size w=0, h=6",
    ]
    for line in expected:
        assert line in problems, f"missing: {line}\n--- got:\n{problems}"


def test_box_touching_border_is_fine(tmp_path):
    boxes = pd.DataFrame({"image_id": ["a"], "label": ["nodule"], "x": [0], "y": [0], "w": [40.5], "h": [30]})
    assert len(load_dataset(_make(tmp_path, boxes=boxes)).boxes) == 1


def test_multiclass_needs_one_label(tmp_path):
    images = pd.DataFrame(
        {"image_id": ["a", "b"], "path": ["a.png", "b.png"], "split": ["train", "test"],
         "patient_id": ["p1", "p2"], "width": [40, 40], "height": [30, 30],
         "nodule": [1, 1], "opacity": [0, 1]}
    )
    problems = _problems(_make(tmp_path, images, task="multiclass"))
    assert any("line 3 (image_id=b): a multiclass image needs exactly one label, has 2" in p for p in problems)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "dataset.json: missing"),
        ("{not json", "not valid JSON"),
        ('{"name": "x", "classes": [], "task": "multilabel"}', "'classes' must be a non-empty list"),
        ('{"name": "x", "classes": ["a"], "task": "segmentation"}', "field 'task' is 'segmentation'"),
        ('{"classes": ["a", "a"], "task": "binary"}', "field 'name' is missing"),
        ('{"name": "x", "classes": ["a", "b"], "task": "binary"}', "exactly one class"),
    ],
)
def test_bad_dataset_json(tmp_path, content, message):
    path = _make(tmp_path)
    if content is None:
        (path / "dataset.json").unlink()
    else:
        (path / "dataset.json").write_text(content)
    assert any(message in p for p in _problems(path))


def test_missing_columns_and_files(tmp_path):
    path = _make(tmp_path)
    frame = pd.read_csv(path / "images.csv").drop(columns=["split", "opacity"])
    frame.to_csv(path / "images.csv", index=False)
    (path / "boxes.csv").unlink()
    problems = _problems(path)
    assert any("images.csv: column(s) split missing" in p for p in problems)
    assert any("boxes.csv: missing" in p for p in problems)


def test_not_a_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "nope")


def test_write_is_atomic_and_preserves_metadata(tmp_path):
    path = _make(tmp_path)
    meta = json.loads((path / "dataset.json").read_text())
    assert meta["image_root"] == "images" and not list(path.glob("*.tmp"))
