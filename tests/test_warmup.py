"""The server's start-up work (medattn.ui.warmup) leaves in the process's caches exactly what a
session opened without a link loads first, so that session finds them loaded; PDA's reference
pool is read once per preprocessing and image contents."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from medattn import inference, pipeline
from medattn.data.dataset import load_dataset
from medattn.errors import ImageReadError
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


def test_a_checkpoint_or_dataset_that_fails_costs_itself_only(opening, tmp_path, monkeypatch):
    """A broken checkpoint among the opening ones leaves the others warm; a folder that is not a
    dataset leaves the checkpoints warm; each failure is named with its reason, none raises."""
    _, checkpoint = opening
    broken = checkpoint.parent / "a_broken"  # sorted first: it used to end the warm-up there
    shutil.copy(checkpoint.parent / f"{checkpoint.name}.json", f"{broken}.json")
    (broken.parent / f"{broken.name}.safetensors").write_bytes(b"not weights")
    done = warmup.warm()
    assert done["models"] == [checkpoint.name] and done["dataset"] is not None
    assert list(done["failed"]) == ["a_broken"] and "a_broken" in done["failed"]["a_broken"]

    not_a_dataset = tmp_path / "not_a_dataset"
    not_a_dataset.mkdir()
    monkeypatch.setenv("MEDATTN_DATASET", str(not_a_dataset))
    done = warmup.warm()
    assert done["dataset"] is None and "dataset.json" in done["failed"][str(not_a_dataset)]
    assert done["models"] == [checkpoint.name]


def test_a_stop_ends_the_warm_up_after_its_current_step(opening, monkeypatch):
    stop = threading.Event()
    real = loaders.dataset
    monkeypatch.setattr(loaders, "dataset", lambda path: (stop.set(), real(path))[1])  # stopped while loading
    done = warmup.warm(stop)
    assert done["stopped"] and done["dataset"] is not None and done["models"] == []


def test_the_server_serves_while_warming_and_its_stop_stops_the_warm_up(monkeypatch):
    """The lifespan does not wait: a first start's demo build took ~20 s, during which the
    printed address refused connections. Ctrl-C or SIGTERM (the server's shutdown, the lifespan's
    exit) tells the warm-up to stop, so the interpreter's exit (which waits for it) is not held up."""
    told, served = [], []

    def warming(stop):
        told.append(stop)
        stop.wait(60)

    monkeypatch.setattr(warmup, "_warm_logged", warming)
    monkeypatch.setattr(warmup, "_DONE", threading.Event())

    async def serve():
        async with warmup.lifespan(None):
            served.append(warmup._DONE.is_set())  # serving, the warm-up still at work
            response = await warmup.ready(None)
            served.append(response.status_code)

    started = time.monotonic()
    asyncio.run(serve())
    assert served == [False, 503]
    assert told and told[0].is_set() and time.monotonic() - started < 10


def test_ready_says_when_the_start_up_work_is_over(monkeypatch):
    monkeypatch.setattr(warmup, "_DONE", threading.Event())
    monkeypatch.setenv("MEDATTN_WARMUP", "0")  # nothing to do: ready at once

    async def serve():
        async with warmup.lifespan(None):
            response = await warmup.ready(None)
            return response.status_code, json.loads(response.body)

    assert asyncio.run(serve()) == (200, {"ready": True})


def test_a_reference_image_that_cannot_be_read_is_skipped_for_the_next(tiny_demo, tiny_checkpoint, tmp_path):
    """A corrupt or missing training image among the first 16 failed every PDA map of the
    dataset (and Compare's whole grid, whose cache lookups ask for the pool)."""
    folder = tmp_path / "demo"
    shutil.copytree(tiny_demo, folder)
    data = load_dataset(folder)
    loaded = load_model(tiny_checkpoint, "cpu")
    ids = sorted(data.split("train").index)
    data.image_path(ids[0]).write_bytes(b"not an image")
    data.image_path(ids[3]).unlink()
    pool = pipeline.reference_images(loaded, data, count=4)
    expected = torch.cat([loaded.to_input(data.read_image(i)).cpu() for i in (ids[1], ids[2], ids[4], ids[5])])
    torch.testing.assert_close(pool, expected, rtol=0, atol=0)

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data.image_path(ids[0]))  # repaired: back in the pool
    repaired = pipeline.reference_images(loaded, data, count=4)
    torch.testing.assert_close(repaired[0], loaded.to_input(data.read_image(ids[0])).cpu()[0], rtol=0, atol=0)

    for image_id in ids:
        data.image_path(image_id).write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        pipeline.reference_images(loaded, data, count=4)


def test_the_warm_up_runs_a_model_only_under_its_lock(opening):
    """The server serves while it warms up: counting MACs hooks every layer of the shared model,
    and a visitor's map computing meanwhile (under the model's lock) added its layers to the count."""
    _, checkpoint = opening
    loaded = loaders.model(checkpoint, "auto")
    finished = threading.Event()
    with loaders.model_lock(loaded.name):  # a visitor's map at work
        thread = threading.Thread(target=lambda: (warmup.warm(), finished.set()))
        thread.start()
        assert not finished.wait(5)
    thread.join(60)
    assert finished.is_set()
