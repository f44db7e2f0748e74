"""The case viewer's payloads (what the browser decodes), presets and box bookkeeping. Its keys,
zoom, window/level and drawing are driven in Chromium by test_reader_e2e.py."""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medattn.ui.viewer import (BoxState, DEFAULT_COLORMAP, MAX_SIDE, ViewerPanel, colormap_tables, image_payload,
                               map_payload, viewer_data, window_presets)
from medattn.viz.colormaps import colorize


def levels(payload: dict) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(payload["b64"]))
    return np.frombuffer(raw, "<u2" if payload["bits"] == 16 else np.uint8)


def test_an_8_bit_image_goes_as_bytes_and_comes_back_exactly():
    image = np.arange(64 * 80, dtype=np.float32).reshape(64, 80) % 256 / 255
    sent = image_payload(image)
    assert (sent["bits"], sent["w"], sent["h"], sent["scale"]) == (8, 80, 64, 1.0)
    assert np.array_equal(levels(sent).reshape(64, 80), np.round(image * 255))


def test_a_12_bit_image_keeps_its_grey_levels_for_window_level():
    image = (np.arange(4096, dtype=np.float32) / 4095).reshape(64, 64)  # every 12-bit level once
    sent = image_payload(image)
    back = levels(sent).reshape(64, 64) / 65535
    assert sent["bits"] == 16 and len(np.unique(levels(sent))) == 4096
    assert np.abs(back - image).max() < 1 / 65535


def test_a_large_image_is_sent_at_most_max_side_and_boxes_keep_stored_pixels():
    sent = image_payload(np.zeros((3000, 2000), np.float32))
    assert max(sent["w"], sent["h"]) == MAX_SIDE and sent["scale"] == pytest.approx(2000 / sent["w"])
    with pytest.raises(ValueError, match="grey"):
        image_payload(np.zeros((8, 8, 3)))


def test_maps_are_resampled_to_the_sent_grid_and_a_zero_map_is_flagged():
    heat = map_payload(np.ones((32, 32), np.float32), (64, 48))
    assert levels(heat).size == 64 * 48 and set(levels(heat)) == {255} and not heat["flat"]
    assert map_payload(np.zeros((8, 8)), (8, 8))["flat"]


def test_presets_are_full_auto_and_three_windows():
    image = np.linspace(0.2, 0.6, 10_000, dtype=np.float32).reshape(100, 100)
    presets = window_presets(image)
    assert [p.name for p in presets] == ["Full", "Auto", "Lung", "Soft tissue", "Bone"]
    low, high = np.percentile(image, [1, 99])
    assert presets[1].center == pytest.approx((low + high) / 2) and presets[1].width == pytest.approx(high - low)


def test_colour_maps_are_perceptual_first_and_match_the_overlays():
    tables = colormap_tables()
    assert DEFAULT_COLORMAP == "viridis" and list(tables)[0] == "viridis" and "jet" in tables
    assert tables["viridis"][200] == colorize(np.array([[200 / 255]], np.float32), "viridis")[0, 0].tolist()


def test_box_state_takes_new_viewer_edits_once_and_in_order():
    state = BoxState([])
    box = {"x": 1, "y": 2, "w": 3, "h": 4, "label": "nodule"}
    assert not state.take(None, list)
    assert state.take({"boxes": [box], "seq": 1}, list)
    assert (state.boxes, state.version, state.ack, state.source) == ([box], 1, 1, "viewer")
    assert not state.take({"boxes": [], "seq": 1}, list)  # the same edit again (a rerun): ignored
    state.set([])
    assert (state.version, state.source) == (2, "page")
    assert state.take({"boxes": [box, "junk"], "seq": 2}, lambda b: b[:1]) and state.boxes == [box]


def test_viewer_data_carries_titles_boxes_and_no_identifiers():
    boxes = BoxState([{"x": 1, "y": 1, "w": 2, "h": 2, "label": "nodule"}], version=3, ack=2)
    data = viewer_data(np.zeros((16, 16), np.float32), [ViewerPanel("Case 1", boxes=True),
                                                        ViewerPanel("Map K7RX", np.ones((16, 16)))],
                       case="rd_s_case-0001", boxes=boxes, editable=True, labels=["nodule"])
    assert [p["title"] for p in data["panels"]] == ["Case 1", "Map K7RX"]
    assert data["panels"][0]["map"] is None and data["panels"][1]["map"]["bits"] == 8
    assert (data["version"], data["ack"], data["source"], data["labels"]) == (3, 2, "page", ["nodule"])
    json.dumps(data)  # all of it goes to the browser as JSON
    with pytest.raises(ValueError, match="colormap"):
        viewer_data(np.zeros((4, 4)), [], case="c", colormap="nope")


def test_the_component_renders_in_a_streamlit_run():
    at = AppTest.from_string("""
import numpy as np
import streamlit as st
from medattn.ui.viewer import ViewerPanel, case_viewer
event = case_viewer(np.zeros((8, 8)), [ViewerPanel("Case 1")], key="rd__viewer", case="c")
st.write(f"event={event}")
""", default_timeout=60).run()
    assert not at.exception
    (viewer,) = at.get("bidi_component")
    assert viewer.proto.component_name == "medattn_case_viewer" and "DecompressionStream" in viewer.proto.js_content
    assert "event=None" in at.markdown[0].value
