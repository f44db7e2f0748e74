"""Image width and height from file headers, without decoding pixels.

Builders need the stored size of every image to put boxes in its frame; decoding 100k chest
X-rays for that would take an hour, reading their headers takes a minute.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
import pandas as pd
from tqdm import tqdm

from medattn.data.io import DICOM_SUFFIXES
from medattn.data.io.formats import bomb_error, check_pixels, sniff
from medattn.data.io.orientation import displayed_size, orientation
from medattn.data.skips import Skips
from medattn.errors import ImageReadError

# Header reads wait on the disk, not the CPU, so a few threads overlap the waits.
THREADS = 8


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a raster image or DICOM file as `read_image` returns it, read from its
    header: a raster image's displayed size (its EXIF/TIFF Orientation 5-8 swap the stored sides).

    The format is taken from the content as `read_image` does; ImageReadError naming the file
    for an unreadable header or a size above the pixel limit (`formats.check_pixels`).
    """
    path = Path(path)
    kind = sniff(path) if path.is_file() else None
    if kind == "dicom" or (kind is None and path.suffix.lower() in DICOM_SUFFIXES):
        width, height = _dicom_size(path)
        check_pixels(path, width, height)
        return width, height
    stored = _tiff_size(path) if kind == "tiff" else _raster_size(path)
    return displayed_size(*stored, orientation(path, kind))


def _raster_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.size[0]), int(image.size[1])
    except Image.DecompressionBombError as exc:
        raise bomb_error(path, exc) from exc
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(path, f"cannot read the image header ({exc})") from exc


def _tiff_size(path: Path) -> tuple[int, int]:
    """The stored size, as tifffile (the TIFF reader) sees it: Pillow 13 reports a TIFF's size
    already turned by its Orientation tag, other formats' as stored."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            width, height = int(page.imagewidth), int(page.imagelength)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
        raise ImageReadError(path, f"cannot read the TIFF header ({exc})") from exc
    check_pixels(path, width, height)
    return width, height


def stored_sizes(images: pd.DataFrame, root: Path, skips: Skips, desc: str = "reading image headers") -> pd.DataFrame:
    """`images` (with `image_id`, `path` relative to `root`) with `width`, `height` read from each
    file's header; images whose header cannot be read are skipped and named in `skips`."""
    paths = [root / p for p in images["path"]]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(tqdm(pool.map(_size_or_error, paths), total=len(paths), desc=desc, disable=None))
    readable = np.array([not isinstance(r, ImageReadError) for r in results], bool)
    for image_id, result in zip(images["image_id"], results):
        if isinstance(result, ImageReadError):
            skips.add(image_id, str(result), result.path, result)
    out = images[readable].copy()
    sizes = np.array([r for r in results if not isinstance(r, ImageReadError)], np.int64).reshape(-1, 2)
    out["width"], out["height"] = sizes[:, 0], sizes[:, 1]
    return out


def _size_or_error(path: Path) -> tuple[int, int] | ImageReadError:
    try:
        return image_size(path)
    except ImageReadError as exc:
        return exc


def _dicom_size(path: Path) -> tuple[int, int]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return int(ds.Columns), int(ds.Rows)
    except (InvalidDicomError, AttributeError, EOFError, OSError, ValueError, TypeError, KeyError) as exc:
        raise ImageReadError(path, f"cannot read Rows/Columns from the DICOM header ({exc})") from exc
