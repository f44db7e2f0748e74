"""Stored sample values to float grey in [0, 1]: one luma and one scaling rule for every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.errors import ImageReadError

# ITU-R BT.601 luma weights of R, G, B (the ones OpenCV and Pillow use for colour → grey).
LUMA = np.array([0.299, 0.587, 0.114])


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3+) RGB(A) samples → (H, W) float64 luma, in the samples' units; alpha is ignored."""
    return rgb[..., :3].astype(np.float64) @ LUMA


def scale(values: np.ndarray, top: float) -> np.ndarray:
    """Samples of range [0, top] → float32 in [0, 1]."""
    return np.clip(values.astype(np.float64) / float(top), 0.0, 1.0).astype(np.float32)


def minmax(values: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Stretch to [0, 1] (a constant image becomes 0): for data without a declared range. Pixels
    in the boolean mask `exclude` (DICOM padding) take no part in the minimum and maximum."""
    values = values.astype(np.float64)
    native = values if exclude is None or exclude.all() else values[~exclude]
    low, high = float(native.min()), float(native.max())
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def unit(values: np.ndarray, path: Path, bits: int | None = None) -> np.ndarray:
    """Integer samples by their declared range (`bits`, else the dtype's); bool as 0/1; float
    and signed data stretched by min-max. Raises ImageReadError on NaN or infinite values and on
    complex or non-numeric samples."""
    if values.dtype == bool:
        return values.astype(np.float32)
    if values.dtype.kind not in "uif":
        raise ImageReadError(path, f"{values.dtype} samples have no grey value (complex or non-numeric data)")
    if values.dtype.kind == "u":
        return scale(values, 2 ** (bits or values.dtype.itemsize * 8) - 1)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise ImageReadError(path, "image holds NaN or infinite values")
    return minmax(values)
