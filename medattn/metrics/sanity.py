"""Sanity checks for explanation methods: `python -m medattn.metrics.sanity --help`.

- Cascading model-parameter randomisation (Adebayo et al. 2018): the model's weights are
  re-initialised block by block from the top down, cumulatively: for medattn models the head
  (every module outside the backbone), then backbone stages from last to first; for imported
  models the stages found in their module tree (`randomization_blocks`: at least one step per
  stage of a ResNet-like model, each step a run of Quantus's MPRT layers). "Re-initialised"
  means the weights a fresh build of the same architecture starts with (`medattn.models.build`
  or the library's constructor under `seed`; for other models each module's
  `reset_parameters()`), so head-specific initial values (e.g. an attention gain that starts at
  0) come back too. After each step the map is
  recomputed for the same image and class and compared with the trained model's map. A method
  whose map survives randomisation (SSIM stays high) is not explaining the model.
- Repeatability (Arun et al. 2021): maps of the same image from checkpoints of one
  architecture and head trained with different seeds should agree.

Maps are compared as the app shows them (`medattn.pipeline.scored_map`: raw map →
`medattn.explain.normalize` with the method's `DEFAULT_SIGN` → placed on the stored image by the
model's preprocessing); then `medattn.metrics.similarity.ssim`
and `spearman`. The models are deep copies; the checkpoints are never changed, and the same
seed gives the same rows.

Rows go into the run's score table (`medattn.store.ScoreTable`, next to precompute's rows), one
per image × checkpoint × check × method × step (cascading) or × other checkpoint
(repeatability). The table keeps one row per (image_id, checkpoint, method, target), so the
step or the other checkpoint is part of the method name:

    column            cascading                              repeatability
    image_id          image                                  image
    checkpoint        the checkpoint randomised              the first checkpoint of the pair
    checkpoint_hash   its hash                               its hash
    method            "sanity:cascading:<method>@<step>"     "sanity:repeatability:<method>@<other>"
    check             "cascading"                            "repeatability"
    explainer         <method> (e.g. "gradcam")              <method>
    target            class index (str), as precompute       class index (str)
    target_class      class name                             class name
    step              0 = trained model, k = k blocks reset  0
    layer             "none", then the block reset last      ""
                      ("head", "backbone.stages.2", ...)
    other_checkpoint  ""                                     the second checkpoint of the pair
    ssim, spearman    map vs the trained model's map         map vs map (NaN spearman when one
                      (step 0: 1.0)                          of the maps is constant)
    seed, seconds     randomisation seed; compute time       seed; compute time
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medattn.data import load_dataset
from medattn.data.dataset import Dataset
from medattn.data.preprocess import Preprocessing
from medattn.explain import explain
from medattn.inference import LoadedModel, load_model
from medattn.models.files import unique_checkpoints
from medattn.metrics.similarity import spearman, ssim
from medattn.models.class_names import OutputSelect
from medattn.pipeline import CACHE_DIR, compute_map, resolved_params, scored_map
from medattn.store import Run
from medattn.store import HeatmapCache

log = logging.getLogger("medattn.sanity")
PREFIX = "sanity:"
DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")


def randomization_blocks(model: nn.Module) -> list[tuple[str, list[str]]]:
    """The cascade's blocks, top first: (label, module names it covers).

    medattn models: the head (every module outside the backbone), then the backbone's stages,
    last first. Other models (imported ones): their parameterised children, last first, where
    a child that holds more than half of the model's parameters and has two or more
    parameterised children of its own (a trunk: `net`, DenseNet's `features`, a ViT's `blocks`,
    ResNet's `layer4`) is replaced by those children, recursively, so a ResNet-like model gets
    at least one step per stage. Each block covers a run of Quantus's MPRT layers (modules with
    `reset_parameters`, `named_modules` order reversed: `mprt_layers`); parameters held by no
    child (a ViT's class token and position embedding) go with the last, input-side block."""
    stages = getattr(getattr(model, "backbone", None), "stages", None)
    if isinstance(stages, nn.ModuleList):
        children = [(name, child) for name, child in model.named_children() if _n_parameters(child)]
        head = [name for name, _ in children if name != "backbone"]
        blocks = [("head", head)] if head else []
        return blocks + [(f"backbone.stages.{i}", [f"backbone.stages.{i}"])
                         for i in reversed(range(len(stages)))]
    return [(name, [name]) for name in reversed(_trunk_blocks(model, "", _n_parameters(model)))]


def _n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _trunk_blocks(module: nn.Module, prefix: str, total: int) -> list[str]:
    """Names (input side first) of `module`'s blocks under the rule of randomization_blocks
    (`total`: the model's parameter count)."""
    names = []
    for name, child in module.named_children():
        size = _n_parameters(child)
        if not size:
            continue
        full = f"{prefix}{name}"
        inner = [c for c in child.children() if _n_parameters(c)]
        names += _trunk_blocks(child, full + ".", total) if size > total / 2 and len(inner) >= 2 else [full]
    return names


def mprt_layers(model: nn.Module) -> list[str]:
    """Quantus's MPRT layers, top first: the names of the modules with `reset_parameters`, in
    `named_modules` order reversed (`quantus.helpers.model.pytorch_model.get_random_layer_generator`,
    order="top_down")."""
    return [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]


def initial_weights(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """State dict of a freshly initialised model of the same architecture (see module doc):
    medattn's `build` for its own models, the library's constructor for imported ones, else
    each module's `reset_parameters()` on a copy (as Quantus's MPRT does)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if hasattr(model, "library") and hasattr(model, "constructor"):
            from medattn.models.external import ExternalModel

            fresh = ExternalModel(model.library, model.constructor["callable"], model.num_classes,
                                  model.constructor["kwargs"])
        elif all(hasattr(model, key) for key in ("arch", "head", "num_classes", "params")):
            from medattn.models import build

            fresh = build(model.arch, model.head, model.num_classes, **model.params)
        else:
            fresh = copy.deepcopy(model).cpu()
            for module in fresh.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
    return fresh.state_dict()


def cascading_maps(model: nn.Module, x: torch.Tensor, target: int, method: str,
                   params: Mapping[str, Any] | None = None, seed: int = 0,
                   device: str | torch.device | None = None) -> list[tuple[int, str, np.ndarray, float]]:
    """(step, layer, raw map, seconds): the trained model's map (step 0, layer "none"), then
    the map after each cumulative block re-initialisation, on a deep copy of `model`."""
    randomized = copy.deepcopy(model)
    fresh = initial_weights(model, seed)
    state = randomized.state_dict()
    blocks = randomization_blocks(model)
    out = []
    for step, (label, names) in enumerate([("none", [])] + blocks):
        last = step == len(blocks)  # the input side also takes parameters held by no block
        with torch.no_grad():
            for key, value in state.items():
                if any(key.startswith(name + ".") for name in names) or (last and not any(
                        key.startswith(name + ".") for _, block in blocks for name in block)):
                    value.copy_(fresh[key].to(value))
        started = time.perf_counter()
        raw = explain(randomized, x, target, method, device=device, **(params or {}))
        out.append((step, label, raw, time.perf_counter() - started))
    return out


def _compare(a: np.ndarray | None, b: np.ndarray | None) -> dict[str, float]:
    if a is None or b is None:
        return {"ssim": float("nan"), "spearman": float("nan")}
    return {"ssim": ssim(a, b), "spearman": spearman(a, b)}


def _display(raw: np.ndarray, method: str, shape: tuple[int, ...], preprocessing: Preprocessing) -> np.ndarray | None:
    """The map as the app shows it (`medattn.pipeline.scored_map`: placed in the image frame by
    the model's preprocessing); None when the map is not finite (a randomised network can
    overflow)."""
    if not np.isfinite(raw).all():
        return None
    return scored_map(raw, method, shape, preprocessing)


def target_of(loaded: LoadedModel, dataset: Dataset, image_id: str, image: np.ndarray) -> int:
    """The image's first positive class; its top-scoring class when it has none."""
    positives = np.flatnonzero(dataset.labels(image_id) > 0)
    if len(positives):
        return int(positives[0])
    with torch.inference_mode():
        return int(loaded.model(loaded.to_input(image)).argmax(dim=1)[0])


def cascading(loaded: LoadedModel, dataset: Dataset, image_ids: Sequence[str], method: str,
              params: Mapping[str, Any] | None = None, seed: int = 0) -> pd.DataFrame:
    """Cascading-randomisation rows (schema in the module docstring) for one checkpoint."""
    rows = []
    for image_id in image_ids:
        image = dataset.read_image(image_id)
        target = target_of(loaded, dataset, image_id, image)
        # a model answering the dataset's classes through a class mapping is randomised
        # inside: the cascade's blocks and fresh weights are those of the imported network
        model, output = (loaded.model.inner, loaded.model.indices[target]) if isinstance(loaded.model, OutputSelect) \
            else (loaded.model, target)
        maps = cascading_maps(model, loaded.to_input(image), output, method,
                              _explain_params(loaded, dataset, method, params), seed,
                              loaded.device)
        place = functools.partial(_display, method=method, shape=image.shape, preprocessing=loaded.preprocessing)
        reference = place(maps[0][2])
        for step, layer, raw, seconds in maps:
            rows.append(_row(loaded, dataset, image_id, target, "cascading", method,
                             f"{method}@{step}", step, layer, "", seed, seconds,
                             _compare(reference, place(raw))))
    return pd.DataFrame(rows)


def repeatability(models: Sequence[LoadedModel], dataset: Dataset, image_ids: Sequence[str],
                  method: str, params: Mapping[str, Any] | None = None,
                  cache: HeatmapCache | None = None) -> pd.DataFrame:
    """Rows comparing the first model's maps with each other model's (same arch and head)."""
    if len(models) < 2:
        raise ValueError("repeatability needs two or more checkpoints")
    kinds = {(m.meta.get("arch"), m.meta.get("head")) for m in models}
    if len(kinds) > 1:
        raise ValueError(f"repeatability compares checkpoints of one arch and head; got "
                         f"{', '.join(f'{m.name} ({m.label})' for m in models)}")
    first, others = models[0], models[1:]
    rows = []
    for image_id in image_ids:
        image = dataset.read_image(image_id)
        target = target_of(first, dataset, image_id, image)
        reference = compute_map(first, dataset, image_id, method, target, params, cache, image=image)
        for other in others:
            result = compute_map(other, dataset, image_id, method, target, params, cache, image=image)
            rows.append(_row(first, dataset, image_id, target, "repeatability", method,
                             f"{method}@{other.name}", 0, "", other.name, None,
                             reference.seconds + result.seconds,
                             _compare(reference.display, result.display)))
    return pd.DataFrame(rows)


def run_sanity(dataset: Dataset, checkpoints: Sequence[str | Path | LoadedModel],
               methods: Sequence[str], image_ids: Sequence[str], run: Run | None = None,
               checks: Sequence[str] = ("cascading", "repeatability"), seed: int = 0,
               device: str = "auto", params: Mapping[str, Mapping[str, Any]] | None = None,
               cache: HeatmapCache | None = None) -> pd.DataFrame:
    """Run the checks and append their rows to `run`'s score table; returns the new rows.

    Cascading runs on every checkpoint; repeatability on each group of two or more
    checkpoints that share arch and head (the first of a group against each other one)."""
    unknown = sorted(set(checks) - {"cascading", "repeatability"})
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; choose cascading, repeatability")
    run = run or Run.for_dataset(dataset, CACHE_DIR / "runs")
    # each answering the dataset's classes (its own, or through its class mapping), else CheckpointError
    # a checkpoint named twice (a glob's NAME.json and NAME.safetensors) is one: else repeatability
    # compares it with itself (a perfect 1.0) and cascading rows come twice
    models = [(c if isinstance(c, LoadedModel) else load_model(c, device)).for_dataset(dataset)
              for c in unique_checkpoints(checkpoints)]
    frames = []
    for method in methods:
        options = (params or {}).get(method, {})
        if "cascading" in checks:
            frames += [cascading(m, dataset, image_ids, method, options, seed) for m in models]
        if "repeatability" in checks:
            groups: dict[tuple, list[LoadedModel]] = {}
            for m in models:
                groups.setdefault((m.meta.get("arch"), m.meta.get("head")), []).append(m)
            for group in groups.values():
                if len(group) > 1:
                    frames.append(repeatability(group, dataset, image_ids, method, options, cache))
    rows = pd.concat([f for f in frames if not f.empty], ignore_index=True) if frames else pd.DataFrame()
    run.scores.append(rows)
    return rows


def first_test_positives(dataset: Dataset, count: int) -> list[str]:
    """The first `count` test images (sorted ids) with at least one positive class."""
    test = dataset.split("test")
    positive = test[test[dataset.classes].to_numpy().sum(axis=1) > 0]
    return sorted(positive.index)[:count]


def _explain_params(loaded: LoadedModel, dataset: Dataset, method: str,
                    params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters compute_map uses for this method (PDA gets its reference images)."""
    resolved = resolved_params(method, params)
    if method.startswith("pda") and resolved.get("reference") is None:
        from medattn.pipeline import reference_images

        resolved["reference"] = reference_images(loaded, dataset)
    return resolved


def _row(loaded: LoadedModel, dataset: Dataset, image_id: str, target: int, check: str,
         method: str, qualified: str, step: int, layer: str, other: str, seed: int | None,
         seconds: float, scores: dict[str, float]) -> dict[str, Any]:
    return {
        "image_id": image_id, "checkpoint": loaded.name, "checkpoint_hash": loaded.hash,
        "method": f"{PREFIX}{check}:{qualified}", "check": check, "explainer": method,
        "target": str(target), "target_class": dataset.classes[target], "step": step,
        "layer": layer, "other_checkpoint": other, "seed": seed, "seconds": seconds, **scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.metrics.sanity",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument("--checkpoints", nargs="+", required=True,
                        help="checkpoint paths (NAME, NAME.json or NAME.safetensors)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--images", type=int, default=5, help="first N test positives")
    parser.add_argument("--checks", nargs="+", default=["cascading", "repeatability"],
                        choices=["cascading", "repeatability"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="run folder (default .cache/runs/<dataset>-<hash>)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = load_dataset(args.dataset)
    ids = first_test_positives(dataset, args.images)
    if not ids:
        raise SystemExit(f"{dataset.root} has no test images with a positive class")
    run = Run(args.out) if args.out else Run.for_dataset(dataset, CACHE_DIR / "runs")
    rows = run_sanity(dataset, args.checkpoints, args.methods, ids, run, args.checks,
                      args.seed, args.device)
    if rows.empty:
        print("no rows (repeatability needs two checkpoints of one arch and head)")
        return 0
    summary = rows.groupby(["check", "checkpoint", "explainer", "step", "layer", "other_checkpoint"],
                           sort=True)[["ssim", "spearman"]].mean()
    print(summary.round(3).to_string())
    print(f"{len(rows)} rows in {run.root / 'scores'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
