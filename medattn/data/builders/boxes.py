"""Boxes into the stored image frame: declared vs stored sizes, clipping, checking.

Every builder knows a size each image's boxes were drawn in (the declared frame: NIH and RSNA
1024x1024, COCO's width/height, CBIS-DDSM's ROI mask) and reads the stored size from the file.
The rule, the same in every builder (`reconcile_sizes`):
- stored == declared: boxes as they are;
- stored is a uniform rescale of declared (both sides within one pixel of one common scale, as
  a resize rounds them): boxes scaled by stored/declared on each axis;
- otherwise (another aspect ratio: transposed, cropped, padded): the boxes cannot be placed, so
  an image with boxes is skipped and named; one without boxes is kept with its stored size and
  listed in the log.
A box with a coordinate that is missing, not a number or infinite, or with a size that is not
positive, cannot be placed either: its image is skipped naming the row. A box that then overflows its image by less than CLIP_TOLERANCE_PX is rounding in the source
frame and is clipped; a larger overflow means wrong coordinates or a wrong image, and its image
is skipped naming the source row (`fit_boxes`), or, in strict mode, the build fails there.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)

CLIP_TOLERANCE_PX = 2.0
# A resize rounds each side to whole pixels: one pixel of slack per side.
RESCALE_TOLERANCE_PX = 1.0
COORDINATES = ("x", "y", "w", "h")


def uniform_rescale(declared: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Per row of (width, height) pairs: True where `stored` is `declared` times one common scale
    (each side within RESCALE_TOLERANCE_PX), False otherwise or where a size is missing."""
    declared, stored = np.asarray(declared, float).reshape(-1, 2), np.asarray(stored, float).reshape(-1, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (stored / declared).mean(axis=1, keepdims=True)
        error = np.abs(declared * scale - stored).max(axis=1)
    return np.isfinite(error) & (error <= RESCALE_TOLERANCE_PX)


def reconcile_sizes(
    images: pd.DataFrame, boxes: pd.DataFrame, declared: pd.DataFrame, skips: Skips, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Boxes drawn in each image's declared frame, moved to its stored width/height (see module doc).

    `declared` has `width`, `height` per image (same index as `images`; NaN: no declared size,
    boxes taken as drawn on the stored image); `what` names the declared frame in messages
    ('the 1024x1024 frame of BBox_List_2017.csv'). Returns the kept images and their boxes.
    """
    boxes = numeric_coordinates(boxes)
    stored = images[["width", "height"]].to_numpy(float)
    wanted = declared[["width", "height"]].to_numpy(float)
    known = ~np.isnan(wanted).any(axis=1)
    wanted = np.where(known[:, None], wanted, stored)
    same = (wanted == stored).all(axis=1)
    uniform = uniform_rescale(wanted, stored)
    has_boxes = images["image_id"].isin(set(boxes["image_id"])).to_numpy()
    bad = ~uniform & has_boxes
    for i in np.flatnonzero(bad):
        row = images.iloc[i]
        skips.add(row["image_id"], f"{what} gives {wanted[i, 0]:g}x{wanted[i, 1]:g} but the stored image "
                  f"{row['path']} is {stored[i, 0]:g}x{stored[i, 1]:g}, not a uniform rescale: its boxes cannot be placed")
    odd = ~uniform & ~has_boxes
    if odd.any():
        log.warning("%d image(s) without boxes differ from %s in aspect ratio; kept with their stored size: %s",
                    int(odd.sum()), what, ", ".join(images.loc[odd, "image_id"].astype(str).head(10)))
    rescaled = uniform & ~same & has_boxes
    if rescaled.any():
        log.info("%d image(s) are a uniform rescale of %s; their boxes are rescaled", int(rescaled.sum()), what)
    factors = pd.DataFrame(stored / wanted, columns=["sx", "sy"], index=images["image_id"].to_numpy())
    kept_ids = set(images.loc[~bad, "image_id"])
    out = boxes[boxes["image_id"].isin(kept_ids)].copy()
    sx = out["image_id"].map(factors["sx"]).astype(float)
    sy = out["image_id"].map(factors["sy"]).astype(float)
    out["x"], out["w"] = out["x"] * sx, out["w"] * sx
    out["y"], out["h"] = out["y"] * sy, out["h"] * sy
    return images[~bad].copy(), out


def numeric_coordinates(boxes: pd.DataFrame) -> pd.DataFrame:
    """`boxes` with x, y, w, h as floats; a value that is not a number (text in a CSV cell, a
    null in a json) becomes NaN, so that `fit_boxes` skips its image naming the row."""
    out = boxes.copy()
    for column in COORDINATES:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def fit_boxes(
    boxes: pd.DataFrame, images: pd.DataFrame, source: str | os.PathLike, skips: Skips | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clip small overflows into the image; an image with a box that is off is skipped (named
    with the box's row) into `skips`, or without `skips` a DatasetError lists every such box.

    `boxes` may carry an `origin` column ('BBox_List_2017.csv line 7') used in messages.
    Returns the kept images and their fitted boxes.
    """
    if boxes.empty:
        return images, boxes
    boxes = numeric_coordinates(boxes)
    sizes = images.set_index("image_id")[["width", "height"]].astype(float)
    width = boxes["image_id"].map(sizes["width"])
    height = boxes["image_id"].map(sizes["height"])
    x0, y0 = boxes["x"].astype(float), boxes["y"].astype(float)
    x1, y1 = x0 + boxes["w"].astype(float), y0 + boxes["h"].astype(float)
    overflow = pd.concat([-x0, -y0, x1 - width, y1 - height], axis=1).max(axis=1)
    unknown = width.isna()
    finite = np.isfinite(boxes[list(COORDINATES)].to_numpy(float)).all(axis=1)
    bad = unknown | ~finite | ~(boxes["w"] > 0) | ~(boxes["h"] > 0) | ~(overflow < CLIP_TOLERANCE_PX)
    if bad.any():
        problems = {i: _describe(boxes, i, width[i], height[i]) for i in boxes.index[bad]}
        if skips is None:
            raise DatasetError(source, list(problems.values()))
        for i, problem in problems.items():
            skips.add(boxes.at[i, "image_id"], problem, source)
    dropped = set(boxes.loc[bad, "image_id"])
    keep = ~boxes["image_id"].isin(dropped)
    out = boxes[keep].copy()
    cx0, cy0 = x0[keep].clip(lower=0), y0[keep].clip(lower=0)
    out["x"], out["y"] = cx0, cy0
    out["w"] = np.minimum(x1[keep], width[keep]) - cx0
    out["h"] = np.minimum(y1[keep], height[keep]) - cy0
    return images[~images["image_id"].isin(dropped)].copy(), out


def _describe(boxes: pd.DataFrame, i: int, width: float, height: float) -> str:
    row = boxes.loc[i]
    where = row["origin"] if "origin" in boxes.columns else f"box {i}"
    what = f"{where} (image {row['image_id']}, {row['label']}): box x={row['x']:g}, y={row['y']:g}, w={row['w']:g}, h={row['h']:g}"
    if pd.isna(width):
        return f"{what} belongs to no image in the dataset"
    if not np.isfinite(row[["x", "y", "w", "h"]].to_numpy(dtype=float)).all():
        return f"{what} has a missing, non-numeric or infinite coordinate"
    if not (row["w"] > 0 and row["h"] > 0):
        return f"{what} has non-positive size"
    return f"{what} lies outside the {width:g}x{height:g} image by {CLIP_TOLERANCE_PX:g} px or more"
