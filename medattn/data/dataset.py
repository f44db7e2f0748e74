"""The dataset folder contract: dataset.json + images.csv + boxes.csv (+ an optional masks.csv),
validated on load.

masks.csv carries segmentation ground truth, for datasets scored against masks rather than
boxes (SIIM-ACR pneumothorax, CheXlocalize): columns `image_id`, `label` and, per row, exactly
one of `rle` (a SIIM run-length string, "-1" for none), `polygon` (a JSON list
[x1, y1, x2, y2, ...] or of [x, y] pairs, in pixels of the stored image) or `mask` (a mask
image's path relative to the dataset folder; non-zero pixels are in the mask). Rows of one image
and label are united. Polygons are drawn as the protocol that published them draws them:
dataset.json's `polygon_protocol`, "coco" (pycocotools, the default) or "chexlocalize"
(CheXlocalize's `create_mask`); see `medattn.metrics.masks`.

Every problem found is reported at once, each naming the file, row and field, so a user
can fix a manifest in one pass instead of one error at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from medattn.errors import DatasetError

TASKS = ("binary", "multilabel", "multiclass")
SPLITS = ("train", "val", "test")
IMAGE_COLUMNS = ("image_id", "path", "split", "patient_id", "width", "height")
BOX_COLUMNS = ("image_id", "label", "x", "y", "w", "h")
MASK_COLUMNS = ("image_id", "label")
MASK_SOURCES = ("rle", "polygon", "mask")
# Boxes may touch the border; a pixel of slack absorbs rounding in the source frame.
BOX_SLACK_PX = 1.0


@dataclass
class Dataset:
    """A validated dataset folder. `images` has one row per image, `boxes` one per box."""

    root: Path
    name: str
    classes: list[str]
    task: str
    image_root: Path
    images: pd.DataFrame
    boxes: pd.DataFrame
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    masks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[*MASK_COLUMNS, *MASK_SOURCES]))

    def image_path(self, image_id: str) -> Path:
        return self.image_root / str(self.images.loc[image_id, "path"])

    def read_image(self, image_id: str) -> np.ndarray:
        """The image as float32 (H, W) in [0, 1] (see `medattn.data.io.read_image`)."""
        from medattn.data.io import read_image

        return read_image(self.image_path(image_id))

    def labels(self, image_id: str) -> np.ndarray:
        """The 0/1 label vector of one image, in `classes` order."""
        return self.images.loc[image_id, self.classes].to_numpy(dtype=np.float32)

    def label_matrix(self, image_ids: Iterable[str] | None = None) -> np.ndarray:
        frame = self.images if image_ids is None else self.images.loc[list(image_ids)]
        return frame[self.classes].to_numpy(dtype=np.float32)

    def boxes_for(self, image_id: str, label: str | None = None) -> pd.DataFrame:
        rows = self.boxes[self.boxes["image_id"] == image_id]
        if label is not None:
            rows = rows[rows["label"] == label]
        return rows

    def split(self, name: str) -> pd.DataFrame:
        return self.images[self.images["split"] == name]

    def mask_for(self, image_id: str, label: str | None = None) -> np.ndarray | None:
        """The image's segmentation of `label` (every label: None) from masks.csv as a boolean
        (H, W) mask of the stored image, the union of its rows; None when it has no row.
        ValueError naming masks.csv's line when a row cannot be decoded."""
        from medattn.metrics import masks as decode

        rows = self.masks[self.masks["image_id"] == str(image_id)]
        if label is not None:
            rows = rows[rows["label"] == label]
        if rows.empty:
            return None
        shape = (int(self.images.at[image_id, "height"]), int(self.images.at[image_id, "width"]))
        protocol = str(self.meta.get("polygon_protocol", "coco"))
        union = np.zeros(shape, dtype=bool)
        for index, row in rows.iterrows():
            try:
                if _given(row.get("rle")):
                    union |= decode.rle_decode(str(row["rle"]), shape)
                elif _given(row.get("polygon")):
                    union |= decode.polygon_mask(decode.parse_polygon(str(row["polygon"])), shape, protocol)
                else:
                    union |= decode.image_mask(self.root / str(row["mask"]), shape)
            except ValueError as exc:
                raise ValueError(f"{self.root / 'masks.csv'} line {index + 2} (image_id={image_id}): {exc}") from None
        return union

    @property
    def hash(self) -> str:
        """Content hash of the manifests, recorded in checkpoints as training provenance."""
        return dataset_hash(self.root)


