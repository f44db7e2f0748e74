"""Boxes into the stored image frame: rescaling from a dataset's own frame, clipping, checking.

A box that overflows its image by less than CLIP_TOLERANCE_PX is rounding in the source frame
and is clipped; a larger overflow means wrong coordinates or a wrong image, and is reported
with the source row so it can be traced back.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from medattn.errors import DatasetError

CLIP_TOLERANCE_PX = 2.0


def rescale_boxes(boxes: pd.DataFrame, images: pd.DataFrame, frame: tuple[float, float]) -> pd.DataFrame:
    """Scale boxes given in a (width, height) `frame` to each image's stored width/height."""
    sizes = images.set_index("image_id")[["width", "height"]].astype(float)
    sx = boxes["image_id"].map(sizes["width"]) / frame[0]
    sy = boxes["image_id"].map(sizes["height"]) / frame[1]
    out = boxes.copy()
    out["x"], out["w"] = boxes["x"] * sx, boxes["w"] * sx
    out["y"], out["h"] = boxes["y"] * sy, boxes["h"] * sy
    return out


def fit_boxes(boxes: pd.DataFrame, images: pd.DataFrame, source: str | os.PathLike) -> pd.DataFrame:
    """Clip small overflows into the image; raise DatasetError naming each box that is off.

    `boxes` may carry an `origin` column ('BBox_List_2017.csv line 7') used in messages.
    """
    if boxes.empty:
        return boxes
    sizes = images.set_index("image_id")[["width", "height"]].astype(float)
    width = boxes["image_id"].map(sizes["width"])
    height = boxes["image_id"].map(sizes["height"])
    x0, y0 = boxes["x"].astype(float), boxes["y"].astype(float)
    x1, y1 = x0 + boxes["w"].astype(float), y0 + boxes["h"].astype(float)
    overflow = pd.concat([-x0, -y0, x1 - width, y1 - height], axis=1).max(axis=1)
    unknown = width.isna()
    bad = unknown | ~(boxes["w"] > 0) | ~(boxes["h"] > 0) | ~(overflow < CLIP_TOLERANCE_PX)
    if bad.any():
        raise DatasetError(source, [_describe(boxes, i, width[i], height[i]) for i in boxes.index[bad]])
    out = boxes.copy()
    cx0, cy0 = x0.clip(lower=0), y0.clip(lower=0)
    out["x"], out["y"] = cx0, cy0
    out["w"] = np.minimum(x1, width) - cx0
    out["h"] = np.minimum(y1, height) - cy0
    return out


def _describe(boxes: pd.DataFrame, i: int, width: float, height: float) -> str:
    row = boxes.loc[i]
    where = row["origin"] if "origin" in boxes.columns else f"box {i}"
    what = f"{where} (image {row['image_id']}, {row['label']}): box x={row['x']:g}, y={row['y']:g}, w={row['w']:g}, h={row['h']:g}"
    if pd.isna(width):
        return f"{what} belongs to no image in the dataset"
    if not np.isfinite(row[["x", "y", "w", "h"]].to_numpy(dtype=float)).all():
        return f"{what} has a missing coordinate"
    if not (row["w"] > 0 and row["h"] > 0):
        return f"{what} has non-positive size"
    return f"{what} lies outside the {width:g}x{height:g} image by {CLIP_TOLERANCE_PX:g} px or more"
