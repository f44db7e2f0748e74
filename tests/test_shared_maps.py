"""Shared work in precompute (issue 22, item 2): the maps of an image's target classes and of a
batch's images explained together (one forward pass per distinct image) equal the maps of one
call per image and target, to float32 rounding; same cache keys, same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medattn.data import load_dataset
from medattn.explain import explain, get_explainer
from medattn.explain.shared import distinct_rows, duplicate_groups
from medattn.inference import load_model
from medattn.jobs.precompute import precompute
from medattn.models import build
from medattn.pipeline import compute_map, compute_maps
from medattn.store import HeatmapCache, Run

SHARED = ["saliency", "integrated_gradients", "guided_backprop", "gradcam", "guided_gradcam", "wildcat", "attention"]
PARAMS = {"integrated_gradients": {"steps": 12}}
SIZE = 64


def close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to float32 rounding, relative to the map's scale (convolutions on another batch size
    sum in another order)."""
    scale = float(np.abs(want).max()) or 1.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"wildcat": build("resnet18", "wildcat", 3).eval(), "mldam": build("resnet18", "mldam", 3).eval()}


def test_the_shared_methods_are_marked_and_only_they():
    marked = sorted(m for m in SHARED if get_explainer(m).batch_invariant)
    assert marked == sorted(SHARED)
    assert not any(get_explainer(m).batch_invariant for m in ("smoothgrad", "smoothgrad_ig", "occlusion", "pda"))


@pytest.mark.parametrize("method", SHARED)
def test_a_stacked_batch_gives_each_image_and_targets_own_map(method, models):
    """Image 0 three times (targets 0, 1, 2) and image 1 once, in one call, against four calls."""
    model = models["mldam" if method == "attention" else "wildcat"]
    torch.manual_seed(1)
    images = torch.randn(2, 3, SIZE, SIZE)
    rows, targets = [0, 0, 1, 0], [0, 1, 0, 2]
    params = PARAMS.get(method, {})
    together = explain(model, images[rows], targets, method, device="cpu", **params)
    assert together.shape == (4, SIZE, SIZE)
    for i, (row, target) in enumerate(zip(rows, targets)):
        close(together[i], explain(model, images[row:row + 1], target, method, device="cpu", **params))
    if method not in ("attention",):  # class-agnostic: one map for every target
        assert not np.allclose(together[0], together[1])  # the targets' maps differ: not one map reused


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "guided_backprop", "wildcat"])
def test_an_image_with_several_targets_runs_the_model_once_per_pass(method):
    """Three targets of one image: the rows of one target through the backbone, not three
    (counted in the passes the map is made of: gradients, or the forward of a forward-only
    method; integrated gradients' completeness check adds two rows per target)."""
    torch.manual_seed(0)
    model = build("resnet18", "wildcat", 3).eval()  # fresh: its evaluation copy gets the hook
    image = torch.randn(1, 3, SIZE, SIZE)
    rows = []

    def count(module, inputs, output):
        if torch.is_grad_enabled() or method == "wildcat":
            rows.append(len(inputs[0]))

    model.backbone.register_forward_hook(count)
    params = PARAMS.get(method, {})
    explain(model, image, 0, method, device="cpu", batch_size=64, **params)  # builds the evaluation copy
    rows.clear()
    explain(model, image, 0, method, device="cpu", batch_size=64, **params)
    one = sum(rows)
    rows.clear()
    explain(model, image.expand(3, -1, -1, -1).clone(), [0, 1, 2], method, device="cpu", batch_size=64, **params)
    assert one > 0 and sum(rows) == one


def test_duplicate_groups_join_equal_rows_only():
    x = torch.randn(5, 3, 8, 8)
    x[2] = x[0]
    x[4] = x[0]
    x[3] = x[1]
    x[3, 0, 0, 0] += 1e-6  # differs in one element: its own row
    assert duplicate_groups(x) == [[0, 2, 4], [1], [3]]
    distinct, index = distinct_rows(x)
    assert torch.equal(distinct[index], x)


def test_compute_maps_equals_compute_map_per_pair_with_the_same_cache_keys(tiny_demo, tiny_checkpoint, tmp_path):
    dataset = load_dataset(tiny_demo)
    loaded = load_model(tiny_checkpoint, "cpu")
    ids = list(dataset.split("test").index[:3])
    pairs = [(ids[0], 0), (ids[0], 1), (ids[1], 2), (ids[2], 0), (ids[0], 2)]
    for method in ("saliency", "gradcam", "integrated_gradients", "wildcat"):
        params = PARAMS.get(method)
        shared, alone = HeatmapCache(tmp_path / f"{method}-shared"), HeatmapCache(tmp_path / f"{method}-alone")
        together = compute_maps(loaded, dataset, pairs, method, params, shared)
        for (image_id, target), result in zip(pairs, together):
            want = compute_map(loaded, dataset, image_id, method, target, params, alone)
            close(result.raw, want.raw)
            close(result.display, want.display)
            assert result.peak == want.peak and not result.cached
        stored = sorted(p.relative_to(shared.root) for p in shared.root.rglob("*") if p.is_file())
        assert stored == sorted(p.relative_to(alone.root) for p in alone.root.rglob("*") if p.is_file())
        again = compute_maps(loaded, dataset, pairs, method, params, shared)  # from the cache, in order
        assert all(r.cached for r in again)
        for a, b in zip(again, together):
            np.testing.assert_array_equal(a.raw, b.raw)


KEYS = ["image_id", "checkpoint", "method", "target"]
SAME = ["checkpoint_hash", "target_class", "label", "probability", "predicted", "correct", "n_boxes", "split",
        "params", "scoring", "protocol", "precision", "degenerate", "hit"]


def test_precompute_shared_and_one_by_one_give_the_same_rows(tiny_demo, tiny_checkpoint, tmp_path):
    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:6])
    methods = ["saliency", "gradcam", "wildcat", "integrated_gradients", "reference:center"]
    frames = {}
    for share in (True, False):
        frames[share] = precompute(dataset, [tiny_checkpoint], methods, image_ids=ids, run=Run(tmp_path / f"run{share}"),
                                   cache=HeatmapCache(tmp_path / f"cache{share}"), device="cpu",
                                   params={"integrated_gradients": {"steps": 12}}, share=share)
        frames[share] = frames[share].sort_values(KEYS).reset_index(drop=True)
    shared, alone = frames[True], frames[False]
    assert len(shared) == len(alone) > len(ids) * len(methods) - 1
    pd.testing.assert_frame_equal(shared[KEYS + SAME], alone[KEYS + SAME])
    for column in ("auprc", "miou"):
        np.testing.assert_allclose(shared[column], alone[column], rtol=1e-4, atol=1e-6, equal_nan=True)
