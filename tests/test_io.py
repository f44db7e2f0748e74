"""read_image: every format to float32 (H, W) in [0, 1], DICOM display pipeline, clear errors."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medattn.data.io import read_image
from medattn.errors import ImageReadError

MONO2 = "siim-pneumothorax-1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def _gradient(dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.tile(np.linspace(0, top, 64).astype(dtype), (32, 1))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_raster_roundtrip(tmp_path, suffix):
    pixels = _gradient()
    path = tmp_path / f"img{suffix}"
    cv2.imwrite(str(path), pixels)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (32, 64)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-6)


def test_jpeg_and_colour_become_grey(tmp_path):
    colour = np.dstack([_gradient()] * 3)
    path = tmp_path / "img.jpg"
    cv2.imwrite(str(path), colour)
    image = read_image(path)
    assert image.shape == (32, 64)
    assert np.abs(image - _gradient() / 255.0).max() < 0.05


def test_sixteen_bit_png_keeps_depth(tmp_path):
    pixels = _gradient(np.uint16)
    path = tmp_path / "img16.png"
    cv2.imwrite(str(path), pixels)
    np.testing.assert_allclose(read_image(path), pixels / 65535.0, atol=1e-6)


def test_real_nih_png(shared_data):
    path = next(iter(sorted((shared_data / "nih-cxr14-sample" / "images").glob("*.png"))))
    image = read_image(path)
    assert image.shape == (1024, 1024) and image.dtype == np.float32
    assert 0.0 <= image.min() < image.max() <= 1.0


def test_real_dicoms_monochrome1_inverted(shared_data):
    """The MONOCHROME2 CXR reads with air dark; the fixture labelled MONOCHROME1 carries the
    same stored pixels, so following the header must give exactly the inverted image."""
    mono2 = read_image(shared_data / "dicom" / MONO2)
    mono1 = read_image(shared_data / "dicom" / "fake-monochrome1.dcm")
    assert mono2.shape == mono1.shape == (1024, 1024)
    corners = np.concatenate([mono2[:64, :64].ravel(), mono2[:64, -64:].ravel()])
    assert corners.mean() < 0.2 < mono2[300:700, 300:700].mean()  # air dark, body brighter
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def _write_dicom(path, pixels, photometric="MONOCHROME2", **elements):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated = bits
    ds.BitsStored = elements.pop("BitsStored", bits)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_genuine_monochrome1_reads_air_dark(tmp_path):
    pixels = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    mono2 = read_image(_write_dicom(tmp_path / "m2.dcm", pixels))
    mono1 = read_image(_write_dicom(tmp_path / "m1.dcm", 255 - pixels, "MONOCHROME1"))
    np.testing.assert_allclose(mono1, mono2, atol=1e-6)


def test_twelve_bit_with_rescale_and_window(tmp_path):
    pixels = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (4, 1))
    path = _write_dicom(
        tmp_path / "ct.dcm", pixels, BitsStored=12, RescaleSlope=1, RescaleIntercept=-1024,
        WindowCenter=40, WindowWidth=400,
    )
    image = read_image(path)
    hu = pixels.astype(float) - 1024
    expected = np.clip((hu - (40 - 0.5)) / 399 + 0.5, 0, 1)
    np.testing.assert_allclose(image[0], expected[0], atol=1e-5)
    assert image.min() == 0.0 and image.max() == 1.0


def test_voi_lut_sequence(tmp_path):
    pixels = np.tile(np.arange(0, 16, dtype=np.uint16), (2, 1))
    item = pydicom.Dataset()
    item.LUTDescriptor = [16, 0, 8]
    item.LUTData = [int(v) for v in np.linspace(0, 255, 16)]
    item["LUTData"].VR = "US"
    seq_path = _write_dicom(tmp_path / "voi.dcm", pixels, BitsStored=16, VOILUTSequence=pydicom.Sequence([item]))
    image = read_image(seq_path)
    np.testing.assert_allclose(image[0], np.linspace(0, 255, 16).astype(int) / 255.0, atol=1e-6)


def test_errors_name_file_and_reason(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageReadError, match=r"corrupt\.png.*not a valid image"):
        read_image(corrupt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageReadError, match="unsupported file type .txt"):
        read_image(text)
    fake_dicom = tmp_path / "bad.dcm"
    fake_dicom.write_bytes(b"\x00" * 10)
    with pytest.raises(ImageReadError, match="bad.dcm"):
        read_image(fake_dicom)


def test_dicom_without_pixels(tmp_path):
    path = _write_dicom(tmp_path / "nopix.dcm", np.zeros((2, 2), np.uint8))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(path)


def test_missing_decoder_names_package(shared_data, tmp_path, monkeypatch):
    """With every JPEG plugin unavailable, the error says which package to install."""
    from pydicom.pixels.decoders.base import get_decoder

    path = tmp_path / "jpeg.dcm"
    shutil.copy(shared_data / "dicom" / MONO2, path)
    decoder = get_decoder(pydicom.dcmread(path).file_meta.TransferSyntaxUID)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"all": ("disabled in test",)})
    with pytest.raises(ImageReadError, match=r"(?s)JPEG Baseline.*pip install pylibjpeg"):
        read_image(path)
