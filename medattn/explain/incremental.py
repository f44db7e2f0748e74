"""Incremental inference for occlusion (Krypton: Nakandala, Kumar & Papakonstantinou,
"Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations",
SIGMOD 2019, section 3).

Why: an occluded copy differs from the image only inside its window, and a local operation's
output changes only where its receptive field overlaps a change. Through the backbone's first
stage (local operations only: ResNet's stem to layer2, DenseNet's to denseblock2, MobileNet's
first blocks), each copy is computed only on the region its window reaches at that depth plus
the margin that region's outputs read, then pasted into the image's own activations; the rest
of the network runs on whole feature maps. Where a region grows to the whole feature map, the
copies switch to whole-map computation from that operation on.

Exact up to floating-point rounding. Each operation's stride and reach are read off its structure
(`_reach_of`) and every plan is checked against the full model on three occluded copies before
use. `plan` returns None, and the caller runs the full
model, for a model without `backbone.stages`, a model that is its own evaluation copy (it must
not be modified), or a failed check.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from medattn.explain.base import ChannelsLast

CL = torch.channels_last


@dataclass(frozen=True)
class _Unit:
    """One local operation of the first stage, with its geometry on this image.

    stride: input cells per output cell, per axis. before/after: output cell o reads input cells
    o·stride − before … o·stride + after (per axis). inp/out: the image's own input and output,
    (1, C, H, W)."""

    module: nn.Module
    stride: tuple[int, int]
    before: tuple[int, int]
    after: tuple[int, int]
    inp: Tensor
    out: Tensor


class _Given(nn.Module):
    """Stands in for the first stage: returns the feature maps computed incrementally."""

    def __init__(self, value: Tensor):
        super().__init__()
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        return self.value


class OcclusionPlan:
    """Class scores of occluded copies of one image, computed incrementally (see the module
    docstring). Build with `plan`."""

    def __init__(self, fast: nn.Module, stages: nn.ModuleList, units: list[_Unit],
                 rest: list[nn.Module], x: Tensor):
        self.fast, self.stages, self.units, self.rest, self.x = fast, stages, units, rest, x

    def logits(self, corners: Sequence[tuple[int, int]], window: tuple[int, int],
               fill: float | Tensor) -> Tensor:
        """Scores (n, K) of the model on the image with, for each corner (row, col), the
        window [row, row + window) × [col, col + window) (clipped to the image) set to `fill`:
        a value, one value per channel (C, 1, 1), or each copy's window contents
        (n, C, window, window) (windows inside the image)."""
        _, _, height, width = self.x.shape
        n = len(corners)
        # the changed region at each depth: a fixed size per batch, a start per copy
        size = (min(window[0], height), min(window[1], width))
        starts = [(min(r, height - size[0]), min(c, width - size[1])) for r, c in corners]
        patch = torch.stack([self.x[0, :, r:r + size[0], c:c + size[1]] for r, c in starts]).clone()
        for i, ((r, c), (r0, c0)) in enumerate(zip(corners, starts)):
            patch[i, :, r - r0:r - r0 + window[0], c - c0:c - c0 + window[1]] = \
                fill[i] if isinstance(fill, Tensor) and fill.ndim == 4 else fill
        base, done = self.x, 0
        for unit in self.units:
            rows = _reach(size[0], [s[0] for s in starts], unit, 0)
            cols = _reach(size[1], [s[1] for s in starts], unit, 1)
            if rows is None and cols is None:
                break  # the change reaches the whole map: compute whole maps from here
            patch, starts, size = _step(unit, patch, starts, size, rows, cols)
            base, done = unit.out, done + 1
        features = self._paste(base, patch, starts)
        for module in [u.module for u in self.units[done:]] + self.rest:
            features = module(features)
        first = self.stages[0]
        self.stages[0] = _Given(features)
        try:
            return self.fast(self.x.expand(n, -1, -1, -1))
        finally:
            self.stages[0] = first

    @staticmethod
    def _paste(base: Tensor, patch: Tensor, starts: list[tuple[int, int]]) -> Tensor:
        out = base.expand(len(patch), -1, -1, -1).contiguous(memory_format=CL)
        h, w = patch.shape[2:]
        for i, (r, c) in enumerate(starts):
            out[i, :, r:r + h, c:c + w] = patch[i]
        return out


def plan(fast: nn.Module, model: nn.Module, x: Tensor, window: tuple[int, int],
         fill: float | Tensor) -> OcclusionPlan | None:
    """An OcclusionPlan for image x (1, C, H, W) on `fast` (an `evaluation_model` copy of
    `model`), checked against the full model for this window and fill (a value, or one per
    channel (C, 1, 1)); None where it does not apply or the check fails."""
    if fast is model:
        return None
    inner = fast.model if isinstance(fast, ChannelsLast) else fast
    stages = getattr(getattr(inner, "backbone", None), "stages", None)
    if not isinstance(stages, nn.ModuleList) or len(stages) == 0:
        return None
    x = x.detach().contiguous(memory_format=CL)
    units: list[_Unit] = []
    rest: list[nn.Module] = []
    a = x
    for module in _leaves(stages[0]):
        out = module(a)
        unit = None if rest else _measure(module, a, out)
        if unit is None:
            rest.append(module)
        else:
            units.append(unit)
        a = out
    if not units:
        return None
    candidate = OcclusionPlan(fast, stages, units, rest, x)
    _, _, height, width = x.shape
    corners = [(0, 0), ((height - window[0]) // 2, (width - window[1]) // 2),
               (max(0, height - window[0]), max(0, width - window[1]))]
    occluded = x.expand(len(corners), -1, -1, -1).clone()
    for i, (r, c) in enumerate(corners):
        occluded[i, :, r:r + window[0], c:c + window[1]] = fill
    expected = fast(occluded)
    got = candidate.logits(corners, window, fill)
    if not (isinstance(expected, Tensor) and got.shape == expected.shape and torch.allclose(
            got, expected, rtol=1e-3, atol=1e-4 * (1 + float(expected.abs().max())))):
        return None
    return candidate


def _leaves(module: nn.Module) -> Iterator[nn.Module]:
    """The operations of a (nested) nn.Sequential in order, without identities (folded BNs)."""
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _leaves(child)
    elif not isinstance(module, nn.Identity):
        yield module


def _measure(module: nn.Module, inp: Tensor, out: Tensor) -> _Unit | None:
    """The unit's stride and reach; None if it is not a local map-to-map operation."""
    if not (isinstance(out, Tensor) and out.ndim == 4 and inp.ndim == 4):
        return None
    (height, width), (h_out, w_out) = inp.shape[2:], out.shape[2:]
    if h_out == 0 or w_out == 0 or height % h_out or width % w_out:
        return None
    key = (tuple(inp.shape[1:]), inp.device)
    geometry = _GEOMETRY.setdefault(module, {})
    if key not in geometry:
        geometry[key] = _reach_of(module, inp.shape, inp.device)
    if geometry[key] is None:
        return None
    stride, before, after = geometry[key]
    return _Unit(module, stride, before, after, inp, out)


