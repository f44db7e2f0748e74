"""The committed demo checkpoints: every recipe in DEMO_MODELS is there, loads, matches its recipe
and the current demo data, reports a test mean ROC AUC of at least 0.90, and the folder stays
under 80 MB."""

from __future__ import annotations

import json

import pytest
import torch

from medattn.demo_models import COMMON, DEMO_MODELS
from medattn.inference import CHECKPOINT_DIR
from medattn.models import load_checkpoint

FOLDER_LIMIT_BYTES = 80 * 1000**2


def test_folder_holds_every_demo_model_and_stays_under_80_mb():
    missing = [name for name in DEMO_MODELS if not (CHECKPOINT_DIR / f"{name}.safetensors").is_file()]
    assert not missing, f"demo checkpoints not trained: {missing} (python -m medattn.demo_models --only ...)"
    size = sum(p.stat().st_size for p in CHECKPOINT_DIR.iterdir() if p.is_file())
    assert size < FOLDER_LIMIT_BYTES, f"checkpoints/ is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_demo_checkpoint_loads_matches_its_recipe_and_reaches_the_auc(name):
    if not (CHECKPOINT_DIR / f"{name}.safetensors").is_file():
        pytest.skip(f"{name} not trained (reported by the folder test)")
    recipe = dict(COMMON, **DEMO_MODELS[name])
    model, meta = load_checkpoint(CHECKPOINT_DIR / name)
    assert (meta["arch"], meta["head"], meta["input_size"], meta["dtype"]) == (
        recipe["arch"], recipe["head"], recipe["input_size"], recipe["dtype"])
    for key in ("lr", "epochs", "batch_size", "seed"):
        assert meta["training"][key] == recipe[key], key
    assert meta["classes"] == ["nodule", "opacity", "effusion"]
    assert meta["metrics"]["test"]["roc_auc_mean"] >= 0.90
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, meta["input_size"], meta["input_size"]))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert json.loads((CHECKPOINT_DIR / f"{name}.json").read_text())["sha256"] == meta["sha256"]
