"""Score tables: one Parquet row per image × model × method, appended in parts.

Each `append` writes one new part file (temporary + rename), so concurrent or interrupted runs
never corrupt finished rows; `read` concatenates the parts and keeps the newest row per key.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

import pandas as pd

KEY = ("image_id", "checkpoint", "method", "target")


class ScoreTable:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def parts(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns) if self.root.exists() else []

    def append(self, rows: Iterable[dict] | pd.DataFrame) -> Path | None:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        if frame.empty:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"part-{pd.Timestamp.now('UTC').strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.root / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.root / name)
        return self.root / name

    def read(self) -> pd.DataFrame:
        parts = self.parts()
        if not parts:
            return pd.DataFrame(columns=list(KEY))
        frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        keys = [k for k in KEY if k in frame.columns]
        return frame.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)

    def done_keys(self, frame: pd.DataFrame | None = None) -> set[tuple]:
        """The KEY of every row of `frame` (default: the whole table), as strings."""
        frame = self.read() if frame is None else frame
        if frame.empty:
            return set()
        return set(map(tuple, frame[list(KEY)].astype(str).itertuples(index=False, name=None)))
