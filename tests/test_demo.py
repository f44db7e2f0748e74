"""The embedded demo: deterministic, valid, exact boxes, patient splits, the planted shortcut."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medattn.data import demo, load_dataset

N, SIZE = 60, 224


@pytest.fixture(scope="module")
def recipe() -> dict:
    return demo.load_recipe()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "ds"
    demo.main(["--out", str(out), "--n", str(N), "--size", str(SIZE)])
    return out


@pytest.fixture(scope="module")
def default_plan(recipe) -> list[demo.Case]:
    return demo.plan_cases(recipe, recipe["n_images"], recipe["seed"])


def test_cli_writes_a_valid_dataset_folder(built, recipe):
    ds = load_dataset(built)
    assert ds.classes == ["nodule", "opacity", "effusion"]
    assert ds.task == "multilabel"
    assert len(ds.images) == N and set(ds.images["width"]) == {SIZE} and set(ds.images["height"]) == {SIZE}
    assert set(ds.images["sex"]) <= {"F", "M"} and set(ds.images["view"]) <= {"PA", "AP"}
    assert ds.images["age"].between(*recipe["age_range"]).all()
    assert set(ds.images["marker"]) <= {0, 1}
    assert ds.meta["spurious_marker"]["class"] == "opacity"
    pixels = cv2.imread(str(ds.image_path(ds.images.index[0])), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint8 and pixels.shape == (SIZE, SIZE)
    assert (built / demo.COMPLETE_MARKER).is_file()
    # every label has its boxes and every box its label
    labelled = {(i, k) for i, row in ds.images.iterrows() for k in ds.classes if row[k]}
    assert labelled == set(zip(ds.boxes["image_id"], ds.boxes["label"]))


def test_same_seed_same_files_whatever_the_worker_count(built, tmp_path):
    again = demo.build_demo(tmp_path / "again", n=N, size=SIZE, workers=1)
    for name in ("images.csv", "boxes.csv"):
        assert (again / name).read_bytes() == (built / name).read_bytes()
    for png in sorted((built / "images").glob("*.png")):
        twin = again / "images" / png.name
        assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), cv2.imread(str(twin), cv2.IMREAD_UNCHANGED))
    other = demo.build_demo(tmp_path / "other", n=N, size=SIZE, seed=1, workers=1)
    assert (other / "images.csv").read_bytes() != (built / "images.csv").read_bytes()


def test_boxes_are_tight_around_the_lesion_pixels(built, recipe):
    written = load_dataset(built).boxes
    cases = [c for c in demo.plan_cases(recipe, N, recipe["seed"]) if c.lesions]
    assert {k for c in cases for k in (lesion.kind for lesion in c.lesions)} == set(recipe["classes"])
    for case in cases:
        image, boxes = demo.render_case(case, SIZE)
        clean, _ = demo.render_case(replace(case, lesions=()), SIZE)
        rows = written[written["image_id"] == case.image_id]
        assert sorted(boxes) == sorted(rows[["label", "x", "y", "w", "h"]].itertuples(index=False, name=None))
        added = image.astype(np.int16) - clean.astype(np.int16)
        near = np.zeros(image.shape, bool)
        for label, x, y, w, h in boxes:
            assert 0 <= x and 0 <= y and x + w <= SIZE and y + h <= SIZE
            inside = added[y : y + h, x : x + w]
            assert inside.mean() > 12, (case.image_id, label)
            edges = (inside[:2], inside[-2:], inside[:, :2], inside[:, -2:])
            assert min(edge.max() for edge in edges) >= 3, (case.image_id, label)  # no loose side
            near[max(y - 3, 0) : y + h + 3, max(x - 3, 0) : x + w + 3] = True
        outside = np.abs(added[~near])  # only the faintest fringe of a lesion leaves its box
        assert outside.max() <= 4 and (outside > 2).mean() < 1e-3, case.image_id


def test_lesion_classes_look_different(built):
    boxes = load_dataset(built).boxes
    nodules, opacities, effusions = (boxes[boxes["label"] == k] for k in ("nodule", "opacity", "effusion"))
    assert nodules[["w", "h"]].max().max() <= 0.1 * SIZE
    assert opacities["w"].median() > 2 * nodules["w"].median()
    assert (effusions["y"] + effusions["h"]).min() > SIZE / 2  # fluid sits at the lung bases


def test_default_recipe_meets_the_contract_and_its_recorded_counts(recipe, default_plan):
    assert recipe["n_images"] >= 1500 and recipe["size"] >= 224
    assert recipe["classes"] == ["nodule", "opacity", "effusion"]
    assert demo.summarize(default_plan, recipe["classes"]) == recipe["counts"]
    table = pd.DataFrame({"patient": [c.patient_id for c in default_plan], "split": [c.split for c in default_plan]})
    per_patient = table.groupby("patient")
    assert per_patient["split"].nunique().max() == 1
    assert set(per_patient.size()) == {1, 2}
    fractions = table["split"].value_counts(normalize=True)
    for split, expected in recipe["split_fractions"].items():
        assert abs(fractions[split] - expected) < 0.03
    assert 0.25 < recipe["counts"]["normal"] / recipe["n_images"] < 0.45


def test_marker_tracks_opacity_in_train_only(recipe, default_plan):
    design = recipe["spurious_marker"]

    def rate(split: str, opacity: bool) -> float:
        group = [c for c in default_plan if c.split in split and c.has("opacity") == opacity]
        return np.mean([c.marker is not None for c in group])

    assert abs(rate("train", True) - design["train_rate_pos"]) < 0.05
    assert abs(rate("train", False) - design["train_rate_neg"]) < 0.03
    for opacity in (True, False):
        assert abs(rate("val test", opacity) - design["eval_rate"]) < 0.07


def test_marker_is_drawn_in_its_recorded_box(built, recipe):
    images = load_dataset(built).images
    cases = {c.image_id: c for c in demo.plan_cases(recipe, N, recipe["seed"])}
    marked = images[images["marker"] == 1]
    assert len(marked) > 0 and images.loc[images["marker"] == 0, "marker_x"].isna().all()
    for image_id, row in marked.iterrows():
        image, _ = demo.render_case(cases[image_id], SIZE)
        plain, _ = demo.render_case(replace(cases[image_id], marker=None), SIZE)
        x, y, w, h = (int(row[f"marker_{k}"]) for k in "xywh")
        changed = np.argwhere(np.abs(image.astype(np.int16) - plain) > 3)
        assert changed[:, 0].min() >= y - 3 and changed[:, 0].max() < y + h + 3
        assert changed[:, 1].min() >= x - 3 and changed[:, 1].max() < x + w + 3
        assert image[y : y + h, x : x + w].max() > 220  # a lead marker is bright


def test_ensure_demo_builds_once_then_reuses(tmp_path, monkeypatch, recipe):
    small = {**recipe, "n_images": 6, "size": 64}
    monkeypatch.setattr(demo, "load_recipe", lambda: small)
    monkeypatch.setenv("MEDATTN_DEMO_DIR", str(tmp_path / "demo"))
    path = demo.ensure_demo()
    assert path == tmp_path / "demo" and len(load_dataset(path).images) == 6
    written = (path / "images.csv").stat().st_mtime_ns
    assert demo.ensure_demo() == path and (path / "images.csv").stat().st_mtime_ns == written
    (path / demo.COMPLETE_MARKER).unlink()  # as if the first build had been interrupted
    (path / "images.csv").write_text("half written")
    demo.ensure_demo()
    assert len(load_dataset(path).images) == 6
    monkeypatch.setattr(demo, "load_recipe", lambda: {**small, "n_images": 8})  # a changed recipe rebuilds
    assert len(load_dataset(demo.ensure_demo(path)).images) == 8
    assert json.loads((path / demo.COMPLETE_MARKER).read_text())["n_images"] == 8


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n=0"):
        demo.build_demo(tmp_path, n=0)
    with pytest.raises(ValueError, match="size=32"):
        demo.build_demo(tmp_path, n=2, size=32)
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path), "--n", "-1"])
