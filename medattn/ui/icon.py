"""The app's favicon, drawn here: Streamlit serves an image from the app's own server, while a
`:material/...:` page icon makes every browser fetch it from fonts.gstatic.com (readers'
browsers must contact no outside server)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def page_icon(size: int = 64) -> Image.Image:
    """A grey chest-film glyph: two lung fields on a dark plate, RGB (size, size)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    lungs = (((np.abs(x) - 0.45) / 0.32) ** 2 + (y / 0.75) ** 2) < 1
    plate = np.where(lungs, 205, 40).astype(np.uint8)
    plate[np.abs(x) < 0.06] = 235  # the spine
    return Image.fromarray(np.stack([plate] * 3, axis=-1), "RGB")
