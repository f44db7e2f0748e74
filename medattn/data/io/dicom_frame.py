"""The grey-scale transformation attributes that apply to one frame of a DICOM file.

Single-frame images carry the Modality LUT (C.11.1: Rescale Slope/Intercept/Type or the
Modality LUT Sequence) and VOI LUT (C.11.2: Window Center/Width, VOI LUT Function or the VOI LUT
Sequence) at the top level. Enhanced multi-frame images (PS3.3 C.7.6.16) carry them in
functional groups instead, each in the Shared Functional Groups Sequence (5200,9229) for every
frame or in the frame's item of the Per-frame Functional Groups Sequence (5200,9230):
- Pixel Value Transformation Sequence (0028,9145), C.7.6.16.2.9 (and its CT specialisation
  C.8.15.3.10): Rescale Intercept, Slope and Type (a Modality LUT Sequence in its item too);
- Frame VOI LUT Sequence (0028,9132), C.7.6.16.2.10 and "Frame VOI LUT With LUT" C.7.6.16.2.10b:
  Window Center, Width, VOI LUT Function, or a VOI LUT Sequence.
A functional group replaces the whole transformation it describes; per-frame wins over shared,
shared over the top level (the order PixelMed's ModalityTransform/VOITransform and DCMTK's
functional-group classes look them up). pydicom's `apply_modality_lut`/`apply_voi_lut` read the
top level only, which is why a functional-group file read through them comes out min-max scaled.
"""

from __future__ import annotations

import pydicom

MODALITY = ("RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence")
VOI = ("WindowCenter", "WindowWidth", "VOILUTFunction", "WindowCenterWidthExplanation", "VOILUTSequence")
# functional group sequence → the attributes one of its items replaces
GROUPS = (("PixelValueTransformationSequence", MODALITY), ("FrameVOILUTSequence", VOI))


def frame_attributes(ds: pydicom.Dataset, frame: int = 0) -> tuple[pydicom.Dataset, dict[str, str]]:
    """The Modality and VOI LUT attributes of frame `frame` (0-based) as one flat dataset, and
    where each transformation came from ({"modality": ..., "voi": ...}: "top level",
    "shared functional groups" or "per-frame functional groups item N")."""
    flat = pydicom.Dataset()
    for keyword in MODALITY + VOI:
        if keyword in ds:
            flat[keyword] = ds[keyword]
    sources = {"modality": "top level", "voi": "top level"}
    for where, group in _groups(ds, frame):
        for (sequence, keywords), name in zip(GROUPS, ("modality", "voi")):
            item = _first(group.get(sequence))
            if item is None:
                continue
            for keyword in keywords:
                if keyword in flat:
                    del flat[keyword]
                if keyword in item:
                    flat[keyword] = item[keyword]
            sources[name] = where
    return flat, sources


def _groups(ds: pydicom.Dataset, frame: int) -> list[tuple[str, pydicom.Dataset]]:
    """(where, functional groups item) in the order they apply: shared, then the frame's own."""
    out = []
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    if shared is not None:
        out.append(("shared functional groups", shared))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) > frame:
        out.append((f"per-frame functional groups item {frame + 1}", per_frame[frame]))
    return out


def _first(sequence: object) -> pydicom.Dataset | None:
    """The first item of a sequence element's value; None when absent or empty."""
    if sequence is None:
        return None
    try:
        return sequence[0] if len(sequence) else None  # type: ignore[index, arg-type]
    except TypeError:
        return None
