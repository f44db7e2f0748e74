"""Ground truth as pixel masks: radiologist boxes, or segmentations given as SIIM run-length
strings, polygons or mask images.

Every localization metric takes its ground truth through `truth_mask`: boxes (see
`medattn.metrics.boxes`) or a boolean (H, W) mask of the image. Run lengths are decoded with
pycocotools (column-major, the COCO mask API). A polygon is drawn as the protocol that published
it draws it (`POLYGON_PROTOCOLS`, named by the dataset's `polygon_protocol`), because the two
rules disagree on every boundary pixel:
- "coco": pycocotools' `frPyObjects` (the COCO mask API: a pixel is in when the polygon's
  upsampled boundary encloses it; a 4x3-pixel square from (1, 1) to (5, 4) covers 12 pixels);
- "chexlocalize": CheXlocalize's `create_mask` (segmentation/annotation_to_segmentation.py,
  Saporta et al. 2022): PIL `ImageDraw.polygon(points, outline=1, fill=1)` on a mode "1" image
  of the image's size, the points as given, so the outline's pixels are in (the same square
  covers 20 pixels, rows 1-4 by columns 1-5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from medattn.metrics.boxes import BoxesLike, box_mask

GroundTruth = Union[BoxesLike, np.ndarray]  # boxes, or a boolean (H, W) mask


def is_mask(truth: GroundTruth) -> bool:
    """Whether ground truth is a segmentation mask (a boolean array) rather than boxes."""
    return isinstance(truth, np.ndarray) and truth.dtype == bool


def truth_mask(truth: GroundTruth, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the ground truth: a boolean array of that shape as it is, anything
    else read as boxes (`box_mask`). ValueError when a mask's shape differs from `shape`."""
    if is_mask(truth):
        if truth.shape != (int(shape[0]), int(shape[1])):
            raise ValueError(f"ground-truth mask of shape {truth.shape} differs from the map's {tuple(shape)}")
        return truth
    return box_mask(truth, shape)


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """A SIIM-ACR pneumothorax run-length string → boolean (H, W) mask.

    SIIM's format (train-rle.csv, column `EncodedPixels`): space-separated pairs
    `gap length`, pixels counted down the columns (column-major, as the image's transpose
    flattened), each gap counted from the end of the previous run; "-1" (or an empty string)
    is an image without pneumothorax. The gaps and lengths are exactly the alternating
    zero/one counts of an uncompressed COCO RLE, which pycocotools decodes.
    ValueError naming the problem when the string is malformed or runs past the image.
    """
    text = str(rle).strip()
    height, width = int(shape[0]), int(shape[1])
    if text in ("", "-1"):
        return np.zeros((height, width), dtype=bool)
    try:
        counts = [int(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"run-length string has a non-integer value: {text[:60]!r}") from None
    if len(counts) % 2 or any(c < 0 for c in counts):
        raise ValueError(f"run-length string must be pairs of non-negative integers, got {len(counts)} values")
    total = sum(counts)
    if total > height * width:
        raise ValueError(f"run-length string covers {total} pixels, more than the {height}×{width} image")
    counts.append(height * width - total)
    encoded = coco_mask.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return coco_mask.decode(encoded).astype(bool)


def polygon_mask(points: Sequence[float], shape: tuple[int, int], protocol: str = "coco") -> np.ndarray:
    """A polygon [x1, y1, x2, y2, ...] in pixels of the stored image → boolean (H, W) mask, drawn
    as `protocol` (a POLYGON_PROTOCOLS name) draws it. ValueError for fewer than 3 points or an
    unknown protocol."""
    flat = [float(v) for v in points]
    if len(flat) < 6 or len(flat) % 2:
        raise ValueError(f"a polygon needs at least 3 (x, y) points as a flat list, got {len(flat)} numbers")
    if protocol not in POLYGON_PROTOCOLS:
        raise ValueError(f"polygon protocol {protocol!r} is not one of {', '.join(POLYGON_PROTOCOLS)}")
    return POLYGON_PROTOCOLS[protocol](flat, int(shape[0]), int(shape[1]))


def _coco_polygon(flat: list[float], height: int, width: int) -> np.ndarray:
    encoded = coco_mask.merge(coco_mask.frPyObjects([flat], height, width))
    return coco_mask.decode(encoded).astype(bool)


def _chexlocalize_polygon(flat: list[float], height: int, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("1", (width, height))
    ImageDraw.Draw(canvas).polygon(list(zip(flat[0::2], flat[1::2])), outline=1, fill=1)
    return np.array(canvas, dtype=bool)


POLYGON_PROTOCOLS = {"coco": _coco_polygon, "chexlocalize": _chexlocalize_polygon}


def image_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image (PNG, TIFF, ...; any non-zero pixel is in the mask) → boolean (H, W) mask.
    ValueError naming the file when it cannot be read or its size differs from the image's."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"{path}: not a readable mask image")
    if pixels.ndim == 3:
        pixels = pixels.max(axis=2)
    if pixels.shape != (int(shape[0]), int(shape[1])):
        raise ValueError(f"{path}: mask of size {pixels.shape[1]}×{pixels.shape[0]} differs from the image's "
                         f"{shape[1]}×{shape[0]}")
    return pixels > 0


def parse_polygon(text: str) -> list[float]:
    """A polygon as written in masks.csv: a JSON list [x1, y1, x2, y2, ...], or of [x, y] pairs
    as CheXlocalize's gt_annotations json holds them; returned flat."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"polygon is not a JSON list of numbers: {exc}") from None
    if isinstance(values, list) and values and all(isinstance(p, list) and len(p) == 2 for p in values):
        values = [v for pair in values for v in pair]
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError("polygon must be a JSON list of numbers [x1, y1, x2, y2, ...] or of [x, y] pairs")
    return [float(v) for v in values]
