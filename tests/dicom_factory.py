"""Synthetic DICOM files as devices write them: every photometric interpretation, bit depth and
compression the tests cover, written with pydicom (and Pillow for JPEG baseline)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    JPEG2000, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, SecondaryCaptureImageStorage,
    generate_uid,
)

SYNTAX = {"none": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg": JPEGBaseline8Bit,
          "j2k": JPEG2000Lossless, "j2k-lossy": JPEG2000}
SIZE = 32


def mono_ramp(bits: int) -> np.ndarray:
    """(32, 32) ramp from 0 to 2^bits - 1 along x."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.tile(np.linspace(0, 2**bits - 1, SIZE).round().astype(dtype), (SIZE, 1))


def colour_pattern(bits: int) -> np.ndarray:
    """(32, 32, 3) RGB: red ramps along x, green along y, blue constant: a channel swap or a
    second colour conversion changes its luma."""
    top = 2**bits - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    ramp = np.linspace(0.1, 0.9, SIZE)
    red, green = np.meshgrid(ramp, ramp[::-1])
    return (np.dstack([red, green, np.full_like(red, 0.4)]) * top).round().astype(dtype)


def dataset(rows: int, cols: int, samples: int, photometric: str, bits: int, syntax=ExplicitVRLittleEndian,
            signed: bool = False) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, samples, photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    if samples > 1:
        ds.PlanarConfiguration = 0
    return ds


def write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def mono(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", compression: str = "none",
         bits: int | None = None, **elements) -> Path:
    bits = bits or (8 if pixels.dtype == np.uint8 else 16)
    if compression == "jpeg":
        ds = dataset(*pixels.shape, 1, photometric, bits, JPEGBaseline8Bit)
        ds.PixelData = encapsulate([_jpeg(pixels)])
        ds["PixelData"].VR = "OB"
    else:
        ds = dataset(*pixels.shape, 1, photometric, bits, signed=pixels.dtype.kind == "i")
        ds.PixelData = pixels.tobytes()
        if compression != "none":
            ds.compress(SYNTAX[compression])
    for key, value in elements.items():
        setattr(ds, key, value)
    return write(ds, path)


def palette(path: Path, indices: np.ndarray, lut: np.ndarray, compression: str = "none", lut_bits: int = 16) -> Path:
    """PALETTE COLOR: indices into the same LUT on R, G and B (so the palette is grey)."""
    bits = 8 if indices.dtype == np.uint8 else 16
    ds = dataset(*indices.shape, 1, "PALETTE COLOR", bits)
    first = 0
    descriptor = [len(lut) if len(lut) < 65536 else 0, first, lut_bits]
    data = lut.astype(np.uint16).tobytes() if lut_bits == 16 else lut.astype(np.uint8).tobytes()
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", descriptor)
        setattr(ds, f"{colour}PaletteColorLookupTableData", data)
    ds.PixelData = indices.tobytes()
    if compression != "none":
        ds.compress(SYNTAX[compression])
    return write(ds, path)


def colour(path: Path, rgb: np.ndarray, photometric: str, compression: str = "none") -> Path:
    """Colour written the way devices write each photometric interpretation from RGB samples."""
    rows, cols, _ = rgb.shape
    bits = 8 if rgb.dtype == np.uint8 else 16
    if compression == "jpeg":  # baseline: Pillow's YCbCr (4:2:2 or 4:4:4), or RGB kept (Adobe marker)
        ds = dataset(rows, cols, 3, photometric, 8, JPEGBaseline8Bit)
        options = {"RGB": {"keep_rgb": True, "subsampling": 0}, "YBR_FULL": {"subsampling": 0},
                   "YBR_FULL_422": {"subsampling": 1}}[photometric]
        ds.PixelData = encapsulate([_jpeg(rgb, **options)])
        ds["PixelData"].VR = "OB"
        return write(ds, path)
    if compression.startswith("j2k"):  # the codec's own component transform: RCT lossless, ICT lossy
        ds = dataset(rows, cols, 3, "RGB", bits)
        ds.PixelData = rgb.tobytes()
        extra = {"j2k_psnr": [80]} if compression == "j2k-lossy" else {}
        ds.compress(SYNTAX[compression], use_mct=photometric != "RGB", **extra)
        ds.PhotometricInterpretation = photometric
        return write(ds, path)
    ds = dataset(rows, cols, 3, photometric, bits)
    if photometric == "RGB":
        stored = rgb
    elif bits == 8:
        stored = convert_color_space(rgb, "RGB", "YBR_FULL")
    else:  # PS3.3 C.7.6.3.1.2 at 16 bits (pydicom converts 8-bit samples only)
        matrix = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
        stored = np.clip((rgb.astype(np.float64) @ matrix.T + [0, 32768, 32768]).round(), 0, 65535).astype(np.uint16)
    if photometric == "YBR_FULL_422":
        ds.PixelData = _subsample_422(stored).tobytes()
    else:
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
    if compression != "none":
        ds.compress(SYNTAX[compression])
    return write(ds, path)


def _subsample_422(ybr: np.ndarray) -> np.ndarray:
    """Native YBR_FULL_422 (PS3.3 C.7.6.3.1.2): Y1 Y2 Cb Cr per horizontal pixel pair."""
    y = ybr[..., 0].reshape(ybr.shape[0], -1, 2)
    chroma = ybr[..., 1:].reshape(ybr.shape[0], -1, 2, 2).astype(np.float64).mean(axis=2).round().astype(ybr.dtype)
    return np.concatenate([y, chroma], axis=2)


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def multiframe(path: Path, frames: np.ndarray, bits: int = 12, photometric: str = "MONOCHROME2",
               top: dict | None = None, shared: dict | None = None, per_frame: list[dict] | None = None) -> Path:
    """An enhanced multi-frame file (PS3.3 C.7.6.16): `frames` (F, H, W); `top` attributes at the
    top level; `shared` and each item of `per_frame` map a functional group sequence keyword
    (PixelValueTransformationSequence, FrameVOILUTSequence) to the attributes of its one item."""
    ds = dataset(*frames.shape[1:], 1, photometric, bits, signed=frames.dtype.kind == "i")
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    if shared:
        ds.SharedFunctionalGroupsSequence = pydicom.Sequence([_groups_item(shared)])
    if per_frame:
        ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([_groups_item(groups) for groups in per_frame])
    for key, value in (top or {}).items():
        setattr(ds, key, value)
    return write(ds, path)


def _groups_item(groups: dict) -> pydicom.Dataset:
    item = pydicom.Dataset()
    for sequence, attributes in groups.items():
        inner = pydicom.Dataset()
        for key, value in attributes.items():
            setattr(inner, key, value)
        setattr(item, sequence, pydicom.Sequence([inner]))
    return item


def lut_item(descriptor: list[int], data, vr: str = "US") -> pydicom.Dataset:
    """A Modality/VOI LUT Sequence item; the descriptor written US, as many devices write it."""
    item = pydicom.Dataset()
    item.LUTDescriptor = descriptor
    item["LUTDescriptor"].VR = "US"
    item.LUTData = data
    item["LUTData"].VR = vr
    return item
