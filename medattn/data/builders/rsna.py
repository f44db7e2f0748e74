"""RSNA Pneumonia Detection Challenge: binary Lung Opacity ("Pneumonia") with boxes.

stage_2_train_labels.csv lists one row per box and one row with empty coordinates for each
negative patient; boxes are in the 1024x1024 frame of the original DICOMs and are rescaled to
the stored images (downsampled PNGs are common). stage_2_detailed_class_info.csv tells
"Normal" from "No Lung Opacity / Not Normal"; Aggarwal et al. drop the latter.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from medattn.data.builders.boxes import reconcile_sizes
from medattn.data.builders.headers import stored_sizes
from medattn.data.builders.output import finish
from medattn.data.builders.sources import find_source_file, index_files, keep_present, read_table, require_columns, require_folder
from medattn.data.builders.splits import split_by_patient, split_record
from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)

CLASS = "Pneumonia"
NOT_NORMAL = "No Lung Opacity / Not Normal"
FRAME = (1024.0, 1024.0)
IMAGE_FOLDERS = ("images", "stage_2_train_images")
# When one patient has several files, the first suffix here wins.
SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


def rsna_tables(labels_csv: str | os.PathLike, skips: Skips | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Images (one per patientId, 0/1 Pneumonia) and boxes (1024 frame) from the labels CSV.

    A row whose Target disagrees with its coordinates (1 without a box, 0 with one) makes its
    patient skipped and named into `skips`; without `skips` it is a DatasetError.
    """
    path = Path(labels_csv)
    rows = read_table(path, dtype={"patientId": str})
    require_columns(rows, ("patientId", "x", "y", "width", "height", "Target"), path)
    target = pd.to_numeric(rows["Target"], errors="coerce")
    odd = ~target.isin([0, 1])
    if odd.any():
        shown = rows["Target"].map(lambda v: "empty" if pd.isna(v) else repr(v))
        raise DatasetError(path, [f"{path.name} line {i + 2}: field Target is {shown[i]}, not 0 or 1" for i in rows.index[odd]])
    rows["Target"] = target.astype(int)
    has_box = rows[["x", "y", "width", "height"]].notna().all(axis=1)
    inconsistent = has_box != (rows["Target"] == 1)
    if inconsistent.any():
        problems = {i: f"{path.name} line {i + 2}: Target={rows.at[i, 'Target']} but coordinates are "
                       f"{'present' if has_box[i] else 'empty'}" for i in rows.index[inconsistent]}
        if skips is None:
            raise DatasetError(path, list(problems.values()))
        for i, problem in problems.items():
            skips.add(rows.at[i, "patientId"], problem, path)
        kept = ~rows["patientId"].isin(set(rows.loc[inconsistent, "patientId"]))
        rows, has_box = rows[kept], has_box[kept]
    images = rows.groupby("patientId", sort=True)["Target"].max().astype(int).rename(CLASS).reset_index()
    images = images.rename(columns={"patientId": "image_id"})
    images["patient_id"] = images["image_id"]
    positive = rows[has_box]
    boxes = pd.DataFrame(
        {
            "image_id": positive["patientId"],
            "label": CLASS,
            "x": positive["x"],
            "y": positive["y"],
            "w": positive["width"],
            "h": positive["height"],
            "origin": [f"{path.name} line {i + 2}" for i in positive.index],
        }
    )
    return images, boxes.reset_index(drop=True)


def build_rsna(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    split: str | None = None,
    drop_not_normal: bool = False,
    name: str = "rsna-pneumonia",
    strict: bool = False,
) -> Path:
    """Build the dataset folder from an RSNA download (images/ or stage_2_train_images/).

    An image whose header cannot be read, or whose stored size is not a uniform rescale of the
    1024x1024 box frame while it has boxes, is skipped and named (`strict`: fail instead).
    """
    skips = Skips("images", strict=strict)
    source = require_folder(source, "RSNA pneumonia source")
    labels_csv = find_source_file(source, "stage_2_train_labels.csv")
    images, boxes = rsna_tables(labels_csv, skips)
    if drop_not_normal:
        images = _drop_not_normal(source, images)

    found = _image_files(source)
    images["path"] = images["image_id"].map(found)
    images = keep_present(images, images["path"].notna(), f"patients of {labels_csv.name}", source)
    boxes = boxes[boxes["image_id"].isin(images["image_id"])]
    images = stored_sizes(images, source, skips)
    declared = pd.DataFrame({"width": FRAME[0], "height": FRAME[1]}, index=images.index)
    images, boxes = reconcile_sizes(images, boxes, declared, skips, f"the 1024x1024 frame of {labels_csv.name}")
    images["split"] = split_by_patient(images["patient_id"], seed=seed, val_frac=val_frac, test_frac=test_frac, only=split)
    return finish(
        out,
        name=name,
        classes=[CLASS],
        task="binary",
        images=images,
        boxes=boxes,
        image_root=source,
        source=f"RSNA Pneumonia Detection Challenge {labels_csv}",
        label_frame="stage_2_train_labels.csv boxes are in the 1024x1024 frame, rescaled to each stored image",
        split=split_record(seed=seed, val_frac=val_frac, test_frac=test_frac, only=split),
        options={"drop_not_normal": drop_not_normal},
        skips=skips,
    )


def _image_files(source: Path) -> dict[str, str]:
    """patientId -> relative path, preferring the suffixes in SUFFIXES order."""
    found: dict[str, str] = {}
    for suffix in SUFFIXES:
        for file_name, rel in index_files(source, IMAGE_FOLDERS, {suffix}).items():
            found.setdefault(file_name[: -len(suffix)], rel)
    return found


def _drop_not_normal(source: Path, images: pd.DataFrame) -> pd.DataFrame:
    path = find_source_file(source, "stage_2_detailed_class_info.csv")
    detail = read_table(path, dtype={"patientId": str})
    require_columns(detail, ("patientId", "class"), path)
    not_normal = set(detail.loc[detail["class"] == NOT_NORMAL, "patientId"])
    dropped = images["image_id"].isin(not_normal)
    log.info("dropping %d '%s' patients (%s)", int(dropped.sum()), NOT_NORMAL, path.name)
    return images[~dropped].copy()