def dataset_hash(root: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    for name in ("dataset.json", "images.csv", "boxes.csv", "masks.csv"):
        path = Path(root) / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_dataset(path: str | os.PathLike, check_files: bool = True) -> Dataset:
    """Load and validate a dataset folder; raise DatasetError listing every problem.

    `check_files=False` skips the existence check of each image, for huge folders on slow disks.
    """
    root = Path(path)
    problems: list[str] = []
    if not root.is_dir():
        raise DatasetError(root, [f"{root}: not a folder"])
    meta = _read_meta(root, problems)
    if meta is None:
        raise DatasetError(root, problems)
    images = _read_csv(root / "images.csv", IMAGE_COLUMNS, problems)
    boxes = _read_csv(root / "boxes.csv", BOX_COLUMNS, problems)
    if images is None or boxes is None:
        raise DatasetError(root, problems)

    classes = list(meta["classes"])
    image_root = Path(meta.get("image_root") or ".")
    if not image_root.is_absolute():
        image_root = root / image_root
    _check_images(images, classes, meta["task"], image_root, check_files, problems)
    _check_boxes(boxes, images, classes, problems)
    masks = _read_masks(root, images, classes, problems)
    if problems:
        raise DatasetError(root, problems)

    for column in classes:
        images[column] = images[column].astype(int)
    images["image_id"] = images["image_id"].astype(str)
    images.index = pd.Index(images["image_id"], name=None)
    boxes = boxes.astype({"x": float, "y": float, "w": float, "h": float})
    boxes["image_id"] = boxes["image_id"].astype(str)
    boxes = boxes.reset_index(drop=True)
    extra = {k: v for k, v in meta.items() if k not in ("name", "classes", "task", "image_root", "source")}
    return Dataset(
        root=root,
        name=str(meta["name"]),
        classes=classes,
        task=str(meta["task"]),
        image_root=image_root,
        images=images,
        boxes=boxes,
        source=str(meta.get("source", "")),
        meta=extra,
        masks=masks,
    )


def write_dataset(
    out: str | os.PathLike,
    *,
    name: str,
    classes: list[str],
    task: str,
    images: pd.DataFrame,
    boxes: pd.DataFrame | None = None,
    image_root: str | os.PathLike = "images",
    source: str = "",
    masks: pd.DataFrame | None = None,
    **extra: Any,
) -> Path:
    """Write a dataset folder in the contract format and return its path.

    `masks`, when given, is written as masks.csv (see the module docstring).
    `images` needs the IMAGE_COLUMNS and one 0/1 column per class; other columns are kept as
    metadata. Files are written to temporaries and renamed, so a crash never leaves a half
    manifest next to a good one.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    missing = [c for c in (*IMAGE_COLUMNS, *classes) if c not in images.columns]
    if missing:
        raise ValueError(f"images table lacks columns {missing}")
    order = [*IMAGE_COLUMNS, *classes]
    images = images[order + [c for c in images.columns if c not in order]]
    if boxes is None:
        boxes = pd.DataFrame(columns=list(BOX_COLUMNS))
    boxes = boxes[list(BOX_COLUMNS)]
    meta = {
        "name": name,
        "classes": list(classes),
        "task": task,
        "image_root": str(image_root),
        "source": source,
        **extra,
    }
    _atomic_write(out / "dataset.json", json.dumps(meta, indent=2) + "\n")
    _atomic_write(out / "images.csv", images.to_csv(index=False))
    _atomic_write(out / "boxes.csv", boxes.to_csv(index=False, float_format="%.4f"))
    if masks is not None:
        _atomic_write(out / "masks.csv", masks.to_csv(index=False))
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_meta(root: Path, problems: list[str]) -> dict[str, Any] | None:
    path = root / "dataset.json"
    if not path.exists():
        problems.append(f"{path}: missing")
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: not valid JSON ({exc})")
        return None
    if not isinstance(meta, dict):
        problems.append(f"{path}: must hold a JSON object")
        return None
    ok = True
    for key in ("name", "classes", "task"):
        if key not in meta:
            problems.append(f"{path}: field '{key}' is missing")
            ok = False
    classes = meta.get("classes")
    if "classes" in meta and (
        not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
    ):
        problems.append(f"{path}: field 'classes' must be a non-empty list of names")
        ok = False
    elif isinstance(classes, list) and len(set(classes)) != len(classes):
        problems.append(f"{path}: field 'classes' has duplicate names")
        ok = False
    if "task" in meta and meta["task"] not in TASKS:
        problems.append(f"{path}: field 'task' is {meta['task']!r}, expected one of {', '.join(TASKS)}")
        ok = False
    from medattn.metrics.masks import POLYGON_PROTOCOLS

    protocol = meta.get("polygon_protocol", "coco")
    if protocol not in POLYGON_PROTOCOLS:
        problems.append(f"{path}: field 'polygon_protocol' is {protocol!r}, expected one of {', '.join(POLYGON_PROTOCOLS)}")
        ok = False
    if ok and meta["task"] == "binary" and len(classes) != 1:
        problems.append(f"{path}: a binary task has exactly one class, got {len(classes)}")
        ok = False
    return meta if ok else None


def _read_csv(path: Path, required: tuple[str, ...], problems: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        problems.append(f"{path}: missing")
        return None
    try:
        frame = pd.read_csv(path, dtype={"image_id": str, "patient_id": str, "path": str, "label": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        problems.append(f"{path}: cannot be parsed as CSV ({exc})")
        return None
    absent = [c for c in required if c not in frame.columns]
    if absent:
        problems.append(f"{path}: column(s) {', '.join(absent)} missing")
        return None
    return frame


def _given(value: object) -> bool:
    """Whether a masks.csv cell holds something (not empty, not NaN)."""
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value).strip() != ""


def _read_masks(root: Path, images: pd.DataFrame, classes: list[str], problems: list[str]) -> pd.DataFrame:
    """masks.csv when present (see the module docstring), each row checked for a known image,
    a class label and exactly one source; an empty table when absent."""
    path = root / "masks.csv"
    empty = pd.DataFrame(columns=[*MASK_COLUMNS, *MASK_SOURCES])
    if not path.exists():
        return empty
    frame = _read_csv(path, MASK_COLUMNS, problems)
    if frame is None:
        return empty
    frame = frame.astype({c: object for c in frame.columns})
    for column in MASK_SOURCES:
        if column not in frame.columns:
            frame[column] = None
    known = set(images["image_id"].astype(str))
    for i in frame.index:
        where = _row("masks.csv", i, frame)
        if str(frame.at[i, "image_id"]) not in known:
            problems.append(f"{where}: image_id is not in images.csv")
        if frame.at[i, "label"] not in classes:
            problems.append(f"{where}: field 'label' is {_show(frame.at[i, 'label'])}, not one of the dataset's classes")
        given = [c for c in MASK_SOURCES if _given(frame.at[i, c])]
        if len(given) != 1:
            problems.append(f"{where}: give exactly one of {', '.join(MASK_SOURCES)}, got "
                            f"{', '.join(given) or 'none'}")
    frame["image_id"] = frame["image_id"].astype(str)
    return frame.reset_index(drop=True)


def _show(value: object) -> str:
    """A cell as the user wrote it (no numpy scalar reprs in messages)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _row(file: str, index: int, frame: pd.DataFrame, key: str = "image_id") -> str:
    """'images.csv line 7 (image_id=abc)': line numbers count the header as line 1."""
    return f"{file} line {index + 2} ({key}={frame.at[index, key]})"


def _check_images(
    images: pd.DataFrame,
    classes: list[str],
    task: str,
    image_root: Path,
    check_files: bool,
    problems: list[str],
) -> None:
    missing_classes = [c for c in classes if c not in images.columns]
    if missing_classes:
        problems.append(f"images.csv: no column for class(es) {', '.join(missing_classes)}")
    blank_ids = images["image_id"].isna()
    for i in images.index[blank_ids]:
        problems.append(f"images.csv line {i + 2}: field 'image_id' is empty")
    duplicated = images["image_id"].duplicated(keep="first") & ~blank_ids
    for i in images.index[duplicated]:
        problems.append(f"{_row('images.csv', i, images)}: duplicate image_id")
    bad_split = ~images["split"].isin(SPLITS)
    for i in images.index[bad_split]:
        problems.append(
            f"{_row('images.csv', i, images)}: field 'split' is {_show(images.at[i, 'split'])}, "
            f"expected one of {', '.join(SPLITS)}"
        )
    for column in ("width", "height"):
        values = pd.to_numeric(images[column], errors="coerce")
        for i in images.index[~(values > 0)]:
            problems.append(
                f"{_row('images.csv', i, images)}: field '{column}' must be a positive number, "
                f"got {_show(images.at[i, column])}"
            )
    for column in classes:
        if column not in images.columns:
            continue
        values = pd.to_numeric(images[column], errors="coerce")
        for i in images.index[~values.isin([0, 1])]:
            problems.append(
                f"{_row('images.csv', i, images)}: label column '{column}' must be 0 or 1, "
                f"got {_show(images.at[i, column])}"
            )
    if task == "multiclass" and not missing_classes:
        sums = images[classes].apply(pd.to_numeric, errors="coerce").sum(axis=1)
        for i in images.index[sums != 1]:
            problems.append(f"{_row('images.csv', i, images)}: a multiclass image needs exactly one label, has {sums[i]:g}")
    for i in images.index[images["patient_id"].isna()]:
        problems.append(f"{_row('images.csv', i, images)}: field 'patient_id' is empty")
    known = images.dropna(subset=["patient_id"])
    splits_per_patient = known.groupby("patient_id")["split"].nunique()
    for patient in splits_per_patient.index[splits_per_patient > 1]:
        rows = known[known["patient_id"] == patient]
        where = ", ".join(f"line {i + 2} ({rows.at[i, 'split']})" for i in rows.index[:6])
        problems.append(f"images.csv: patient {patient} appears in more than one split: {where}")
    if check_files:
        for i in images.index:
            rel = images.at[i, "path"]
            if not isinstance(rel, str) or not rel:
                problems.append(f"{_row('images.csv', i, images)}: field 'path' is empty")
            elif not (image_root / rel).is_file():
                problems.append(f"{_row('images.csv', i, images)}: image file {image_root / rel} does not exist")


def _check_boxes(boxes: pd.DataFrame, images: pd.DataFrame, classes: list[str], problems: list[str]) -> None:
    sizes = images.drop_duplicates("image_id").set_index("image_id")[["width", "height"]]
    sizes = sizes.apply(pd.to_numeric, errors="coerce")
    # every row at once first; only the rows that fail a check are gone through one by one for
    # their messages (a per-row loop over 5,000 boxes took 1.5 s, on each load of the dataset)
    numbers = boxes[["x", "y", "w", "h"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    x, y, w, h = numbers.T
    width = boxes["image_id"].map(sizes["width"]).to_numpy(float)
    height = boxes["image_id"].map(sizes["height"]).to_numpy(float)
    with np.errstate(invalid="ignore"):
        fine = (boxes["image_id"].isin(sizes.index).to_numpy() & boxes["label"].isin(classes).to_numpy()
                & np.isfinite(numbers).all(axis=1) & (w > 0) & (h > 0)
                & (x >= -BOX_SLACK_PX) & (y >= -BOX_SLACK_PX)
                & (x + w <= width + BOX_SLACK_PX) & (y + h <= height + BOX_SLACK_PX))
    for i in boxes.index[~fine]:
        where = _row("boxes.csv", i, boxes)
        image_id = boxes.at[i, "image_id"]
        if image_id not in sizes.index:
            problems.append(f"{where}: image_id is not in images.csv")
            continue
        label = boxes.at[i, "label"]
        if label not in classes:
            problems.append(f"{where}: field 'label' is {_show(label)}, not one of the dataset's classes")
        values = {}
        for column in ("x", "y", "w", "h"):
            try:
                values[column] = float(boxes.at[i, column])
            except (TypeError, ValueError):
                values[column] = float("nan")
            if not np.isfinite(values[column]):
                problems.append(f"{where}: field '{column}' must be a number, got {_show(boxes.at[i, column])}")
        if not all(np.isfinite(v) for v in values.values()):
            continue
        x, y, w, h = values["x"], values["y"], values["w"], values["h"]
        if w <= 0 or h <= 0:
            problems.append(f"{where}: box has non-positive size w={w:g}, h={h:g}")
            continue
        width, height = sizes.at[image_id, "width"], sizes.at[image_id, "height"]
        if (
            x < -BOX_SLACK_PX
            or y < -BOX_SLACK_PX
            or x + w > width + BOX_SLACK_PX
            or y + h > height + BOX_SLACK_PX
        ):
            problems.append(
                f"{where}: box x={x:g}, y={y:g}, w={w:g}, h={h:g} lies outside the "
                f"{width:g}x{height:g} image"
            )
