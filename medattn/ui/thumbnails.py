"""Thumbnails of one model's map over an image with the class's boxes (Failure cases, Data)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from medattn.data.dataset import Dataset
from medattn.inference import LoadedModel
from medattn.pipeline import compute_map
from medattn.ui import loaders
from medattn.ui.methods import app_params
from medattn.viz.grid import Panel, render_panel

SIZE = 256


@st.cache_data(max_entries=512, show_spinner=False)
def _overlay(key: tuple, _loaded: LoadedModel, _data: Dataset, image_id: str, method: str, target: int) -> np.ndarray:
    image = _data.read_image(image_id)
    with loaders.model_lock(_loaded.name):
        result = compute_map(_loaded, _data, image_id, method, target, app_params(method, _loaded.input_size), image=image)
    boxes = _data.boxes_for(image_id, _data.classes[target])
    return render_panel(Panel("", method, image, result.display, boxes, result.peak, support=result.support), size=SIZE)


def thumbnail(loaded: LoadedModel | None, data: Dataset, image_id: str, method: str, target: int) -> np.ndarray:
    """The map of `method` for class `target` over the image (cached maps make this instant)."""
    if loaded is None:
        return image_thumbnail(data, image_id)
    return _overlay((loaded.hash, data.hash, image_id, method, target), loaded, data, image_id, method, target)


def image_thumbnail(data: Dataset, image_id: str, label: str | None = None) -> np.ndarray:
    """The image with its boxes (of `label`, or all), no map."""
    panel = Panel("", "image", data.read_image(image_id), boxes=data.boxes_for(image_id, label))
    return render_panel(panel, show_map=False, size=SIZE)
