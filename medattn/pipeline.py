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

Faithfulness (`faithfulness_scores`, settings `FaithfulnessSettings`): the metrics of
`medattn.metrics.faithfulness` on the model input and the raw map under the method's sign
policy (the map the panel shows, before its percentile clip and min-max, which change no
ranking), the class score the checkpoint's task defines, and fills in the image's own terms:
deletion, pixel flipping, region perturbation and faithfulness correlation replace pixels by the
stored image's black carried through the checkpoint's preprocessing
(`LoadedModel.constant_input`); insertion starts from the blurred image; infidelity's and
max-sensitivity's noise is a fraction of the stored image's intensity range in model-input
units. Reference maps ("reference:blank", "reference:random", "reference:center",
"reference:box_prior"; `reference_result`) are scored like methods.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from medattn.data.dataset import Dataset
from medattn.data.preprocess import Preprocessing
from medattn.errors import ImageReadError
from medattn.explain import DEFAULT_SIGN, explain, get_explainer, method_params, normalize, work_size
from medattn.inference import LoadedModel
from medattn.metrics import faithfulness as faith
from medattn.metrics.faithfulness import references
from medattn.metrics.localization import is_flat, localization_scores
from medattn.metrics.masks import GroundTruth, truth_mask
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol, scaled_truth
from medattn.store import HeatmapCache, file_hash

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("MEDATTN_CACHE", REPO / ".cache"))
PDA_METHODS = ("pda", "pda_features")
# Explainer options that change speed or placement but never the map itself.
RUNTIME_ONLY = ("device", "batch_size", "progress")
# Version of the scoring definitions in `score`: score rows of another version are recomputed
# (from the cached maps). 2: the pointing game at the maximum before clipping. 3: flat maps at
# chance (AUPRC = p, no hit) with a `degenerate` column; IoU on CheXlocalize's Otsu segmentation
# (uint8, OpenCV, filled contours); a `protocol` column. 4: `predicted`/`correct` by the task's
# decision rule (argmax for multiclass, where rows said p >= 0.5).
# 5: a `precision` column (the precision the map was computed in); maps float32 unless bfloat16
# is asked for, where before the methods with bfloat16 stages used it by default on CPUs that
# have it.
SCORING = 5


@dataclass
class MapResult:
    raw: np.ndarray       # explainer output, model input frame, signed where the method is
    display: np.ndarray   # normalised to [0, 1] and resized to the stored image (H, W)
    peak: tuple[int, int] | None  # (row, col) in `display` of the maximum before clipping; None: flat map
    seconds: float        # compute time; 0 when it came from the cache
    cached: bool
    support: np.ndarray | None = None  # (H, W) bool: pixels the model saw; None = all of them
    precision: str = "float32"  # what the map was computed in (`Explainer.used_precision`)


def sign_of(method: str) -> str:
    """The sign policy of a method's map (`explain.DEFAULT_SIGN`; reference maps: positive)."""
    return references.SIGN if references.is_reference(method) else DEFAULT_SIGN[method]


def default_cache() -> HeatmapCache:
    return HeatmapCache(CACHE_DIR / "heatmaps")


