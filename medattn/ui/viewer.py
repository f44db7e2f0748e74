"""The Reader page's case viewer: a Streamlit component (`st.components.v2`, `viewer.js` and
`viewer.css` beside this file) that shows a case's image and maps in linked viewports with the
habits radiologists bring from OHIF: window/level by dragging and presets on keys 1–5, zoom
(z tool, +/−, wheel, right-drag) that enlarges, pan, invert (i), reset (space), map on/off (m),
boxes drawn on the image with the finding's name and undone with Ctrl+Z.

Self-contained: nothing is fetched at run time. The image goes to the browser as zlib-compressed
8- or 16-bit grey levels (at most MAX_SIDE pixels per side; window/level works on them in the
browser), each map as 8-bit levels on the same grid, and the colour maps as 256-entry tables.
The overlay's opacity grows with the map's value (`opacity` × value: where a map is low the
image shows through), with a colour bar. Display preferences (window, invert, opacity, colour
map) stay in the browser's localStorage, so they carry from case to case.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import streamlit as st

from medattn.viz.colormaps import COLORMAPS, colorize

HERE = Path(__file__).parent
MAX_SIDE = 1024  # grey levels sent per side; boxes stay in stored-image pixels
DEFAULT_COLORMAP = "viridis"  # perceptually uniform, colour-blind safe (jet is neither)
COLORMAP_ORDER = ("viridis", "inferno", "magma", "turbo", "hot", "jet")


@dataclass(frozen=True)
class WindowPreset:
    """A display window on the image's [0, 1] grey levels (keys 1–5)."""

    name: str
    center: float
    width: float


def window_presets(image: np.ndarray) -> list[WindowPreset]:
    """The five presets: the full range, the image's 1st–99th percentile ("auto"), and dark,
    mid and bright windows (on a radiograph stored dark-for-air, MONOCHROME2: lung fields,
    soft tissue and mediastinum, bone)."""
    low, high = np.percentile(np.asarray(image, np.float32), [1, 99])
    width = max(float(high - low), 0.02)
    return [WindowPreset("Full", 0.5, 1.0), WindowPreset("Auto", float(low + high) / 2, width),
            WindowPreset("Lung", 0.3, 0.6), WindowPreset("Soft tissue", 0.55, 0.45), WindowPreset("Bone", 0.75, 0.5)]


def _packed(levels: np.ndarray, bits: int) -> dict:
    data = levels.astype("<u2" if bits == 16 else np.uint8).tobytes()
    return {"bits": bits, "b64": base64.b64encode(zlib.compress(data, 1)).decode("ascii")}


def _fingerprint(array: np.ndarray) -> str:
    """A cheap identity of an image or map (its shape and a strided sample), to reuse payloads."""
    array = np.ascontiguousarray(np.asarray(array, np.float32)[::5, ::5])
    return hashlib.sha1(repr(array.shape).encode() + array.tobytes()).hexdigest()


def image_payload(image: np.ndarray, max_side: int = MAX_SIDE) -> dict:
    """The grey image (H, W) in [0, 1] as the viewer receives it: {"id", "w", "h", "scale"
    (stored pixels per sent pixel), "bits" (8 when the image has 256 levels or fewer), "b64"}."""
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.ndim != 2:
        raise ValueError(f"the viewer shows a grey (H, W) image, got shape {image.shape}")
    rows, cols = image.shape
    eight = np.abs(image[::3, ::3] * 255 - np.round(image[::3, ::3] * 255)).max() < 1e-3  # an 8-bit source
    scale = max(1.0, max(rows, cols) / max_side)
    if scale > 1.0:
        image = cv2.resize(image, (round(cols / scale), round(rows / scale)), interpolation=cv2.INTER_AREA)
    levels = np.round(image * (255 if eight else 65535))
    payload = _packed(levels, 8 if eight else 16)
    h, w = image.shape
    payload.update(w=int(w), h=int(h), scale=float(cols / w), id=hashlib.sha1(payload["b64"].encode()).hexdigest()[:16])
    return payload


