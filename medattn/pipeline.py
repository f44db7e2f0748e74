"""One image × model × method: the heatmap (from the cache when present) and its scores.

This is the unit of work that precompute runs over a split and that the app runs per panel, so
both produce identical numbers. Maps are cached raw (the explainer's output in the model's input
frame); the normalisation policy and the resize to the stored image frame are applied after, so
changing a display setting never recomputes a map.

Maps come back to the stored image's frame through the model's preprocessing
(`Preprocessing.place`): stretched back for "stretch" models; for centre-cropped models placed on
the crop's footprint, with no evidence (0) outside it and `MapResult.support` marking what the
model saw, so boxes and scores stay in the stored image's frame.

Scoring (`score`, version `SCORING`): the one function the app, precompute and the README use,
from the raw map to the scores under a protocol (`medattn.metrics.protocols`). Under the
default "medattn" protocol: AUPRC and IoU on the displayed map; the pointing game at the map's
maximum before the policy's percentile clip (`MapResult.peak`). The clip turns the top 0.5% of
pixels into a plateau whose first pixel in row-major order, where `hit` on the displayed map
would point, is often not the maximum: over the demo test split (5,300 rows with boxes) it
changed 13% of pointing-game outcomes (integrated gradients' hit rate 0.54 on the plateau, 0.65
at the maximum). A flat map scores chance AUPRC, no hit, IoU 0, and `degenerate = True`.
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
from medattn.explain import DEFAULT_SIGN, explain, get_explainer, method_params, normalize
from medattn.inference import LoadedModel
from medattn.metrics.localization import is_flat, localization_scores
from medattn.metrics.masks import GroundTruth, truth_mask
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol, scaled_truth
from medattn.store import HeatmapCache, file_hash

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("MEDATTN_CACHE", REPO / ".cache"))
PDA_METHODS = ("pda", "pda_features")
Place = Callable[[np.ndarray, tuple[int, int]], np.ndarray]  # model-input map → image frame
# Explainer options that change speed or placement but never the map itself.
RUNTIME_ONLY = ("device", "batch_size", "progress")
# Version of the scoring definitions in `score`: score rows of another version are recomputed
# (from the cached maps). 2: the pointing game at the maximum before clipping. 3: flat maps at
# chance (AUPRC = p, no hit) with a `degenerate` column; IoU on CheXlocalize's Otsu segmentation
# (uint8, OpenCV, filled contours); a `protocol` column. 4: a `precision` column (the precision
# the map was computed in); maps float32 unless bfloat16 is asked for, where before the methods
# with bfloat16 stages used it by default on CPUs that have it.
SCORING = 4


@dataclass
class MapResult:
    raw: np.ndarray       # explainer output, model input frame, signed where the method is
    display: np.ndarray   # normalised to [0, 1] and resized to the stored image (H, W)
    peak: tuple[int, int] | None  # (row, col) in `display` of the maximum before clipping; None: flat map
    seconds: float        # compute time; 0 when it came from the cache
    cached: bool
    support: np.ndarray | None = None  # (H, W) bool: pixels the model saw; None = all of them
    precision: str = "float32"  # what the map was computed in (`Explainer.used_precision`)


def default_cache() -> HeatmapCache:
    return HeatmapCache(CACHE_DIR / "heatmaps")


def reference_images(loaded: LoadedModel, dataset: Dataset, count: int = 16) -> torch.Tensor:
    """Model inputs of the first `count` training images (sorted ids): the pool PDA samples
    from. Deterministic, so the cache key of a PDA map is stable across runs."""
    ids = sorted(dataset.split("train").index)[:count] or sorted(dataset.images.index)[:count]
    return torch.cat([loaded.to_input(dataset.read_image(i)) for i in ids]).cpu()


def resolved_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's defaults overridden by `params`: what the cache key is built from (without
    the parameters added after maps were cached, while at their default: `Explainer.key_params`)."""
    merged = method_params(method)
    merged.update(params or {})
    return get_explainer(method).key_params({k: v for k, v in merged.items() if k not in RUNTIME_ONLY})


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
    precision: str = "float32",
) -> MapResult:
    """The map of `method` for class `target` on one dataset image, cached by content and by
    the precision it is computed in (`precision` as the explainers take it: "float32", or
    "bfloat16" where `Explainer.used_precision` allows it)."""
    cache, params, image, key, used = _lookup(loaded, dataset, image_id, method, target, params, cache, image,
                                              precision)
    raw = cache.get(key)
    if raw is not None:
        return _result(loaded, raw, method, image, 0.0, cached=True, precision=used)
    started = time.perf_counter()
    raw = explain(loaded.model, loaded.to_input(image), int(target), method, device=loaded.device,
                  progress=progress, precision=used, **params)
    seconds = time.perf_counter() - started
    cache.put(key, raw)
    return _result(loaded, raw, method, image, seconds, cached=False, precision=used)


def cached_map(
    loaded: LoadedModel,
    dataset: Dataset,
    image_id: str,
    method: str,
    target: int,
    params: Mapping[str, Any] | None = None,
    cache: HeatmapCache | None = None,
    image: np.ndarray | None = None,
    precision: str = "float32",
) -> MapResult | None:
    """`compute_map`'s result when the map is in the cache, else None. The model does not run,
    so a page may call this while another thread explains with the same model."""
    cache, params, image, key, used = _lookup(loaded, dataset, image_id, method, target, params, cache, image,
                                              precision)
    raw = cache.get(key)
    return None if raw is None else _result(loaded, raw, method, image, 0.0, cached=True, precision=used)


