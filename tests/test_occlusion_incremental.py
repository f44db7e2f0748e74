"""Occlusion through incremental inference (Krypton) gives Captum's occlusion map."""

from __future__ import annotations

import pytest
import torch
import torchvision
from captum import attr
from torch import nn

from medattn.explain.base import evaluation_model
from medattn.explain.fills import image_fill
from medattn.explain.gradients import Occlusion
from medattn.explain.incremental import _reach_of, plan
from medattn.models import build


def captum_map(model: nn.Module, x: torch.Tensor, target: int, window: int, stride: int) -> torch.Tensor:
    with torch.no_grad():
        return attr.Occlusion(model.eval()).attribute(
            x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
            baselines=image_fill(model, x, "black"), target=target, perturbations_per_eval=16).mean(1)


@pytest.mark.parametrize("arch, head, size", [
    ("resnet18", "wildcat", (64, 64)),
    ("resnet50", "linear", (64, 48)),
    ("densenet121", "linear", (64, 64)),
    ("mobilenet_v2", "recurrent", (64, 64)),
    ("mobilenet_v3_small", "linear", (64, 64)),  # squeeze-and-excitation in the first stage
    ("resnet18", "mldam", (60, 52)),  # sides not divisible by every stride; clipped windows
])
def test_incremental_occlusion_equals_captums(arch, head, size):
    torch.manual_seed(0)
    model = build(arch, head, 3).eval()
    x = torch.randn(1, 3, *size)
    with torch.inference_mode(), evaluation_model(model, x) as fast:
        assert plan(fast, model, x, (16, 16), 0.0) is not None
        assert plan(fast, model, x, (16, 16), image_fill(model, x, "black")[0, :, :1, :1]) is not None
    ours = Occlusion(model, device="cpu", precision="float32").attribute(x, 2, window=16, stride=8)[0]
    expected = captum_map(model, x, 2, 16, 8)[0]
    with torch.no_grad():
        logit = float(model(x)[0, 2].abs())
    assert float((ours - expected).abs().max()) <= 1e-4 * float(expected.abs().max()) + 1e-6 * (1 + logit)


def test_models_without_backbone_stages_use_the_full_model():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode(), evaluation_model(model, x) as fast:
        assert plan(fast, model, x, (16, 16), 0.0) is None
        assert plan(model, model, x, (16, 16), 0.0) is None  # never modifies the caller's model
    ours = Occlusion(model, device="cpu").attribute(x, 1, window=16, stride=8)[0]
    expected = captum_map(model, x, 1, 16, 8)[0]
    assert float((ours - expected).abs().max()) <= 1e-4 * float(expected.abs().max())


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))


@pytest.mark.parametrize("module, expected", [
    (nn.Conv2d(4, 4, 7, stride=2, padding=3), ((2, 2), (3, 3), (3, 3))),
    (nn.Conv2d(4, 4, 3, padding=2, dilation=2), ((1, 1), (2, 2), (2, 2))),
    (nn.Conv2d(4, 4, (1, 3), padding=(0, 1)), ((1, 1), (0, 1), (0, 1))),
    (nn.MaxPool2d(3, stride=2, padding=1), ((2, 2), (1, 1), (1, 1))),
    (nn.AvgPool2d(2), ((2, 2), (0, 0), (1, 1))),  # output o averages inputs 2o and 2o + 1
    (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
     ((1, 1), (2, 2), (2, 2))),
    (nn.BatchNorm2d(4), ((1, 1), (0, 0), (0, 0))),
    (SqueezeExcite(), None),  # global: reaches every output
    (nn.GroupNorm(2, 4), None),
])
def test_reach_is_read_off_the_structure(module, expected):
    assert _reach_of(module.eval(), torch.Size((1, 4, 32, 32)), torch.device("cpu")) == expected


@pytest.mark.parametrize("sampling", ["marginal", "conditional"])
def test_pixel_pda_through_the_plan_equals_the_full_model(monkeypatch, sampling):
    from medattn.explain import incremental
    from medattn.explain.pda import PredictionDifference

    torch.manual_seed(0)
    model = build("resnet18", "wildcat", 3).eval()
    x, reference = torch.randn(1, 3, 64, 64), torch.randn(6, 3, 64, 64)
    settings = dict(window=16, stride=8, samples=4, sampling=sampling, reference=reference)
    ours = PredictionDifference(model, device="cpu").attribute(x, 1, **settings)
    monkeypatch.setattr(incremental, "plan", lambda *args: None)
    full = PredictionDifference(model, device="cpu").attribute(x, 1, **settings)
    assert float((ours - full).abs().max()) <= 1e-4 * float(full.abs().max())
