"""How a layer's output is laid out, and the way to and from a (B, C, h, w) feature grid.

Grad-CAM and feature-map PDA read a layer as channels × rows × columns. Convolutional networks
give that (NCHW); Swin transformers (timm, torchvision) give channels last (B, h, w, C); vision
transformers give tokens (B, P + h·w, C), P class/distillation/register tokens first and the
patch tokens row by row. `FeatureLayout.to_grid` drops the P tokens and lays the rest out as a
grid, `from_grid` puts a grid back in the layer's own layout (with the P tokens of the original
output), so an explainer can read and replace a layer's output as a grid while the network runs
on its own layout. These are pytorch-grad-cam's `reshape_transform` conventions (tokens → grid,
prefix tokens dropped; channels-last permuted), made invertible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from medattn.errors import MedattnError


@dataclass(frozen=True)
class FeatureLayout:
    """`channels_last`: a 4-D output is (B, h, w, C); `prefix_tokens`: a 3-D output (B, N, C)
    starts with this many tokens that are not patches (1 for a class token, 2 with a
    distillation token). A 4-D output is read by `channels_last`, a 3-D one as tokens."""

    channels_last: bool = False
    prefix_tokens: int = 0

    def to_grid(self, out: Tensor) -> Tensor:
        """The layer output as (B, C, h, w). MedattnError for an output of other rank, or
        tokens that do not make a square grid (the model's input must be square)."""
        if not isinstance(out, Tensor):
            raise MedattnError(f"the layer outputs {type(out).__name__}, not a feature map")
        if out.ndim == 4:
            return out.permute(0, 3, 1, 2) if self.channels_last else out
        if out.ndim == 3:
            patches = out.shape[1] - self.prefix_tokens
            side = math.isqrt(max(patches, 0))
            if patches <= 0 or side * side != patches:
                raise MedattnError(f"the layer outputs {out.shape[1]} tokens; less {self.prefix_tokens} prefix "
                                   f"token(s) they make no square grid of patches")
            grid = out[:, self.prefix_tokens:]
            return grid.reshape(out.shape[0], side, side, out.shape[2]).permute(0, 3, 1, 2)
        raise MedattnError(f"the layer outputs a tensor of shape {tuple(out.shape)}, not a feature map")

    def from_grid(self, grid: Tensor, like: Tensor) -> Tensor:
        """`grid` (N, C, h, w) in the layout of `like`, the layer's original output (its prefix
        tokens, repeated to N, are put back in front)."""
        if like.ndim == 4:
            return grid.permute(0, 2, 3, 1) if self.channels_last else grid
        tokens = grid.flatten(2).transpose(1, 2)
        if not self.prefix_tokens:
            return tokens
        prefix = like[:, :self.prefix_tokens].expand(len(grid), -1, -1)
        return torch.cat([prefix, tokens], dim=1)


NCHW = FeatureLayout()
