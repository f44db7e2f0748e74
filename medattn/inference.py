"""Loaded checkpoints and batched predictions over dataset images.

Shared by precompute, the benchmarks and the app, so that a model, its input size and its
normalisation always travel together and every caller feeds it the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from medattn.data.dataset import Dataset
from medattn.data.skips import Skips
from medattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_input
from medattn.device import best_device
from medattn.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = Path(os.environ.get("MEDATTN_CHECKPOINTS", REPO / "checkpoints"))


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with what is needed to feed and describe it."""

    name: str
    path: Path
    model: torch.nn.Module
    meta: dict[str, Any]
    device: torch.device
    hash: str
    classes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "multilabel"))

    @property
    def input_size(self) -> int:
        return int(self.meta.get("input_size", 224))

    @property
    def mean(self) -> Sequence[float]:
        return self.meta.get("normalisation", {}).get("mean", IMAGENET_MEAN)

    @property
    def std(self) -> Sequence[float]:
        return self.meta.get("normalisation", {}).get("std", IMAGENET_STD)

    @property
    def label(self) -> str:
        """'resnet18 + wildcat' style description for tables and panels."""
        return f"{self.meta.get('arch', '?')} + {self.meta.get('head', '?')}"

    def to_input(self, image: np.ndarray) -> torch.Tensor:
        """A read image (H, W) in [0, 1] as the (1, 3, S, S) input of this model on its device."""
        return to_input(image, self.input_size, self.mean, self.std).to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, 1) if self.task == "multiclass" else torch.sigmoid(logits)

    def check_classes(self, dataset: Dataset) -> None:
        """Refuse a dataset whose classes differ from those the model was trained on."""
        if list(dataset.classes) != list(self.classes):
            raise CheckpointError(
                f"checkpoint {self.name} predicts {self.classes}, but dataset {dataset.name} has classes "
                f"{dataset.classes}; choose a checkpoint trained on these classes"
            )


def list_checkpoints(folder: str | os.PathLike = CHECKPOINT_DIR) -> list[Path]:
    """Every NAME.json with its NAME.safetensors in a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.with_suffix("") for p in folder.glob("*.json") if p.with_suffix(".safetensors").exists())


def load_model(path: str | os.PathLike, device: str | torch.device = "auto") -> LoadedModel:
    """Load a checkpoint (NAME, NAME.json or NAME.safetensors) for inference."""
    from medattn.models import load_checkpoint

    model, meta = load_checkpoint(path)
    device = best_device(device) if isinstance(device, str) else device
    model.eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
    digest = str(meta.get("sha256") or meta.get("weights_sha256") or "")[:16]
    classes = list(meta.get("classes") or [str(i) for i in range(int(meta.get("num_classes", 0)))])
    return LoadedModel(base.name, base, model, meta, device, digest, classes)


def predict(
    loaded: LoadedModel,
    dataset: Dataset,
    image_ids: Sequence[str],
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    skips: Skips | None = None,
) -> pd.DataFrame:
    """Class probabilities, one row per image id, one column per class.

    With `skips`, an image that cannot be read has no row and is named there; without, its
    ImageReadError propagates."""
    loaded.check_classes(dataset)
    rows: list[np.ndarray] = []
    ids = list(image_ids)
    kept: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            read = [(i, dataset.read_image(i) if skips is None else skips.call(i, dataset.read_image, i)) for i in chunk]
            read = [(i, image) for i, image in read if image is not None]
            if read:
                batch = torch.cat([loaded.to_input(image) for _, image in read])
                rows.append(loaded.probabilities(loaded.model(batch).float()).cpu().numpy())
                kept += [i for i, _ in read]
            if progress is not None:
                progress(min(start + batch_size, len(ids)), len(ids))
    scores = np.concatenate(rows) if rows else np.zeros((0, len(loaded.classes)), np.float32)
    return pd.DataFrame(scores, index=pd.Index(kept, name="image_id"), columns=loaded.classes)
