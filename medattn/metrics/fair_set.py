"""The fair comparison set: test images that every compared model classifies correctly.

Gonçalves et al. 2021 compare saliency maps only on "the positive and negative samples of the
test set that were correctly predicted by all the use cases of all backbones", so that a map's
difference reflects the model's reasoning rather than a wrong decision. The per-image
correctness comes from `medattn.metrics.classification.correct_images` (exact match for
multilabel); split the result by label to show positives and negatives apart, as they do.
"""

from __future__ import annotations

from typing import Mapping, Union

import pandas as pd

Correctness = Union[pd.DataFrame, Mapping[str, pd.Series]]


def fair_comparison_set(correct: Correctness) -> pd.Index:
    """Image ids that every model got right, in the order of the first model's index.

    `correct`: a DataFrame indexed by image id with one boolean column per model, or a mapping
    model → boolean Series indexed by image id. An image missing from any model's Series, or
    whose value is missing, counts as not correct for that model.
    """
    frame = correct if isinstance(correct, pd.DataFrame) else pd.concat(dict(correct), axis=1, sort=False)
    if frame.shape[1] == 0:
        raise ValueError("no models to compare")
    for model in frame.columns:
        values = frame[model].dropna()
        if not values.isin([True, False]).all():
            bad = values[~values.isin([True, False])]
            raise ValueError(
                f"correctness of model {model!r} must be boolean; image {bad.index[0]!r} has {bad.iloc[0]!r}"
            )
    agreed = frame.eq(True).all(axis=1)
    return frame.index[agreed.to_numpy()]
