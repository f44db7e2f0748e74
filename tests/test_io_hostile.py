"""read_image on files from a messy archive: every case ends in the right image or an
ImageReadError naming the file and the field or limit at fault, never a bare traceback, a
silently wrong image, a hang or gigabytes allocated. Files are made here, small."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile

from medattn.data.builders.headers import image_size
from medattn.data.io import read_image
from medattn.errors import ImageReadError
from tests import dicom_factory as make

RAMP12 = make.mono_ramp(12)
RAMP8 = make.mono_ramp(8)

# ------------------------------------------------------------ modality rescale as devices write it

# (elements, stored → modality value): either of slope/intercept may be absent or empty; slope 0 is
# ignored (DCMTK). A threshold window at 0 shows whether the intercept was applied.
RESCALES = {
    "intercept-only": ({"RescaleIntercept": -1024}, lambda v: v - 1024),
    "slope-only": ({"RescaleSlope": 2}, lambda v: 2 * v),
    "slope-empty": ({"RescaleSlope": None, "RescaleIntercept": -1024}, lambda v: v - 1024),
    "slope-zero": ({"RescaleSlope": 0, "RescaleIntercept": -1024}, lambda v: v),
    "both": ({"RescaleSlope": 0.5, "RescaleIntercept": -1000}, lambda v: 0.5 * v - 1000),
}


@pytest.mark.parametrize("name", RESCALES)
def test_rescale_as_written(tmp_path, name):
    elements, modality = RESCALES[name]
    path = make.mono(tmp_path / "r.dcm", RAMP12, bits=12, WindowCenter=0.5, WindowWidth=1)  # shown: value > 0
    ds = make.pydicom.dcmread(path)
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path)
    expected = (modality(RAMP12.astype(float)) > 0).astype(np.float32)
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("text", ["abcd", "nan ", "inf "])
def test_unusable_rescale_names_the_field(tmp_path, text):
    path = make.mono(tmp_path / "r.dcm", RAMP12, bits=12, RescaleSlope="4321", RescaleIntercept=0)
    path.write_bytes(path.read_bytes().replace(b"4321", text.encode()))
    with pytest.raises(ImageReadError, match=r"r\.dcm.*RescaleSlope"):
        read_image(path)


def test_voi_lut_depth_above_16_is_taken_from_its_entries(tmp_path):
    path = make.mono(tmp_path / "v.dcm", RAMP12, bits=12)
    ds = make.pydicom.dcmread(path)
    item = make.pydicom.Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 40])
    item.add_new(0x00283006, "US", list(range(4096)))
    ds.VOILUTSequence = make.pydicom.Sequence([item])
    ds.save_as(path)
    np.testing.assert_allclose(read_image(path), RAMP12 / 4095, atol=1e-6)


# ------------------------------------------------------------ content, not suffix


def _png_bytes(tmp_path):
    cv2.imwrite(str(tmp_path / "src.png"), RAMP8)
    return (tmp_path / "src.png").read_bytes()


def _tif_bytes(tmp_path):
    tifffile.imwrite(tmp_path / "src.tif", RAMP8)
    return (tmp_path / "src.tif").read_bytes()


def _dcm_bytes(tmp_path):
    return make.mono(tmp_path / "src.dcm", RAMP8).read_bytes()


DISGUISES = [("png", ".dcm"), ("png", ".tif"), ("tif", ".png"), ("dcm", ".png"), ("dcm", ".jpg"), ("png", "")]


@pytest.mark.parametrize("content,suffix", DISGUISES, ids=[f"{c}-as{s or '-none'}" for c, s in DISGUISES])
def test_format_is_taken_from_content(tmp_path, content, suffix):
    data = {"png": _png_bytes, "tif": _tif_bytes, "dcm": _dcm_bytes}[content](tmp_path)
    path = tmp_path / f"disguised{suffix}"
    path.write_bytes(data)
    np.testing.assert_allclose(read_image(path), RAMP8 / 255, atol=1e-6)
    assert image_size(path) == (RAMP8.shape[1], RAMP8.shape[0])


@pytest.mark.parametrize("suffix", [".png", ".dcm", ".tif", ""])
def test_empty_file_says_so(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.*file is empty"):
        read_image(path)


# ------------------------------------------------------------ declared sizes above the pixel limit


def _png_header(path, width, height):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _tif_header(path, width, height):
    tifffile.imwrite(path, np.zeros((1, 1), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["ImageWidth"].overwrite(width)
        tif.pages.first.tags["ImageLength"].overwrite(height)
    return path


def _dcm_header(path, width, height):
    path = make.mono(path, RAMP8, compression="jpeg")
    ds = make.pydicom.dcmread(path)
    ds.Rows, ds.Columns = height, width
    ds.save_as(path)
    return path


BOMBS = {"png": _png_header, "tif": _tif_header, "dcm": _dcm_header}


@pytest.mark.parametrize("kind", BOMBS)
def test_declared_size_above_the_pixel_limit_is_refused_before_decoding(tmp_path, kind, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # limit 2 Mpx: 1500 x 1500 is over
    path = BOMBS[kind](tmp_path / f"bomb.{kind}", 1500, 1500)
    for read in (read_image, image_size):
        with pytest.raises(ImageReadError, match=rf"bomb\.{kind}.*(1500x1500|2250000 pixels).*MAX_IMAGE_PIXELS"):
            read(path)


# ------------------------------------------------------------ TIFF layouts and sample types


def test_planar_tiff_with_two_samples_reads_its_grey(tmp_path):
    path = tmp_path / "ga.tif"
    tifffile.imwrite(path, np.stack([RAMP8, np.full_like(RAMP8, 255)]), photometric="minisblack",
                     planarconfig="separate", extrasamples=[2])
    np.testing.assert_allclose(read_image(path), RAMP8 / 255, atol=1e-6)


def test_complex_tiff_is_refused(tmp_path):
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, RAMP8.astype(np.complex64))
    with pytest.raises(ImageReadError, match=r"c\.tif.*complex"):
        read_image(path)


def test_decode_failure_with_decoder_installed_does_not_advise_installing(tmp_path):
    path = make.mono(tmp_path / "j.dcm", RAMP8, compression="jpeg")
    ds = make.pydicom.dcmread(path)
    frame = next(make.pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = make.encapsulate([frame[: len(frame) // 3]])
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"j\.dcm.*JPEG") as caught:
        read_image(path)
    assert "pip install" not in str(caught.value)


def test_transfer_syntax_that_lies_about_the_encoding_is_named(tmp_path):
    """Meta says Explicit VR Big Endian, the data set is little endian: pydicom parses nothing."""
    path = make.mono(tmp_path / "be.dcm", RAMP12, bits=12)
    ds = make.pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = make.pydicom.uid.ExplicitVRBigEndian
    make.pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    with pytest.raises(ImageReadError, match=r"be\.dcm.*Transfer Syntax UID \(Explicit VR Big Endian\) does not match"):
        read_image(path)


def _garbled(path, compression):
    """A DICOM whose compressed frame is damaged halfway: every decoder plugin fails on it."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_fragmented_frames

    make.mono(path, (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8), compression=compression)
    ds = pydicom.dcmread(path)
    frame = b"".join(next(generate_fragmented_frames(ds.PixelData)))
    ds.PixelData = encapsulate([frame[:20] + b"\xff\xd9garbage" * 40])
    ds.save_as(path)
    return path


# Each decoder plugin that fails logs its traceback through pydicom; the reader says the one
# line (a skip upstream) and the tracebacks wait for DEBUG.
@pytest.mark.parametrize("compression", ["jpeg", "j2k", "rle"])
def test_a_damaged_frame_is_one_message_and_decoder_tracebacks_only_at_debug(tmp_path, compression, caplog, capfd):
    path = _garbled(tmp_path / f"{compression}.dcm", compression)
    caplog.set_level("INFO")
    with pytest.raises(ImageReadError, match="cannot decode pixel data"):
        read_image(path)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert "Traceback" not in capfd.readouterr().err
    caplog.clear()
    caplog.set_level("DEBUG", logger="pydicom")
    with pytest.raises(ImageReadError):
        read_image(path)
    assert [r for r in caplog.records if r.exc_info and r.levelname == "DEBUG"]
