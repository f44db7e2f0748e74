"""NIH ChestX-ray14: 14 findings, multilabel, radiologist boxes for 8 of them (Wang et al. 2017).

Official files: Data_Entry_2017.csv (or the 2020 revision), BBox_List_2017.csv, images under
images/ or images_NNN/images/ (the tarball layout), optional train_val_list.txt/test_list.txt.
Both CSVs have headers whose bracketed names span several columns
(`OriginalImage[Width,Height]`, `Bbox [x,y,w,h]`), so columns are read by position after
checking the header names the expected file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from medattn.data.builders.boxes import reconcile_sizes
from medattn.data.builders.headers import stored_sizes
from medattn.data.builders.output import finish
from medattn.data.builders.sources import find_source_file, index_files, keep_present, read_list, read_table, require_folder, require_unique
from medattn.data.builders.splits import split_by_patient, split_record
from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)

FINDINGS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
]  # fmt: skip
NO_FINDING = "No Finding"
BOX_LABELS = {"Infiltrate": "Infiltration"}
# The frame of BBox_List_2017.csv: the 1024x1024 PNGs NIH distributes.
FRAME = (1024.0, 1024.0)
IMAGE_FOLDERS = ("images", "images_*/images")


def nih_tables(
    data_entry: str | os.PathLike,
    bbox_list: str | os.PathLike | None = None,
    *,
    drop_no_finding: bool = False,
    exclude_hernia: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The images and boxes tables from the official CSVs, without touching image files.

    Images get `image_id` (file stem), `file`, `patient_id`, width/height 1024 (the distributed
    size), one 0/1 column per finding, and view/sex/age/follow_up. Boxes stay in the 1024 frame.
    `exclude_hernia` removes the Hernia class; `drop_no_finding` then drops every image with
    no remaining finding (Saednia et al. train on abnormal images only).
    """
    classes = [c for c in FINDINGS if not (exclude_hernia and c == "Hernia")]
    entries = read_data_entry(data_entry)
    labels = _label_matrix(entries, Path(data_entry))
    images = pd.DataFrame(
        {
            "image_id": entries["file"].str.rsplit(".", n=1).str[0],
            "file": entries["file"],
            "patient_id": entries["patient_id"],
            "width": int(FRAME[0]),
            "height": int(FRAME[1]),
        }
    )
    images[classes] = labels[classes]
    images["view"] = entries["view"]
    images["sex"] = entries["sex"]
    images["age"] = entries["age"]
    images["follow_up"] = entries["follow_up"]
    if drop_no_finding:
        images = images[images[classes].sum(axis=1) > 0]
    images = images.reset_index(drop=True)

    if bbox_list is None:
        return images, pd.DataFrame(columns=["image_id", "label", "x", "y", "w", "h", "origin"])
    boxes = read_bbox_list(bbox_list)
    unknown = ~boxes["file"].isin(entries["file"])
    if unknown.any():
        raise DatasetError(
            bbox_list,
            [f"{boxes.at[i, 'origin']}: image {boxes.at[i, 'file']} is not in {Path(data_entry).name}" for i in boxes.index[unknown]],
        )
    kept = boxes["file"].isin(images["file"])
    if not kept.all():
        log.info("%d box(es) belong to images dropped by the options; left out", int((~kept).sum()))
    boxes = boxes[kept]
    off_class = ~boxes["label"].isin(classes)
    if off_class.any():
        raise DatasetError(
            bbox_list,
            [f"{boxes.at[i, 'origin']}: box label {boxes.at[i, 'label']!r} is not one of the classes" for i in boxes.index[off_class]],
        )
    boxes = boxes.assign(image_id=boxes["file"].str.rsplit(".", n=1).str[0]).drop(columns="file")
    return images, boxes.reset_index(drop=True)


def read_data_entry(path: str | os.PathLike) -> pd.DataFrame:
    """Data_Entry_2017*.csv as columns file, labels, follow_up, patient_id, age, sex, view."""
    path = Path(path)
    _check_header(path, ("Image Index", "Finding Labels"))
    names = ["file", "labels", "follow_up", "patient_id", "age", "sex", "view"]
    frame = read_table(path, header=None, skiprows=1, usecols=range(7), names=names, dtype=str)
    for column in ("file", "labels", "patient_id"):
        empty = frame[column].isna()
        if empty.any():
            raise DatasetError(path, [f"{path.name} line {i + 2}: field {column} is empty" for i in frame.index[empty]])
    require_unique(frame, ["file"], path)
    frame["age"] = pd.to_numeric(frame["age"].str.extract(r"(\d+)", expand=False), errors="coerce")
    frame["follow_up"] = pd.to_numeric(frame["follow_up"], errors="coerce")
    return frame


