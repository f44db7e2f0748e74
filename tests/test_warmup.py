"""The server's start-up work (medattn.ui.warmup) leaves in the process's caches exactly what a
session opened without a link loads first, so that session finds them loaded; PDA's reference
pool is read once per preprocessing and image contents."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from medattn import inference, pipeline
from medattn.data.dataset import load_dataset
from medattn.inference import load_model
from medattn.ui import loaders, sidebar, warmup


@pytest.fixture
def opening(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    """A server whose opening dataset is the tiny demo and whose checkpoint folders hold only
    the tiny WILDCAT checkpoint (the sidebar's default head)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for part in tiny_checkpoint.parent.glob(f"{tiny_checkpoint.name}.*"):
        shutil.copy(part, folder / part.name)
    monkeypatch.setattr(inference, "MODELS_DIR", tmp_path / "no_user_models")
    monkeypatch.setattr(inference, "CHECKPOINT_DIR", folder)
    monkeypatch.setenv("MEDATTN_DATASET", str(tiny_demo))
    return tiny_demo, folder / tiny_checkpoint.name


def test_warm_loads_what_a_new_session_opens_with(opening):
    dataset, checkpoint = opening
    done = warmup.warm()
    assert done["models"] == [checkpoint.name]
    assert done["dataset"] == load_dataset(dataset).name
    # the session's own calls (sidebar: the dataset path, each checkpoint on device "auto") hit the cache
    assert loaders.model(checkpoint, "auto") is loaders.model(checkpoint, "auto")
    assert sidebar.opening_checkpoints(loaders.dataset(dataset)) == [checkpoint]


def test_warmup_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("MEDATTN_WARMUP", "0")
    assert not warmup.enabled()
    monkeypatch.setenv("MEDATTN_WARMUP", "1")
    assert warmup.enabled()


def test_reference_pool_is_read_once_and_follows_the_images(tiny_demo, tiny_checkpoint, tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(tiny_demo, folder)
    data = load_dataset(folder)
    loaded = load_model(tiny_checkpoint, "cpu")
    first = pipeline.reference_images(loaded, data)
    ids = sorted(data.split("train").index)[:16]
    expected = torch.cat([loaded.to_input(data.read_image(i)).cpu() for i in ids])
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    first.zero_()  # a caller changing its copy changes nobody else's
    torch.testing.assert_close(pipeline.reference_images(loaded, data), expected, rtol=0, atol=0)

    path = data.image_path(ids[0])
    pixels = np.asarray(Image.open(path))
    Image.fromarray(255 - pixels).save(path)  # new contents: a new pool
    changed = pipeline.reference_images(loaded, data)
    assert not torch.equal(changed[0], expected[0])
    torch.testing.assert_close(changed[1:], expected[1:], rtol=0, atol=0)