def _lookup(loaded: LoadedModel, dataset: Dataset, image_id: str, method: str, target: int,
            params: Mapping[str, Any] | None, cache: HeatmapCache | None, image: np.ndarray | None,
            precision: str) -> tuple[HeatmapCache, dict[str, Any], np.ndarray, str, str]:
    """The cache, the resolved parameters, the image, the map's cache key and the precision the
    map is computed in. Methods with bfloat16 stages key their maps by that precision, float32
    too: before SCORING 4 their unkeyed maps were bfloat16 on CPUs that have it."""
    cache = cache or default_cache()
    params = resolved_params(method, params)
    if method in PDA_METHODS and params.get("reference") is None:
        params["reference"] = reference_images(loaded, dataset)
    image = dataset.read_image(image_id) if image is None else image
    explainer = get_explainer(method)
    used = explainer.used_precision(loaded.model, loaded.device, precision)
    keyed = {**params, "precision": used} if explainer.bfloat16_stages else params
    key = cache.key(loaded.hash, file_hash(dataset.image_path(image_id)), method, keyed, target)
    return cache, params, image, key, used


def _result(loaded: LoadedModel, raw: np.ndarray, method: str, image: np.ndarray, seconds: float,
            cached: bool, precision: str = "float32") -> MapResult:
    """A raw map with its display map and peak in the stored image's frame."""
    place = loaded.preprocessing.place
    return MapResult(raw=raw, display=scored_map(raw, method, image.shape, place=place),
                     peak=peak_of(raw, method, image.shape, place=place), seconds=seconds, cached=cached,
                     support=loaded.preprocessing.support(image.shape), precision=precision)


def ground_truth(dataset: Dataset, image_id: str, label: str | None = None) -> GroundTruth:
    """What an image's map of `label` (every label: None) is scored against: its boxes when it
    has any, else its segmentation from masks.csv (`Dataset.mask_for`), else None (no score)."""
    boxes = dataset.boxes_for(image_id, label)
    return boxes if len(boxes) else dataset.mask_for(image_id, label)


def scored_map(raw: np.ndarray, method: str, shape: tuple[int, ...], protocol: str = DEFAULT_PROTOCOL,
               clip: bool = True, place: Place = resize) -> np.ndarray:
    """The map a protocol scores, in [0, 1]: `raw` under the protocol's sign and percentile clip
    (`clip=False`: none), min-max scaled, and placed in the image frame `shape` by `place` (the
    model's `Preprocessing.place`: a resize, or the crop's footprint with no evidence around it);
    protocols scored in the model-input frame keep `raw`'s frame. Under "medattn" this is the
    panel's map."""
    chosen = get_protocol(protocol)
    sign = chosen.sign or DEFAULT_SIGN[method]
    norm = normalize(raw, sign=sign, clip_percentile=chosen.clip_percentile if clip else None)
    return norm if chosen.frame == "input" else np.clip(place(norm, shape[:2]), 0.0, 1.0)


def peak_of(raw: np.ndarray, method: str, shape: tuple[int, ...], protocol: str = DEFAULT_PROTOCOL,
            place: Place = resize) -> tuple[int, int] | None:
    """Where the map points in the protocol's frame: the first maximum (row-major) of
    `scored_map` without the percentile clip; None for a flat map, which points nowhere."""
    unclipped = scored_map(raw, method, shape, protocol, clip=False, place=place)
    if is_flat(unclipped):
        return None
    row, col = np.unravel_index(int(np.argmax(unclipped)), unclipped.shape)
    return int(row), int(col)


def score(raw: np.ndarray, method: str, truth: GroundTruth, shape: tuple[int, ...],
          protocol: str = DEFAULT_PROTOCOL, place: Place = resize) -> dict[str, float | bool]:
    """Localization scores of one raw map (`explain`'s output, model-input frame) for an image of
    `shape` (H, W) against its ground truth (boxes in image pixels, or a boolean (H, W) mask):
    `auprc`, `hit` (1.0/0.0), `miou` (NaN without ground truth) and `degenerate` (flat map).

    The one scoring path: the app's panels, precompute's rows and the README call it. The map is
    `scored_map` under `protocol`; the pointing game is played at `peak_of`; ground truth of a
    protocol scored in the model-input frame is scaled there (`protocols.scaled_truth`).
    """
    chosen = get_protocol(protocol)
    mapped = scored_map(raw, method, shape, protocol, place=place)
    if chosen.frame == "input":
        mask = scaled_truth(truth, shape[:2], mapped.shape)
    else:
        mask = truth_mask(truth, mapped.shape)
    return localization_scores(mapped, mask, point=peak_of(raw, method, shape, protocol, place))


def current_rows(frame: pd.DataFrame, hashes: Mapping[str, str]) -> pd.DataFrame:
    """The rows of a score table that still hold: those of these checkpoints (name → hash of the
    weights now under that name) and, for localization rows, scored under the current
    definitions (`pipeline.SCORING`). Sanity-check rows compare maps and carry no version."""
    if frame.empty:
        return frame
    # a missing column (tables older than that column) compares False everywhere
    same_weights = frame["checkpoint"].map(hashes) == frame.get("checkpoint_hash")
    current = frame.get("scoring") == SCORING
    sanity = frame["method"].astype(str).str.startswith("sanity:")
    return frame[same_weights & (current | sanity)].reset_index(drop=True)
