"""A run folder: where one dataset's (and one protocol's) predictions, scores and work claims
live, side by side (`<base>/<dataset>-<hash>[-<protocol>]/`: `predictions/`, `scores/`,
`claims/`). Precompute writes it; the pages, the Leaderboard and the sanity checks read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medattn.data.dataset import Dataset
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.store.claims import Claims
from medattn.store.predictions import PredictionStore
from medattn.store.scores import ScoreTable


@dataclass
class Run:
    """Where one dataset's predictions and scores live."""

    root: Path

    @classmethod
    def for_dataset(cls, dataset: Dataset, base: Path, protocol: str = DEFAULT_PROTOCOL) -> "Run":
        """`base/<dataset>-<hash>[-<protocol>]`: a run per dataset version and protocol."""
        suffix = "" if protocol == DEFAULT_PROTOCOL else f"-{get_protocol(protocol).name}"
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
