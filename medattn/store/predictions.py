"""Stored class probabilities: `<root>/<checkpoint>.parquet`, one row per image (index
`image_id`), one column per class, and `checkpoint_hash` (the weights that produced it).

Writers merge under a lock file (`<checkpoint>.parquet.lock`, `fcntl.flock`): read what is
stored, add the new rows, write through a unique temporary and rename. So two writers (the
app showing new images while a precompute job runs, or two threads) neither corrupt the file
nor drop each other's rows, and readers never wait. An unreadable file is set aside, logged
and recomputed (`medattn.store.files`).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from medattn.store.files import read_or_set_aside, write_atomic


class PredictionStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, checkpoint: str) -> Path:
        return self.root / f"{checkpoint}.parquet"

    def read(self, checkpoint: str, checkpoint_hash: str | None = None) -> pd.DataFrame | None:
        """The stored rows of `checkpoint`; with `checkpoint_hash`, only those of these weights
        (a file of older weights counts as absent). None when there are none."""
        frame = read_or_set_aside(self.path(checkpoint), pd.read_parquet)
        if frame is not None and checkpoint_hash is not None and "checkpoint_hash" in frame:
            frame = frame[frame["checkpoint_hash"] == checkpoint_hash]
        return None if frame is None or frame.empty else frame

    def add(self, checkpoint: str, checkpoint_hash: str, fresh: pd.DataFrame) -> pd.DataFrame:
        """Store `fresh` (image × class probabilities) for these weights beside the rows already
        there (rows of other weights are dropped); returns everything stored."""
        fresh = fresh.assign(checkpoint_hash=checkpoint_hash)
        with self._locked(checkpoint):
            stored = self.read(checkpoint, checkpoint_hash)
            if stored is not None:
                fresh = pd.concat([stored[~stored.index.isin(fresh.index)], fresh])
            write_atomic(self.path(checkpoint), fresh.to_parquet)
        return fresh

    @contextmanager
    def _locked(self, checkpoint: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{checkpoint}.parquet.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
