"""CBIS-DDSM mammograms: Benign / Malignant (multilabel per image), boxes from the ROI masks.

Official files: mass_case_description_{train,test}_set.csv and
calc_case_description_{train,test}_set.csv (one row per abnormality: patient_id, pathology,
'image file path', 'ROI mask file path') and the DICOM tree from TCIA. The CSV paths name the
case folder, study and series, but the downloaded file names differ (000000.dcm vs 1-1.dcm)
and some rows swap the mask with the cropped lesion image, so each file is resolved inside its
case folder and the mask is the DICOM there with the full mammogram's size. The official
train/test split comes from the CSV names; val is drawn from the train patients.

A mammogram that is missing or unreadable, or one of whose abnormalities has no readable,
non-empty ROI mask of the mammogram's size, is skipped with all its abnormalities (a partial
set of boxes would score a map that points at the unboxed lesion as a miss), counted and
named; `strict=True` fails on the first one instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from medattn.data.builders.headers import image_size, stored_sizes
from medattn.data.builders.output import finish
from medattn.data.builders.sources import find_source_file, read_table, require_columns, require_folder
from medattn.data.builders.splits import split_by_patient, split_record
from medattn.data.skips import Skips
from medattn.errors import DatasetError, ImageReadError

log = logging.getLogger(__name__)

CLASSES = ["Benign", "Malignant"]
PATHOLOGY = {"MALIGNANT": "Malignant", "BENIGN": "Benign", "BENIGN_WITHOUT_CALLBACK": "Benign"}
ABNORMALITIES = {"mass": ("mass",), "calc": ("calc",), "both": ("mass", "calc")}
COLUMNS = ("patient_id", "pathology", "image file path", "ROI mask file path")
RENAME = {"image file path": "image_file", "ROI mask file path": "mask_file", "image view": "view", "left or right breast": "laterality"}


def read_case_descriptions(source: Path, abnormality: str = "both") -> pd.DataFrame:
    """Rows of the chosen description CSVs, columns renamed (RENAME), with label, official, kind, origin."""
    if abnormality not in ABNORMALITIES:
        raise ValueError(f"abnormality must be one of {sorted(ABNORMALITIES)}, got {abnormality!r}")
    frames = []
    for kind in ABNORMALITIES[abnormality]:
        for split in ("train", "test"):
            path = find_source_file(source, f"{kind}_case_description_{split}_set.csv")
            frame = read_table(path, dtype=str)
            frame.columns = [c.strip() for c in frame.columns]
            require_columns(frame, COLUMNS, path)
            frame["official"], frame["kind"] = split, kind
            frame["origin"] = [f"{path.name} line {i + 2}" for i in range(len(frame))]
            frames.append(frame.rename(columns=RENAME))
    rows = pd.concat(frames, ignore_index=True)
    for column in ("image_file", "mask_file", "pathology", "patient_id"):
        rows[column] = rows[column].str.strip().str.strip('"').str.replace("\\", "/", regex=False)
    for column in ("patient_id", "image_file"):
        empty = rows[column].isna() | (rows[column] == "")
        if empty.any():
            raise DatasetError(source, [f"{rows.at[i, 'origin']}: field {column} is empty" for i in rows.index[empty]])
    rows["label"] = rows["pathology"].map(PATHOLOGY)
    bad = rows["label"].isna()
    if bad.any():
        raise DatasetError(source, [f"{rows.at[i, 'origin']}: pathology {rows.at[i, 'pathology']!r} is not one of {sorted(PATHOLOGY)}" for i in rows.index[bad]])
    return rows


def build_cbis_ddsm(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    abnormality: str = "both",
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    split: str | None = None,
    name: str = "cbis-ddsm",
    strict: bool = False,
) -> Path:
    """Build the dataset folder from the CBIS-DDSM CSVs and DICOM tree (CBIS-DDSM/ or the source itself)."""
    skips = Skips("images", strict=strict)
    source = require_folder(source, "CBIS-DDSM source")
    rows = read_case_descriptions(source, abnormality)
    root = source / "CBIS-DDSM" if (source / "CBIS-DDSM").is_dir() else source

    rows["image_id"] = rows["image_file"].str.split("/").str[0]
    first = rows.drop_duplicates("image_id").set_index("image_id")
    paths = {image_id: skips.call(image_id, _resolve_image, root, first.at[image_id, "image_file"], first.at[image_id, "origin"])
             for image_id in first.index}
    paths = {image_id: path for image_id, path in paths.items() if path is not None}
    images = pd.DataFrame({"image_id": list(paths), "path": [p.relative_to(root).as_posix() for p in paths.values()]})
    images = stored_sizes(images, root, skips, desc="reading mammogram headers")
    images["patient_id"] = images["image_id"].map(first["patient_id"])
    for column in ("view", "laterality"):
        if column in first.columns:
            images[column] = images["image_id"].map(first[column])
    for label in CLASSES:
        positive = set(rows.loc[rows["label"] == label, "image_id"])
        images[label] = images["image_id"].isin(positive).astype(int)
    images["abnormality"] = images["image_id"].map(rows.groupby("image_id")["kind"].agg(lambda k: "+".join(sorted(set(k)))))

    size_of = {i: (int(w), int(h)) for i, w, h in zip(images["image_id"], images["width"], images["height"])}
    cases = rows[rows["image_id"].isin(size_of)]
    boxes = [
        skips.call(row.image_id, _mask_box, root, row, size_of[row.image_id])
        for row in tqdm(cases.itertuples(index=False), total=len(cases), desc="reading ROI masks", disable=None)
    ]
    failed = {row.image_id for row, box in zip(cases.itertuples(index=False), boxes) if box is None}
    images = images[~images["image_id"].isin(failed)].reset_index(drop=True)
    boxes = pd.DataFrame([b for b in boxes if b is not None and b[0] not in failed],
                         columns=["image_id", "label", "x", "y", "w", "h", "origin"])

    official = images["image_id"].map(rows.groupby("image_id")["official"].agg(lambda s: "test" if "test" in set(s) else "train"))
    images["split"] = split_by_patient(images["patient_id"], seed=seed, val_frac=val_frac, test_frac=test_frac,
                                       only=split, official=official)
    return finish(
        out,
        name=name,
        classes=CLASSES,
        task="multilabel",
        images=images,
        boxes=boxes,
        image_root=root,
        source=f"CBIS-DDSM {source} ({abnormality} case descriptions)",
        label_frame="boxes are the bounding boxes of the ROI masks, in mammogram pixels",
        split=split_record(seed=seed, val_frac=val_frac, test_frac=test_frac, only=split,
                           official=["*_case_description_{train,test}_set.csv"]),
        options={"abnormality": abnormality},
        skips=skips,
    )


def _candidates(root: Path, csv_path: str) -> list[Path]:
    """The file the CSV names if it exists, then every DICOM of its case folder, sorted."""
    exact = root / csv_path
    case = root / csv_path.split("/")[0]
    found = sorted(case.rglob("*.dcm")) if case.is_dir() else []
    return ([exact] if exact.is_file() else []) + [p for p in found if p != exact]


def _resolve_image(root: Path, csv_path: str, origin: str) -> Path:
    candidates = _candidates(root, csv_path)
    if not candidates:
        raise DatasetError(root, [f"{origin}: no DICOM for image file path {csv_path!r} (looked for {root / csv_path} and in {root / csv_path.split('/')[0]})"])
    return candidates[0]


def _mask_box(root: Path, row: tuple, image_size_wh: tuple[int, int]) -> tuple:
    """Bounding box (x, y, w, h) of the nonzero pixels of the row's ROI mask."""
    csv_path = row.mask_file
    seen = []
    for path in _candidates(root, csv_path):
        try:
            size = image_size(path)
        except ImageReadError as exc:
            seen.append(f"{path.name} unreadable ({exc.reason})")
            continue
        if size != tuple(image_size_wh):
            seen.append(f"{path.relative_to(root).as_posix()} is {size[0]}x{size[1]}")
            continue
        mask = _pixels(path) != 0
        if not mask.any():
            raise DatasetError(path, [f"{row.origin}: ROI mask {path} is empty"])
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        x0, y0 = int(xs[0]), int(ys[0])
        return (row.image_id, row.label, x0, y0, int(xs[-1]) - x0 + 1, int(ys[-1]) - y0 + 1, row.origin)
    case = root / csv_path.split("/")[0]
    raise DatasetError(
        case,
        [f"{row.origin}: no ROI mask of the mammogram's size {image_size_wh[0]}x{image_size_wh[1]} for {csv_path!r} "
         f"in {case} ({'; '.join(seen) or 'no DICOM there'})"],
    )


def _pixels(path: Path) -> np.ndarray:
    import pydicom

    try:
        return pydicom.dcmread(path).pixel_array
    except Exception as exc:  # pydicom raises several types for corrupt files and missing decoders
        raise ImageReadError(path, f"cannot decode the ROI mask ({exc})") from exc
