"""On-disk storage: the heatmap cache, the Parquet score tables and the reader-study database."""

from medattn.store.annotations import AnnotationStore
from medattn.store.heatmaps import HeatmapCache, canonical_params, file_hash
from medattn.store.scores import ScoreTable

__all__ = ["AnnotationStore", "HeatmapCache", "ScoreTable", "canonical_params", "file_hash"]
