"""DICOM lookup tables and windows as devices write them (PS3.3 C.11.1 modality, C.11.2 VOI).

pydicom's `apply_modality_lut`/`apply_voi_lut` follow the letter of the standard; archives hold
files that do not, so the LUT is read here with the quirks readers such as DCMTK tolerate:
- LUT Descriptor (entries, first value mapped, bits): 0 entries means 65536; the first value
  mapped is signed when the LUT's input is (C.11.1.1.1, C.11.2.1.1 "US or SS") but often
  written as US, so 64512 means -1024 when the input can be negative (signed pixels, or a
  rescale below zero before a VOI LUT) or when unsigned it would run the table past 65535;
- LUT Data as a US list, as OW words (16-bit) or as OW holding 8-bit entries packed;
- an entry count that disagrees with the data (the data wins);
- a declared output depth (the descriptor's third value) that disagrees with the entries, in
  either direction: Agfa CRs declare 16 for 12-bit entries (the image then fills the bottom
  sixteenth of the range), others 16 for 8-bit entries or 8 for 10-bit ones. The depth is taken
  from the entries as Cornerstone does ("we don't trust numBitsPerEntry": the bit length of the
  largest entry), within the 8 to 16 bits C.11.2.1.1 allows, which is DCMTK's automatic depth
  (ELM_IgnoreValue: `tobits(max)` clamped to 8..16). DCMTK's default instead trusts the
  descriptor except for 16 declared over 8-bit entries, and masks wider entries to the declared
  bits; pydicom's `apply_voi` trusts it and refuses 9 bits or more than 16;
- Window Center/Width multi-valued (the first pair is the default view) or unusable (ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lut:
    """A lookup table: stored value `first` maps to `data[0]`; entries have `bits` bits (the
    output range is 0 to 2^bits - 1)."""

    first: int
    data: np.ndarray
    bits: int

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Values below `first` take the first entry, above the last the last (C.11.1.1)."""
        index = np.clip(np.rint(values).astype(np.int64) - self.first, 0, len(self.data) - 1)
        return self.data[index]


def read_lut(item: object, ds: object, signed_input: bool) -> Lut:
    """The LUT of a Modality/VOI LUT Sequence item whose input values may be negative
    (`signed_input`); ValueError when it cannot be read."""
    descriptor = [int(v) for v in item.LUTDescriptor]  # type: ignore[attr-defined]
    if len(descriptor) != 3:
        raise ValueError(f"LUT Descriptor needs 3 values, has {descriptor}")
    entries, first = descriptor[0] or 65536, descriptor[1]
    data = _entries(item.LUTData, entries, ds)  # type: ignore[attr-defined]
    if data.size == 0:
        raise ValueError("LUT Data is empty")
    if first >= 2**15 and (signed_input or first + data.size > 2**16):
        first -= 2**16
    return Lut(first, data, min(max(int(data.max()).bit_length(), 8), 16))


def _entries(raw: object, entries: int, ds: object) -> np.ndarray:
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) == entries:  # 8-bit entries packed into OW
            return np.frombuffer(raw, np.uint8).astype(np.int64)
        little = _little_endian(ds)
        return np.frombuffer(raw, "<u2" if little else ">u2").astype(np.int64)
    if isinstance(raw, (int, float)):
        return np.array([int(raw)], np.int64)
    return np.array([int(v) for v in raw], np.int64)  # type: ignore[union-attr]


def _little_endian(ds: object) -> bool:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        return bool(syntax.is_little_endian)
    little = getattr(ds, "original_encoding", (None, True))[1]
    return True if little is None else bool(little)


def numbers(value: object) -> list[float]:
    """A DS/IS element value (single, multi-valued or a backslash string) as floats; [] if unusable."""
    if value is None or value == "":
        return []
    items = value.split("\\") if isinstance(value, str) else (value if hasattr(value, "__iter__") else [value])
    out = []
    for item in items:  # type: ignore[union-attr]
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            return []
    return [v for v in out if np.isfinite(v)]


def window(values: np.ndarray, ds: object) -> np.ndarray | None:
    """PS3.3 C.11.2.1.2 window to [0, 1] (LINEAR, LINEAR_EXACT, SIGMOID) with the first
    centre/width pair; None when the file has no usable window."""
    centers = numbers(getattr(ds, "WindowCenter", None))
    widths = numbers(getattr(ds, "WindowWidth", None))
    if not centers or not widths or widths[0] <= 0:
        return None
    center, width = centers[0], widths[0]
    function = str(getattr(ds, "VOILUTFunction", "") or "LINEAR").strip().upper()
    values = values.astype(np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return (values - (center - width / 2.0)) / width
    if width <= 1:  # LINEAR needs width >= 1; width 1 is a threshold at the centre
        return (values > center - 0.5).astype(np.float64)
    return (values - (center - 0.5)) / (width - 1.0) + 0.5
