"""Any COCO-format detection json (TBX11K and others): multilabel by which categories have boxes.

Classes are the json's categories in id order. An image listed with no annotation is a
negative (TBX11K lists healthy and sick-but-not-TB images that way). COCO has no patients, so
each image is its own patient. Several files may be given, each optionally prefixed with the
split it is ("train=TBX11K_train.json", "test=TBX11K_val.json"); a 'train' file's images are
divided into train and val by patient.

Declared vs stored size: each image's width/height in the json is the frame of its boxes; the
stored size is read from the file, and the boxes follow `boxes.reconcile_sizes` (rescaled when
the file is a uniform rescale, else the image is skipped and named).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from medattn.data.builders.boxes import reconcile_sizes
from medattn.data.builders.headers import stored_sizes
from medattn.data.builders.output import finish
from medattn.data.builders.sources import keep_present, require_folder
from medattn.data.builders.splits import SPLIT_RANK, split_by_patient, split_record
from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)


def coco_tables(annotations: str | os.PathLike) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """(classes, images, boxes) of one COCO json; images keyed by `file` (file_name).

    DatasetError lists every structural problem, each naming its entry (`categories[2]`,
    `images[5]`, `annotations[7] (id=…)`) and field. A bbox value that is not a number becomes
    NaN, so that its image is skipped and named when boxes are fitted.
    """
    path = Path(annotations)
    data = _load_json(path)
    problems: list[str] = []
    names = _categories(data["categories"], path.name, problems)
    rows = _entries(data["images"], "images", path.name, problems)
    for k, entry in rows:
        if not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            problems.append(f"{path.name} images[{k}]: field 'file_name' is {entry.get('file_name')!r}, not a file name")
        elif Path(entry["file_name"]).is_absolute() or ".." in Path(entry["file_name"]).parts:
            problems.append(f"{path.name} images[{k}]: field 'file_name' {entry['file_name']!r} leaves the image "
                            "folder (an absolute path or '..'); name files relative to it")
        for column in ("width", "height"):
            if column in entry and not (_number(entry[column]) > 0):
                problems.append(f"{path.name} images[{k}]: field '{column}' is {entry[column]!r}, not a positive number")
    ids = pd.Series([entry.get("id") for _, entry in rows], dtype=object)
    for k in ids.index[ids.duplicated(keep="first") & ids.notna()]:
        problems.append(f"{path.name} images[{rows[k][0]}]: id {ids[k]!r} is used by another entry")
    for k in ids.index[ids.isna()]:
        problems.append(f"{path.name} images[{rows[k][0]}]: field 'id' is missing")

    boxes = []
    known_images = set(ids.dropna())
    for k, ann in _entries(data.get("annotations") or [], "annotations", path.name, problems):
        where = f"{path.name} annotations[{k}] (id={ann.get('id')})"
        if ann.get("image_id") not in known_images:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        elif ann.get("category_id") not in names:
            problems.append(f"{where}: category_id {ann.get('category_id')!r} is not in categories")
        elif not (isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4):
            problems.append(f"{where}: bbox must be [x, y, w, h], got {ann.get('bbox')!r}")
        else:
            x, y, w, h = (_number(v) for v in ann["bbox"])
            boxes.append((ann["image_id"], names[ann["category_id"]], x, y, w, h, where))
    if problems:
        raise DatasetError(path, problems)
    if not rows:
        raise DatasetError(path, [f"{path.name}: lists no images"])
    images = pd.DataFrame({"coco_id": ids, "file": [str(entry["file_name"]) for _, entry in rows]})
    for column in ("width", "height"):
        images[column] = [_number(entry.get(column)) for _, entry in rows]
    classes = list(names.values())
    boxes = pd.DataFrame(boxes, columns=["coco_id", "label", "x", "y", "w", "h", "origin"])
    for label in classes:
        positive = set(boxes.loc[boxes["label"] == label, "coco_id"])
        images[label] = images["coco_id"].isin(positive).astype(int)
    boxes = boxes.merge(images[["coco_id", "file"]], on="coco_id").drop(columns="coco_id")
    return classes, images.drop(columns="coco_id"), boxes


def _categories(entries: object, file: str, problems: list[str]) -> dict:
    """category id -> name, in id order; problems name each bad entry."""
    found = {}
    for k, category in _entries(entries, "categories", file, problems):
        cid, name = category.get("id"), category.get("name")
        if not isinstance(cid, int) or isinstance(cid, bool):
            problems.append(f"{file} categories[{k}]: field 'id' is {cid!r}, not an integer")
        elif not isinstance(name, str) or not name.strip():
            problems.append(f"{file} categories[{k}]: field 'name' is {name!r}, not a name")
        elif cid in found:
            problems.append(f"{file} categories[{k}]: id {cid} is used by another category")
        elif name in found.values():
            problems.append(f"{file} categories[{k}]: name {name!r} is used by another category")
        else:
            found[cid] = name
    if not found and not problems:
        problems.append(f"{file}: lists no categories")
    return dict(sorted(found.items()))


def _entries(entries: object, key: str, file: str, problems: list[str]) -> list[tuple[int, dict]]:
    """(position, entry) of the dict entries of a top-level list; problems name the others."""
    if not isinstance(entries, list):
        problems.append(f"{file}: '{key}' must be a list, got {type(entries).__name__}")
        return []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"{file} {key}[{k}]: must be an object, got {entry!r:.60}")
    return [(k, entry) for k, entry in enumerate(entries) if isinstance(entry, dict)]


def _number(value: object) -> float:
    """A json number as float; NaN for anything else (null, text, true/false)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def build_coco(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    annotations: str | os.PathLike | Sequence[str | os.PathLike],
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    split: str | None = None,
    name: str | None = None,
    strict: bool = False,
) -> Path:
    """Build the dataset folder from COCO json file(s); images are under `source`.

    Unreadable images and images whose boxes cannot be placed are skipped and named (`strict`:
    fail on the first instead).
    """
    skips = Skips("images", strict=strict)
    source = require_folder(source, "COCO image")
    specs = [annotations] if isinstance(annotations, (str, os.PathLike)) else list(annotations)
    if not specs:
        raise ValueError("give at least one annotations file")
    classes, parts, box_parts, files, fixed = None, [], [], [], []
    for spec in specs:
        split, path = _parse_spec(spec, source)
        files.append(str(path))
        if split:
            fixed.append(f"{split}={path.name}")
        file_classes, images, boxes = coco_tables(path)
        if classes is not None and file_classes != classes:
            raise DatasetError(path, [f"{path.name}: categories {file_classes} differ from {classes} of the first file"])
        classes = file_classes
        images["official"] = split
        parts.append(images)
        box_parts.append(boxes)
    images = pd.concat(parts, ignore_index=True)
    boxes = pd.concat(box_parts, ignore_index=True)
    duplicated = images["file"].duplicated()
    if duplicated.any():
        raise DatasetError(source, [f"image {f} is listed more than once (in one annotations file or across them)"
                                    for f in images.loc[duplicated, "file"]])

    images["image_id"] = _image_ids(images["file"])
    boxes["image_id"] = boxes["file"].map(images.set_index("file")["image_id"])
    images["patient_id"] = images["image_id"]
    images["path"] = images["file"]
    present = pd.Series([(source / f).is_file() for f in images["file"]], index=images.index)
    images = keep_present(images, present, "images of the annotations", source)
    boxes = boxes[boxes["image_id"].isin(images["image_id"])]
    declared = images[["width", "height"]].astype(float)
    images = stored_sizes(images, source, skips)
    frame = "the width/height of its entry in " + ", ".join(Path(f).name for f in files)
    images, boxes = reconcile_sizes(images, boxes, declared.loc[images.index], skips, frame)

    official = images["official"] if images["official"].notna().any() else None
    images["split"] = split_by_patient(
        images["patient_id"], seed=seed, val_frac=val_frac, test_frac=test_frac, only=split, official=official
    )
    return finish(
        out,
        name=name or Path(files[0]).stem,
        classes=classes,
        task="binary" if len(classes) == 1 else "multilabel",
        images=images.drop(columns=["file", "official"]),
        boxes=boxes,
        image_root=source,
        source="COCO annotations " + ", ".join(files),
        split=split_record(seed=seed, val_frac=val_frac, test_frac=test_frac, only=split, official=fixed),
        skips=skips,
    )


def _parse_spec(spec: str | os.PathLike, source: Path) -> tuple[str | None, Path]:
    """'test=path' -> ('test', path); a relative path not found from here is tried under source."""
    text = str(spec)
    split = None
    head, sep, tail = text.partition("=")
    if sep and head in SPLIT_RANK:
        split, text = head, tail
    path = Path(text)
    if not path.is_file() and not path.is_absolute() and (source / path).is_file():
        path = source / path
    if not path.is_file():
        raise DatasetError(path, [f"annotations file {path} not found"])
    return split, path


def _image_ids(files: pd.Series) -> pd.Series:
    """File stems when they are unique (h0001), else file names without suffix (tb/tb0005)."""
    stems = files.map(lambda f: Path(f).stem)
    if not stems.duplicated().any():
        return stems
    return files.map(lambda f: Path(f).with_suffix("").as_posix())


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(path, [f"{path.name}: not readable JSON ({exc})"]) from exc
    missing = [k for k in ("images", "categories") if k not in data] if isinstance(data, dict) else ["images", "categories"]
    if missing:
        raise DatasetError(path, [f"{path.name}: not a COCO file, missing {', '.join(missing)}"])
    return data
