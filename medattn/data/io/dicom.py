"""DICOM pixels to float32 (H, W) in [0, 1], as a display shows them (air dark).

Grey, in the order of the standard's grey-scale pipeline (PS3.3 C.11, PS3.4 N.2.1):
1. padding: Pixel Padding Value / Range Limit (C.7.5.1.1.2) mark stored values that are no image
   (`dicom_padding`);
2. Modality LUT: Rescale Slope/Intercept or the Modality LUT Sequence (C.11.1);
3. VOI LUT: the VOI LUT Sequence, else the first Window Center/Width with its VOI LUT Function
   (C.11.2), else min-max over the pixels that are not padding;
4. presentation: MONOCHROME1 (C.7.6.3.1.2) or Presentation LUT Shape INVERSE (C.11.6) inverted,
   once when both say so, then padding shown as background (0).
Steps 2 and 3 read the attributes that apply to the frame: the top level, or the Shared or
Per-frame Functional Groups of an enhanced multi-frame file (`dicom_frame`). Where pydicom's
`apply_modality_lut`/`apply_voi_lut`/`apply_presentation_lut` are right this gives their numbers;
it differs where they read the top level only, take a LUT descriptor at face value
(`dicom_luts`), refuse a LINEAR window narrower than 1, or invert by the frame's own min/max.
Presentation LUT Shape: MONOCHROME1 with INVERSE is one inversion (the DX/MG IODs require INVERSE
with MONOCHROME1; Weasis 4.1 and DCMTK invert once); MONOCHROME1 with IDENTITY is still
inverted (DCMTK would not: the combination breaks the IOD, and the photometric interpretation
is what Cornerstone goes by).
Colour: PALETTE COLOR through its palette (C.7.6.3.1.5); YBR_FULL,
YBR_FULL_422, YBR_RCT and YBR_ICT become RGB exactly once, inside pydicom's decoder (natively
stored YBR by pydicom, JPEG by the codec, JPEG 2000 by its inverse component transform; the
decoder reports the colour space it returned), then ITU-R BT.601 luma. Only the first frame
of a multi-frame file is read.

Files written without File Meta, or with meta lacking (0002,0010) Transfer Syntax UID, are
read with the encoding the dataset itself shows (implicit/explicit VR, endianness); such a
file with compressed pixel data names no codec and is refused with that reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medattn.data.io.dicom_frame import frame_attributes
from medattn.data.io.dicom_luts import numbers, read_lut, window
from medattn.data.io.dicom_padding import padding_mask
from medattn.data.io.formats import check_pixels
from medattn.data.io.grey import luma, minmax, scale, unit
from medattn.errors import ImageReadError

log = logging.getLogger(__name__)


class _TracebacksAtDebug(logging.Filter):
    """pydicom logs each decoder plugin's failure with its traceback at ERROR, then raises the
    error medattn reports as the image's one skip line: those tracebacks are debug detail, shown
    only when the logger is enabled for DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None or record.levelno <= logging.DEBUG:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_TracebacksAtDebug())

