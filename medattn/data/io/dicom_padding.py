"""Which pixels are padding: Pixel Padding Value and Pixel Padding Range Limit (PS3.3 C.7.5.1.1.2).

Detectors pad a round field or a collimated area to the rectangle with one stored value (or a
range of them, Range Limit: both ends inclusive, in either order) that the native image never
holds. The standard names them so that displays leave them out of the image's dynamic range
(note 2 there) and render them apart from the grey-scale pipeline (CP 692: background air
suppressed in mammography): here they take no part in the statistics of a min-max display and
are shown as background (0, black). They are stored values, compared before the Modality LUT.

Pixel Padding Value is US or SS as Pixel Representation says (C.7.5.1.1.2); devices write
negative values as US too (64512 for -1024), read back as signed when the pixels are signed.
Float and Double Float Pixel Data use Float/Double Float Pixel Padding Value and Range Limit.
"""

from __future__ import annotations

import numpy as np
import pydicom

INTEGER = ("PixelPaddingValue", "PixelPaddingRangeLimit")
FLOATING = {np.dtype(np.float32): ("FloatPixelPaddingValue", "FloatPixelPaddingRangeLimit"),
            np.dtype(np.float64): ("DoubleFloatPixelPaddingValue", "DoubleFloatPixelPaddingRangeLimit")}


def padding_mask(stored: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """Boolean mask (same shape as `stored`, the stored values before any transformation) of
    the padding pixels; None when the file declares no padding. ValueError when a declared value
    is not a number."""
    keywords = FLOATING.get(stored.dtype, INTEGER)
    value, limit = (_number(ds.get(k)) for k in keywords)
    if value is None:
        return None
    if keywords is INTEGER and int(ds.get("PixelRepresentation", 0) or 0) == 1:
        value, limit = (_signed(v, ds) for v in (value, limit))
    low, high = sorted((value, value if limit is None else limit))
    return (stored >= low) & (stored <= high)


def _number(raw: object) -> float | None:
    if isinstance(raw, (list, tuple, pydicom.multival.MultiValue)):  # VM 1, but written twice by some
        raw = raw[0] if len(raw) else None
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value):
        raise ValueError(f"pixel padding value {raw!r} is not a finite number")
    return value


def _signed(value: float | None, ds: pydicom.Dataset) -> float | None:
    """A padding value of signed pixels written as US (its two's complement) read back as SS."""
    allocated = int(ds.get("BitsAllocated", 16) or 16)
    if value is not None and value >= 2 ** (allocated - 1):
        return value - 2**allocated
    return value