def reference_images(loaded: LoadedModel, dataset: Dataset, count: int = 16) -> torch.Tensor:
    """Model inputs of the first `count` readable training images (sorted ids; every image where
    there is no train split), (N, C, H, W): the pool PDA samples from. Deterministic, so the
    cache key of a PDA map is stable across runs. An image that cannot be read (missing,
    corrupt) is skipped for the next one, at most 3 × `count` looked at: one bad file used to
    fail every PDA map of the dataset, and Compare's whole grid with it. ImageReadError (the
    first image's) when none of those can be read. Memoised on the preprocessing and the
    contents (`file_hash`) of each image looked at: every PDA panel's cache lookup asks for it,
    and reading and resizing 16 images took 0.2-0.4 s each time on a 2-core CPU."""
    ids = sorted(dataset.split("train").index) or sorted(dataset.images.index)
    key = (loaded.preprocessing, str(dataset.root), tuple(ids[:count]))
    with _REFERENCE_LOCK:
        kept = _REFERENCES.get(key)
    if kept is not None and all(_contents(dataset, image_id) == seen for image_id, seen in kept[0]):
        return kept[1].clone()
    looked, inputs, first_error = [], [], None
    for image_id in ids[:3 * count]:
        if len(inputs) == count:
            break
        looked.append((image_id, _contents(dataset, image_id)))
        try:
            inputs.append(loaded.preprocessing.to_input(dataset.read_image(image_id)))
        except ImageReadError as exc:
            first_error = first_error or exc
    if not inputs:
        raise first_error or ImageReadError(dataset.root, "the dataset has no images for PDA's reference pool")
    pool = torch.cat(inputs)
    with _REFERENCE_LOCK:
        _REFERENCES[key] = (tuple(looked), pool)
        while len(_REFERENCES) > _REFERENCE_POOLS:
            _REFERENCES.pop(next(iter(_REFERENCES)))
    return pool.clone()


def _contents(dataset: Dataset, image_id: str) -> tuple[str, str | None]:
    """An image's path and content hash (None: no such file)."""
    path = dataset.image_path(image_id)
    try:
        return str(path), file_hash(path)
    except OSError:
        return str(path), None


_REFERENCES: dict[tuple, tuple[tuple, torch.Tensor]] = {}  # oldest first: key → (images looked at, pool)
_REFERENCE_POOLS = 8
_REFERENCE_LOCK = threading.Lock()


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
    return compute_maps(loaded, dataset, [(image_id, target)], method, params, cache, progress,
                        None if image is None else {image_id: image}, precision)[0]


def compute_maps(
    loaded: LoadedModel,
    dataset: Dataset,
    requests: Sequence[tuple[str, int]],
    method: str,
    params: Mapping[str, Any] | None = None,
    cache: HeatmapCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    images: Mapping[str, np.ndarray] | None = None,
    precision: str = "float32",
) -> list[MapResult]:
    """`compute_map` for several (image id, target class) pairs of one method, in their order:
    each map from the cache when present, the others explained together in one call when the
    method's maps do not depend on their batch (`Explainer.batch_invariant`: an image stacked
    once per target class, the model run once per distinct image, `medattn.explain.shared`),
    else one call each. Same maps and cache keys as one `compute_map` per pair, up to float32
    rounding (tests/test_shared_maps.py). Without a `batch_size` in `params`, the explainer's
    passes are sized to the model (`explain.work_size.batch_size`). `images` are the stored images already read, by id;
    a batch's `seconds` are shared equally among its maps."""
    cache, params, keyed, used = _settings(loaded, dataset, method, params, cache, precision)
    read = dict(images or {})
    results: list[MapResult | None] = []
    missing: list[tuple[int, str, int, str]] = []  # (position, image id, target, cache key)
    for image_id, target in requests:
        if image_id not in read:
            read[image_id] = dataset.read_image(image_id)
        key = _map_key(loaded, dataset, cache, image_id, method, keyed, target)
        raw = cache.get(key)
        results.append(None if raw is None else _result(loaded, raw, method, read[image_id], 0.0, cached=True,
                                                        precision=used))
        if raw is None:
            missing.append((len(results) - 1, image_id, int(target), key))
    together = [missing] if get_explainer(method).batch_invariant and missing else [[one] for one in missing]
    for batch in together:
        started = time.perf_counter()
        x = torch.cat([loaded.to_input(read[image_id]) for _, image_id, _, _ in batch])
        sized = None if params.get("batch_size") else work_size.batch_size(loaded.model, x, get_explainer(method).needs_grad)
        passes = params if sized is None else {**params, "batch_size": sized}
        raws = explain(loaded.model, x, [target for _, _, target, _ in batch], method, device=loaded.device,
                       progress=progress, precision=used, **passes)
        raws = raws.reshape(len(batch), *raws.shape[-2:])
        seconds = (time.perf_counter() - started) / len(batch)
        for (position, image_id, _, key), raw in zip(batch, raws):
            raw = np.ascontiguousarray(raw)
            cache.put(key, raw)
            results[position] = _result(loaded, raw, method, read[image_id], seconds, cached=False, precision=used)
    return results  # type: ignore[return-value]


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
    cache, _, keyed, used = _settings(loaded, dataset, method, params, cache, precision)
    raw = cache.get(_map_key(loaded, dataset, cache, image_id, method, keyed, target))
    if raw is None:
        return None
    image = dataset.read_image(image_id) if image is None else image
    return _result(loaded, raw, method, image, 0.0, cached=True, precision=used)