SUFFIXES = {".dcm", ".dicom", ".dic"}
PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Which PyPI packages decode which compressed transfer syntaxes (pydicom's plugin table).
DECODER_HINTS = {
    "JPEG": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
}


def read_dicom(path: Path) -> np.ndarray:
    """The first frame of a DICOM file as float32 (H, W) in [0, 1]; ImageReadError naming the file."""
    ds = _open(path)
    pixels, decoded_as = _decode(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:
        return _palette(pixels, ds, path)
    if pixels.ndim == 3:
        top = 2 ** int(ds.get("BitsStored", pixels.dtype.itemsize * 8)) - 1
        if decoded_as == "RGB":
            return scale(luma(pixels), top)
        if decoded_as in ("YBR_FULL", "YBR_FULL_422"):  # Y of YBR_FULL is the BT.601 luma (C.7.6.3.1.2)
            return scale(pixels[..., 0], top)
        raise ImageReadError(path, f"colour space {photometric or decoded_as} is not supported "
                                   "(RGB, YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT and PALETTE COLOR are)")
    return _grey(pixels, ds, photometric, path)


def _open(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageReadError(path, f"not a valid DICOM file ({exc})") from exc
    element = next((name for name in PIXEL_ELEMENTS if name in ds), None)
    if element is None:
        syntax = getattr(getattr(ds, "file_meta", None), "get", lambda _: None)("TransferSyntaxUID")
        hint = (f", or its Transfer Syntax UID ({getattr(syntax, 'name', syntax)}) does not match how the data set "
                "is encoded" if syntax else "")
        raise ImageReadError(path, f"DICOM file has no pixel data (PixelData element missing{hint})")
    if "Rows" in ds and "Columns" in ds:
        check_pixels(path, int(ds.Columns or 0), int(ds.Rows or 0))
    ds.ensure_file_meta()
    if "TransferSyntaxUID" not in ds.file_meta:
        if element == "PixelData" and ds["PixelData"].is_undefined_length:
            raise ImageReadError(path, "compressed pixel data but no Transfer Syntax UID in the File Meta: "
                                       "the codec cannot be known")
        implicit, little = ds.original_encoding
        syntaxes = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
                    (False, False): ExplicitVRBigEndian}
        ds.file_meta.TransferSyntaxUID = syntaxes.get((implicit, little), ImplicitVRLittleEndian)
    return ds


def _decode(ds, path: Path) -> tuple[np.ndarray, str]:
    """First frame as stored values (colour as RGB) and the colour space the decoder returned."""
    from pydicom.pixels import get_decoder

    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    # pydicom converts YBR_FULL to RGB for 8-bit samples only; deeper ones are read as YBR (their Y is the luma)
    deep_ybr = photometric in ("YBR_FULL", "YBR_FULL_422") and int(ds.get("BitsAllocated", 8)) > 8
    decoder = None
    try:
        decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
        pixels, meta = decoder.as_array(ds, index=0, as_rgb=not deep_ybr)
    except Exception as exc:  # pydicom raises several types for missing or failing decoders
        missing = decoder is None or not decoder.is_available
        raise ImageReadError(path, _decoder_reason(ds, exc, missing)) from exc
    return pixels, str(meta.get("photometric_interpretation", "")).upper()


def _palette(indices: np.ndarray, ds, path: Path) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    try:
        rgb = apply_color_lut(indices, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    except (AttributeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ImageReadError(path, f"PALETTE COLOR without a usable palette ({exc})") from exc
    if bits == 16 and int(rgb.max()) <= 255:  # 8-bit entries declared as 16 (as DCMTK reads them)
        bits = 8
    return _background(scale(luma(rgb), 2**bits - 1), _padding(indices, ds, path))


def _grey(pixels: np.ndarray, ds, photometric: str, path: Path) -> np.ndarray:
    padding = _padding(pixels, ds, path)
    inverse = photometric == "MONOCHROME1" or str(ds.get("PresentationLUTShape", "") or "").strip().upper() == "INVERSE"
    if pixels.dtype.kind == "f":
        values = _unit_float(pixels, padding, path)
        return _background(1.0 - values if inverse else values, padding)
    values = pixels.astype(np.float64)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    attributes, source = frame_attributes(ds)
    slope, intercept = rescale(attributes, path)
    try:
        if attributes.get("ModalityLUTSequence"):
            values = read_lut(attributes.ModalityLUTSequence[0], ds, signed).apply(values).astype(np.float64)
        else:
            values = values * slope + intercept
    except (AttributeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ImageReadError(path, f"unusable Modality LUT ({source['modality']}: {exc})") from exc
    try:
        if attributes.get("VOILUTSequence"):
            # the VOI input is the modality output: signed with signed pixels or a negative intercept
            lut = read_lut(attributes.VOILUTSequence[0], ds, signed or intercept < 0)
            shown = lut.apply(values) / float(2**lut.bits - 1)
        else:
            shown = window(values, attributes)
    except (AttributeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ImageReadError(path, f"unusable VOI LUT ({source['voi']}: {exc})") from exc
    shown = minmax(values, padding) if shown is None else np.clip(shown, 0.0, 1.0)
    if inverse:
        shown = 1.0 - shown
    return _background(np.asarray(shown, np.float32), padding)


def _padding(stored: np.ndarray, ds, path: Path) -> np.ndarray | None:
    try:
        return padding_mask(stored, ds)
    except ValueError as exc:
        raise ImageReadError(path, f"unusable Pixel Padding Value ({exc})") from exc


def _unit_float(pixels: np.ndarray, padding: np.ndarray | None, path: Path) -> np.ndarray:
    """Float pixel data by min-max over the pixels that are not padding."""
    if padding is None:
        return unit(pixels, path)
    if not np.all(np.isfinite(pixels[~padding])):
        raise ImageReadError(path, "image holds NaN or infinite values")
    return minmax(np.where(padding, 0.0, pixels), padding)


def _background(shown: np.ndarray, padding: np.ndarray | None) -> np.ndarray:
    """Padding shown as background (0, black)."""
    if padding is None:
        return shown
    return np.where(padding, np.float32(0.0), shown).astype(np.float32)


def rescale(ds, path: Path) -> tuple[float, float]:
    """(Rescale Slope, Rescale Intercept) of PS3.3 C.11.1.1.2, as devices write them: either one
    may be absent or empty (slope 1, intercept 0); a slope of 0 maps every pixel to one value, so
    the modality transform is ignored, as DCMTK does. ImageReadError naming the field when a
    value present is not a finite number."""
    out = []
    for name, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        raw = ds.get(name)
        if raw is None or raw == "":
            out.append(default)
            continue
        value = numbers(raw)
        if not value:
            raise ImageReadError(path, f"{name} {raw!r} is not a finite number")
        out.append(value[0])
    if out[0] == 0:
        log.warning("%s: RescaleSlope is 0; the modality transform is ignored", path)
        return 1.0, 0.0
    return out[0], out[1]


def _decoder_reason(ds, exc: Exception, missing: bool) -> str:
    """Why decoding failed; with `missing` (no decoder installed for the syntax), which package to install."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(syntax, "name", str(syntax))
    hint = next((pkgs for key, pkgs in sorted(DECODER_HINTS.items(), key=lambda kv: -len(kv[0])) if key in str(name)), None)
    advice = f"; install a decoder: pip install {hint}" if hint and missing else ""
    return f"cannot decode pixel data with transfer syntax {name} ({type(exc).__name__}: {exc}){advice}"
