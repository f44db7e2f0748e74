"""Which model output answers which dataset class: exact names, or a mapping the user confirmed.

A model is used on a dataset when every dataset class has an output: by the same name (a
TorchXRayVision model's 18 pathologies cover NIH's 14; its empty entries, outputs it was never
trained on, are never chosen), or through the checkpoint json's `class_map` ({dataset class:
model output name}), written once the user confirmed it (Models page, `remember_class_map`).
Names that differ only in spelling are suggested, never applied silently (`suggest_mapping`):
case, `_`/`-`/spaces (`Pleural_Thickening` / `Pleural Thickening`), and the synonyms in
`SYNONYMS` (`Infiltrate` / `Infiltration`, the NIH box list's and label list's spellings).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

# spelling variants across the public chest X-ray label sets, in canonical (lower-case) form
SYNONYMS = {"infiltrate": "infiltration", "pleural effusion": "effusion"}


def canonical(name: str) -> str:
    """'Pleural_Thickening' → 'pleural thickening'; synonyms to one spelling."""
    plain = re.sub(r"[\s_\-]+", " ", str(name)).strip().casefold()
    return SYNONYMS.get(plain, plain)


def exact_mapping(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> dict[str, str] | None:
    """{dataset class: same-named output} when every dataset class has one, else None."""
    named = {c for c in model_classes if c}
    if all(c in named for c in dataset_classes):
        return {c: c for c in dataset_classes}
    return None


def suggest_mapping(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> dict[str, str]:
    """{dataset class: model output} for the classes whose names match exactly or differ only
    in spelling (see the module docstring); the others are left out for the user to choose."""
    by_form: dict[str, str] = {}
    for name in model_classes:
        if name:
            by_form.setdefault(canonical(name), name)
    out = {}
    for cls in dataset_classes:
        if cls in model_classes and cls:
            out[cls] = cls
        elif canonical(cls) in by_form:
            out[cls] = by_form[canonical(cls)]
    return out


def output_indices(mapping: Mapping[str, str], model_classes: Sequence[str], dataset_classes: Sequence[str]) -> list[int]:
    """Model output index per dataset class; ValueError naming the classes without a (valid) output."""
    unmapped = [c for c in dataset_classes if c not in mapping]
    unknown = [f"{c} → {mapping[c]!r}" for c in dataset_classes if c in mapping and (not mapping[c] or mapping[c] not in model_classes)]
    if unmapped or unknown:
        parts = ([f"no output chosen for {', '.join(unmapped)}"] if unmapped else []) + \
                ([f"not an output of the model: {', '.join(unknown)}"] if unknown else [])
        raise ValueError("; ".join(parts))
    return [list(model_classes).index(mapping[c]) for c in dataset_classes]


def mapping_digest(indices: Sequence[int]) -> str:
    """A short, stable tag of an output selection (part of the cache key of its maps)."""
    return hashlib.sha256(json.dumps(list(indices)).encode()).hexdigest()[:8]


def remember_class_map(checkpoint: str | os.PathLike, dataset_name: str, mapping: Mapping[str, str]) -> None:
    """Store a confirmed mapping in NAME.json under `class_map` (per dataset name); the
    weights and their sha256 are untouched. Written to a temporary file and renamed."""
    base = Path(checkpoint)
    base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
    info_path = base.with_name(base.name + ".json")
    meta = json.loads(info_path.read_text(encoding="utf-8"))
    meta.setdefault("class_map", {})[dataset_name] = dict(mapping)
    tmp = info_path.with_name(info_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, info_path)


class OutputSelect(nn.Module):
    """A model whose outputs are `indices` of `inner`'s, in that order: logits (B, len(indices)).
    Carries the inner model's attributes (arch, head, gradcam_layer…); class maps, where the
    inner model has them, are selected the same way."""

    def __init__(self, inner: nn.Module, indices: Sequence[int]):
        super().__init__()
        self.inner = inner
        self.indices = list(indices)
        for name in ("arch", "head", "params", "input_channels", "preprocessing"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))
        self.num_classes = len(self.indices)
        if callable(getattr(inner, "class_maps", None)):
            self.class_maps = self._class_maps
        if callable(getattr(inner, "attention_maps", None)):
            self.attention_maps = inner.attention_maps

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)[:, self.indices]

    def _class_maps(self, x: Tensor) -> Tensor:
        return self.inner.class_maps(x)[:, self.indices]

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.inner.gradcam_layer
