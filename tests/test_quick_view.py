"""A session's first Compare grid is a still image (Plotly's bundle would hold up the first
paint) until its final grid; that and every later grid are the interactive Plotly figure."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page():
    import numpy as np
    import streamlit as st

    from medattn.ui.quick_view import GridView
    from medattn.viz.grid import Panel

    image = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    heat = image[::-1].copy()
    maps = st.session_state.get("maps", 1)
    panels = [[Panel("model", f"method{i}", image, heatmap=heat if i < maps else None,
                     note="" if i < maps else "computing…") for i in range(3)]]
    GridView().show(panels, "jet", 0.5, False, key=f"grid_{maps}", final=st.session_state.get("final", False))


def test_first_grid_is_a_still_image_until_final_then_plotly_for_the_session():
    at = AppTest.from_function(_page)
    at.run()
    assert not at.exception
    assert not at.get("plotly_chart")
    assert "1 of 3 panels show a map" in at.get("image")[0].proto.imgs[0].caption

    at.session_state["maps"] = 3  # every panel shows a map: still an image, and Plotly loads hidden behind it
    at.run()
    assert "3 of 3 panels show a map" in at.get("image")[0].proto.imgs[0].caption
    assert len(at.get("plotly_chart")) == 1  # the preload

    at.session_state["final"] = True
    at.run()
    assert not at.get("image") and len(at.get("plotly_chart")) == 1  # the grid, no preload left

    at.session_state["final"] = False
    at.session_state["maps"] = 1  # the next image's first frames: interactive from now on
    at.run()
    assert not at.get("image") and len(at.get("plotly_chart")) == 1


def _failing_page():
    import numpy as np

    from medattn.ui.quick_view import GridView
    from medattn.viz.grid import Panel

    image = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    panels = [[Panel("model", "saliency", image, heatmap=image),
               Panel("model", "guided_backprop", image, note="failed: RuntimeError: no ReLU to guide")]]
    GridView().show(panels, "jet", 0.5, False, key="grid")


def test_plotly_preloads_once_every_panel_shows_a_map_or_has_failed():
    """A failed panel will show no map: waiting for it kept Plotly from preloading, so the final
    grid waited for Plotly's bundle after all (the grid's own frames count it as settled too)."""
    at = AppTest.from_function(_failing_page)
    at.run()
    assert not at.exception
    assert "1 of 2 panels show a map" in at.get("image")[0].proto.imgs[0].caption
    assert len(at.get("plotly_chart")) == 1  # the preload
