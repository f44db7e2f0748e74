"""Small models, inputs and maps shared by the faithfulness tests, and a Quantus loader.

Quantus 0.6.0 (a pinned test dependency) calls `np.trapz`, which NumPy 2.4 removed; `quantus()`
puts NumPy's own replacement (`np.trapezoid`, the same rule) back under the old name for the
test process, as Quantus's curves that use it need."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

SIDE = 16
CLASSES = 3


def cnn(channels: int = 1, seed: int = 0) -> nn.Module:
    """A small CNN with a BatchNorm (so the evaluation copy folds something), in eval mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                          nn.Linear(96, CLASSES))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def inputs(batch: int = 2, channels: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(x (B, C, S, S), maps (B, S, S) with distinct values, targets (B,))."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, channels, SIDE, SIDE), generator=g)
    maps = torch.rand((batch, SIDE, SIDE), generator=g) - 0.3
    return x, maps, np.arange(batch) % CLASSES


def gradient(model: nn.Module, x: torch.Tensor, targets) -> torch.Tensor:
    """Input gradient of the target logit, summed over channels: (B, H, W)."""
    x = (x[0] if isinstance(x, tuple) else x).detach().clone().requires_grad_(True)  # Captum passes tuples
    with torch.enable_grad():
        logits = model(x)
        chosen = logits.gather(1, torch.as_tensor(targets).view(-1, 1).expand(len(x), 1)).sum()
        (grad,) = torch.autograd.grad(chosen, x)
    return grad.sum(dim=1).detach()


def quantus():
    """The quantus module (skip when absent), usable under NumPy 2.4 (module docstring)."""
    module = pytest.importorskip("quantus")
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    return module