def read_bbox_list(path: str | os.PathLike) -> pd.DataFrame:
    """BBox_List_2017.csv as columns file, label (image-label spelling), x, y, w, h, origin."""
    path = Path(path)
    _check_header(path, ("Image Index", "Finding Label"))
    names = ["file", "label", "x", "y", "w", "h"]
    frame = read_table(path, header=None, skiprows=1, usecols=range(6), names=names)
    frame["label"] = frame["label"].replace(BOX_LABELS)
    frame["origin"] = [f"{path.name} line {i + 2}" for i in range(len(frame))]
    return frame


def build_nih(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    split: str | None = None,
    drop_no_finding: bool = False,
    exclude_hernia: bool = False,
    name: str = "nih-chestxray14",
    strict: bool = False,
) -> Path:
    """Build the dataset folder from an NIH download; images stay where they are.

    An image whose header cannot be read, or whose stored size is not a uniform rescale of the
    1024x1024 box frame while it has boxes, is skipped and named (`strict`: fail instead).
    """
    skips = Skips("images", strict=strict)
    source = require_folder(source, "NIH ChestX-ray14 source")
    data_entry = find_source_file(source, "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
    bbox_list = find_source_file(source, "BBox_List_2017.csv", required=False)
    if bbox_list is None:
        log.warning("BBox_List_2017.csv not found in %s; the dataset will have no boxes", source)
    images, boxes = nih_tables(data_entry, bbox_list, drop_no_finding=drop_no_finding, exclude_hernia=exclude_hernia)

    found = index_files(source, IMAGE_FOLDERS, {".png"})
    images["path"] = images["file"].map(found)
    images = keep_present(images, images["path"].notna(), f"rows of {data_entry.name}", source)
    boxes = boxes[boxes["image_id"].isin(images["image_id"])]
    images = stored_sizes(images, source, skips)
    declared = pd.DataFrame({"width": FRAME[0], "height": FRAME[1]}, index=images.index)
    images, boxes = reconcile_sizes(images, boxes, declared, skips, "the 1024x1024 frame of BBox_List_2017.csv")

    official, lists = _official_split(source, images["file"])
    images["split"] = split_by_patient(
        images["patient_id"], seed=seed, val_frac=val_frac, test_frac=test_frac, only=split, official=official
    )
    classes = [c for c in FINDINGS if not (exclude_hernia and c == "Hernia")]
    return finish(
        out,
        name=name,
        classes=classes,
        task="multilabel",
        images=images.drop(columns="file"),
        boxes=boxes,
        image_root=source,
        source=f"NIH ChestX-ray14 {data_entry} + {bbox_list.name if bbox_list else 'no boxes'}",
        label_frame="BBox_List_2017.csv boxes are in the 1024x1024 frame, rescaled to each stored image",
        split=split_record(seed=seed, val_frac=val_frac, test_frac=test_frac, only=split, official=lists),
        options={"drop_no_finding": drop_no_finding, "exclude_hernia": exclude_hernia},
        skips=skips,
    )


def _official_split(source: Path, files: pd.Series) -> tuple[pd.Series | None, list[str]]:
    """'test' / 'train' per image from test_list.txt and train_val_list.txt when they exist."""
    official = pd.Series(np.nan, index=files.index, dtype=object)
    used = []
    for list_name, split in (("train_val_list.txt", "train"), ("test_list.txt", "test")):
        path = find_source_file(source, list_name, required=False)
        if path is None:
            continue
        listed = set(read_list(path))
        official[files.isin(listed)] = split
        used.append(path.name)
    return (official if used else None), used


def _label_matrix(entries: pd.DataFrame, path: Path) -> pd.DataFrame:
    dummies = entries["labels"].str.get_dummies(sep="|")
    unknown = [c for c in dummies.columns if c not in FINDINGS and c != NO_FINDING]
    if unknown:
        rows = entries.index[dummies[unknown].any(axis=1)]
        raise DatasetError(
            path, [f"{path.name} line {i + 2}: unknown finding in {entries.at[i, 'labels']!r}" for i in rows]
        )
    return dummies.reindex(columns=FINDINGS, fill_value=0).astype(int)


def _check_header(path: Path, expected: tuple[str, ...]) -> None:
    header = read_table(path, nrows=0).columns
    text = ",".join(map(str, header))
    if not all(name in text for name in expected):
        raise DatasetError(path, [f"{path.name}: header {text!r} does not name {', '.join(expected)}; is this the right file?"])
