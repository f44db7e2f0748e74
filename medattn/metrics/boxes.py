"""Radiologist boxes as pixel masks, with the one inclusive convention every metric uses.

A box `x, y, w, h` (pixels of the stored image, top-left origin) covers the pixels with
`int(y) <= row <= int(y + h)` and `int(x) <= col <= int(x + w)`: both ends inclusive, as in
the published RSNA localization-utility code. `int` truncates toward zero, like Python's.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import pandas as pd

BoxesLike = Union[np.ndarray, pd.DataFrame, Sequence[Sequence[float]], None]


def as_box_array(boxes: BoxesLike) -> np.ndarray:
    """Boxes as a float (N, 4) array of x, y, w, h; None or an empty table gives (0, 4).

    Accepts an (N, 4) array-like or a DataFrame with columns x, y, w, h (other columns, such
    as `image_id` and `label` from boxes.csv, are ignored).
    """
    if boxes is None:
        return np.zeros((0, 4))
    if isinstance(boxes, pd.DataFrame):
        missing = [c for c in ("x", "y", "w", "h") if c not in boxes.columns]
        if missing:
            raise ValueError(f"boxes table lacks column(s) {', '.join(missing)}")
        array = boxes[["x", "y", "w", "h"]].to_numpy(dtype=float)
    else:
        array = np.asarray(boxes, dtype=float)
        if array.size == 0:
            return np.zeros((0, 4))
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != 4:
            raise ValueError(f"boxes must have shape (N, 4) as x, y, w, h; got {array.shape}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(f"box {int(np.argmax(bad))} has a non-finite value: {array[bad][0].tolist()}")
    return array


def box_mask(boxes: BoxesLike, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask: the union of the boxes' inclusive pixel ranges, clipped to the image.

    Example: x=1.7, y=2.2, w=3, h=2 covers columns 1..4 and rows 2..4.
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in as_box_array(boxes):
        row0, row1 = max(int(y), 0), min(int(y + h), height - 1)
        col0, col1 = max(int(x), 0), min(int(x + w), width - 1)
        if row0 <= row1 and col0 <= col1:
            mask[row0 : row1 + 1, col0 : col1 + 1] = True
    return mask


def point_in_boxes(point: tuple[int, int], boxes: BoxesLike) -> bool:
    """Whether pixel (row, col) lies in any box, by the same inclusive convention as `box_mask`;
    a point outside the image (negative, e.g. `localization.NO_POINT`) lies in none."""
    row, col = point
    if row < 0 or col < 0:
        return False
    return any(
        int(y) <= row <= int(y + h) and int(x) <= col <= int(x + w) for x, y, w, h in as_box_array(boxes)
    )


def boxes_by_class(
    boxes: pd.DataFrame, image_ids: Sequence[str], classes: Sequence[str]
) -> list[dict[int, np.ndarray]]:
    """Group a boxes.csv table per image: one `{class index: (N, 4) array}` dict per image id.

    Images without boxes get an empty dict; boxes whose label is not in `classes` are ignored.
    This is the per-image form `pointwise_ap` takes.
    """
    index = {name: i for i, name in enumerate(classes)}
    grouped: dict[str, dict[int, np.ndarray]] = {}
    for (image_id, label), rows in boxes.groupby([boxes["image_id"].astype(str), "label"], sort=False):
        if label in index:
            grouped.setdefault(image_id, {})[index[label]] = as_box_array(rows)
    return [grouped.get(str(image_id), {}) for image_id in image_ids]

