"""SIPaKMeD Pap smear cells: five classes, multiclass (Plissiti et al., ICIP 2018).

Layout: im_<Class>/ (often im_<Class>/im_<Class>/) holds the cluster images NNN.bmp with one
NNN_cytKK.dat (cytoplasm boundary, "x,y" per line) and NNN_nucKK.dat per cell, and
CROPPED/NNN_KK.bmp single-cell crops. By default the dataset is the cluster images with one
box per cell (the bounding box of its cytoplasm boundary); `cropped=True` gives the 4049
single-cell crops instead, without boxes. The dataset has no patient ids: each cluster image
is a patient, so crops of one cluster image never straddle splits.

Boxes are drawn on the stored image (no other frame is declared); an image whose header or
boundary file cannot be read, or with a cell box outside it, is skipped and named.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medattn.data.builders.headers import stored_sizes
from medattn.data.builders.output import finish
from medattn.data.builders.splits import split_by_patient, split_record
from medattn.data.builders.sources import require_folder
from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)

CLASSES = ["Dyskeratotic", "Koilocytotic", "Metaplastic", "Parabasal", "Superficial-Intermediate"]
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def read_boundary(path: str | os.PathLike) -> np.ndarray:
    """(n, 2) array of x, y points of a .dat boundary file."""
    path = Path(path)
    values = [float(v) for v in NUMBER.findall(path.read_text(errors="replace"))]
    if len(values) < 4 or len(values) % 2:
        raise DatasetError(path, [f"{path.name}: expected pairs of x,y coordinates, found {len(values)} number(s)"])
    return np.array(values).reshape(-1, 2)


def build_sipakmed(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    cropped: bool = False,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    split: str | None = None,
    name: str | None = None,
    strict: bool = False,
) -> Path:
    """Build the dataset folder from the extracted SIPaKMeD class folders (`strict`: fail on the
    first bad file instead of skipping it)."""
    skips = Skips("images", strict=strict)
    source = require_folder(source, "SIPaKMeD source")
    rows, boxes = [], []
    for label in CLASSES:
        folder = _class_folder(source, label)
        if cropped:
            files = sorted((folder / "CROPPED").glob("*.bmp"))
        else:
            files = sorted(folder.glob("*.bmp"))
        if not files:
            raise DatasetError(folder, [f"no .bmp images in {folder / 'CROPPED' if cropped else folder}"])
        for file in files:
            image_id = f"{label}_{file.stem}"
            cluster = file.stem.split("_")[0]
            cells = [] if cropped else [skips.call(image_id, _cell_box, dat, image_id, label)
                                        for dat in sorted(folder.glob(f"{file.stem}_cyt*.dat"))]
            if None in cells:
                continue
            rows.append({"image_id": image_id, "path": file.relative_to(source).as_posix(), "patient_id": f"{label}_{cluster}", "label": label})
            boxes += cells
    images = pd.DataFrame(rows)
    for label in CLASSES:
        images[label] = (images["label"] == label).astype(int)
    images = stored_sizes(images, source, skips)
    readable = set(images["image_id"])
    boxes = [box for box in boxes if box[0] in readable]
    images["split"] = split_by_patient(images["patient_id"], seed=seed, val_frac=val_frac, test_frac=test_frac, only=split)
    boxes = pd.DataFrame(boxes, columns=["image_id", "label", "x", "y", "w", "h", "origin"])
    return finish(
        out,
        name=name or ("sipakmed-cells" if cropped else "sipakmed"),
        classes=CLASSES,
        task="multiclass",
        images=images.drop(columns="label"),
        boxes=boxes,
        image_root=source,
        source=f"SIPaKMeD {source} ({'CROPPED single-cell images' if cropped else 'cluster images, cell boxes from *_cyt*.dat'})",
        split=split_record(seed=seed, val_frac=val_frac, test_frac=test_frac, only=split),
        options={"cropped": cropped},
        skips=skips,
    )


def _class_folder(source: Path, label: str) -> Path:
    """im_<Class>/im_<Class> when the zip was extracted into its own folder, else im_<Class>."""
    top = source / f"im_{label}"
    for folder in (top / f"im_{label}", top):
        if folder.is_dir() and ((folder / "CROPPED").is_dir() or any(folder.glob("*.bmp"))):
            return folder
    raise DatasetError(source, [f"expected folder {top} (with the class's .bmp images and CROPPED/), not found"])


def _cell_box(dat: Path, image_id: str, label: str) -> tuple:
    points = read_boundary(dat)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return (image_id, label, float(x0), float(y0), float(x1 - x0), float(y1 - y0), dat.name)
