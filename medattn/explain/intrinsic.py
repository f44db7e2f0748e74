"""Maps the model computes itself: WILDCAT class maps and attention maps, upsampled bilinearly
to the input frame. Forward passes only (inference mode), one per distinct image of a batch
(`shared.distinct_rows`: an image stacked once per target class runs once)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from medattn.errors import MedattnError
from medattn.explain.base import Explainer, describe, to_input_frame
from medattn.explain.shared import distinct_rows


class Wildcat(Explainer):
    """The target class's map from `model.class_maps(x)` (B, C, h, w), e.g. a WILDCAT head's
    class-wise pooled maps (Durand et al. 2017). No parameters."""

    name = "wildcat"
    batch_invariant = True
    needs_grad = False
    requires = ("class_maps", "class maps")

    def _attribute(self, x: Tensor, targets: Tensor) -> Tensor:
        distinct, index = distinct_rows(x)
        maps = self.model.class_maps(distinct)
        if maps.ndim != 4 or maps.shape[0] != len(distinct):
            raise MedattnError(f"the class_maps() of {describe(self.model)} returned shape "
                               f"{tuple(maps.shape)}, expected (B, C, h, w)")
        if int(targets.max()) >= maps.shape[1]:
            raise ValueError(f"target {int(targets.max())} out of range for "
                             f"{maps.shape[1]} class maps")
        picked = maps[index.to(maps.device), targets]
        return to_input_frame(picked.float(), x.shape[2:])


class Attention(Explainer):
    """Intrinsic attention from `model.attention_maps(x)`: a mapping name → maps (B, h, w) or
    (B, k, h, w) (one per attention level or step), or a single such tensor. The target is
    not used: the attention of these models is class-agnostic.

    which: "aggregate" (default) or the name of one map. One map: mean over its k channels,
    upsampled. "aggregate": each map so reduced and upsampled, divided by its per-image
    maximum |value| (so levels of different scales weigh equally), then averaged.
    """

    name = "attention"
    batch_invariant = True
    defaults = {"which": "aggregate"}
    needs_grad = False
    requires = ("attention_maps", "intrinsic attention maps")

    def _attribute(self, x: Tensor, targets: Tensor, which: str) -> Tensor:
        distinct, index = distinct_rows(x)
        found = self.model.attention_maps(distinct)
        named = dict(found) if isinstance(found, Mapping) else {"attention": found}
        if not named:
            raise MedattnError(f"the attention_maps() of {describe(self.model)} returned no maps")
        maps = {key: self._reduce(key, m, distinct)[index.to(m.device)] for key, m in named.items()}
        if which in maps:
            return maps[which]
        if which != "aggregate":
            raise ValueError(f"attention: which={which!r} is not one of: aggregate, "
                             f"{', '.join(maps)}")
        scaled = [m / m.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
                  for m in maps.values()]
        return torch.stack(scaled).mean(dim=0)

    def _reduce(self, key: str, m: Tensor, x: Tensor) -> Tensor:
        if m.ndim == 4:
            m = m.mean(dim=1)
        if m.ndim != 3 or m.shape[0] != len(x):
            raise MedattnError(f"the attention_maps()[{key!r}] of {describe(self.model)} has shape "
                               f"{tuple(m.shape)}, expected (B, h, w) or (B, k, h, w)")
        return to_input_frame(m.float(), x.shape[2:])
