"""Heatmap cache on disk, keyed by checkpoint hash + image hash + method + canonical parameters.

One `.npy` file per map (float32, the explainer's raw output), written through a unique
temporary and renamed (`medattn.store.files`), so that a crash or a second writer never leaves a
truncated entry; an entry that fails to load is set aside, logged and recomputed.
`np.load(allow_pickle=False)` only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medattn.store.files import read_or_set_aside, write_atomic


def canonical_params(params: Mapping[str, Any] | None) -> str:
    """Parameters as sorted compact JSON; tensors/arrays by content hash, so keys are stable."""

    def plain(value: Any) -> Any:
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            return {"array_sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16], "shape": list(value.shape)}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if callable(value):
            return None
        return value

    cleaned = {k: plain(v) for k, v in sorted((params or {}).items()) if not callable(v)}
    return json.dumps(cleaned, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=65536)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_hash(path: str | os.PathLike) -> str:
    """Content hash of a file, memoised on (path, size, mtime) so repeated lookups are free."""
    stat = os.stat(path)
    return _hash_file(str(path), stat.st_size, stat.st_mtime_ns)


class HeatmapCache:
    """Get/put raw heatmaps under a root folder (two-level fan-out by key prefix)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def key(self, checkpoint_hash: str, image_hash: str, method: str, params: Mapping[str, Any] | None = None, target: int | None = None) -> str:
        text = "|".join([checkpoint_hash, image_hash, method, str(target), canonical_params(params)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        return read_or_set_aside(self.path(key), lambda path: np.load(path, allow_pickle=False))

    def put(self, key: str, heatmap: np.ndarray) -> Path:
        heatmap = np.asarray(heatmap, dtype=np.float32)
        return write_atomic(self.path(key), lambda tmp: np.save(tmp, heatmap, allow_pickle=False))

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()


class MemoryHeatmapCache(HeatmapCache):
    """`HeatmapCache`'s keys over the newest `size` maps in this process's memory, never on
    disk: maps that are shown but not kept, such as the Compare page's previews. Thread-safe."""

    def __init__(self, size: int = 64):
        super().__init__("<memory>")
        self.size = size
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
            return self._maps.get(key)

    def put(self, key: str, heatmap: np.ndarray) -> None:  # type: ignore[override]
        with self._lock:
            self._maps[key] = np.asarray(heatmap, dtype=np.float32)
            self._maps.move_to_end(key)
            while len(self._maps) > self.size:
                self._maps.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._maps
