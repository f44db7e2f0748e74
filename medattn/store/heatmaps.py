"""Heatmap cache on disk, keyed by checkpoint hash + image hash + method + canonical parameters.

One `.npy` file per map (float32, the explainer's raw output), written to a temporary and
renamed so that a crash never leaves a truncated entry; `np.load(allow_pickle=False)` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np


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
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            path.unlink(missing_ok=True)  # a damaged entry is recomputed, never trusted
            return None

    def put(self, key: str, heatmap: np.ndarray) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(heatmap, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, path)
        return path

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()