_GEOMETRY: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _reach_of(module: nn.Module, shape: torch.Size, device: torch.device
              ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """(stride, before, after) of `module` for inputs of `shape`, from its structure: which
    outputs change when one input cell changes, on a float64 copy whose weights are all positive
    (convolutions and linear layers sum their inputs, normalisations pass them unchanged), so
    that no connection can cancel or be switched off by a ReLU. Probed at each phase of the
    stride, near the centre. None when the change reaches a whole output axis from the centre
    (a global operation such as squeeze-and-excitation or GroupNorm) or nothing changes."""
    probe = copy.deepcopy(module).to(device, torch.float64).eval()
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                m.weight.fill_(1.0 / m.weight.shape[1])
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._NormBase):
                for name, value in (("running_mean", 0.0), ("running_var", 1.0), ("weight", 1.0), ("bias", 0.0)):
                    if getattr(m, name, None) is not None:
                        getattr(m, name).fill_(value)
            else:
                for p in m.parameters(recurse=False):
                    p.abs_()
        base = torch.full((1, *shape[1:]), 1e-30, dtype=torch.float64, device=device)
        reference = probe(base)
    height, width = shape[2:]
    h_out, w_out = reference.shape[2:]
    stride = (height // h_out, width // w_out)
    before, after, seen = [0, 0], [0, 0], False
    for k in range(max(stride)):
        r, c = min(height // 2 + k % stride[0], height - 1), min(width // 2 + k % stride[1], width - 1)
        bumped = base.clone()
        bumped[0, :, r, c] = 1.0
        with torch.no_grad():
            changed = (probe(bumped) != reference).any(dim=1)[0].nonzero()
        if len(changed) == 0:
            continue
        seen = True
        for axis, cell, n_out in ((0, r, h_out), (1, c, w_out)):
            lo, hi = int(changed[:, axis].min()), int(changed[:, axis].max())
            if n_out > 2 and lo == 0 and hi == n_out - 1:
                return None
            after[axis] = max(after[axis], cell - lo * stride[axis])
            before[axis] = max(before[axis], hi * stride[axis] - cell)
    if not seen:
        return None
    return stride, (before[0], before[1]), (after[0], after[1])


@dataclass(frozen=True)
class _Axis:
    """One axis of a step: the changed outputs [start, start + size) per copy, and the input
    crop [crop · stride, (crop + length) · stride) each is computed on."""

    size: int
    starts: list[int]
    crops: list[int]
    length: int


def _reach(size: int, starts: list[int], unit: _Unit, axis: int) -> _Axis | None:
    """Where a change of `size` cells at `starts` reaches in the unit's output along `axis`;
    None when it reaches the whole axis."""
    s, before, after = unit.stride[axis], unit.before[axis], unit.after[axis]
    n_out = unit.out.shape[2 + axis]
    reach = min(n_out, math.ceil((size - 1 + before + after) / s) + 1)
    if reach >= n_out:
        return None
    length = min(n_out, reach + math.ceil(before / s) + math.ceil(after / s))
    out_starts = [min(max(0, math.ceil((r - after) / s)), n_out - reach) for r in starts]
    crops = [min(max(0, o - math.ceil(before / s)), n_out - length) for o in out_starts]
    return _Axis(reach, out_starts, crops, length)


def _step(unit: _Unit, patch: Tensor, starts: list[tuple[int, int]], size: tuple[int, int],
          rows: _Axis | None, cols: _Axis | None) -> tuple[Tensor, list[tuple[int, int]], tuple[int, int]]:
    """Run one unit on each copy's crop; returns the changed outputs, their starts and size."""
    n_rows, n_cols = unit.out.shape[2:]
    rows = rows or _Axis(n_rows, [0] * len(starts), [0] * len(starts), n_rows)
    cols = cols or _Axis(n_cols, [0] * len(starts), [0] * len(starts), n_cols)
    sr, sc = unit.stride
    crops = []
    for i, (r, c) in enumerate(starts):
        top, left = rows.crops[i] * sr, cols.crops[i] * sc
        crop = unit.inp[0, :, top:top + rows.length * sr, left:left + cols.length * sc].clone()
        # paste the copy's changed cells that fall inside the crop
        r0, r1 = max(r, top), min(r + size[0], top + rows.length * sr)
        c0, c1 = max(c, left), min(c + size[1], left + cols.length * sc)
        if r0 < r1 and c0 < c1:
            crop[:, r0 - top:r1 - top, c0 - left:c1 - left] = patch[i, :, r0 - r:r1 - r, c0 - c:c1 - c]
        crops.append(crop)
    out = unit.module(torch.stack(crops).contiguous(memory_format=CL))
    if tuple(out.shape[2:]) != (rows.length, cols.length):
        raise RuntimeError(f"incremental occlusion: {type(unit.module).__name__} gave "
                           f"{tuple(out.shape[2:])} cells for a crop expected to give "
                           f"{(rows.length, cols.length)}")
    patch = torch.stack([
        out[i, :, rows.starts[i] - rows.crops[i]:rows.starts[i] - rows.crops[i] + rows.size,
            cols.starts[i] - cols.crops[i]:cols.starts[i] - cols.crops[i] + cols.size]
        for i in range(len(starts))])
    return patch, list(zip(rows.starts, cols.starts)), (rows.size, cols.size)
