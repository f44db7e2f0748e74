"""The Data page's count table (plain pandas)."""

from __future__ import annotations

import pandas as pd

from medattn.data.dataset import SPLITS, Dataset


def split_counts(data: Dataset) -> pd.DataFrame:
    """Per split (rows, then "total"): images, positives per class, images with no finding, boxes."""
    images = data.images
    labelled = images[data.classes].astype(bool)
    table = pd.DataFrame(index=pd.Index(SPLITS, name="split"))
    table["images"] = images["split"].value_counts()
    for name in data.classes:
        table[name] = images.loc[labelled[name], "split"].value_counts()
    table["no finding"] = images.loc[~labelled.any(axis=1), "split"].value_counts()
    table["boxes"] = data.boxes["image_id"].map(images["split"]).value_counts()
    table = table.fillna(0).astype(int)
    table.loc["total"] = table.sum()
    return table
