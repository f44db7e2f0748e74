"""EXIF / TIFF orientation: images as every viewer shows them.

Cameras, phone photos of films and some scanners store the pixels as the sensor read them and
say in the Orientation tag (EXIF/TIFF tag 274, values 1-8) how to turn them for display. Every
viewer applies it, so boxes drawn on such an image are in its displayed frame; decoders asked for
the stored samples (OpenCV's IMREAD_UNCHANGED, tifffile) ignore it. The tag lives in JPEG's APP1
EXIF, PNG's eXIf chunk, WebP's EXIF chunk and TIFF's own IFD (read here with tifffile, which reads
the TIFF); the turn is Pillow's `ImageOps.exif_transpose` (2 mirror, 3 rotate 180, 4 flip,
5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise), applied to the
decoded grey image. 5-8 swap width and height. A missing, unreadable or out-of-range tag is 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ORIENTATION_TAG = 0x0112
SWAPS_SIDES = frozenset({5, 6, 7, 8})


def orientation(path: str | os.PathLike, kind: str | None) -> int:
    """The Orientation tag (1-8) of a raster file whose format is `kind` ('jpeg', 'png',
    'webp', 'tiff', 'bmp' or None: by suffix); 1 when it has none."""
    path = Path(path)
    if kind == "tiff" or (kind is None and path.suffix.lower() in (".tif", ".tiff")):
        value = _tiff_orientation(path)
    else:
        value = _exif_orientation(path)
    return value if value in range(1, 9) else 1


def oriented(pixels: np.ndarray, tag: int) -> np.ndarray:
    """Grey (H, W) pixels turned as Orientation `tag` says (Pillow's exif_transpose), float32."""
    pixels = np.asarray(pixels, np.float32)
    if tag == 1:
        return pixels
    from PIL import Image, ImageOps

    image = Image.fromarray(pixels)  # mode "F": every depth survives the turn exactly
    image.getexif()[ORIENTATION_TAG] = tag
    return np.asarray(ImageOps.exif_transpose(image), np.float32)


def displayed_size(width: int, height: int, tag: int) -> tuple[int, int]:
    """(width, height) of the displayed image for a stored width × height."""
    return (height, width) if tag in SWAPS_SIDES else (width, height)


def _exif_orientation(path: Path) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.getexif().get(ORIENTATION_TAG, 1))
    except (OSError, UnidentifiedImageError, ValueError, TypeError, SyntaxError):
        return 1


def _tiff_orientation(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages.first.tags.get(274)
            return int(tag.value) if tag is not None else 1
    except (tifffile.TiffFileError, OSError, ValueError, TypeError, IndexError):
        return 1
