"""Image reading: every supported format becomes float32 (H, W) in [0, 1], air dark.

`read_image` picks the reader by content, then suffix (`formats.py`): DICOM (`dicom.py`: the grey-scale
pipeline in the standard's order, with LUTs and windows from the top level or the functional groups
(`dicom_frame.py`, `dicom_luts.py`), pixel padding (`dicom_padding.py`), MONOCHROME1 and Presentation
LUT Shape, PALETTE COLOR, YBR colour spaces, files without File Meta) and raster formats
(`raster.py`: PNG/JPEG/BMP/WebP through OpenCV, TIFF through tifffile with every photometric tag,
the EXIF/TIFF Orientation tag applied: `orientation.py`).
Whatever fails inside a decoder comes out as ImageReadError naming the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medattn.data.io.dicom import SUFFIXES as DICOM_SUFFIXES
from medattn.data.io.dicom import read_dicom
from medattn.data.io.formats import sniff
from medattn.data.io.raster import SUFFIXES as RASTER_SUFFIXES
from medattn.data.io.raster import read_raster
from medattn.errors import ImageReadError

__all__ = ["DICOM_SUFFIXES", "RASTER_SUFFIXES", "read_image"]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read PNG/JPEG/BMP/TIFF/WebP or DICOM as float32 (H, W) in [0, 1], as viewers show it.

    The content decides the format; the suffix only when the content names none. Raises
    ImageReadError naming the file and the reason when it cannot (a missing or empty file, an
    unknown format, a corrupt file, a size above the pixel limit, a codec that is not
    installed, a colour space or LUT that cannot be applied).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file does not exist")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(path, "file is empty")
        kind = sniff(path)
        if kind == "dicom" or (kind is None and path.suffix.lower() in DICOM_SUFFIXES):
            return read_dicom(path)
        return read_raster(path, kind)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure must name the file
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc
