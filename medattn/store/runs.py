"""A run folder: where one dataset's (and one protocol's and precision's) predictions, scores and
work claims live, side by side (`<base>/<dataset>-<hash>[-<protocol>][-bfloat16]/`:
`predictions/`, `scores/`, `claims/`). Precompute writes it; the pages, the Leaderboard and the
sanity checks read it. Maps asked for in bfloat16 get their own run, so its rows never stand in
for float32 ones (`medattn.explain.base`: precision)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medattn.data.dataset import Dataset
from medattn.explain.base import check_precision
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.store.claims import Claims
from medattn.store.predictions import PredictionStore
from medattn.store.scores import ScoreTable


@dataclass
class Run:
    """Where one dataset's predictions and scores live."""

    root: Path

    @classmethod
    def for_dataset(cls, dataset: Dataset, base: Path, protocol: str = DEFAULT_PROTOCOL,
                    precision: str = "float32") -> "Run":
        """`base/<dataset>-<hash>[-<protocol>][-bfloat16]`: a run per dataset version, protocol
        and precision asked for."""
        suffix = "" if protocol == DEFAULT_PROTOCOL else f"-{get_protocol(protocol).name}"
        suffix += "" if check_precision("precompute", precision) == "float32" else f"-{precision}"
        return cls(base / f"{dataset.name}-{dataset.hash}{suffix}")

    @property
    def scores(self) -> ScoreTable:
        return ScoreTable(self.root / "scores")

    @property
    def prediction_store(self) -> PredictionStore:
        return PredictionStore(self.root / "predictions")

    @property
    def claims(self) -> Claims:
        """A fresh claimant (one per run) on this run folder's work units."""
        return Claims(self.root / "claims")
