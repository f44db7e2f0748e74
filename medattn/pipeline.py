"""One image × model × method: the heatmap (from the cache when present) and its scores.

This is the unit of work that precompute runs over a split and that the app runs per panel, so
both produce identical numbers. Maps are cached raw (the explainer's output in the model's input
frame); the normalisation policy and the resize to the stored image frame are applied after, so
changing a display setting never recomputes a map.

Scoring (`score_map`, version `SCORING`): AUPRC and IoU on the displayed map; the pointing game
at the map's maximum before the policy's percentile clip (`MapResult.peak`). The clip turns the
top 0.5% of pixels into a plateau whose first pixel in row-major order, where `hit` on the
displayed map would point, is often not the maximum: over the demo test split (5,300 rows with
boxes) it changed 13% of pointing-game outcomes (integrated gradients' hit rate 0.54 on the
plateau, 0.65 at the maximum).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch

from medattn.data.dataset import Dataset
from medattn.data.transforms import resize
from medattn.explain import DEFAULT_SIGN, explain, method_params, normalize
from medattn.inference import LoadedModel
from medattn.metrics.localization import box_auprc, hit, hit_at, miou
from medattn.store import HeatmapCache, file_hash

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("MEDATTN_CACHE", REPO / ".cache"))
PDA_METHODS = ("pda", "pda_features")
# Explainer options that change speed or placement but never the map itself.
RUNTIME_ONLY = ("device", "batch_size", "progress")
# Version of the scoring definitions in score_map: score rows of another version are recomputed
# (from the cached maps). 2: the pointing game at the maximum before clipping.
SCORING = 2


@dataclass
class MapResult:
    raw: np.ndarray       # explainer output, model input frame, signed where the method is
    display: np.ndarray   # normalised to [0, 1] and resized to the stored image (H, W)
    peak: tuple[int, int] # (row, col) in `display` of the map's maximum before clipping
    seconds: float        # compute time; 0 when it came from the cache
    cached: bool


def default_cache() -> HeatmapCache:
    return HeatmapCache(CACHE_DIR / "heatmaps")


def reference_images(loaded: LoadedModel, dataset: Dataset, count: int = 16) -> torch.Tensor:
    """Model inputs of the first `count` training images (sorted ids): the pool PDA samples
    from. Deterministic, so the cache key of a PDA map is stable across runs."""
    ids = sorted(dataset.split("train").index)[:count] or sorted(dataset.images.index)[:count]
    return torch.cat([loaded.to_input(dataset.read_image(i)) for i in ids]).cpu()


def resolved_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's defaults overridden by `params`: what the cache key is built from."""
    merged = method_params(method)
    merged.update(params or {})
    return {k: v for k, v in merged.items() if k not in RUNTIME_ONLY}


def compute_map(
    loaded: LoadedModel,
    dataset: Dataset,
    image_id: str,
    method: str,
    target: int,
    params: Mapping[str, Any] | None = None,
    cache: HeatmapCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    image: np.ndarray | None = None,
) -> MapResult:
    """The map of `method` for class `target` on one dataset image, cached by content."""
    cache = cache or default_cache()
    params = resolved_params(method, params)
    if method in PDA_METHODS and params.get("reference") is None:
        params["reference"] = reference_images(loaded, dataset)
    image = dataset.read_image(image_id) if image is None else image
    key = cache.key(loaded.hash, file_hash(dataset.image_path(image_id)), method, params, target)
    raw = cache.get(key)
    seconds, cached = 0.0, raw is not None
    if raw is None:
        started = time.perf_counter()
        extra = {"progress": progress} if method in PDA_METHODS and progress is not None else {}
        raw = explain(loaded.model, loaded.to_input(image), int(target), method, device=loaded.device, **params, **extra)
        seconds = time.perf_counter() - started
        cache.put(key, raw)
    display = resize(normalize(raw, sign=DEFAULT_SIGN[method]), image.shape)
    return MapResult(raw=raw, display=np.clip(display, 0.0, 1.0), peak=peak_of(raw, method, image.shape),
                     seconds=seconds, cached=cached)


def peak_of(raw: np.ndarray, method: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """Where the map points in the image frame `shape`: the first maximum (row-major) of the
    map under the policy's sign, min-max scaled and resized like `display`, but not clipped."""
    unclipped = resize(normalize(raw, sign=DEFAULT_SIGN[method], clip_percentile=None), shape[:2])
    row, col = np.unravel_index(int(np.argmax(unclipped)), unclipped.shape)
    return int(row), int(col)


def score_map(display: np.ndarray, boxes: pd.DataFrame, peak: tuple[int, int] | None = None) -> dict[str, float]:
    """Localization scores of an image-frame map against boxes; NaN without boxes. The pointing
    game is played at `peak` (`MapResult.peak`) when given, else at the map's first argmax."""
    if boxes is None or len(boxes) == 0:
        return {"auprc": float("nan"), "hit": float("nan"), "miou": float("nan")}
    pointed = hit(display, boxes) if peak is None else hit_at(peak, boxes, display.shape)
    return {
        "auprc": float(box_auprc(display, boxes)),
        "hit": float("nan") if pointed is None else float(pointed),
        "miou": float(miou(display, boxes)),
    }
