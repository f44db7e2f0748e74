"""Explainer passes sized by the model's cost (medattn.explain.work_size): multiply-accumulates
counted as the literature counts them, batch sizes that depend on the model alone, and maps
that do not depend on the batch size beyond float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from medattn.explain import explain, work_size


def test_macs_match_the_published_count_for_resnet18_and_densenet121():
    # torchvision's model docs: ResNet-18 1.81 GFLOPS, DenseNet-121 2.83 GFLOPS at 224 px (multiply-accumulates)
    for build, published in ((torchvision.models.resnet18, 1.81e9), (torchvision.models.densenet121, 2.83e9)):
        model = build().eval()
        counted = work_size.macs(model, torch.zeros(1, 3, 224, 224))
        assert abs(counted - published) / published < 0.01, (build.__name__, counted)
        assert work_size.known_macs(model, (3, 224, 224)) == counted  # counted once


def test_batch_size_follows_the_model_not_the_machine():
    big, small = torchvision.models.densenet121().eval(), torchvision.models.resnet18().eval()
    x = torch.zeros(1, 3, 224, 224)
    sized = work_size.batch_size(big, x)
    assert sized is not None and sized < 8 and sized == work_size.batch_size(big, x)
    assert work_size.batch_size(big, x, backward=False) > sized  # a forward alone costs a third
    assert work_size.batch_size(small, torch.zeros(1, 3, 32, 32)) is None  # cheap: the explainer's default


@pytest.mark.parametrize("method,params", [("integrated_gradients", {"steps": 10}), ("smoothgrad", {"n_samples": 6}),
                                           ("occlusion", {"window": 12, "stride": 6}),
                                           ("pda", {"window": 12, "stride": 6, "samples": 3})])
def test_batch_size_changes_a_map_only_by_rounding(method, params):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.rand(1, 3, 48, 48)
    if method == "pda":
        params = {**params, "reference": torch.rand(4, 3, 48, 48)}
    a = explain(model, x, 1, method, device="cpu", batch_size=32, **params)
    b = explain(model, x, 1, method, device="cpu", batch_size=3, **params)
    # gradients of a deep ReLU network turn at kinks that float32 rounding moves: integrated
    # gradients differ by up to ~1e-3 of the map's maximum, the others by ~1e-5
    assert np.abs(a - b).max() <= (2e-3 if method == "integrated_gradients" else 1e-4) * np.abs(a).max()


def test_compare_previews_are_sized_to_the_model_once_its_cost_is_counted(tiny_checkpoint, monkeypatch):
    """Compare's previews take about PREVIEW_SECONDS of the model's work: a model that costs
    much (here: a machine made 1e6 times slower) gets fewer IG steps and fewer PDA windows; until
    its cost is counted, the demo-sized defaults."""
    from medattn.inference import load_model
    from medattn.ui import compare_grid

    loaded = load_model(tiny_checkpoint, "cpu")
    assert compare_grid._preview_params(loaded, "integrated_gradients", "medattn")["steps"] == 8
    default_pda = compare_grid._preview_params(loaded, "pda", "medattn")
    monkeypatch.setattr(work_size, "MACS_PER_SECOND", work_size.MACS_PER_SECOND / 1e6)
    work_size.macs(loaded.model, loaded.constant_input())
    assert compare_grid._preview_params(loaded, "integrated_gradients", "medattn")["steps"] == 4
    sized = compare_grid._preview_params(loaded, "pda", "medattn")
    assert sized["window"] > default_pda["window"] and sized["stride"] == sized["window"]
