"""One policy for bad files: skipped, counted and named, never fatal to the rest; strict fails.
One corrupt image in a split: precompute, the prediction filter and the fair set finish for the
rest and name it, and the Compare page shows the note."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from medattn import inference, pipeline
from medattn.data import load_dataset
from medattn.data.skips import Skips
from medattn.errors import DatasetError, ImageReadError
from medattn.inference import load_model
from medattn.jobs.precompute import main, precompute
from medattn.store import Run
from medattn.store import HeatmapCache
from tests.app_env import texts


def test_skips_count_name_and_strict():
    skips = Skips("images")
    assert skips.call("a", lambda: 1) == 1 and not len(skips)
    error = ImageReadError("/data/a.png", "not a valid image")

    def fail():
        raise error

    assert skips.call("a", fail) is None
    skips.add("a", "second reason")  # an item is counted once
    skips.add("b", "box outside", "boxes.csv")
    assert skips.names == ["a", "b"] and len(skips) == 2 and "a" in skips
    assert skips.items[0].path == "/data/a.png"
    assert skips.summary() == "2 images skipped: a (cannot read image /data/a.png: not a valid image); b (box outside)"
    strict = Skips(strict=True)
    with pytest.raises(ImageReadError) as caught:
        strict.call("a", fail)
    assert caught.value is error
    with pytest.raises(DatasetError, match="box outside"):
        strict.add("b", "box outside", "boxes.csv")


@pytest.fixture()
def broken(tiny_demo, tmp_path):
    """A copy of the tiny demo with garbage bytes over one test image."""
    copy = Path(shutil.copytree(tiny_demo, tmp_path / "demo"))
    dataset = load_dataset(copy)
    bad = dataset.split("test").index[0]
    (copy / "images" / dataset.images.at[bad, "path"]).write_bytes(b"\x00garbage" * 8)
    return dataset, bad, dataset.image_path(bad)


def test_precompute_finishes_for_the_rest_and_names_the_bad_file(broken, tiny_checkpoint, tmp_path):
    dataset, bad, path = broken
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "heatmaps")
    ids = list(dataset.split("test").index[:4])
    skips = Skips("images")
    frame = precompute(dataset, [tiny_checkpoint], ["saliency"], image_ids=ids, run=run, cache=cache, device="cpu",
                       progress=lambda *_: None, skips=skips)
    others = set(ids) - {bad}
    assert set(frame["image_id"]) == others
    assert skips.names == [bad] and str(path) in skips.items[0].reason
    stored = pd.read_parquet(run.prediction_store.path(tiny_checkpoint.name))
    assert set(stored.index) == others  # nothing stored for the bad file: once fixed, it is read again
    with pytest.raises(ImageReadError, match=path.name):
        precompute(dataset, [tiny_checkpoint], ["saliency"], image_ids=[bad], run=Run(tmp_path / "run2"), cache=cache,
                   device="cpu", progress=lambda *_: None, skips=Skips(strict=True))


def test_precompute_cli_summary_names_the_file_and_strict_fails(broken, tiny_checkpoint, tmp_path, capsys):
    dataset, bad, path = broken
    argv = ["--dataset", str(dataset.root), "--checkpoints", str(tiny_checkpoint), "--methods", "saliency",
            "--device", "cpu", "--images", bad, str(dataset.split("test").index[1])]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert f"1 image skipped: {bad} (cannot read image {path}" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    assert path.name in capsys.readouterr().err


def test_filters_and_fair_set_finish_and_name_the_bad_file(broken, tiny_checkpoint, tmp_path, monkeypatch):
    from medattn.ui.chooser import filtered_ids
    from medattn.ui.sidebar import Selection

    dataset, bad, path = broken
    monkeypatch.setattr(pipeline, "CACHE_DIR", tmp_path / "cache")
    selection = Selection(dataset=dataset, models=[load_model(tiny_checkpoint, "cpu")])
    test_ids = set(dataset.split("test").index)
    for outcome, fair in [("correct (all models)", False), ("wrong (some model)", False), ("any", True)]:
        skips = Skips("images")
        ids = filtered_ids(selection, "test", None, "any", outcome, fair, skips=skips)
        assert bad not in ids and set(ids) <= test_ids - {bad}
        assert skips.names == [bad] and path.name in skips.summary()
    right = filtered_ids(selection, "test", None, "any", "correct (all models)", False, skips=Skips())
    wrong = filtered_ids(selection, "test", None, "any", "wrong (some model)", False, skips=Skips())
    assert set(right) | set(wrong) == test_ids - {bad} and not set(right) & set(wrong)


def test_compare_page_notes_the_unreadable_image(tmp_path_factory, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.app_env import app_env
    from tests.test_app import APP, TIMEOUT

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world = app_env(tmp_path_factory.getbasetemp() / "app_env")
        copy = Path(shutil.copytree(world.dataset, tmp_path / "broken"))
        dataset = load_dataset(copy)
        bad = next(i for i in dataset.split("test").index if dataset.labels(i).any())
        (copy / "images" / dataset.images.at[bad, "path"]).write_bytes(b"not an image")
        (tmp_path / "cache").mkdir()  # fresh predictions (they would read the bad file), cached maps
        (tmp_path / "cache" / "heatmaps").symlink_to(world.cache / "heatmaps")
        monkeypatch.setattr(inference, "CHECKPOINT_DIR", world.checkpoints)
        monkeypatch.setattr(pipeline, "CACHE_DIR", tmp_path / "cache")
        monkeypatch.setenv("MEDATTN_DATASET", str(copy))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state["sb_methods"] = ["saliency"]  # one fast method: the grid is not what is tested
        at.session_state["cmp_fair"] = True
        at.run()
        assert at.toggle(key="cmp_fair").value
        assert not at.exception, [e.value for e in at.exception]
        note = texts(at.warning)
        assert f"1 image skipped: {bad} (cannot read image {copy / 'images'}" in note and "fair set" in note
        chooser = [s for s in at.selectbox if s.key == "image"]
        assert not chooser or bad not in chooser[0].options
    finally:
        torch.set_num_threads(threads)
