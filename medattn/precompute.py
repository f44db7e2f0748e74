"""Batch heatmaps and scores over a dataset split: `python -m medattn.precompute --help`.

Writes, under the output folder (default `.cache/runs/<dataset>-<hash>`):
- `predictions/<checkpoint>.parquet`: class probabilities per image;
- `scores/part-*.parquet`: one row per image × checkpoint × method × target class with the
  prediction, the label, every localization metric and the timing.
Finished rows are skipped on a rerun, so an interrupted run resumes where it stopped. Targets
per image are its positive classes plus the classes the model predicts (so false positives get
maps too); an image with neither is explained for its top-scoring class.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from medattn.data import load_dataset
from medattn.data.dataset import Dataset
from medattn.errors import MedattnError
from medattn.inference import LoadedModel, load_model, predict
from medattn.pipeline import CACHE_DIR, compute_map, default_cache, resolved_params, score_map
from medattn.store import HeatmapCache, ScoreTable, canonical_params

log = logging.getLogger("medattn.precompute")
FAST_METHODS = ("saliency", "integrated_gradients", "gradcam", "wildcat", "attention")


@dataclass
class Run:
    """Where one dataset's predictions and scores live."""

    root: Path

    @classmethod
    def for_dataset(cls, dataset: Dataset, base: Path = CACHE_DIR / "runs") -> "Run":
        return cls(base / f"{dataset.name}-{dataset.hash}")

    @property
    def scores(self) -> ScoreTable:
        return ScoreTable(self.root / "scores")

    def predictions_path(self, checkpoint: str) -> Path:
        return self.root / "predictions" / f"{checkpoint}.parquet"

    def predictions(self, loaded: LoadedModel, dataset: Dataset, image_ids: Sequence[str]) -> pd.DataFrame:
        """Probabilities for these images, computed once per checkpoint and stored."""
        path = self.predictions_path(loaded.name)
        stored = pd.read_parquet(path) if path.exists() else None
        if stored is None or (stored["checkpoint_hash"] != loaded.hash).any():
            stored = None  # predictions of an older version of this checkpoint: redo
        missing = [i for i in image_ids if stored is None or i not in stored.index]
        if missing:
            fresh = predict(loaded, dataset, missing)
            fresh["checkpoint_hash"] = loaded.hash
            stored = fresh if stored is None else pd.concat([stored, fresh])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            stored.to_parquet(tmp)
            tmp.replace(path)
        return stored.loc[list(image_ids), loaded.classes]


def targets_for(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> list[int]:
    """Positive classes ∪ predicted classes; the top class when both are empty."""
    chosen = sorted(set(np.flatnonzero(labels > 0)) | set(np.flatnonzero(probabilities >= threshold)))
    return [int(c) for c in chosen] or [int(np.argmax(probabilities))]


def precompute(
    dataset: Dataset,
    checkpoints: Sequence[str | Path],
    methods: Sequence[str],
    split: str | None = "test",
    image_ids: Sequence[str] | None = None,
    run: Run | None = None,
    cache: HeatmapCache | None = None,
    device: str = "auto",
    params: dict[str, dict] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Compute every missing row and return the full score table of the run."""
    run = run or Run.for_dataset(dataset)
    cache = cache or default_cache()
    ids = list(image_ids) if image_ids is not None else list(dataset.split(split).index if split else dataset.images.index)
    unknown = [i for i in ids if i not in dataset.images.index]
    if unknown:
        raise SystemExit(f"image ids not in {dataset.root}/images.csv: {', '.join(unknown[:10])}")
    table = run.scores
    done = table.done_keys()
    models = [load_model(path, device) for path in checkpoints]
    for loaded in models:
        loaded.check_classes(dataset)
    jobs = []
    for loaded in models:
        probabilities = run.predictions(loaded, dataset, ids)
        for image_id in ids:
            labels = dataset.labels(image_id)
            probs = probabilities.loc[image_id].to_numpy(dtype=float)
            for target in targets_for(labels, probs):
                for method in methods:
                    if (image_id, loaded.name, method, str(target)) not in done:
                        jobs.append((loaded, image_id, target, method, probs[target], labels[target]))
    bar = tqdm(total=len(jobs), desc="heatmaps", file=sys.stderr, disable=progress is not None)
    pending: list[dict] = []
    for number, (loaded, image_id, target, method, probability, label) in enumerate(jobs, 1):
        method_args = (params or {}).get(method, {})
        try:
            result = compute_map(loaded, dataset, image_id, method, target, method_args, cache)
        except (ValueError, MedattnError) as exc:  # e.g. wildcat maps asked of a linear model
            log.warning("%s on %s: %s", method, loaded.name, exc)
            continue
        boxes = dataset.boxes_for(image_id, dataset.classes[target])
        pending.append(
            {
                "image_id": image_id, "checkpoint": loaded.name, "checkpoint_hash": loaded.hash,
                "model": loaded.label, "method": method, "target": str(target),
                "target_class": dataset.classes[target], "label": int(label),
                "probability": float(probability), "predicted": int(probability >= 0.5),
                "correct": int((probability >= 0.5) == bool(label)), "n_boxes": len(boxes),
                "split": str(dataset.images.at[image_id, "split"]), "seconds": result.seconds,
                "cached": result.cached, "params": canonical_params({k: v for k, v in resolved_params(method, method_args).items() if k != "reference"}),
                **score_map(result.display, boxes),
            }
        )
        if len(pending) >= 200:
            table.append(pending)
            pending = []
        bar.update()
        if progress is not None:
            progress(number, len(jobs))
    table.append(pending)
    bar.close()
    return table.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.precompute", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint paths (NAME, NAME.json or NAME.safetensors)")
    parser.add_argument("--methods", nargs="+", default=list(FAST_METHODS))
    parser.add_argument("--split", default="test", help="train, val, test or all")
    parser.add_argument("--images", nargs="*", help="only these image ids")
    parser.add_argument("--out", type=Path, help="run folder (default .cache/runs/<dataset>-<hash>)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = load_dataset(args.dataset)
    run = Run(args.out) if args.out else Run.for_dataset(dataset)
    split = None if args.split == "all" else args.split
    frame = precompute(dataset, args.checkpoints, args.methods, split, args.images, run, device=args.device)
    summary = frame[frame["n_boxes"] > 0].groupby(["checkpoint", "method"])[["auprc", "hit", "miou"]].mean()
    print(summary.round(3).to_string() if len(summary) else "no rows with boxes")
    print(f"{len(frame)} rows in {run.root / 'scores'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
