"""Which images the Compare page offers: a split, then filters on label, boxes and prediction,
and optionally only the fair comparison set (images every selected model gets right)."""

from __future__ import annotations

import numpy as np

from medattn.data.skips import Skips
from medattn.ui import loaders
from medattn.ui.sidebar import Selection

SPLITS = ("test", "val", "train", "all")
LABELS = ("any", "positive", "negative")
OUTCOMES = ("any", "correct (all models)", "wrong (some model)")


def filtered_ids(selection: Selection, split: str, class_name: str | None, label: str, outcome: str,
                 fair: bool, boxed: bool = False, skips: Skips | None = None) -> list[str]:
    """Image ids of `split` kept by the filters, in dataset order. `class_name` None means any
    class: positive then means some finding, negative none; `boxed` keeps images with a box
    (of `class_name` when given; on NIH few positives have one). Prediction filters and the
    fair set need the models' predictions over the split (computed once and stored); an image
    that cannot be read has none, so those filters leave it out and name it in `skips`."""
    data = selection.dataset
    frame = data.images if split == "all" else data.split(split)
    classes = [class_name] if class_name else list(data.classes)
    labelled = frame[classes].to_numpy().astype(bool)
    if label == "positive":
        frame = frame[labelled.any(axis=1)]
    elif label == "negative":
        frame = frame[~labelled.any(axis=1)]
    if boxed:
        boxes = data.boxes if class_name is None else data.boxes[data.boxes["label"] == class_name]
        frame = frame[frame.index.isin(set(boxes["image_id"]))]
    ids = list(frame.index)
    if not ids or not selection.models or (outcome == "any" and not fair):
        return ids
    columns = [data.classes.index(c) for c in classes]
    truth = data.label_matrix(ids)[:, columns]
    right = np.ones(len(ids), bool)
    wrong = np.zeros(len(ids), bool)
    skips = skips if skips is not None else Skips("images")
    for loaded in selection.models:
        probs = loaders.predictions(loaded, data, ids, skips).to_numpy()
        readable = ~np.isnan(probs).any(axis=1)
        correct = (loaded.decision(data.task).decide(np.nan_to_num(probs))[:, columns] == truth).all(axis=1)
        right &= correct & readable
        wrong |= ~correct & readable
    if outcome == OUTCOMES[1]:
        ids = [i for i, keep in zip(ids, right) if keep]
    elif outcome == OUTCOMES[2]:
        ids = [i for i, keep in zip(ids, wrong) if keep]
    if fair and ids:
        fair_ids = set(loaders.fair_set(data, selection.models, ids, skips))
        ids = [i for i in ids if i in fair_ids]
    return ids
