"""On-disk storage: the heatmap cache, the Parquet score tables, stored predictions, work
claims and the reader-study database. Every cache and table write goes through a unique
temporary and a rename; every unreadable file is set aside and recomputed
(`medattn.store.files`)."""

from medattn.store.annotations import AnnotationStore
from medattn.store.claims import Claims
from medattn.store.heatmaps import HeatmapCache, MemoryHeatmapCache, canonical_params, file_hash
from medattn.store.predictions import PredictionStore
from medattn.store.runs import Run
from medattn.store.scores import ScoreTable

__all__ = ["AnnotationStore", "Claims", "HeatmapCache", "MemoryHeatmapCache", "PredictionStore", "Run", "ScoreTable", "canonical_params", "file_hash"]
