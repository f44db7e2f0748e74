"""read_image on files as vendors write them: every photometric interpretation × bit depth ×
compression, LUTs and windows with their real-world quirks, files without File Meta, and TIFF/PNG
with every photometric tag. Expected values come from the samples written, never from the reader."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

from medattn.data.io import read_image
from medattn.data.io.grey import luma
from medattn.errors import ImageReadError
from tests import dicom_factory as make

# ------------------------------------------------------------ the whole table

MONO = [(pi, bits, comp) for pi in ("MONOCHROME1", "MONOCHROME2") for bits in (8, 12, 16)
        for comp in ("none", "rle", "jpeg", "j2k") if comp != "jpeg" or bits == 8]
PALETTE = [("PALETTE COLOR", bits, comp) for bits in (8, 16) for comp in ("none", "rle", "j2k")]
COLOUR = [("RGB", 8, "none"), ("RGB", 8, "rle"), ("RGB", 8, "jpeg"), ("RGB", 8, "j2k"),
          ("RGB", 16, "none"), ("RGB", 16, "rle"), ("RGB", 16, "j2k"),
          ("YBR_FULL", 8, "none"), ("YBR_FULL", 8, "rle"), ("YBR_FULL", 8, "jpeg"), ("YBR_FULL", 16, "none"),
          ("YBR_FULL_422", 8, "none"), ("YBR_FULL_422", 8, "jpeg"),
          ("YBR_RCT", 8, "j2k"), ("YBR_RCT", 16, "j2k"), ("YBR_ICT", 8, "j2k-lossy"), ("YBR_ICT", 16, "j2k-lossy")]
# JPEG baseline and lossy JPEG 2000 are lossy: a wrong conversion is off by 0.1 or more
TOLERANCE = {"jpeg": 0.02, "j2k-lossy": 0.01}


def _case_id(case):
    return "-".join(str(v).replace(" ", "_") for v in case)


@pytest.mark.parametrize("photometric,bits,compression", MONO, ids=map(_case_id, MONO))
def test_monochrome_table(tmp_path, photometric, bits, compression):
    pixels = make.mono_ramp(bits)
    image = read_image(make.mono(tmp_path / "m.dcm", pixels, photometric, compression, bits=bits))
    expected = pixels / (2**bits - 1)
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected  # air dark: the brightest stored value shows darkest
    assert image.dtype == np.float32 and image.shape == (32, 32)
    np.testing.assert_allclose(image, expected, atol=TOLERANCE.get(compression, 1e-6))


@pytest.mark.parametrize("photometric,bits,compression", PALETTE, ids=map(_case_id, PALETTE))
def test_palette_table(tmp_path, photometric, bits, compression):
    entries = 256 if bits == 8 else 4096
    indices = np.tile(np.linspace(0, entries - 1, 32).round().astype(np.uint8 if bits == 8 else np.uint16), (32, 1))
    lut = (65535 - np.arange(entries) * 65535 // (entries - 1)).astype(np.uint16)  # i → top − i
    image = read_image(make.palette(tmp_path / "p.dcm", indices, lut, compression))
    np.testing.assert_allclose(image, lut[indices] / 65535, atol=1e-6)
    assert image[0, 0] == 1.0 and image[0, -1] == 0.0  # the palette, not the indices


@pytest.mark.parametrize("photometric,bits,compression", COLOUR, ids=map(_case_id, COLOUR))
def test_colour_table(tmp_path, photometric, bits, compression):
    rgb = make.colour_pattern(bits)
    image = read_image(make.colour(tmp_path / "c.dcm", rgb, photometric, compression))
    expected = luma(rgb) / (2**bits - 1)  # YBR → RGB once; a second conversion moves it by > 0.1
    np.testing.assert_allclose(image, expected, atol=TOLERANCE.get(compression, 0.005))


# ------------------------------------------------------------ the reported cases


@pytest.mark.parametrize("photometric,compression", [("YBR_FULL", "none"), ("YBR_FULL_422", "none"),
                                                     ("YBR_FULL_422", "jpeg"), ("YBR_FULL", "jpeg"),
                                                     ("YBR_RCT", "j2k"), ("YBR_ICT", "j2k-lossy")])
def test_grey_ramp_in_ybr_is_converted_once(tmp_path, photometric, compression):
    ramp = np.tile(np.linspace(20, 235, 32).round().astype(np.uint8), (32, 1))
    image = read_image(make.colour(tmp_path / "ybr.dcm", np.dstack([ramp] * 3), photometric, compression))
    np.testing.assert_allclose(image[:, 0], 20 / 255, atol=0.01)  # 0.08 …
    np.testing.assert_allclose(image[:, -1], 235 / 255, atol=0.01)  # … 0.92, not 0.31 flat
    np.testing.assert_allclose(image, ramp / 255, atol=0.02)


def test_palette_maps_indices_through_an_8_bit_palette(tmp_path):
    indices = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    lut = (255 - np.arange(256)).astype(np.uint16)
    image = read_image(make.palette(tmp_path / "pal8.dcm", indices, lut, lut_bits=8))
    np.testing.assert_allclose(image, (255 - indices) / 255, atol=1e-6)


def _headerless(path, pixels, keep_meta: bool):
    """Implicit VR little endian, plain pixels; no preamble and no File Meta, or a File Meta
    without (0002,0010) Transfer Syntax UID."""
    ds = make.dataset(*pixels.shape, 1, "MONOCHROME2", 8)
    ds.PixelData = pixels.tobytes()
    if keep_meta:
        del ds.file_meta.TransferSyntaxUID
    else:
        del ds.file_meta
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    return path


@pytest.mark.parametrize("keep_meta", [False, True], ids=["no-file-meta", "meta-without-transfer-syntax"])
@pytest.mark.parametrize("name", ["image.dcm", "IM000001"])  # PACS exports often have no suffix
def test_dicom_without_transfer_syntax_is_decoded(tmp_path, keep_meta, name):
    pixels = make.mono_ramp(8)
    path = _headerless(tmp_path / name, pixels, keep_meta)
    assert open(path, "rb").read(132)[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(path), pixels / 255, atol=1e-6)


def test_compressed_pixels_without_transfer_syntax_name_the_file(tmp_path):
    path = make.mono(tmp_path / "rle.dcm", make.mono_ramp(8), compression="rle")
    ds = pydicom.dcmread(path)
    del ds.file_meta.TransferSyntaxUID
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True)
    with pytest.raises(ImageReadError, match=r"rle\.dcm.*no Transfer Syntax UID"):
        read_image(path)


@pytest.mark.parametrize("photometric,compression", [("YBR_RCT", "j2k"), ("YBR_ICT", "j2k-lossy")])
def test_jpeg2000_without_decoder_names_file_and_package(tmp_path, monkeypatch, photometric, compression):
    from pydicom.pixels import get_decoder

    path = make.colour(tmp_path / "j2k.dcm", make.colour_pattern(8), photometric, compression)
    decoder = get_decoder(pydicom.dcmread(path).file_meta.TransferSyntaxUID)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"all": ("disabled in test",)})
    with pytest.raises(ImageReadError, match=r"(?s)j2k\.dcm.*JPEG 2000.*pip install pylibjpeg pylibjpeg-openjpeg"):
        read_image(path)


def test_unsupported_colour_space_names_the_file(tmp_path):
    path = make.colour(tmp_path / "partial.dcm", make.colour_pattern(8), "RGB")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"partial\.dcm"):
        read_image(path)


# ------------------------------------------------------------ LUTs as devices write them


STORED = np.arange(0, 64, dtype=np.uint16)  # a 12-bit detector's first values
MODALITY_LUTS = {
    "16-bit entries, US": (make.lut_item([64, 0, 16], [int(v) for v in STORED * 1000]), STORED * 1000.0),
    "16-bit entries, OW": (make.lut_item([64, 0, 16], (STORED * 1000).astype("<u2").tobytes(), "OW"), STORED * 1000.0),
    "8-bit entries": (make.lut_item([64, 0, 8], [int(v) for v in 255 - STORED * 4]), 255.0 - STORED * 4),
    "first value mapped 10": (make.lut_item([54, 10, 16], list(range(100, 154))), np.clip(STORED, 10, 63) + 90.0),
}


@pytest.mark.parametrize("name", MODALITY_LUTS)
def test_modality_lut_sequence(tmp_path, name):
    item, expected = MODALITY_LUTS[name]
    pixels = np.tile(STORED, (2, 1))
    path = make.mono(tmp_path / "mlut.dcm", pixels, bits=12, ModalityLUTSequence=pydicom.Sequence([item]))
    image = read_image(path)  # no VOI: the modality output stretched to [0, 1]
    np.testing.assert_allclose(image[0], (expected - expected.min()) / np.ptp(expected), atol=1e-6)


def test_modality_lut_first_value_written_unsigned_for_signed_pixels(tmp_path):
    """CT with signed pixels: first value mapped -1024 written as US 64512 (C.11.1.1.1 allows SS)."""
    pixels = np.tile(np.arange(-1024, -960, dtype=np.int16), (2, 1))
    item = make.lut_item([64, 64512, 16], [int(v) for v in np.arange(64) * 10])
    path = make.mono(tmp_path / "signed.dcm", pixels, bits=16, ModalityLUTSequence=pydicom.Sequence([item]),
                     WindowCenter=315, WindowWidth=631)
    expected = np.clip((np.arange(64) * 10 - (315 - 0.5)) / 630 + 0.5, 0, 1)
    np.testing.assert_allclose(read_image(path)[0], expected, atol=1e-6)


VOI_LUTS = {
    "8-bit entries in US": ([16, 0, 8], [int(v) for v in np.linspace(0, 255, 16)], "US", 255),
    "16-bit entries in OW": ([16, 0, 16], np.linspace(0, 65535, 16).astype("<u2").tobytes(), "OW", 65535),
    "12-bit entries": ([16, 0, 12], [int(v) for v in np.linspace(0, 4095, 16)], "US", 4095),
    "declared 16, entries 8-bit": ([16, 0, 16], [int(v) for v in np.linspace(0, 255, 16)], "US", 255),
    "declared 8, entries 10-bit": ([16, 0, 8], [int(v) for v in np.linspace(0, 1023, 16)], "US", 1023),
    "8-bit entries packed in OW": ([16, 0, 8], np.linspace(0, 255, 16).astype(np.uint8).tobytes(), "OW", 255),
}


@pytest.mark.parametrize("name", VOI_LUTS)
def test_voi_lut_sequence(tmp_path, name):
    descriptor, data, vr, top = VOI_LUTS[name]
    pixels = np.tile(np.arange(16, dtype=np.uint16), (2, 1))
    path = make.mono(tmp_path / "voi.dcm", pixels, bits=16, VOILUTSequence=pydicom.Sequence([make.lut_item(descriptor, data, vr)]))
    entries = np.frombuffer(data, np.uint8 if top == 255 and vr == "OW" and len(data) == 16 else "<u2") if isinstance(data, bytes) else np.array(data)
    np.testing.assert_allclose(read_image(path)[0], entries / top, atol=1e-6)


def test_voi_lut_after_rescale_with_negative_first_value(tmp_path):
    """CT: rescale to HU, VOI LUT from -1024 HU written as US 64512; values outside the LUT clamp."""
    pixels = np.tile(np.arange(0, 2048, 32, dtype=np.uint16), (2, 1))
    item = make.lut_item([1024, 64512, 16], [int(v) for v in np.linspace(0, 65535, 1024)])
    path = make.mono(tmp_path / "ct.dcm", pixels, bits=12, RescaleSlope=1, RescaleIntercept=-1024,
                     VOILUTSequence=pydicom.Sequence([item]))
    hu = pixels[0].astype(float) - 1024
    expected = np.linspace(0, 65535, 1024).astype(int)[np.clip(hu + 1024, 0, 1023).astype(int)] / 65535
    np.testing.assert_allclose(read_image(path)[0], expected, atol=1e-6)


WINDOWS = {
    "multi-valued: first pair": ({"WindowCenter": [40, 300], "WindowWidth": [400, 1500]}, "linear", 40, 400),
    "single": ({"WindowCenter": 100, "WindowWidth": 50}, "linear", 100, 50),
    "LINEAR_EXACT": ({"WindowCenter": 40, "WindowWidth": 400, "VOILUTFunction": "LINEAR_EXACT"}, "exact", 40, 400),
    "SIGMOID": ({"WindowCenter": 40, "WindowWidth": 400, "VOILUTFunction": "SIGMOID"}, "sigmoid", 40, 400),
    "width 0: ignored": ({"WindowCenter": 40, "WindowWidth": 0}, "minmax", 0, 0),
}


@pytest.mark.parametrize("name", WINDOWS)
def test_windows(tmp_path, name):
    elements, kind, center, width = WINDOWS[name]
    pixels = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (2, 1))
    path = make.mono(tmp_path / "w.dcm", pixels, bits=12, RescaleSlope=1, RescaleIntercept=-1024, **elements)
    hu = pixels[0].astype(float) - 1024
    expected = {
        "linear": lambda: np.clip((hu - (center - 0.5)) / (width - 1) + 0.5, 0, 1),
        "exact": lambda: np.clip((hu - (center - width / 2)) / width, 0, 1),
        "sigmoid": lambda: 1 / (1 + np.exp(-4 * (hu - center) / width)),
        "minmax": lambda: (hu - hu.min()) / np.ptp(hu),
    }[kind]()
    np.testing.assert_allclose(read_image(path)[0], expected, atol=1e-5)


# ------------------------------------------------------------ TIFF and PNG, every photometric tag

RAMP8 = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
RAMP16 = RAMP8.astype(np.uint16) * 257


def _tiff(path, data, **options):
    tifffile.imwrite(path, data, **options)


def _pillow(path, data, **options):
    Image.fromarray(data).save(path, **options)


RGB8 = make.colour_pattern(8)
RGB16 = make.colour_pattern(16)
GREY_PALETTE = np.stack([np.arange(256)[::-1] * 257] * 3).astype(np.uint16)  # i → 255 − i, TIFF ColorMap
RASTERS = {
    "tiff MinIsBlack 8": (lambda p: _tiff(p, RAMP8, photometric="minisblack"), RAMP8 / 255),
    "tiff MinIsBlack 16": (lambda p: _tiff(p, RAMP16, photometric="minisblack"), RAMP16 / 65535),
    "tiff MinIsWhite 8": (lambda p: _tiff(p, RAMP8, photometric="miniswhite"), 1 - RAMP8 / 255),
    "tiff MinIsWhite 16": (lambda p: _tiff(p, RAMP16, photometric="miniswhite"), 1 - RAMP16 / 65535),
    "tiff MinIsWhite 16 deflate": (lambda p: _tiff(p, RAMP16, photometric="miniswhite", compression="zlib"), 1 - RAMP16 / 65535),
    "tiff MinIsWhite 8 LZW": (lambda p: _lzw_miniswhite(p, RAMP8), 1 - RAMP8 / 255),
    "tiff MinIsWhite 16 LZW": (lambda p: _lzw_miniswhite(p, RAMP16), 1 - RAMP16 / 65535),
    "tiff MinIsWhite 1-bit": (lambda p: _tiff(p, RAMP8 >= 128, photometric="miniswhite"), (RAMP8 < 128) * 1.0),
    "tiff RGB 8": (lambda p: _tiff(p, RGB8, photometric="rgb"), luma(RGB8) / 255),
    "tiff RGB 16": (lambda p: _tiff(p, RGB16, photometric="rgb"), luma(RGB16) / 65535),
    "tiff RGB 8 planar": (lambda p: _tiff(p, np.moveaxis(RGB8, -1, 0), photometric="rgb", planarconfig="separate"), luma(RGB8) / 255),
    "tiff RGB 8 LZW": (lambda p: _pillow(p, RGB8, compression="tiff_lzw"), luma(RGB8) / 255),
    "tiff YCbCr JPEG": (lambda p: _pillow(p, RGB8, compression="jpeg", quality=95), luma(RGB8) / 255),
    "tiff Palette 8": (lambda p: _tiff(p, RAMP8, photometric="palette", colormap=GREY_PALETTE), 1 - RAMP8 / 255),
    "tiff CMYK 8": (lambda p: _tiff(p, np.dstack([255 - RAMP8] * 3 + [np.zeros_like(RAMP8)]), photometric="separated"), RAMP8 / 255),
    "tiff float32": (lambda p: _tiff(p, RAMP8.astype(np.float32) * 3 - 7), RAMP8 / 248),
    "tiff grey+alpha 8": (lambda p: _tiff(p, np.dstack([RAMP8, np.full_like(RAMP8, 255)]), photometric="minisblack", extrasamples=["unassalpha"]), RAMP8 / 255),
    "png grey 8": (lambda p: _pillow(p, RAMP8), RAMP8 / 255),
    "png grey 16": (lambda p: _pillow(p, RAMP16), RAMP16 / 65535),
    "png grey+alpha 8": (lambda p: Image.fromarray(RAMP8).convert("LA").save(p), RAMP8 / 255),
    "png palette 8": (lambda p: _png_palette(p), 1 - RAMP8 / 255),
    "png RGB 8": (lambda p: _pillow(p, RGB8), luma(RGB8) / 255),
    "png RGB 16": (lambda p: _cv2(p, RGB16[..., ::-1]), luma(RGB16) / 65535),
    "png RGBA 8": (lambda p: _pillow(p, np.dstack([RGB8, np.full_like(RGB8[..., 0], 255)])), luma(RGB8) / 255),
    "png RGBA 16": (lambda p: _cv2(p, np.dstack([RGB16[..., ::-1], np.full_like(RGB16[..., 0], 65535)])), luma(RGB16) / 65535),
    "png 1-bit": (lambda p: Image.fromarray(RAMP8 >= 128).save(p), (RAMP8 >= 128) * 1.0),
}


def _lzw_miniswhite(path, samples):
    """LZW needs imagecodecs in tifffile: Pillow writes the samples, then the tag is set to MinIsWhite."""
    Image.fromarray(samples).save(path, compression="tiff_lzw")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["PhotometricInterpretation"].overwrite(0)


def _png_palette(path):
    image = Image.new("P", RAMP8.shape[::-1])
    image.putdata(RAMP8.ravel().tolist())
    image.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    image.save(path)


def _cv2(path, data):
    import cv2

    cv2.imwrite(str(path), data)


@pytest.mark.parametrize("name", RASTERS)
def test_raster_table(tmp_path, name):
    write, expected = RASTERS[name]
    path = tmp_path / ("image.png" if name.startswith("png") else "image.tif")
    write(path)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (32, 32)
    np.testing.assert_allclose(image, expected, atol=0.02 if "JPEG" in name else 0.003)
