"""PNG, JPEG, BMP, WebP and TIFF to float32 (H, W) in [0, 1], air dark, as viewers show them
(the EXIF/TIFF Orientation tag applied, `orientation.py`).

PNG/JPEG/BMP/WebP decode through OpenCV (every PNG colour type at 1-16 bits: grey, grey+alpha,
palette, RGB, RGBA). TIFF decodes through tifffile, which returns the stored samples, so that
every PhotometricInterpretation tag is honoured here the same way at every depth:
MinIsBlack as is, MinIsWhite inverted (OpenCV and Pillow invert it only for some depths and
compressions), RGB and YCbCr (decoded to RGB by the codec) by luma, Palette through its
ColorMap, CMYK by its RGB equivalent, float and signed samples by min-max. Compressions that
tifffile cannot decode without imagecodecs (LZW, JPEG) fall back to Pillow. Only the first
page is read.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medattn.data.io.formats import bomb_error, check_pixels
from medattn.data.io.grey import luma, scale, unit
from medattn.data.io.orientation import orientation, oriented
from medattn.errors import ImageReadError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
TIFF_SUFFIXES = {".tif", ".tiff"}


def read_raster(path: Path, kind: str | None = None) -> np.ndarray:
    """A raster image as float32 (H, W) in [0, 1], turned as its EXIF/TIFF Orientation tag says
    (`orientation.py`); ImageReadError naming the file.

    `kind` is the format its content shows (`formats.sniff`); None: go by the suffix."""
    if kind is None and path.suffix.lower() not in SUFFIXES:
        raise ImageReadError(
            path, f"unsupported file type {path.suffix or '(none)'}; expected PNG, JPEG, BMP, TIFF, WebP or DICOM"
        )
    return oriented(_decode(path, kind), orientation(path, kind))


def _decode(path: Path, kind: str | None) -> np.ndarray:
    """The stored samples as grey in [0, 1], before any orientation."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    if kind == "tiff" or (kind is None and path.suffix.lower() in TIFF_SUFFIXES):
        return _read_tiff(path)
    _check_header_size(path)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(path, "not a valid image (corrupt or truncated file)")
    if image.ndim == 3 and image.shape[2] >= 3:
        return unit_colour(image[..., 2::-1], path)  # BGR(A) → RGB
    return unit(image[..., 0] if image.ndim == 3 else image, path)


def _check_header_size(path: Path) -> None:
    """Pillow's decompression-bomb check on the size the header declares, without decoding (the
    same limit as `formats.check_pixels`); a header Pillow cannot read is left to OpenCV."""
    from PIL import Image, UnidentifiedImageError

    try:
        Image.open(path).close()
    except Image.DecompressionBombError as exc:
        raise bomb_error(path, exc) from exc
    except (OSError, UnidentifiedImageError, ValueError):
        return


def unit_colour(rgb: np.ndarray, path: Path, bits: int | None = None) -> np.ndarray:
    """RGB samples → grey in [0, 1] by luma, scaled by the declared depth (or the dtype's)."""
    if rgb.dtype.kind == "u":
        return scale(luma(rgb), 2 ** (bits or rgb.dtype.itemsize * 8) - 1)
    return unit(luma(rgb), path)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            check_pixels(path, page.imagewidth, page.imagelength)
            photometric = page.photometric.name
            bits = int(page.bitspersample)
            colormap = page.colormap
            planar_separate = page.samplesperpixel > 1 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
            try:
                samples = page.asarray()
            except ValueError as exc:  # a compression tifffile needs imagecodecs for
                if "imagecodecs" not in str(exc):
                    raise
                return _read_tiff_pillow(path, photometric)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
        raise ImageReadError(path, f"not a valid TIFF image ({exc})") from exc
    if samples.ndim == 3 and planar_separate:
        samples = np.moveaxis(samples, 0, -1)  # samples first (PlanarConfiguration 2) → last
    if photometric == "PALETTE":
        if colormap is None:
            raise ImageReadError(path, "palette TIFF without a ColorMap")
        rgb = np.asarray(colormap).T[np.asarray(samples)]
        return unit_colour(rgb, path, 16 if int(rgb.max()) > 255 else 8)
    if photometric == "SEPARATED":  # CMYK: R = (1 - C)(1 - K) …
        top = float(2**bits - 1)
        ink = samples[..., :4].astype(np.float64) / top
        rgb = (1.0 - ink[..., :3]) * (1.0 - ink[..., 3:4])
        return scale(luma(rgb), 1.0)
    if photometric in ("RGB", "YCBCR", "CIELAB") and samples.ndim == 3:
        if photometric == "CIELAB":
            raise ImageReadError(path, "CIELab TIFF is not supported; save it as RGB or greyscale")
        return unit_colour(samples, path, bits if samples.dtype.kind == "u" else None)
    if samples.ndim == 3:  # grey with extra (alpha) samples
        samples = samples[..., 0]
    grey = unit(samples, path, bits if samples.dtype.kind == "u" and bits < samples.dtype.itemsize * 8 else None)
    return 1.0 - grey if photometric == "MINISWHITE" else grey


def _read_tiff_pillow(path: Path, photometric: str) -> np.ndarray:
    """Pillow decodes what tifffile cannot. In a copy first, MinIsWhite is relabelled MinIsBlack,
    because Pillow inverts it or not depending on depth and codec (inverted here afterwards), and
    Orientation is set to 1, because Pillow turns TIFFs as it loads them (`read_raster` turns
    every format once, the same way)."""
    import io

    import tifffile
    from PIL import Image

    buffer = io.BytesIO(path.read_bytes())
    with tifffile.TiffFile(buffer) as tif:
        tags = tif.pages.first.tags
        if photometric == "MINISWHITE":
            tags["PhotometricInterpretation"].overwrite(1)
        if "Orientation" in tags and tags["Orientation"].value != 1:
            tags["Orientation"].overwrite(1)
    buffer.seek(0)
    with Image.open(buffer) as image:
        mode = image.mode
        if mode in ("P", "CMYK", "YCbCr", "LA", "PA", "RGBA"):
            image, mode = image.convert("RGB"), "RGB"
        samples = np.asarray(image)
    if mode == "RGB":
        return unit_colour(samples, path)
    grey = unit(samples if samples.dtype != np.int32 else samples.astype(np.float64), path)
    return 1.0 - grey if photometric == "MINISWHITE" else grey
