"""Greyscale display, window/level, OpenCV colormaps and heatmap overlays as RGB uint8 arrays."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
}


def window_level(image: np.ndarray, center: float = 0.5, width: float = 1.0) -> np.ndarray:
    """Display window on an image in [0, 1]: values in [center - width/2, center + width/2] are
    stretched to [0, 1], the rest clipped (for display only; maps and scores use the image)."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = center - width / 2
    return np.clip((np.asarray(image, np.float32) - low) / width, 0.0, 1.0)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] → (H, W, 3) uint8 grey."""
    grey = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 RGB through an OpenCV colormap."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    scaled = np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """The coloured map blended over the grey image with a uniform `opacity` in [0, 1]."""
    if heatmap.shape != image.shape:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from image shape {image.shape}")
    opacity = float(np.clip(opacity, 0.0, 1.0))
    return cv2.addWeighted(colorize(heatmap, colormap), opacity, to_rgb(image), 1.0 - opacity, 0.0)
