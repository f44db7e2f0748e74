"""Loaded checkpoints and batched predictions over dataset images.

Shared by precompute, the benchmarks and the app, so that a model, its input size and its
normalisation always travel together and every caller feeds it the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from medattn.data.dataset import Dataset
from medattn.data.preprocess import Preprocessing
from medattn.data.skips import Skips
from medattn.device import best_device
from medattn.errors import CheckpointError
from medattn.metrics.decision import DecisionRule, decision_rule
from medattn.store.predictions import PredictionStore

REPO = Path(__file__).resolve().parents[1]
# the repository's demo checkpoints (tracked; MEDATTN_CHECKPOINTS points elsewhere)
CHECKPOINT_DIR = Path(os.environ.get("MEDATTN_CHECKPOINTS", REPO / "checkpoints"))
# the user's own models: imports and trainings go here, never into the tracked folder
MODELS_DIR = Path(os.environ.get("MEDATTN_MODELS") or Path(
    os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "medattn" / "models").expanduser()


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
    output_names: list[str] = field(default_factory=list)  # the checkpoint's name of each of `classes` (mapped)

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "multilabel"))

    @property
    def preprocessing(self) -> Preprocessing:
        """How this model sees an image (the checkpoint's `preprocessing`, or its older
        `input_size` + `normalisation`)."""
        return Preprocessing.from_meta(self.meta)

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def mean(self) -> Sequence[float]:
        return self.preprocessing.mean

    @property
    def std(self) -> Sequence[float]:
        return self.preprocessing.std

    @property
    def label(self) -> str:
        """'resnet18 + wildcat' style description for tables and panels."""
        return f"{self.meta.get('arch', '?')} + {self.meta.get('head', '?')}"

    def to_input(self, image: np.ndarray) -> torch.Tensor:
        """A read image (H, W) in [0, 1] as the (1, C, S, S) input of this model on its device
        (its `preprocessing`: resize or crop, channels, intensity scale)."""
        return self.preprocessing.to_input(image).to(self.device)

    def constant_input(self, value: float = 0.0) -> torch.Tensor:
        """The (1, C, S, S) input, on this model's device, of a stored image of constant
        intensity `value` (0 = its black) through this model's preprocessing
        (`Preprocessing.constant_input`): the baseline and fill in the image's own terms."""
        return self.preprocessing.constant_input(value).to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, 1) if self.task == "multiclass" else torch.sigmoid(logits)

    @property
    def thresholds(self) -> dict[str, float]:
        """Decision thresholds the checkpoint states per class (`thresholds` in its json, by
        the class names of `classes`); classes it does not name decide at 0.5."""
        stated = self.meta.get("thresholds") or {}
        names = self.output_names or self.classes
        return {c: float(stated[n]) for c, n in zip(self.classes, names) if n in stated}

    def decision(self, task: str | None = None) -> DecisionRule:
        """The decision rule of this model on a dataset of `task` (default: the checkpoint's):
        argmax for multiclass, the stated thresholds otherwise (`medattn.metrics.decision`)."""
        return decision_rule(task or self.task, self.classes, self.thresholds)

    def check_classes(self, dataset: Dataset) -> None:
        """Refuse a dataset whose classes differ from those the model was trained on."""
        if list(dataset.classes) != list(self.classes):
            raise CheckpointError(
                f"checkpoint {self.name} predicts {self.classes}, but dataset {dataset.name} has classes "
                f"{dataset.classes}; choose a checkpoint trained on these classes"
            )

    def for_dataset(self, dataset: Dataset) -> "LoadedModel":
        """This model answering `dataset`'s classes in its order: itself when the classes are
        the same; otherwise the outputs of the same names, or of the mapping the checkpoint json
        records for this dataset (`medattn.models.class_names`). Raises CheckpointError with the
        spelling matches it would suggest when neither covers every class."""
        from medattn.models.class_names import (
            OutputSelect, exact_mapping, mapping_digest, output_indices, suggest_mapping,
        )

        wanted = list(dataset.classes)
        if list(self.classes) == wanted:
            return self
        mapping = exact_mapping(self.classes, wanted) or (self.meta.get("class_map") or {}).get(dataset.name)
        if mapping is None:
            suggested = suggest_mapping(self.classes, wanted)
            spelled = [f"{c} ↔ {m}" for c, m in suggested.items() if c != m]
            missing = [c for c in wanted if c not in suggested]
            raise CheckpointError(
                f"checkpoint {self.name} predicts {', '.join(c for c in self.classes if c)}; dataset {dataset.name} "
                f"has {', '.join(wanted)}"
                + (f"; names that differ in spelling only: {', '.join(spelled)} (confirm the mapping on the Models page)" if spelled else "")
                + (f"; no output for {', '.join(missing)}" if missing else ""))
        try:
            indices = output_indices(mapping, self.classes, wanted)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {self.name}: class mapping for {dataset.name}: {exc}") from None
        model = OutputSelect(self.model, indices).eval()
        names = self.output_names or self.classes
        return dataclasses.replace(self, model=model, hash=f"{self.hash}-{mapping_digest(indices)}", classes=wanted,
                                   output_names=[names[i] for i in indices])


