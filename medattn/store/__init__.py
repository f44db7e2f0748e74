"""On-disk storage: the heatmap cache and the Parquet score tables."""

from medattn.store.heatmaps import HeatmapCache, canonical_params, file_hash
from medattn.store.scores import ScoreTable

__all__ = ["HeatmapCache", "ScoreTable", "canonical_params", "file_hash"]