def _settings(loaded: LoadedModel, dataset: Dataset, method: str, params: Mapping[str, Any] | None,
              cache: HeatmapCache | None, precision: str) -> tuple[HeatmapCache, dict[str, Any], dict[str, Any], str]:
    """The cache, the resolved parameters, the parameters the cache key is built from, and the
    precision the maps are computed in. Methods with bfloat16 stages key their maps by that
    precision, float32 too: before SCORING 5 their unkeyed maps were bfloat16 on CPUs that have it."""
    cache = cache or default_cache()
    params = resolved_params(method, params)
    if method in PDA_METHODS and params.get("reference") is None:
        params["reference"] = reference_images(loaded, dataset)
    explainer = get_explainer(method)
    used = explainer.used_precision(loaded.model, loaded.device, precision)
    keyed = {**params, "precision": used} if explainer.bfloat16_stages else params
    return cache, params, keyed, used


def _map_key(loaded: LoadedModel, dataset: Dataset, cache: HeatmapCache, image_id: str, method: str,
             keyed: Mapping[str, Any], target: int) -> str:
    """The cache key of one map: weights, image file content, method, parameters, target."""
    return cache.key(loaded.hash, file_hash(dataset.image_path(image_id)), method, keyed, target)


def _result(loaded: LoadedModel, raw: np.ndarray, method: str, image: np.ndarray, seconds: float,
            cached: bool, precision: str = "float32") -> MapResult:
    """A raw map with its display map and peak in the stored image's frame."""
    prep = loaded.preprocessing
    return MapResult(raw=raw, display=scored_map(raw, method, image.shape, prep),
                     peak=peak_of(raw, method, image.shape, prep), seconds=seconds, cached=cached,
                     support=loaded.preprocessing.support(image.shape), precision=precision)


def ground_truth(dataset: Dataset, image_id: str, label: str | None = None) -> GroundTruth:
    """What an image's map of `label` (every label: None) is scored against: its boxes when it
    has any, else its segmentation from masks.csv (`Dataset.mask_for`), else None (no score)."""
    boxes = dataset.boxes_for(image_id, label)
    return boxes if len(boxes) else dataset.mask_for(image_id, label)


def _placement(preprocessing: Preprocessing) -> Preprocessing:
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"scoring needs the model's Preprocessing (LoadedModel.preprocessing), which places a map on "
                        f"the stored image (stretched back, or onto a crop's footprint); got {type(preprocessing).__name__}")
    return preprocessing


def scored_map(raw: np.ndarray, method: str, shape: tuple[int, ...], preprocessing: Preprocessing,
               protocol: str = DEFAULT_PROTOCOL, clip: bool = True) -> np.ndarray:
    """The map a protocol scores, in [0, 1]: `raw` under the protocol's sign and percentile clip
    (`clip=False`: none), min-max scaled, and placed in the image frame `shape` by the model's
    `preprocessing` (`Preprocessing.place`: a resize, or the crop's footprint with no evidence
    around it); protocols scored in the model-input frame keep `raw`'s frame. Under "medattn"
    this is the panel's map."""
    placement = _placement(preprocessing)
    chosen = get_protocol(protocol)
    sign = chosen.sign or sign_of(method)
    norm = normalize(raw, sign=sign, clip_percentile=chosen.clip_percentile if clip else None)
    return norm if chosen.frame == "input" else np.clip(placement.place(norm, shape[:2]), 0.0, 1.0)


