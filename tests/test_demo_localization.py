"""The trained demo WILDCAT model localizes its lesions: its maps' box AUPRC on test positives
is at least twice that of a random-weights model of the same architecture (issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.data import load_dataset
from medattn.data.demo import ensure_demo
from medattn.inference import CHECKPOINT_DIR, LoadedModel, load_model
from medattn.models import build
from medattn.pipeline import compute_map, score
from medattn.store import HeatmapCache

CHECKPOINT = CHECKPOINT_DIR / "demo_resnet18_wildcat"
IMAGES = 16


@pytest.fixture(scope="module")
def setting():
    if not CHECKPOINT.with_suffix(".json").exists():
        pytest.fail(f"demo checkpoint {CHECKPOINT} is missing; train it with python -m medattn.demo_models")
    dataset = load_dataset(ensure_demo())
    trained = load_model(CHECKPOINT, "cpu")
    torch.manual_seed(0)
    random_model = build(trained.meta["arch"], trained.meta["head"], len(trained.classes), **trained.meta["params"]).eval()
    for parameter in random_model.parameters():
        parameter.requires_grad_(False)
    random = LoadedModel("random", CHECKPOINT, random_model, trained.meta, trained.device, "random-weights", trained.classes)
    test = dataset.boxes[dataset.boxes["image_id"].isin(dataset.split("test").index)]
    pairs = test[["image_id", "label"]].drop_duplicates().sort_values(["image_id", "label"]).head(IMAGES)
    return dataset, trained, random, list(pairs.itertuples(index=False))


@pytest.mark.parametrize("method", ["wildcat", "gradcam", "integrated_gradients"])
def test_trained_wildcat_localizes_twice_as_well_as_random(setting, method, tmp_path):
    dataset, trained, random, pairs = setting
    cache = HeatmapCache(tmp_path)
    scores = {}
    for loaded in (trained, random):
        values = []
        for image_id, label in pairs:
            target = dataset.classes.index(label)
            result = compute_map(loaded, dataset, image_id, method, target, cache=cache)
            values.append(score(result.raw, method, dataset.boxes_for(image_id, label), result.display.shape, loaded.preprocessing)["auprc"])
        scores[loaded.name] = float(np.nanmean(values))
    assert scores[trained.name] >= 2 * scores["random"], scores
