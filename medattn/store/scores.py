"""Score tables: one Parquet row per image × model × method, appended in parts.

Each `append` writes one new part file (unique temporary + rename), so concurrent or
interrupted runs never corrupt finished rows; `read` concatenates the parts in the order they
were written and keeps the newest row per key. A part that fails to read is set aside and
logged (`medattn.store.files`); its rows are then missing, and precompute computes them again.
`compact` merges many small parts (precompute flushes every batch) into one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

import pandas as pd

from medattn.store.files import read_or_set_aside, write_atomic

KEY = ("image_id", "checkpoint", "method", "target")
COMPACT_AT = 2  # parts: precompute merges them into one at the end of every finished run


class ScoreTable:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def parts(self) -> list[Path]:
        """Part files, oldest first (a part another process removed meanwhile is left out)."""
        stamped = []
        for path in self.root.glob("part-*.parquet") if self.root.exists() else []:
            try:
                stamped.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:
                continue
        return [path for _, _, path in sorted(stamped)]

    def append(self, rows: Iterable[dict] | pd.DataFrame) -> Path | None:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        if frame.empty:
            return None
        name = f"part-{pd.Timestamp.now('UTC').strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        return write_atomic(self.root / name, lambda tmp: frame.to_parquet(tmp, index=False))

    def _read_parts(self) -> tuple[list[Path], list[pd.DataFrame]]:
        read, frames = [], []
        for path in self.parts():
            frame = read_or_set_aside(path, pd.read_parquet)
            if frame is not None:
                read.append(path)
                frames.append(frame)
        return read, frames

    def read(self) -> pd.DataFrame:
        _, frames = self._read_parts()
        if not frames:
            return pd.DataFrame(columns=list(KEY))
        return _latest(pd.concat(frames, ignore_index=True))

    def compact(self, at_least: int = COMPACT_AT) -> Path | None:
        """Merge the parts into one when there are `at_least` of them; the merged part takes
        the newest input's time, so rows appended meanwhile by others still count as newer.
        Only parts that were read are removed; safe beside other writers and readers."""
        if len(self.parts()) < at_least:
            return None
        read, frames = self._read_parts()
        if len(read) < 2:
            return None
        newest = max(_mtime(path) for path in read)
        merged = self.append(_latest(pd.concat(frames, ignore_index=True)))
        if merged is not None and newest:
            os.utime(merged, ns=(newest, newest))
        for path in read:
            path.unlink(missing_ok=True)
        return merged

    def done_keys(self, frame: pd.DataFrame | None = None) -> set[tuple]:
        """The KEY of every row of `frame` (default: the whole table), as strings."""
        frame = self.read() if frame is None else frame
        if frame.empty:
            return set()
        return set(map(tuple, frame[list(KEY)].astype(str).itertuples(index=False, name=None)))


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in KEY if k in frame.columns]
    return frame.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0
