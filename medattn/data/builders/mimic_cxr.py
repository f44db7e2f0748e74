"""MIMIC-CXR-JPG with CheXpert-labeler labels (Johnson et al. 2019); no boxes.

Official files: mimic-cxr-2.0.0-chexpert.csv (per study: 1 positive, 0 negative, -1
uncertain, blank not mentioned), mimic-cxr-2.0.0-metadata.csv (per image: dicom_id,
subject_id, study_id, ViewPosition, Rows, Columns), optional mimic-cxr-2.0.0-split.csv, and
images at files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg. Labels are per study and apply to each of
its images. Default task: Pleural Effusion alone, frontal views (Gonçalves et al.).

The metadata's Rows/Columns are the original DICOM's; width/height come from each stored JPG's
header (an unreadable one is skipped and named), and a JPG of another shape is listed in the log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from medattn.data.builders.boxes import reconcile_sizes
from medattn.data.builders.headers import stored_sizes
from medattn.data.builders.output import finish
from medattn.data.builders.sources import find_source_file, keep_present, read_table, require_columns, require_folder, require_unique
from medattn.data.builders.splits import split_by_patient, split_record
from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)

CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
UNCERTAIN_POLICIES = ("zero", "one", "ignore")
OFFICIAL_SPLITS = {"train": "train", "validate": "val", "test": "test"}


def build_mimic_cxr(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes: Sequence[str] = ("Pleural Effusion",),
    uncertain: str = "zero",
    views: Sequence[str] | None = ("PA", "AP"),
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    split: str | None = None,
    name: str = "mimic-cxr",
    strict: bool = False,
) -> Path:
    """Build the dataset folder; `uncertain` maps -1 to 0 ('zero'), 1 ('one') or drops the image ('ignore').

    `views=None` keeps every view position. `strict` fails on the first unreadable image.
    """
    skips = Skips("images", strict=strict)
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    classes = list(classes)
    source = require_folder(source, "MIMIC-CXR-JPG source")
    chexpert_csv = find_source_file(source, CHEXPERT)
    metadata_csv = find_source_file(source, METADATA)
    labels = read_table(chexpert_csv, dtype={"subject_id": str, "study_id": str})
    require_columns(labels, ["subject_id", "study_id", *classes], chexpert_csv)
    require_unique(labels, ["subject_id", "study_id"], chexpert_csv)
    meta = read_table(metadata_csv, dtype={"dicom_id": str, "subject_id": str, "study_id": str})
    require_columns(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], metadata_csv)
    require_unique(meta, ["dicom_id"], metadata_csv)

    if views is not None:
        meta = meta[meta["ViewPosition"].isin(list(views))]
    images = meta.merge(labels[["subject_id", "study_id", *classes]], on=["subject_id", "study_id"], how="inner")
    unlabelled = len(meta) - len(images)
    if unlabelled:
        log.info("%d image(s) belong to studies without a row in %s; left out", unlabelled, chexpert_csv.name)
    images = _apply_uncertain(images, classes, uncertain, chexpert_csv)

    images["path"] = [f"files/p{s[:2]}/p{s}/s{t}/{d}.jpg" for s, t, d in zip(images["subject_id"], images["study_id"], images["dicom_id"])]
    present = pd.Series([(source / p).is_file() for p in images["path"]], index=images.index)
    images = keep_present(images, present, f"images of {metadata_csv.name}", source)
    images = images.rename(columns={"dicom_id": "image_id", "subject_id": "patient_id", "ViewPosition": "view"})
    declared = pd.DataFrame({"width": pd.to_numeric(images.get("Columns"), errors="coerce"),
                             "height": pd.to_numeric(images.get("Rows"), errors="coerce")}, index=images.index)
    images = stored_sizes(images, source, skips)
    no_boxes = pd.DataFrame(columns=["image_id", "label", "x", "y", "w", "h"])
    images, _ = reconcile_sizes(images, no_boxes, declared.loc[images.index], skips, f"Rows/Columns of {metadata_csv.name}")
    official, used = _official_split(source, images)
    images["split"] = split_by_patient(
        images["patient_id"], seed=seed, val_frac=val_frac, test_frac=test_frac, only=split, official=official
    )
    keep = ["image_id", "path", "split", "patient_id", "width", "height", *classes, "study_id", "view"]
    return finish(
        out,
        name=name,
        classes=classes,
        task="binary" if len(classes) == 1 else "multilabel",
        images=images[keep],
        boxes=pd.DataFrame(columns=["image_id", "label", "x", "y", "w", "h"]),
        image_root=source,
        source=f"MIMIC-CXR-JPG {chexpert_csv.name} + {metadata_csv.name}",
        split=split_record(seed=seed, val_frac=val_frac, test_frac=test_frac, only=split, official=used),
        options={"uncertain": uncertain, "views": list(views) if views is not None else None},
        skips=skips,
    )


def _apply_uncertain(images: pd.DataFrame, classes: list[str], policy: str, path: Path) -> pd.DataFrame:
    values = images[classes].apply(pd.to_numeric, errors="coerce")
    odd = ~((values.isna() & images[classes].isna()) | values.isin([1, 0, -1]))  # text is odd, not blank
    if odd.any().any():
        found = sorted({repr(v) for v in images[classes][odd].stack()})
        raise DatasetError(path, [f"{path.name}: label values must be 1, 0, -1 or blank; found {', '.join(found)}"])
    if policy == "ignore":
        uncertain = (values == -1).any(axis=1)
        log.info("dropping %d image(s) with an uncertain label (policy 'ignore')", int(uncertain.sum()))
        images, values = images[~uncertain].copy(), values[~uncertain]
    values = values.replace(-1, 1 if policy == "one" else 0).fillna(0).astype(int)
    images[classes] = values
    return images


def _official_split(source: Path, images: pd.DataFrame) -> tuple[pd.Series | None, list[str]]:
    path = find_source_file(source, SPLIT, required=False)
    if path is None:
        return None, []
    table = read_table(path, dtype={"dicom_id": str})
    require_columns(table, ("dicom_id", "split"), path)
    unknown = set(table["split"]) - set(OFFICIAL_SPLITS)
    if unknown:
        raise DatasetError(path, [f"{path.name}: split values {sorted(unknown)} are not train/validate/test"])
    by_image = table.set_index("dicom_id")["split"].map(OFFICIAL_SPLITS)
    return images["image_id"].map(by_image), [path.name]
