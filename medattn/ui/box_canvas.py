"""Boxes on a case image, behind one function: `draw_boxes(image, boxes, key, labels=...)`.

The image is the case viewer (`medattn.ui.viewer`: window/level, zoom, pan, invert, the map
overlay in the with-AI arm); dragging with its Box tool draws a box labelled with the chosen
finding, a click chooses a box and Delete removes it, Ctrl+Z undoes. Below the viewer every box
is listed with editable x, y, w, h (pixels of the stored image, the frame of the `boxes`
answer) and a delete button; a box can also be added by its coordinates (keyboard only, and what
AppTest drives). "No finding" is an explicit tick: without boxes and without the tick the
question is unanswered (None), so zero boxes is never an accident.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import streamlit as st

from medattn.ui.plain import plain
from medattn.ui.viewer import BoxState, ViewerPanel, case_viewer

MIN_SIDE = 1.0


def _state(key: str, boxes: Sequence[dict] | None) -> tuple[BoxState, dict]:
    """This canvas's boxes (`BoxState`) and its "no finding" tick, kept across reruns."""
    name = f"{key}__canvas"
    if name not in st.session_state:
        st.session_state[name] = (BoxState([dict(b) for b in boxes or []]),
                                  {"none": boxes is not None and len(boxes) == 0})
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


def draw_boxes(image: np.ndarray, boxes: Sequence[dict] | None, key: str, labels: Sequence[str] = ("",),
               panels: Sequence[ViewerPanel] | None = None) -> list[dict] | None:
    """Let the reader draw, edit and delete boxes on `image`; returns the boxes as `{"x", "y",
    "w", "h", "label"}` dicts in image pixels, `[]` when "no finding" is ticked, and None while
    neither (unanswered). `boxes` is the starting answer (a stored one, or None); `labels` the
    findings a box may name (the first by default); `panels` the viewports (default one image
    panel with the boxes; in the with-AI arm the map over it); `key` must be unique per case."""
    held, tick = _state(key, boxes)
    shape = image.shape[:2]
    labels = list(labels) or [""]

    def clean(drawn: list[dict]) -> list[dict]:
        named = [clip_box({**b, "label": b.get("label") if b.get("label") in labels else labels[0]}, shape)
                 for b in drawn]
        return [b for b in named if b is not None]

    def page_change(new: list[dict]) -> None:
        held.set(new)
        if new:
            tick["none"] = False
            st.session_state[f"{key}__none"] = False

    event = case_viewer(image, panels or [ViewerPanel("Image", boxes=True)], key=f"{key}__viewer", case=key,
                        boxes=held, editable=True, labels=labels)
    if held.take(event, clean) and held.boxes:
        tick["none"] = False
        st.session_state[f"{key}__none"] = False
    for number, box in enumerate(list(held.boxes), 1):
        cells = st.columns([0.3, 1, 1, 1, 1, 1.2, 0.9], vertical_alignment="bottom")
        cells[0].markdown(f"**{number}**")
        edited = {}
        version = held.version
        for cell, field in zip(cells[1:5], ("x", "y", "w", "h")):
            edited[field] = cell.number_input(field, value=float(box[field]), step=1.0, format="%.0f",
                                              key=f"{key}__{field}{number}_v{version}")
        label = box.get("label") if box.get("label") in labels else labels[0]
        if len(labels) > 1:
            label = cells[5].selectbox("finding", labels, index=labels.index(label), key=f"{key}__label{number}_v{version}")
        else:
            cells[5].markdown(plain(label) if label else "—")
        clipped = clip_box({**edited, "label": label}, shape)
        if clipped is not None and clipped != held.boxes[number - 1]:
            page_change([clipped if i == number - 1 else b for i, b in enumerate(held.boxes)])
            st.rerun()
        if cells[6].button("Delete", key=f"{key}__del{number}_v{version}", help=f"Delete box {number}"):
            page_change([b for i, b in enumerate(held.boxes) if i != number - 1])
            st.rerun()
    left, right = st.columns(2)
    if left.button("Add a box by coordinates", key=f"{key}__add", help="A box in the image centre; edit its numbers"):
        height, width = shape
        page_change(held.boxes + [{"x": width / 4, "y": height / 4, "w": width / 4, "h": height / 4,
                                   "label": labels[0]}])
        st.rerun()
    st.session_state.setdefault(f"{key}__none", tick["none"])
    tick["none"] = right.checkbox("No finding (no boxes)", key=f"{key}__none", disabled=bool(held.boxes),
                                  help="Zero boxes is an answer only when ticked.") and not held.boxes
    if held.boxes:
        return [dict(b) for b in held.boxes]
    return [] if tick["none"] else None
