"""The last step of every builder: fit boxes, write the dataset folder, load it back.

Loading the written folder through the same validator every consumer uses means a builder
bug surfaces at build time, not in a training run hours later. What was skipped on the way is
written into dataset.json (`skipped`: item, reason, path) and summarised in the log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from medattn.data.builders.boxes import fit_boxes
from medattn.data.dataset import load_dataset, write_dataset
from medattn.data.skips import Skips
from medattn.errors import DatasetError

log = logging.getLogger(__name__)


def finish(
    out: str | os.PathLike,
    *,
    name: str,
    classes: list[str],
    task: str,
    images: pd.DataFrame,
    boxes: pd.DataFrame,
    image_root: Path,
    source: str,
    skips: Skips | None = None,
    **extra: Any,
) -> Path:
    """Write the folder (boxes fitted to their images), validate it by loading, log a summary."""
    skips = skips if skips is not None else Skips("images")
    images, boxes = fit_boxes(boxes.reset_index(drop=True), images, source, skips)
    if images.empty:
        raise DatasetError(image_root, [f"every image was skipped: {skips.summary()}"])
    images = images.sort_values("image_id", kind="stable").reset_index(drop=True)
    boxes = boxes.sort_values(["image_id", "label"], kind="stable").reset_index(drop=True)
    path = write_dataset(
        out,
        name=name,
        classes=classes,
        task=task,
        images=images,
        boxes=boxes,
        image_root=str(Path(image_root).resolve()),
        source=source,
        skipped=skips.records(),
        **extra,
    )
    dataset = load_dataset(path)
    counts = dataset.images["split"].value_counts()
    log.info(
        "wrote %s: %d images (%s), %d patients, %d boxes on %d images",
        path,
        len(dataset.images),
        ", ".join(f"{split} {counts.get(split, 0)}" for split in ("train", "val", "test")),
        dataset.images["patient_id"].nunique(),
        len(dataset.boxes),
        dataset.boxes["image_id"].nunique(),
    )
    if len(skips):
        log.warning("%s (listed in %s under 'skipped')", skips.summary(limit=5), path / "dataset.json")
    return path
