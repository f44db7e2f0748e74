"""Reference maps: maps made with no knowledge of the model, scored beside every method so a
method's numbers are read against what no model knowledge achieves (Arun et al. 2021: an
average-box prior scored AUPRC 0.47 on RSNA pneumonia, above every saliency method but XRAI).

Each is a raw map in the model-input frame (S, S), like an explainer's output, so precompute
and the app place and score it through the same path (`pipeline.score`, the faithfulness
metrics). Names carry the prefix "reference:" in score tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from medattn.data.preprocess import Preprocessing
from medattn.metrics.boxes import box_mask

PREFIX = "reference:"
REFERENCE_MAPS = ("blank", "random", "center", "box_prior")
SIGN = "positive"  # every reference map is non-negative evidence
CENTER_SIGMA = 0.25  # the centre Gaussian's σ as a fraction of each side


def reference_name(kind: str) -> str:
    """"blank" → "reference:blank"; ValueError for an unknown kind."""
    kind = kind[len(PREFIX):] if kind.startswith(PREFIX) else kind
    if kind not in REFERENCE_MAPS:
        raise ValueError(f"unknown reference map {kind!r}; choose one of: {', '.join(REFERENCE_MAPS)}")
    return PREFIX + kind


def is_reference(method: str) -> bool:
    return str(method).startswith(PREFIX)


def blank(side: int) -> np.ndarray:
    """All zeros (S, S): no evidence anywhere (localization scores it at chance and flags it
    flat; faithfulness removes its tied pixels in the metrics' seeded random order)."""
    return np.zeros((side, side), dtype=np.float32)


def random_map(side: int, seed: int) -> np.ndarray:
    """Uniform noise in [0, 1) (S, S) from `numpy.random.default_rng(seed)`."""
    return np.random.default_rng(seed).random((side, side), dtype=np.float32)


def center(side: int, sigma: float = CENTER_SIGMA) -> np.ndarray:
    """An isotropic Gaussian at the centre of the input, σ = `sigma` · S, peak 1 (S, S)."""
    coords = (np.arange(side) - (side - 1) / 2.0) / (sigma * side)
    return np.exp(-0.5 * (coords[:, None] ** 2 + coords[None, :] ** 2)).astype(np.float32)


def box_prior(boxes: Iterable[tuple[tuple[int, int], np.ndarray]], preprocessing: Preprocessing) -> np.ndarray:
    """The average box mask (Arun et al. 2021, §2.4): each image's boxes of the class as a 0/1
    mask of the stored image (inclusive pixel convention, `metrics.boxes.box_mask`), carried
    into the model-input frame by the model's own geometry (resize, crop), averaged over the
    images given, as (S, S) in [0, 1]. `boxes` yields ((H, W), boxes (n, 4) as x, y, w, h) per
    image that has boxes of the class; none gives the blank map."""
    side = preprocessing.input_size
    total, count = np.zeros((side, side), dtype=np.float64), 0
    for shape, image_boxes in boxes:
        total += preprocessing.geometry(box_mask(np.asarray(image_boxes, dtype=float), shape).astype(np.float32))
        count += 1
    return (total / count).astype(np.float32) if count else blank(side)


def reference_map(kind: str, side: int, seed: int = 0,
                  prior: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """The reference map `kind` (with or without the prefix) at input side `side`; `seed` for
    "random"; `prior()` gives the class's box prior for "box_prior" (ValueError without)."""
    kind = reference_name(kind)[len(PREFIX):]
    if kind == "blank":
        return blank(side)
    if kind == "random":
        return random_map(side, seed)
    if kind == "center":
        return center(side)
    if prior is None:
        raise ValueError("the box prior needs the training split's boxes of the class (prior=...)")
    return prior()
