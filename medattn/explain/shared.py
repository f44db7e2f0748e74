"""One forward pass for the rows of a batch that hold the same input: the same image explained
for several target classes (precompute stacks an image once per target, `pipeline.compute_maps`).

A gradient of one class score needs the forward pass's activations and one backward pass; the
scores of other classes of the same input need the same activations and only their own backward
pass. `shared_gradients` is a drop-in for Captum's `compute_gradients` (an attribution's
`gradient_func`): rows that are equal (exactly, element for element) go through the model once,
and each of their targets gets its own backward pass through that graph (`retain_graph`). Captum
does the rest of each method as before (integrated gradients' path, step weights and sum;
saliency's gradient), so the maps are those of one call per target up to float32 rounding (the
convolutions run on another batch size). Forward-only methods take `distinct_rows` and run the
model on each distinct row once.

Cost with backward ≈ forward (frozen weights: input gradients only): an image with k targets
costs 1 + k passes instead of 2k per gradient (integrated gradients: per path step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import _select_targets
from captum._utils.gradient import compute_gradients
from torch import Tensor


def duplicate_groups(x: Tensor) -> list[list[int]]:
    """Row indices of x (N, ...) grouped by equal rows (exact equality), each group in row order,
    groups in order of their first row. Candidates come from a fixed projection of each row and
    are confirmed with `torch.equal`, so a group never joins rows that differ."""
    if len(x) < 2:
        return [[i] for i in range(len(x))]
    flat = x.detach().reshape(len(x), -1)
    weights = torch.linspace(1.0, 2.0, flat.shape[1], dtype=flat.dtype, device=flat.device)
    keys = (flat * weights).sum(1).tolist()
    groups: list[list[int]] = []
    by_key: dict[float, list[list[int]]] = {}
    for i, key in enumerate(keys):
        for group in by_key.get(key, []):
            if torch.equal(flat[group[0]], flat[i]):
                group.append(i)
                break
        else:
            groups.append([i])
            by_key.setdefault(key, []).append(groups[-1])
    return groups


def distinct_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """(the distinct rows of x in order of first appearance (U, ...), index (N,) of each row's
    distinct row): `model(unique)[index]` is `model(x)` with one pass per distinct row."""
    groups = duplicate_groups(x)
    index = torch.empty(len(x), dtype=torch.long)
    for g, members in enumerate(groups):
        index[members] = g
    return x[[members[0] for members in groups]], index.to(x.device)


def shared_gradients(forward_fn: Callable[..., Tensor], inputs: Tensor | tuple[Tensor, ...],
                     target_ind: Any = None, additional_forward_args: Any = None) -> tuple[Tensor, ...]:
    """Captum's `compute_gradients` (same arguments, same result up to rounding): the gradient of
    each row's target score w.r.t. that row, with one forward pass per distinct row. Rows with
    the same number of copies are run together; copy r of each gets backward pass r. Inputs it
    cannot split this way (several input tensors, extra forward arguments, no per-row target,
    no repeated row) go to `compute_gradients` as they are."""
    single = isinstance(inputs, Tensor) or len(inputs) == 1
    x = inputs if isinstance(inputs, Tensor) else inputs[0]
    targets = None if target_ind is None else torch.as_tensor(target_ind).reshape(-1)
    per_row = targets is not None and targets.numel() in (1, len(x))
    groups = duplicate_groups(x) if single and additional_forward_args is None and per_row else None
    if groups is None or len(groups) == len(x):
        return compute_gradients(forward_fn, inputs, target_ind, additional_forward_args)
    targets = targets.expand(len(x)) if targets.numel() == 1 else targets
    grads = torch.empty_like(x)
    by_copies: dict[int, list[list[int]]] = {}
    for members in groups:
        by_copies.setdefault(len(members), []).append(members)
    with torch.autograd.set_grad_enabled(True):
        for copies, members in by_copies.items():
            distinct = x.detach()[[m[0] for m in members]].requires_grad_()
            outputs = forward_fn(distinct)
            for r in range(copies):
                rows = [m[r] for m in members]
                scores = _select_targets(outputs, targets[rows].tolist())
                (grad,) = torch.autograd.grad(torch.unbind(scores), distinct, retain_graph=r < copies - 1)
                grads[rows] = grad
    return (grads,)
