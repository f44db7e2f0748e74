"""Attention-map consistency loss, after Mahapatra & Reyes 2022: a loss on the class maps alone
(no change to the architecture) that rewards maps that are distinct between classes and
compact, and needs no labels, so unlabeled images can contribute.

Each class map is turned into a spatial distribution P_c = softmax over its h·w cells. Then
- compactness: the entropy of P_c divided by log(h·w) (0 = one cell, 1 = uniform);
- distinctness: the Bhattacharyya overlap Σ_i sqrt(P_c,i · P_c',i) between two classes'
  distributions (0 = disjoint, 1 = identical).
The loss is the mean compactness plus the mean overlap over class pairs, each in [0, 1].

Without labels every class and every pair counts. With labels (B, C) 0/1 (or (B,) class
indices) compactness counts the present classes only and overlap the pairs with at least one
present class, so a present class is pushed away from every other class. Terms with nothing to
count are 0. Off by default: training adds `weight · loss` when its consistency weight is > 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def attention_consistency_loss(class_maps: Tensor, labels: Tensor | None = None) -> Tensor:
    """Scalar loss (see the module docstring) for class maps (B, C, h, w)."""
    if class_maps.ndim != 4:
        raise ValueError(f"class_maps must be (B, C, h, w), got shape {tuple(class_maps.shape)}")
    batch, classes, height, width = class_maps.shape
    weights = _class_weights(labels, batch, classes, class_maps.device)
    p = torch.softmax(class_maps.float().flatten(2), dim=2)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=2)
    spread = entropy / math.log(height * width) if height * width > 1 else torch.zeros_like(entropy)
    compactness = _weighted_mean(spread, weights)

    root = p.sqrt()
    overlap = root @ root.transpose(1, 2)
    pair_weights = torch.maximum(weights[:, :, None], weights[:, None, :])
    pair_weights = pair_weights * (1 - torch.eye(classes, device=class_maps.device))
    distinctness = _weighted_mean(overlap, pair_weights)
    return compactness + distinctness


def _class_weights(labels: Tensor | None, batch: int, classes: int, device: torch.device) -> Tensor:
    if labels is None:
        return torch.ones(batch, classes, device=device)
    labels = torch.as_tensor(labels, device=device)
    if labels.ndim == 1 and labels.shape[0] == batch and classes == 1:
        labels = labels[:, None]
    elif labels.ndim == 1 and labels.shape[0] == batch and not labels.is_floating_point():
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(f"class indices must lie in [0, {classes}), got "
                             f"{labels.min().item()}..{labels.max().item()}")
        labels = F.one_hot(labels.long(), classes)
    if tuple(labels.shape) != (batch, classes):
        raise ValueError(f"labels must be (B, C) = ({batch}, {classes}) or (B,) class indices, "
                         f"got shape {tuple(labels.shape)}")
    return (labels > 0).float()


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    total = weights.sum()
    return (values * weights).sum() / total if total > 0 else values.sum() * 0