def peak_of(raw: np.ndarray, method: str, shape: tuple[int, ...], preprocessing: Preprocessing,
            protocol: str = DEFAULT_PROTOCOL) -> tuple[int, int] | None:
    """Where the map points in the protocol's frame: the first maximum (row-major) of
    `scored_map` without the percentile clip; None for a flat map, which points nowhere."""
    unclipped = scored_map(raw, method, shape, preprocessing, protocol, clip=False)
    if is_flat(unclipped):
        return None
    row, col = np.unravel_index(int(np.argmax(unclipped)), unclipped.shape)
    return int(row), int(col)


def score(raw: np.ndarray, method: str, truth: GroundTruth, shape: tuple[int, ...], preprocessing: Preprocessing,
          protocol: str = DEFAULT_PROTOCOL) -> dict[str, float | bool]:
    """Localization scores of one raw map (`explain`'s output, model-input frame) for an image of
    `shape` (H, W) against its ground truth (boxes in image pixels, or a boolean (H, W) mask):
    `auprc`, `hit` (1.0/0.0), `miou` (NaN without ground truth) and `degenerate` (flat map).

    The one scoring path: the app's panels, precompute's rows and the README call it. The map is
    placed on the stored image by the model's `preprocessing` (`LoadedModel.preprocessing`), a
    required argument: a centre-cropping model's map scored as if stretched was up to 0.094
    AUPRC off on real NIH images. The map is `scored_map` under `protocol`; the pointing game
    is played at `peak_of`; ground truth of a protocol scored in the model-input frame is scaled
    there (`protocols.scaled_truth`). TypeError when `preprocessing` is not a Preprocessing.
    """
    chosen = get_protocol(protocol)
    mapped = scored_map(raw, method, shape, preprocessing, protocol)
    if chosen.frame == "input":
        mask = scaled_truth(truth, shape[:2], mapped.shape)
    else:
        mask = truth_mask(truth, mapped.shape)
    return localization_scores(mapped, mask, point=peak_of(raw, method, shape, preprocessing, protocol))


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


# Faithfulness -------------------------------------------------------------------------------

DEFAULT_FAITHFULNESS = ("deletion", "insertion", "road_morf", "road_lerf", "sparseness", "complexity")
NOISE_FRACTION = 0.05  # infidelity's std and max-sensitivity's radius, in stored-image intensity (of [0, 1])


@dataclass(frozen=True)
class FaithfulnessSettings:
    """Which faithfulness metrics a score row carries and how they are computed. `key()` is
    stored in each row (`faithfulness` column) so that rows computed under other settings are
    computed again rather than mixed."""

    metrics: tuple[str, ...] = DEFAULT_FAITHFULNESS
    steps: int = 50  # deletion, insertion, pixel flipping
    percentages: tuple[int, ...] = (10, 30, 50, 70, 90)  # ROAD
    samples: int = 32  # infidelity samples, faithfulness-correlation subsets; max-sensitivity: a third
    regions: int = 50  # region perturbation: steps of patches of a twenty-fourth of the input side
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.metrics:
            faith.metric_info(name)  # unknown names fail here, listing the known ones

    def fields(self) -> dict[str, Any]:
        """The settings as JSON fields (a job spec): tuples as lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "FaithfulnessSettings":
        """`fields()` back to settings; unknown metric names raise ValueError."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    def key(self) -> str:
        return (f"v1|{','.join(self.metrics)}|steps={self.steps}|road={','.join(map(str, self.percentages))}"
                f"|samples={self.samples}|regions={self.regions}|seed={self.seed}")


