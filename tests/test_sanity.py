"""Sanity checks: cascading randomisation and repeatability rows, on the tiny trained model."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from medattn.data import load_dataset
from medattn.inference import load_model
from medattn.metrics.sanity import (cascading_maps, first_test_positives, main,
                                    randomization_blocks, repeatability, run_sanity)
from medattn.models import build
from medattn.store import Run
from medattn.store import HeatmapCache

LAYERS = ["none", "head", "backbone.stages.2", "backbone.stages.1", "backbone.stages.0"]
COLUMNS = {"image_id", "checkpoint", "checkpoint_hash", "method", "check", "explainer", "target",
           "target_class", "step", "layer", "other_checkpoint", "seed", "seconds", "ssim",
           "spearman"}


@pytest.fixture(scope="module")
def setup(tiny_demo, tiny_checkpoint):
    dataset = load_dataset(tiny_demo)
    return dataset, load_model(tiny_checkpoint, "cpu"), first_test_positives(dataset, 2)


def test_blocks_go_from_the_head_down():
    assert randomization_blocks(build("resnet18", "linear", 3)) == [
        ("head", ["classifier"]), ("backbone.stages.2", ["backbone.stages.2"]),
        ("backbone.stages.1", ["backbone.stages.1"]), ("backbone.stages.0", ["backbone.stages.0"])]
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    assert [label for label, _ in randomization_blocks(plain)] == ["3", "0"]


def test_cascading_rows_start_at_one_and_drop(setup, tmp_path):
    dataset, loaded, ids = setup
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    run = Run(tmp_path / "run")
    rows = run_sanity(dataset, [loaded], ["gradcam", "saliency"], ids, run, checks=["cascading"])
    assert COLUMNS <= set(rows.columns)
    assert len(rows) == 2 * len(ids) * len(LAYERS)
    stored = run.scores.read()  # every step survives the table's one-row-per-key rule
    assert len(stored) == len(rows) and stored["method"].str.startswith("sanity:cascading:").all()
    for method in ("gradcam", "saliency"):
        mine = rows[rows["explainer"] == method].sort_values(["image_id", "step"])
        assert list(mine["layer"][: len(LAYERS)]) == LAYERS
        assert set(mine["method"]) == {f"sanity:cascading:{method}@{k}" for k in range(len(LAYERS))}
        first, last = mine[mine["step"] == 0], mine[mine["step"] == len(LAYERS) - 1]
        np.testing.assert_allclose(first["ssim"], 1.0, atol=1e-6)
        np.testing.assert_allclose(first["spearman"], 1.0, atol=1e-6)
        assert last["ssim"].mean() < 0.9, method
    # the checkpoint's model is untouched
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def test_cascading_is_deterministic_for_a_seed(setup):
    dataset, loaded, ids = setup
    x = loaded.to_input(dataset.read_image(ids[0]))
    a = cascading_maps(loaded.model, x, 0, "gradcam", seed=1)
    b = cascading_maps(loaded.model, x, 0, "gradcam", seed=1)
    c = cascading_maps(loaded.model, x, 0, "gradcam", seed=2)
    for (_, _, ma, _), (_, _, mb, _) in zip(a, b):
        np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(a[-1][2], c[-1][2])


def test_repeatability_of_a_model_with_itself_is_one(setup, tmp_path):
    dataset, loaded, ids = setup
    rows = repeatability([loaded, loaded], dataset, ids, "gradcam", cache=HeatmapCache(tmp_path))
    assert len(rows) == len(ids) and COLUMNS <= set(rows.columns)
    assert (rows["method"] == f"sanity:repeatability:gradcam@{loaded.name}").all()
    np.testing.assert_allclose(rows[["ssim", "spearman"]].to_numpy(), 1.0, atol=1e-6)
    other = dataclasses.replace(loaded, meta={**loaded.meta, "head": "linear"})
    with pytest.raises(ValueError, match="one arch and head"):
        repeatability([loaded, other], dataset, ids, "gradcam")
    with pytest.raises(ValueError, match="two or more"):
        repeatability([loaded], dataset, ids, "gradcam")


def test_cli_writes_rows(tiny_demo, tiny_checkpoint, tmp_path, capsys):
    twin = tmp_path / "twin"  # the same weights under a second name: a repeatability pair
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), twin.with_suffix(suffix))
    out = tmp_path / "run"
    assert main(["--dataset", str(tiny_demo), "--checkpoints", str(tiny_checkpoint), str(twin),
                 "--methods", "gradcam", "--images", "1", "--out", str(out), "--device", "cpu"]) == 0
    stored = Run(out).scores.read()
    assert set(stored["check"]) == {"cascading", "repeatability"}
    assert len(stored) == 2 * len(LAYERS) + 1  # each copy cascades; one repeatability pair
    assert "backbone.stages.0" in capsys.readouterr().out


def test_a_checkpoint_named_by_both_of_its_files_is_one_checkpoint(tiny_demo, tiny_checkpoint, tmp_path, capsys):
    """`--checkpoints checkpoints/NAME*` (a glob: NAME.json NAME.safetensors) used to load it
    twice: repeatability compared it with itself (1.000, a pass for any method) and every
    cascading row came twice."""
    out = tmp_path / "run"
    files = [str(tiny_checkpoint.with_suffix(suffix)) for suffix in (".json", ".safetensors")]
    assert main(["--dataset", str(tiny_demo), "--checkpoints", *files, str(tiny_checkpoint),
                 "--methods", "gradcam", "--images", "1", "--out", str(out), "--device", "cpu"]) == 0
    stored = Run(out).scores.read()
    assert set(stored["check"]) == {"cascading"} and len(stored) == len(LAYERS)


def test_cascading_runs_inside_a_class_mapped_cropping_import(setup, tiny_checkpoint, tmp_path):
    """An imported checkpoint that predicts the dataset's classes in another order (answered
    through its class mapping) and sees a centre crop: the cascade randomises the imported
    network's own blocks, and the maps are compared in the image frame."""
    import json

    from medattn.data.preprocess import Preprocessing

    dataset, loaded, ids = setup
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_checkpoint.with_name(tiny_checkpoint.name + suffix), tmp_path / f"imported{suffix}")
    meta = json.loads((tmp_path / "imported.json").read_text())
    size = loaded.input_size
    meta["classes"] = list(reversed(meta["classes"]))
    meta["preprocessing"] = Preprocessing(resize="shorter_side_center_crop", size=size + 16, crop=size).to_meta()
    (tmp_path / "imported.json").write_text(json.dumps(meta))
    rows = run_sanity(dataset, [tmp_path / "imported"], ["gradcam"], ids[:1], Run(tmp_path / "run"),
                      checks=["cascading"], device="cpu")
    assert list(rows.sort_values("step")["layer"]) == LAYERS
    np.testing.assert_allclose(rows[rows["step"] == 0]["ssim"], 1.0, atol=1e-6)
    assert rows[rows["step"] == len(LAYERS) - 1]["ssim"].mean() < 0.9


