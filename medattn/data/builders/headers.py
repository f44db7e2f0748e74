"""Image width and height from file headers, without decoding pixels.

Builders need the stored size of every image to put boxes in its frame; decoding 100k chest
X-rays for that would take an hour, reading their headers takes a minute.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from medattn.data.io import DICOM_SUFFIXES
from medattn.errors import ImageReadError

# Header reads wait on the disk, not the CPU, so a few threads overlap the waits.
THREADS = 8


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a raster image or DICOM file, read from its header."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _dicom_size(path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.size[0]), int(image.size[1])
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageReadError(path, f"cannot read the image header ({exc})") from exc


def image_sizes(paths: Sequence[str | os.PathLike], desc: str = "reading image headers") -> np.ndarray:
    """(n, 2) int array of (width, height), with a progress bar on a terminal."""
    with ThreadPoolExecutor(THREADS) as pool:
        sizes = list(tqdm(pool.map(image_size, paths), total=len(paths), desc=desc, disable=None))
    return np.array(sizes, dtype=np.int64).reshape(-1, 2)


def _dicom_size(path: Path) -> tuple[int, int]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return int(ds.Columns), int(ds.Rows)
    except (InvalidDicomError, AttributeError, EOFError, OSError, ValueError) as exc:
        raise ImageReadError(path, f"cannot read Rows/Columns from the DICOM header ({exc})") from exc