def map_payload(heatmap: np.ndarray, shape: tuple[int, int]) -> dict:
    """A display map (H, W) in [0, 1] resampled to the sent image's `shape` (h, w), 8-bit;
    "flat" when it is zero everywhere (nothing to overlay: the viewport says so)."""
    heatmap = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    if heatmap.shape != shape:
        heatmap = cv2.resize(heatmap, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    levels = np.round(heatmap * 255)
    return {**_packed(levels, 8), "flat": bool(levels.max() == 0)}


@functools.cache
def colormap_tables() -> dict[str, list[list[int]]]:
    """name → 256 RGB triplets of each colour map the viewer offers (perceptual ones first)."""
    ramp = np.arange(256, dtype=np.float32)[None, :] / 255
    return {name: colorize(ramp, name)[0].tolist() for name in COLORMAP_ORDER if name in COLORMAPS}


@functools.cache
def _component():
    return st.components.v2.component("medattn_case_viewer", js=(HERE / "viewer.js").read_text(encoding="utf-8"),
                                      css=(HERE / "viewer.css").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ViewerPanel:
    """One viewport: a title, an optional map (H, W) in [0, 1] over the image, and whether the
    case's boxes are drawn (and editable) on it."""

    title: str
    heatmap: np.ndarray | None = None
    boxes: bool = False


@dataclass
class BoxState:
    """The boxes a page holds for one case and how they reached it: `version` goes up on every
    change, `ack` is the last viewer edit taken in, `source` who made the last change ("page":
    its list, buttons or a stored answer; "viewer": the reader in the viewer)."""

    boxes: list[dict]
    version: int = 0
    ack: int = 0
    source: str = "page"

    def take(self, event: dict | None, clean) -> bool:
        """Take a viewer edit (`case_viewer`'s return value) through `clean` (list → list);
        False when there is none or it is older than one already taken."""
        if not isinstance(event, dict) or not isinstance(event.get("boxes"), list):
            return False
        seq = int(event.get("seq") or 0)
        if seq <= self.ack:
            return False
        self.boxes, self.ack, self.source = clean([b for b in event["boxes"] if isinstance(b, dict)]), seq, "viewer"
        self.version += 1
        return True

    def set(self, boxes: list[dict]) -> None:
        """A change made by the page (a number edited, a box deleted or added)."""
        self.boxes, self.source = boxes, "page"
        self.version += 1


def viewer_data(image: np.ndarray, panels: Sequence[ViewerPanel], *, case: str, boxes: BoxState | None = None,
                editable: bool = False, labels: Sequence[str] = (), opacity: float = 0.5,
                colormap: str = DEFAULT_COLORMAP, height: int | None = None) -> dict:
    """The JSON the component receives (see `case_viewer`)."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    sent, presets = _cached(("image", _fingerprint(image)), lambda: (image_payload(image), window_presets(image)))
    shape = (sent["h"], sent["w"])
    return {
        "case": case, "image": sent, "editable": bool(editable), "labels": [str(label) for label in labels],
        "boxes": [dict(b) for b in boxes.boxes] if boxes else [], "version": boxes.version if boxes else 0,
        "ack": boxes.ack if boxes else 0, "source": boxes.source if boxes else "page",
        "opacity": float(opacity), "colormap": colormap,
        "colormaps": colormap_tables(), "height": height,
        "presets": [{"name": p.name, "center": p.center, "width": p.width} for p in presets],
        "panels": [{"id": f"p{i}", "title": p.title, "boxes": p.boxes,
                    "map": None if p.heatmap is None else _cached(("map", _fingerprint(p.heatmap), shape),
                                                                  lambda p=p: map_payload(p.heatmap, shape))}
                   for i, p in enumerate(panels)],
    }


_PAYLOADS: dict = {}
_PAYLOADS_LOCK = threading.Lock()  # one dict for every session of the server
PAYLOADS_KEPT = 16  # the payloads of the last few cases' images and maps (a rerun re-sends, not re-encodes)


def _cached(key: tuple, make):
    """`make()` once per `key` among the last PAYLOADS_KEPT (an image's encoding takes ~0.3 s at 1024 px)."""
    with _PAYLOADS_LOCK:
        if key in _PAYLOADS:
            return _PAYLOADS[key]
    value = make()
    with _PAYLOADS_LOCK:
        while len(_PAYLOADS) >= PAYLOADS_KEPT:
            _PAYLOADS.pop(next(iter(_PAYLOADS)))
        _PAYLOADS[key] = value
    return value


def case_viewer(image: np.ndarray, panels: Sequence[ViewerPanel], *, key: str, case: str,
                boxes: BoxState | None = None, editable: bool = False, labels: Sequence[str] = (),
                opacity: float = 0.5, colormap: str = DEFAULT_COLORMAP, height: int | None = None) -> dict | None:
    """Show `image` (grey (H, W) in [0, 1]) in linked `panels`; returns the reader's edit
    {"boxes", "seq"} when they drew, deleted, undid or redid a box in this run (boxes in
    stored-image pixels, labelled with the chosen finding of `labels`; pass it to
    `BoxState.take`), else None.

    `boxes`: what the page holds; the browser adopts it when its version changes and it is not
    older than the browser's own latest edit. `case` resets zoom and pan when it changes.
    `height`: the viewports' total height budget in CSS pixels (default 82% of the window)."""
    data = viewer_data(image, panels, case=case, boxes=boxes, editable=editable, labels=labels,
                       opacity=opacity, colormap=colormap, height=height)
    # Streamlit reserves "__" in a component's key (it builds event ids with it)
    result = _component()(key=key.replace("__", "-"), data=data, on_boxes_change=lambda: None)
    event = getattr(result, "boxes", None)  # a trigger: set only in the run the browser sent it
    return event if isinstance(event, dict) else None
