"""Image reading: every supported format becomes float32 (H, W) in [0, 1], air dark.

Raster formats go through OpenCV (8/16-bit, grey or colour); DICOM goes through pydicom with
the modality LUT, then the VOI LUT or window, then MONOCHROME1 inversion, which is the order
the DICOM standard (PS3.3 C.11) prescribes for display.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from medattn.errors import ImageReadError

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
# Which PyPI packages decode which compressed transfer syntaxes (pydicom's plugin table).
DECODER_HINTS = {
    "JPEG": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read PNG/JPEG/BMP/TIFF or DICOM as float32 (H, W) in [0, 1].

    Raises ImageReadError naming the file and the reason when it cannot.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file does not exist")
    if path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_preamble(path):
        return _read_dicom(path)
    return _read_raster(path)


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_raster(path: Path) -> np.ndarray:
    if path.suffix.lower() not in RASTER_SUFFIXES:
        raise ImageReadError(
            path, f"unsupported file type {path.suffix or '(none)'}; expected PNG, JPEG, BMP, TIFF or DICOM"
        )
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(path, "not a valid image (corrupt or truncated file)")
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[:, :, :3]
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.shape[2] == 3 else image[:, :, 0]
    return _to_unit(image, path)


def _to_unit(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == bool:
        return image.astype(np.float32)
    image = image.astype(np.float32)
    if not np.all(np.isfinite(image)):
        raise ImageReadError(path, "image holds NaN or infinite values")
    return _minmax(image)


def _minmax(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image, dtype=np.float32)
    return ((image - low) / (high - low)).astype(np.float32)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_SUFFIXES)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise ImageReadError(path, f"not a valid DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data (PixelData element missing)")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for missing or failing decoders
        raise ImageReadError(path, _decoder_reason(ds, exc)) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return _to_unit(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY), path)

    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        out_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        # LUT inputs are integer stored values; rounding avoids pydicom's float-input path.
        values = apply_voi_lut(np.rint(values).astype(np.int64), ds).astype(np.float64) / float(2**out_bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = _window(values, ds)
    else:
        values = _minmax(values)
    if photometric == "MONOCHROME1":
        values = 1.0 - values
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def _first(value: object) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def _window(values: np.ndarray, ds: object) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 window to [0, 1] (LINEAR, LINEAR_EXACT and SIGMOID)."""
    center = _first(ds.WindowCenter)  # type: ignore[attr-defined]
    width = max(_first(ds.WindowWidth), 1.0)  # type: ignore[attr-defined]
    function = str(getattr(ds, "VOILUTFunction", "LINEAR")).upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return (values - (center - width / 2.0)) / width
    return ((values - (center - 0.5)) / (width - 1.0) + 0.5) if width > 1 else (values >= center).astype(float)


def _decoder_reason(ds: object, exc: Exception) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(syntax, "name", str(syntax))
    hint = next((pkgs for key, pkgs in sorted(DECODER_HINTS.items(), key=lambda kv: -len(kv[0])) if key in str(name)), None)
    advice = f"; install a decoder: pip install {hint}" if hint else ""
    return f"cannot decode pixel data with transfer syntax {name} ({exc}){advice}"