@pytest.mark.parametrize("library, callable_name, kwargs, stages", [
    ("torchvision", "torchvision.models.resnet18", {}, ["net.layer4.1", "net.layer3", "net.layer2", "net.layer1"]),
    ("torchxrayvision", "torchxrayvision.models.DenseNet", {"num_init_features": 8, "growth_rate": 4,
                                                           "block_config": [1, 1, 1]},
     ["net.features.denseblock3", "net.features.denseblock2", "net.features.denseblock1"]),
    ("timm", "timm.create_model", {"model_name": "vit_tiny_patch16_224", "depth": 3, "img_size": 32},
     ["net.blocks.2", "net.blocks.1", "net.blocks.0"]),
])
def test_imported_models_are_randomised_stage_by_stage_in_quantus_layer_order(library, callable_name, kwargs, stages):
    """The cascade raised "unknown arch" on any imported model and would have randomised it in
    one step (issue 17): its stages come from the module tree, each a run of Quantus's layers."""
    from medattn.data.preprocess import Preprocessing
    from medattn.metrics.sanity import initial_weights, mprt_layers
    from medattn.models.external import ExternalModel

    torch.manual_seed(0)
    channels = 1 if library == "torchxrayvision" else 3
    model = ExternalModel(library, callable_name, 3, kwargs).eval()
    blocks = randomization_blocks(model)
    labels = [label for label, _ in blocks]
    assert [label for label in labels if label in stages] == stages  # every stage, top first
    # the blocks cut Quantus's top-down layer order into consecutive runs
    owner = [next(i for i, (_, names) in enumerate(blocks) if any(layer == n or layer.startswith(n + ".") for n in names))
             for layer in mprt_layers(model) if any(layer == n or layer.startswith(n + ".") for _, ns in blocks for n in ns)]
    assert owner == sorted(owner)
    assert set(initial_weights(model, 0)) == set(model.state_dict())
    size = 32 if "vit" in str(kwargs) else 64
    prep = Preprocessing(size=size, channels=channels, intensity="xrv" if channels == 1 else "imagenet")
    model.preprocessing = prep
    x = prep.to_input(np.random.default_rng(0).random((size, size), dtype=np.float32))
    maps = cascading_maps(model, x, 1, "integrated_gradients", {"steps": 4}, seed=1, device="cpu")
    assert [layer for _, layer, _, _ in maps] == ["none", *labels]
    assert all(np.isfinite(raw).all() for _, _, raw, _ in maps)
    assert not np.allclose(maps[0][2], maps[-1][2])