def models_dir() -> Path:
    """The user's models folder (MEDATTN_MODELS; default $XDG_DATA_HOME/medattn/models, i.e.
    ~/.local/share/medattn/models), created on first use: where the app's and the command
    line's imports and trainings are written. The tracked `checkpoints/` holds the demo models
    only (a new user's imports once put 271 MB there)."""
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    return MODELS_DIR


def checkpoint_folders() -> list[Path]:
    """The folders the app lists: the user's models, then the repository's checkpoints."""
    folders = [MODELS_DIR, CHECKPOINT_DIR]
    return [f for i, f in enumerate(folders) if f.resolve() not in {g.resolve() for g in folders[:i]}]


def list_all_checkpoints() -> list[Path]:
    """`list_checkpoints` of every folder of `checkpoint_folders`, the user's first; a name
    found in both is the user's (the app names checkpoints by name)."""
    seen: set[str] = set()
    found = []
    for folder in checkpoint_folders():
        for path in list_checkpoints(folder):
            if path.name not in seen:
                seen.add(path.name)
                found.append(path)
    return found


def list_checkpoints(folder: str | os.PathLike = CHECKPOINT_DIR) -> list[Path]:
    """Every NAME.json with its NAME.safetensors in a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.with_suffix("") for p in folder.glob("*.json") if p.with_suffix(".safetensors").exists())


def load_model(path: str | os.PathLike, device: str | torch.device = "auto",
               dataset: Dataset | None = None) -> LoadedModel:
    """Load a checkpoint (NAME, NAME.json or NAME.safetensors) for inference; with `dataset`,
    answering its classes (`LoadedModel.for_dataset`)."""
    from medattn.models import load_checkpoint

    model, meta = load_checkpoint(path)
    device = best_device(device) if isinstance(device, str) else device
    model.eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
    digest = str(meta.get("sha256") or meta.get("weights_sha256") or "")[:16] + _preprocessing_tag(meta)
    classes = list(meta.get("classes") or [str(i) for i in range(int(meta.get("num_classes", 0)))])
    loaded = LoadedModel(base.name, base, model, meta, device, digest, classes)
    return loaded if dataset is None else loaded.for_dataset(dataset)


def _preprocessing_tag(meta: dict[str, Any]) -> str:
    """'' for medattn's default way of feeding a model (so existing caches stay valid), else a
    tag of the preprocessing: the same weights fed differently give other maps and predictions,
    and the cache keys built from `LoadedModel.hash` must tell them apart."""
    prep = Preprocessing.from_meta(meta)
    if prep == Preprocessing.from_meta({k: v for k, v in meta.items() if k != "preprocessing"}):
        return ""
    described: dict[str, Any] = {**prep.to_meta()}
    if prep.intensity != "imagenet":
        # their "black" baselines and fills were ImageNet's before they followed the
        # preprocessing (`medattn.explain.fills`): maps cached before then are not these models'
        described["fills"] = "stored-image"
    return "-" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:8]


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


def stored_predictions(loaded: LoadedModel, image_ids: Sequence[str], store: PredictionStore) -> pd.DataFrame | None:
    """The probabilities of these images stored in `store` for these weights, or None when any
    of them is not stored; the model does not run (so no lock on it is needed)."""
    stored = store.read(loaded.name, loaded.hash)
    if stored is None or not pd.Index(list(image_ids)).isin(stored.index).all():
        return None
    return stored.reindex(list(image_ids))[loaded.classes]


def cached_predictions(loaded: LoadedModel, dataset: Dataset, image_ids: Sequence[str], store: PredictionStore,
                       skips: Skips | None = None) -> pd.DataFrame:
    """Probabilities for these images (rows in `image_ids` order, one column per class),
    computed once per checkpoint and kept in `store`. With `skips`, an unreadable image gets a
    row of NaN (nothing stored, so a fixed file is read next time) and is named there; without,
    its ImageReadError propagates."""
    stored = store.read(loaded.name, loaded.hash)  # rows of older weights under this name are redone
    missing = [i for i in image_ids if stored is None or i not in stored.index]
    if missing:
        fresh = predict(loaded, dataset, missing, skips=skips)
        if len(fresh):
            stored = store.add(loaded.name, loaded.hash, fresh)
    if stored is None:
        return pd.DataFrame(np.nan, index=pd.Index(list(image_ids), name="image_id"), columns=loaded.classes)
    return stored.reindex(list(image_ids))[loaded.classes]
