"""The last step of every builder: fit boxes, write the dataset folder, load it back.

Loading the written folder through the same validator every consumer uses means a builder
bug surfaces at build time, not in a training run hours later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from medattn.data.builders.boxes import fit_boxes
from medattn.data.dataset import load_dataset, write_dataset

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
    **extra: Any,
) -> Path:
    """Write the folder (boxes fitted to their images), validate it by loading, log a summary."""
    boxes = fit_boxes(boxes.reset_index(drop=True), images, source)
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
    return path
