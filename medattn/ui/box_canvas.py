"""Box drawing on a case image, behind one function: `draw_boxes(image, boxes, key)`.

The image is a Plotly figure (zoom with the wheel or the toolbar, pan with the toolbar's hand):
dragging in box-select mode draws a box (Streamlit's `st.plotly_chart(on_select=...,
selection_mode="box")`). Plotly emits a box selection only over a selectable trace, so an
invisible grid of points lies over the image. streamlit-drawable-canvas 0.9.3 was the other
candidate; its background image calls `streamlit.elements.image.image_to_url`, which Streamlit
1.67 no longer has, so it cannot show the case.

Below the figure every box is listed with editable x, y, w, h (pixels of the stored image, the
frame of the `boxes` answer) and a delete button; a box can also be added by its coordinates
(keyboard only, and what AppTest drives). "No finding" is an explicit tick: without boxes and
without the tick the question is unanswered (None), so zero boxes is never an accident.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medattn.viz.colormaps import to_rgb
from medattn.viz.grid import _data_uri

GRID_POINTS = 64  # selectable points per side: a box snaps to nothing, the grid only lets Plotly emit it
MIN_SIDE = 1.0
MAX_SIDE = 768  # image pixels sent to the browser per side


def _state(key: str, boxes: Sequence[dict] | None) -> dict:
    """This canvas's boxes and counters, kept across reruns (initialised from `boxes`)."""
    name = f"{key}__canvas"
    if name not in st.session_state:
        st.session_state[name] = {"boxes": [dict(b) for b in boxes or []], "chart": 0,
                                  "none": boxes is not None and len(boxes) == 0}
    return st.session_state[name]


def clip_box(box: dict, shape: tuple[int, int]) -> dict | None:
    """The box clipped to an image of `shape` (H, W), in pixels; None when nothing is left."""
    height, width = shape
    x0, y0 = max(0.0, float(box["x"])), max(0.0, float(box["y"]))
    x1, y1 = min(float(width), float(box["x"]) + float(box["w"])), min(float(height), float(box["y"]) + float(box["h"]))
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        return None
    return {"x": round(x0, 1), "y": round(y0, 1), "w": round(x1 - x0, 1), "h": round(y1 - y0, 1),
            "label": box.get("label", "")}


def selection_box(event, shape: tuple[int, int]) -> dict | None:
    """The box of a Plotly box selection (`st.plotly_chart` return value) in image pixels."""
    try:
        drawn = event["selection"]["box"]
    except (KeyError, TypeError):
        return None
    if not drawn:
        return None
    xs, ys = drawn[-1]["x"], drawn[-1]["y"]
    return clip_box({"x": min(xs), "y": min(ys), "w": abs(xs[1] - xs[0]), "h": abs(ys[1] - ys[0])}, shape)


def figure(image: np.ndarray, boxes: Sequence[dict], height: int = 560) -> go.Figure:
    """The image (grey (H, W) in [0, 1] or RGB uint8) with numbered boxes, ready for box selection."""
    pixels = to_rgb(image) if image.ndim == 2 else image
    rows, cols = pixels.shape[:2]
    step = max(1.0, max(rows, cols) / MAX_SIDE)
    if step > 1.0:  # fewer pixels to the browser; coordinates stay those of the stored image
        pixels = cv2.resize(pixels, (round(cols / step), round(rows / step)), interpolation=cv2.INTER_AREA)
    fig = go.Figure(go.Image(source=_data_uri(pixels), x0=(step - 1) / 2, y0=(step - 1) / 2, dx=step, dy=step,
                             hoverinfo="skip"))
    xs, ys = np.meshgrid(np.linspace(0, cols - 1, GRID_POINTS), np.linspace(0, rows - 1, GRID_POINTS))
    fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", hoverinfo="skip", showlegend=False,
                             marker=dict(size=6, opacity=0), unselected=dict(marker=dict(opacity=0)),
                             selected=dict(marker=dict(opacity=0))))
    for number, box in enumerate(boxes, 1):
        fig.add_shape(type="rect", x0=box["x"], y0=box["y"], x1=box["x"] + box["w"], y1=box["y"] + box["h"],
                      line=dict(color="rgb(255,200,0)", width=2))
        fig.add_annotation(x=box["x"], y=box["y"], text=str(number), showarrow=False, xanchor="left", yanchor="bottom",
                           font=dict(color="rgb(255,200,0)", size=14))
    fig.update_xaxes(range=[-0.5, cols - 0.5], showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(range=[rows - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False,
                     scaleanchor="x")
    fig.update_layout(dragmode="select", height=height, margin=dict(l=0, r=0, t=0, b=0), showlegend=False,
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", newselection_mode="immediate",
                      activeselection=dict(fillcolor="rgba(255,200,0,0.15)"))
    return fig


def draw_boxes(image: np.ndarray, boxes: Sequence[dict] | None, key: str, label: str = "") -> list[dict] | None:
    """Let the reader draw, edit and delete boxes on `image`; returns the boxes as
    `{"x", "y", "w", "h", "label"}` dicts in image pixels, `[]` when "no finding" is ticked, and
    None while neither (unanswered). `boxes` is the starting answer (a stored one, or None);
    `key` must be unique per case."""
    state = _state(key, boxes)
    shape = image.shape[:2]

    def add(box: dict | None) -> None:
        if box is not None:
            state["boxes"].append({**box, "label": label})
            state["none"] = False
            st.session_state[f"{key}__none"] = False
        state["chart"] += 1  # a fresh chart: the consumed selection disappears

    def drawn() -> None:
        add(selection_box(st.session_state.get(f"{key}__chart{state['chart']}"), shape))

    st.plotly_chart(figure(image, state["boxes"]), key=f"{key}__chart{state['chart']}", on_select=drawn,
                    selection_mode="box", config={"scrollZoom": True, "displaylogo": False,
                                                  "modeBarButtonsToRemove": ["lasso2d", "toImage"]})
    st.caption("Drag on the image to draw a box; the wheel zooms, the toolbar's hand pans and its house resets.")
    for number, box in enumerate(list(state["boxes"]), 1):
        cells = st.columns([0.3, 1, 1, 1, 1, 0.9], vertical_alignment="bottom")
        cells[0].markdown(f"**{number}**")
        edited = {}
        for cell, field in zip(cells[1:5], ("x", "y", "w", "h")):
            edited[field] = cell.number_input(field, value=float(box[field]), step=1.0, format="%.0f",
                                              key=f"{key}__{field}{number}_{len(state['boxes'])}")
        clipped = clip_box({**edited, "label": box.get("label", label)}, shape)
        if clipped is not None:
            state["boxes"][number - 1] = clipped
        if cells[5].button("Delete", key=f"{key}__del{number}_{len(state['boxes'])}", help=f"Delete box {number}"):
            del state["boxes"][number - 1]
            st.rerun()
    left, right = st.columns(2)
    if left.button("Add a box by coordinates", key=f"{key}__add", help="A box in the image centre; edit its numbers"):
        height, width = shape
        add({"x": width / 4, "y": height / 4, "w": width / 4, "h": height / 4, "label": label})
        st.rerun()
    st.session_state.setdefault(f"{key}__none", state["none"])
    state["none"] = right.checkbox("No finding (no boxes)", key=f"{key}__none", disabled=bool(state["boxes"]),
                                   help="Zero boxes is an answer only when ticked.") and not state["boxes"]
    if state["boxes"]:
        return [dict(b) for b in state["boxes"]]
    return [] if state["none"] else None
