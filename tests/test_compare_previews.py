"""Compare shows each panel as soon as it has a map: quick maps and previews of the slow methods
first, labelled and unscored, then the final maps, which alone are scored and stored."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import streamlit as st

from medattn import pipeline
from medattn.data import load_dataset
from medattn.inference import load_model
from medattn.ui import background, compare_grid
from medattn.ui.background import Worker
from medattn.ui.compare_grid import PREVIEW_NOTE, Display, compute_grid
from medattn.ui.plain import plain
from medattn.ui.sidebar import Selection


def test_previews_and_quick_maps_go_first_and_final_maps_nobody_waits_for_yield():
    """The worker's four kinds in order; a final map the page left (`release`) becomes a
    prefetch, so the next image's quick maps and previews no longer wait for it."""
    order, gate, started = [], threading.Event(), threading.Event()

    def work(name, ticks=0):
        def run(progress):
            if name == "blocker":
                started.set()
            gate.wait(10)
            for tick in range(ticks):
                started.set()
                progress(tick, ticks)  # a prefetch yields here to a more urgent job
                order.append(f"{name}@{tick}")
                time.sleep(0.02)
            order.append(name)
            return name
        return run

    worker = Worker()
    try:
        blocker = worker.submit("blocker", work("blocker"))
        assert started.wait(10)  # at work: the others queue behind it
        worker.prefetch("session", [("next-final", work("next-final")), ("next-preview", work("next-preview"))],
                        first={"next-preview"})
        final = worker.submit("final", work("final"))
        preview = worker.submit("preview", work("preview"), first=True)
        gate.set()
        assert final.future.result(10) == "final" and blocker.future.result(10) == "blocker"
        while worker.pending():
            time.sleep(0.05)
        assert order == ["blocker", "preview", "next-preview", "final", "next-final"], order
        assert preview.future.result(10) == "preview"

        order.clear()
        gate.clear()
        started.clear()
        slow = worker.submit("slow-final", work("slow-final", ticks=50))  # a reader waits for it…
        gate.set()
        assert started.wait(10)
        worker.release(["slow-final"])  # …then moves on to the next image
        quick = worker.submit("next-image-quick", work("next-image-quick"), first=True)
        assert quick.future.result(10) == "next-image-quick"
        assert "slow-final" not in order  # it yielded: the next image's map did not wait for it to end
        assert worker.submit("slow-final", work("slow-final", ticks=50)).future.result(20) == "slow-final"
        assert slow.future.done()
    finally:
        worker.stop(timeout=10)


@pytest.fixture
def grid_world(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(background, "worker", lambda w=Worker(): w)  # a worker of this test's own
    dataset = load_dataset(tiny_demo)
    loaded = load_model(tiny_checkpoint, "cpu", dataset)
    yield Selection(dataset=dataset, models=[loaded], methods=["saliency", "occlusion"], device="cpu"), tmp_path
    background.worker().stop(timeout=30)


def test_a_slow_panel_shows_its_labelled_preview_first_then_its_scored_final_map(grid_world, monkeypatch):
    selection, tmp_path = grid_world
    real_map, previewed, snapshots = compare_grid._map, threading.Event(), []

    def held_final(*args, preview=False, **kwargs):
        if not preview:  # the final map waits until the page has shown the preview
            previewed.wait(60)
        return real_map(*args, preview=preview, **kwargs)

    def show(panels):
        cells = {p.column: (p.note, p.heatmap is not None, p.caption, p.point) for row in panels for p in row}
        snapshots.append(cells)
        if cells["occlusion"][0].startswith(PREVIEW_NOTE) and cells["occlusion"][1]:
            previewed.set()

    monkeypatch.setattr(compare_grid, "_map", held_final)
    image_id = selection.dataset.split("test").index[0]
    panels, numbers = compute_grid(selection, image_id, 0, Display(), show, status=st)

    shown = [s["occlusion"] for s in snapshots if s["occlusion"][1]]
    note, has_map, caption, point = shown[0]
    assert note.startswith(f"{PREVIEW_NOTE} · final map") and caption == "" and point is None  # labelled, no scores, no ✕
    final = {p.column: p for row in panels for p in row}["occlusion"]
    assert final.note == "" and final.caption.startswith("p=") and final.heatmap is not None
    assert set(numbers["method"]) == {"saliency", "occlusion"} and len(numbers) == 2  # finals only
    stored = list((tmp_path / "cache" / "heatmaps").rglob("*.npy"))
    assert len(stored) == 2  # the previews were never stored
    assert len(compare_grid.PREVIEWS._maps) >= 1
    np.testing.assert_array_equal(final.heatmap, compare_grid.compute_map(
        selection.models[0], selection.dataset, image_id, "occlusion", 0,
        compare_grid._params(selection.models[0], "occlusion", "medattn")).display)


def test_the_first_frame_with_a_map_in_every_panel_is_sent_at_once(grid_world, monkeypatch):
    """Frames are throttled (MIN_SHOW_SECONDS), but the first map and the first frame in which
    every panel shows a map (final or preview) go out at once: a reader sees the whole grid
    as soon as it exists."""
    selection, _ = grid_world
    real_map, everywhere, snapshots = compare_grid._map, threading.Event(), []

    def held_final(*args, preview=False, **kwargs):
        if not preview:
            everywhere.wait(60)
        return real_map(*args, preview=preview, **kwargs)

    def show(panels):
        cells = [p for row in panels for p in row]
        snapshots.append(sum(p.heatmap is not None for p in cells))
        if all(p.heatmap is not None for p in cells):
            everywhere.set()

    monkeypatch.setattr(compare_grid, "MIN_SHOW_SECONDS", 1000.0)  # no frame but the milestones
    monkeypatch.setattr(compare_grid, "_map", lambda *a, preview=False, **k: real_map(*a, preview=preview, **k)
                        if preview or a[3] == "saliency" else held_final(*a, preview=preview, **k))
    image_id = selection.dataset.split("test").index[1]
    started = time.monotonic()
    compute_grid(selection, image_id, 0, Display(), show, status=st)
    assert everywhere.is_set() and time.monotonic() - started < 50
    assert snapshots[-1] == 2  # saliency's final map and occlusion's preview, together


def test_the_progress_text_shows_a_checkpoint_name_as_typed(grid_world, monkeypatch):
    """The bar's text is markdown: a checkpoint named `**x**<img src=x>` showed a bold x."""
    selection, _ = grid_world
    selection.models[0].name = "**x**<img src=x>"
    real_map, named, texts = compare_grid._map, threading.Event(), []

    def held_final(*args, preview=False, **kwargs):
        if not preview:
            named.wait(60)  # the running final map is named in the bar meanwhile
        return real_map(*args, preview=preview, **kwargs)

    class Bar:
        def progress(self, value, text=""):
            texts.append(text)
            if "img" in text:
                named.set()
            return self

        def empty(self):
            pass

    monkeypatch.setattr(compare_grid, "_map", held_final)
    image_id = selection.dataset.split("test").index[2]
    compute_grid(selection, image_id, 0, Display(), lambda panels: None, status=Bar())
    assert named.is_set()
    assert any(plain("**x**<img src=x>") in text for text in texts)
    assert not any("**x**" in text for text in texts)
