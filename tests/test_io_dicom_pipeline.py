"""The DICOM grey-scale pipeline at every place the standard puts it: one row per attribute
location × form, each file written with pydicom.

- Modality and VOI LUTs at the top level, in the Shared and in the Per-frame Functional Groups
  (PS3.3 C.7.6.16.2.9 Pixel Value Transformation, C.7.6.16.2.10/10b Frame VOI LUT), and one over
  another (per-frame over shared over top level). Expected: pydicom's `apply_modality_lut` and
  `apply_voi_lut` on a single-frame dataset holding the same attributes at its top level, scaled
  by pydicom's own output range, so a functional-group file must show what the classic file shows.
- Pixel Padding Value / Range Limit (C.7.5.1.1.2): out of the min-max statistics, shown as 0.
- VOI LUT entries narrower or wider than the descriptor's depth: Cornerstone's rule (the bit
  length of the largest entry), checked against Cornerstone's own 8-bit output.
- Presentation LUT Shape (C.11.6) with MONOCHROME1/2.
Top-level rows, and forms the reader handled before (wider LUT entries, MONOCHROME1), are controls;
every other row failed before functional groups, padding and the entry-depth rule were read.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian

from medattn.data.io import read_image
from medattn.errors import ImageReadError
from tests import dicom_factory as make

# frame 0 is a 12-bit ramp; frame 1 differs, so reading the wrong frame or item shows
FRAMES = np.stack([np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (2, 1)),
                   np.tile(np.linspace(4095, 0, 64).round().astype(np.uint16), (2, 1))])
MODALITY_SEQ, VOI_SEQ = "PixelValueTransformationSequence", "FrameVOILUTSequence"

RESCALE = {"RescaleSlope": 2, "RescaleIntercept": -1024, "RescaleType": "US"}
MODALITY_LUT = {"ModalityLUTSequence": pydicom.Sequence([make.lut_item(
    [4096, 0, 16], [int(v) for v in (np.sqrt(np.arange(4096) / 4095) * 60000).round()])])}
WINDOW = {"WindowCenter": 1500, "WindowWidth": 2000}
SIGMOID = {"WindowCenter": 2000, "WindowWidth": 1200, "VOILUTFunction": "SIGMOID"}
EXACT = {"WindowCenter": 1000, "WindowWidth": 3000, "VOILUTFunction": "LINEAR_EXACT"}
VOI_LUT = {"VOILUTSequence": pydicom.Sequence([make.lut_item(
    [4096, 0, 12], [int(v) for v in (4095 * (np.arange(4096) / 4095) ** 2).round()])])}
# decoys a reader must not use when a more specific location gives the transformation
DECOY_MODALITY = {"RescaleSlope": 1, "RescaleIntercept": 5000, "RescaleType": "US"}
DECOY_VOI = {"WindowCenter": 100, "WindowWidth": 10}

HU_WINDOW = {"WindowCenter": 1000, "WindowWidth": 4000}  # shows whether the rescale was applied
FORMS = {  # form → (modality attributes, VOI attributes, VOI attributes kept at the top level)
    "rescale": (RESCALE, {}, HU_WINDOW),
    "modality LUT": (MODALITY_LUT, {}, {}),
    "window": ({}, WINDOW, {}),
    "window SIGMOID": ({}, SIGMOID, {}),
    "window LINEAR_EXACT": ({}, EXACT, {}),
    "VOI LUT": ({}, VOI_LUT, {}),
    "rescale + window": (RESCALE, HU_WINDOW, {}),
    "modality LUT + VOI LUT": (MODALITY_LUT, {"VOILUTSequence": pydicom.Sequence([make.lut_item(
        [60001, 0, 16], np.linspace(0, 65535, 60001).round().astype("<u2").tobytes(), "OW")])}, {}),
}
LOCATIONS = ("top level", "shared", "per-frame", "per-frame over shared", "shared over top level",
             "per-frame over top level")
TABLE = [(location, form) for location in LOCATIONS for form in FORMS]


def _groups(modality: dict, voi: dict) -> dict:
    return {k: v for k, v in ((MODALITY_SEQ, modality), (VOI_SEQ, voi)) if v}


def _write(path, location: str, modality: dict, voi: dict, kept: dict):
    """The form at the location (`kept` always at the top level); the other places hold decoys
    (or another frame's values)."""
    wanted, decoy = _groups(modality, voi), _groups(DECOY_MODALITY if modality else {}, DECOY_VOI if voi else {})
    other_frame = _groups({**DECOY_MODALITY} if modality else {}, {"WindowCenter": 3000, "WindowWidth": 20} if voi else {})
    if location == "top level":
        return make.multiframe(path, FRAMES, top={**modality, **voi, **kept})
    if location == "shared":
        return make.multiframe(path, FRAMES, top=kept, shared=wanted)
    if location == "per-frame":
        return make.multiframe(path, FRAMES, top=kept, per_frame=[wanted, other_frame])
    if location == "per-frame over shared":
        return make.multiframe(path, FRAMES, top=kept, shared=decoy, per_frame=[wanted, other_frame])
    top = {**kept, **{k: v for group in decoy.values() for k, v in group.items()}}
    if location == "shared over top level":
        return make.multiframe(path, FRAMES, top=top, shared=wanted)
    return make.multiframe(path, FRAMES, top=top, per_frame=[wanted, other_frame])


def pydicom_display(stored: np.ndarray, attributes: dict, bits: int = 12) -> np.ndarray:
    """What pydicom's modality then VOI transformation gives for `attributes` at the top level of
    a single-frame MONOCHROME2 dataset, scaled to [0, 1] by pydicom's own output range (probed at
    ±1e12, which a window sends to its ends); min-max when there is no VOI."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # how OW LUT Data is read
    ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME2", bits, 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    if "RescaleSlope" in ds and "ModalityLUTSequence" not in ds:
        ds.RescaleSlope, ds.RescaleIntercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    values = apply_modality_lut(stored, ds)
    if "VOILUTSequence" in ds:
        depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return apply_voi_lut(np.rint(values).astype(np.int64), ds) / (2**depth - 1)
    if "WindowCenter" in ds:
        with np.errstate(over="ignore"):  # SIGMOID at the probes
            low, high = apply_voi_lut(np.array([-1e12, 1e12]), ds)
        return (apply_voi_lut(values.astype(np.float64), ds) - low) / (high - low)
    values = values.astype(np.float64)
    return (values - values.min()) / np.ptp(values)


@pytest.mark.parametrize("location,form", TABLE, ids=[f"{loc}-{form}".replace(" ", "_") for loc, form in TABLE])
def test_transformation_at_every_location(tmp_path, location, form):
    modality, voi, kept = FORMS[form]
    image = read_image(_write(tmp_path / "enhanced.dcm", location, modality, voi, kept))
    expected = pydicom_display(FRAMES[0], {**modality, **voi, **kept})
    assert image.shape == FRAMES[0].shape
    np.testing.assert_allclose(image, expected, atol=1e-5)


def test_functional_group_lut_that_cannot_be_read_names_its_place(tmp_path):
    bad = {"VOILUTSequence": pydicom.Sequence([make.lut_item([16, 0, 16], [])])}
    path = make.multiframe(tmp_path / "bad.dcm", FRAMES, per_frame=[{VOI_SEQ: bad}, {VOI_SEQ: bad}])
    with pytest.raises(ImageReadError, match=r"bad\.dcm.*per-frame functional groups item 1"):
        read_image(path)


# ------------------------------------------------------------ Pixel Padding Value / Range Limit

DETECTOR = np.tile(np.linspace(1000, 3000, 16).round(), (4, 1))  # the native image: 1000..3000


def _padded(padding_rows: list[int], offset: int = 0, dtype=np.uint16) -> np.ndarray:
    """DETECTOR (+ offset) with its first rows set to padding values."""
    pixels = (DETECTOR + offset).astype(dtype)
    for row, value in enumerate(padding_rows):
        pixels[row] = value
    return pixels


PADDING = {  # name → (stored pixels, elements, photometric, window)
    "value": (_padded([0]), {"PixelPaddingValue": 0}, "MONOCHROME2", None),
    "value + range limit": (_padded([0, 7]), {"PixelPaddingValue": 0, "PixelPaddingRangeLimit": 10}, "MONOCHROME2", None),
    "MONOCHROME1, range limit below value": (_padded([4095, 4090]), {"PixelPaddingValue": 4095, "PixelPaddingRangeLimit": 4090},
                                             "MONOCHROME1", None),
    "signed pixels, value written US": (_padded([-2048], -2000, np.int16), {"PixelPaddingValue": 63488}, "MONOCHROME2", None),
    "with a window": (_padded([0]), {"PixelPaddingValue": 0, "WindowCenter": 1000, "WindowWidth": 3000}, "MONOCHROME2",
                      (1000, 3000)),
}


@pytest.mark.parametrize("name", PADDING)
def test_padding_is_out_of_statistics_and_shown_as_background(tmp_path, name):
    stored, elements, photometric, window = PADDING[name]
    signed = stored.dtype.kind == "i"
    written = {k: v for k, v in elements.items() if not (signed and k == "PixelPaddingValue")}
    path = make.mono(tmp_path / "pad.dcm", stored, photometric, bits=16 if signed else 12, **written)
    if signed:  # devices write the padding value of signed pixels as US (two's complement)
        ds = pydicom.dcmread(path)
        ds.add_new(0x00280120, "US", elements["PixelPaddingValue"])
        ds.save_as(path)
    value = elements["PixelPaddingValue"] - (65536 if stored.dtype.kind == "i" else 0)
    limit = elements.get("PixelPaddingRangeLimit", value)
    padding = (stored >= min(value, limit)) & (stored <= max(value, limit))
    native = stored[~padding].astype(float)
    if window:
        center, width = window
        shown = np.clip((stored - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    else:
        shown = (stored - native.min()) / np.ptp(native)  # the native image spans the whole range
    if photometric == "MONOCHROME1":
        shown = 1 - shown
    assert padding.any() and (~padding).any()
    np.testing.assert_allclose(read_image(path), np.where(padding, 0.0, shown), atol=1e-6)


def test_float_pixel_padding_value(tmp_path):
    ds = make.dataset(4, 16, 1, "MONOCHROME2", 32)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    for key in ("BitsStored", "HighBit", "PixelRepresentation"):
        del ds[key]
    values = DETECTOR.astype(np.float32) / 10
    values[0] = -1e6
    ds.FloatPixelData = values.tobytes()
    ds.FloatPixelPaddingValue = -1e6
    path = make.write(ds, tmp_path / "float.dcm")
    image = read_image(path)
    native = values[1:]
    np.testing.assert_allclose(image[1:], (native - native.min()) / np.ptp(native), atol=1e-6)
    assert (image[0] == 0).all()


# ------------------------------------------------------------ VOI LUT entries vs declared depth

STORED16 = np.tile(np.arange(64, dtype=np.uint16), (2, 1))
DEPTHS = {  # name → (declared bits, entries)
    "declared 16, entries 12-bit (Agfa CR)": (16, np.linspace(0, 4095, 64).round()),
    "declared 16, entries 10-bit": (16, np.linspace(0, 1023, 64).round()),
    "declared 14, entries 12-bit": (14, np.linspace(0, 4000, 64).round()),
    "declared 12, entries 16-bit": (12, np.linspace(0, 65535, 64).round()),
    "declared 10, entries 12-bit": (10, np.linspace(100, 3000, 64).round()),
    "declared 16, entries 8-bit": (16, np.linspace(0, 255, 64).round()),
    "declared 16, entries 16-bit": (16, np.linspace(0, 65535, 64).round()),
    "declared 12, entries 12-bit": (12, np.linspace(0, 4095, 64).round()),
}


@pytest.mark.parametrize("name", DEPTHS)
def test_voi_lut_depth_from_its_entries_as_cornerstone(tmp_path, name):
    declared, entries = DEPTHS[name]
    item = make.lut_item([64, 0, declared], [int(v) for v in entries])
    image = read_image(make.mono(tmp_path / "voi.dcm", STORED16, bits=16, VOILUTSequence=pydicom.Sequence([item])))
    bits = min(max(int(entries.max()).bit_length(), 8), 16)
    np.testing.assert_allclose(image[0], entries / (2**bits - 1), atol=1e-6)
    # Cornerstone's generateNonLinearVOILUT: entry >> (bitLength(max entry) - 8), shown over 0..255
    cornerstone = (entries.astype(np.int64) >> (int(entries.max()).bit_length() - 8)) / 255
    np.testing.assert_allclose(image[0], cornerstone, atol=1.5 / 255)


# ------------------------------------------------------------ Presentation LUT Shape

SHAPES = {  # (photometric, Presentation LUT Shape) → inverted
    ("MONOCHROME2", "IDENTITY"): False,
    ("MONOCHROME2", "INVERSE"): True,
    ("MONOCHROME1", "INVERSE"): True,  # one inversion, not two (Weasis #372, DCMTK)
    ("MONOCHROME1", "IDENTITY"): True,
    ("MONOCHROME1", None): True,
}


@pytest.mark.parametrize("photometric,shape", SHAPES, ids=[f"{p}-{s}" for p, s in SHAPES])
def test_presentation_lut_shape(tmp_path, photometric, shape):
    ramp = make.mono_ramp(12)
    extra = {"PresentationLUTShape": shape} if shape else {}
    image = read_image(make.mono(tmp_path / "p.dcm", ramp, photometric, bits=12, WindowCenter=2048, WindowWidth=4096,
                                 **extra))
    shown = np.clip((ramp - 2047.5) / 4095 + 0.5, 0, 1)
    np.testing.assert_allclose(image, 1 - shown if SHAPES[(photometric, shape)] else shown, atol=1e-6)