def evidence(raw: np.ndarray, method: str) -> np.ndarray:
    """The raw map under its method's sign policy (|m|, max(m, 0) or m), float32 (S, S)."""
    sign = sign_of(method)
    m = np.asarray(raw, dtype=np.float32)
    return np.abs(m) if sign == "absolute" else np.maximum(m, 0.0) if sign == "positive" else m


def intensity_step(loaded: LoadedModel, fraction: float = NOISE_FRACTION) -> float:
    """`fraction` of the stored image's intensity range in model-input units (mean over
    channels): e.g. 0.05 is 0.22 for ImageNet z-scores, 102 for TorchXRayVision's scale."""
    return float((loaded.constant_input(fraction) - loaded.constant_input(0.0)).mean())


def faithfulness_scores(loaded: LoadedModel, image: np.ndarray, raw: np.ndarray, method: str, target: int,
                        settings: FaithfulnessSettings, explain_params: Mapping[str, Any] | None = None,
                        prior: Callable[[str], np.ndarray] | None = None) -> dict[str, float]:
    """The metrics of `settings` for one map: {metric column: value} plus `faithfulness`
    (the settings key). `raw` is the method's raw map in the model-input frame; `explain_params`
    re-explain perturbed inputs for max-sensitivity and random-logit; `prior(class index)` gives
    a reference box prior for random-logit of "reference:box_prior"."""
    x = loaded.to_input(image)
    maps = torch.from_numpy(evidence(raw, method))[None]
    if tuple(maps.shape[1:]) != tuple(x.shape[2:]):
        raise ValueError(f"{method}: map of shape {tuple(maps.shape[1:])} is not in the input frame {tuple(x.shape[2:])}")
    targets, task, s = [int(target)], loaded.task, settings
    black = loaded.constant_input(0.0)
    side = x.shape[-1]
    calls: dict[str, Callable[[], np.ndarray]] = {
        "deletion": lambda: faith.deletion(loaded.model, x, maps, targets, steps=s.steps, baseline=black, task=task, seed=s.seed),
        "insertion": lambda: faith.insertion(loaded.model, x, maps, targets, steps=s.steps, task=task, seed=s.seed),
        "road_morf": lambda: faith.road(loaded.model, x, maps, targets, percentages=s.percentages, task=task, seed=s.seed),
        "road_lerf": lambda: faith.road(loaded.model, x, maps, targets, percentages=s.percentages, order="lerf",
                                        task=task, seed=s.seed),
        "pixel_flipping": lambda: faith.pixel_flipping(loaded.model, x, maps, targets, steps=s.steps, baseline=black,
                                                       task=task, seed=s.seed),
        "region_perturbation": lambda: faith.region_perturbation(loaded.model, x, maps, targets,
                                                                 patch_size=max(1, side // 24), regions=s.regions,
                                                                 baseline=black, task=task, seed=s.seed),
        "faithfulness_correlation": lambda: faith.faithfulness_correlation(loaded.model, x, maps, targets,
                                                                           n_subsets=s.samples, baseline=black,
                                                                           task=task, seed=s.seed),
        "infidelity": lambda: faith.infidelity(loaded.model, x, maps, targets, n_samples=s.samples,
                                               noise_std=intensity_step(loaded), seed=s.seed),
        "max_sensitivity": lambda: faith.max_sensitivity(loaded.model, x, targets, _explainer(method, explain_params, image, prior),
                                                         radius=intensity_step(loaded), n_samples=max(1, s.samples // 3),
                                                         seed=s.seed),
        "random_logit": lambda: faith.random_logit(loaded.model, x, targets, _explainer(method, explain_params, image, prior),
                                                   attributions=maps, seed=s.seed),
        "sparseness": lambda: faith.sparseness(maps),
        "complexity": lambda: faith.complexity(maps),
    }
    out: dict[str, float] = {"faithfulness": s.key()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # undefined values are NaN in the row
        for name in s.metrics:
            out[name] = float(calls[name]()[0])
    return out


def _explainer(method: str, params: Mapping[str, Any] | None, image: np.ndarray,
               prior: Callable[[str], np.ndarray] | None) -> Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], np.ndarray]:
    """explain(model, x, targets) → (B, S, S) evidence maps of `method` (reference maps: the
    same map whatever the input; the box prior of each target class)."""
    def run(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        if references.is_reference(method):
            side = x.shape[-1]
            kind = method[len(references.PREFIX):]
            maps = [references.reference_map(kind, side, seed=0, prior=(lambda c=int(c): prior(c)) if prior else None)
                    for c in targets.tolist()]
            return np.stack(maps)
        given = {k: v for k, v in dict(params or {}).items() if k not in RUNTIME_ONLY}
        maps = explain(model, x, targets.tolist(), method, **given)
        return evidence(maps.reshape(len(x), *x.shape[2:]), method)

    return run


def faithfulness_curves(loaded: LoadedModel, image: np.ndarray, raw: np.ndarray, method: str, target: int,
                        steps: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Deletion and insertion curves of one map (Compare's plot): {"fraction": (steps + 1,),
    "deletion": ..., "insertion": ...} with the class score at each fraction of pixels removed
    (inserted), in the same fills as `faithfulness_scores`."""
    x = loaded.to_input(image)
    maps = torch.from_numpy(evidence(raw, method))[None]
    common = dict(steps=steps, task=loaded.task, seed=seed, curves=True)
    _, deleted = faith.deletion(loaded.model, x, maps, [int(target)], baseline=loaded.constant_input(0.0), **common)
    _, inserted = faith.insertion(loaded.model, x, maps, [int(target)], **common)
    return {"fraction": np.linspace(0.0, 1.0, steps + 1), "deletion": deleted[0], "insertion": inserted[0]}


# Reference maps -----------------------------------------------------------------------------

_PRIORS: dict[tuple, np.ndarray] = {}


def box_prior(dataset: Dataset, label: str, loaded: LoadedModel, split: str = "train") -> np.ndarray:
    """The average box mask of `label` over `split`'s images with such boxes, in the model's
    input frame (`references.box_prior`); cached per dataset version, class and preprocessing."""
    prep = loaded.preprocessing
    key = (str(dataset.root), dataset.hash, label, split, prep)
    if key not in _PRIORS:
        ids = set(dataset.split(split).index)
        boxes = dataset.boxes[(dataset.boxes["label"] == label) & dataset.boxes["image_id"].isin(ids)]
        sizes = dataset.images[["height", "width"]]
        per_image = ((tuple(int(v) for v in sizes.loc[image_id]), group[["x", "y", "w", "h"]].to_numpy(float))
                     for image_id, group in boxes.groupby("image_id", sort=True))
        _PRIORS[key] = references.box_prior(per_image, prep)
    return _PRIORS[key]


def reference_seed(image_id: str, seed: int = 0) -> int:
    """A stable seed per image for the random reference map (the same in every run)."""
    return int(hashlib.sha256(f"{seed}|{image_id}".encode()).hexdigest()[:8], 16)


def reference_result(loaded: LoadedModel, dataset: Dataset, image_id: str, method: str, target: int,
                     image: np.ndarray | None = None) -> MapResult:
    """A reference map ("reference:…") for one image and class as a `MapResult` (model-input
    frame raw map; nothing cached: each takes microseconds, the box prior once per class)."""
    image = dataset.read_image(image_id) if image is None else image
    kind = references.reference_name(method)[len(references.PREFIX):]
    raw = references.reference_map(kind, loaded.input_size, seed=reference_seed(image_id),
                                   prior=lambda: box_prior(dataset, dataset.classes[int(target)], loaded))
    return _result(loaded, raw, method, image, 0.0, cached=False)
