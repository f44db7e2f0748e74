"""Finding official files and image files inside a downloaded dataset folder.

Errors name the file that was expected and where it was looked for, so a user with a partial
download knows exactly what to fetch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from medattn.errors import DatasetError

log = logging.getLogger(__name__)


def find_source_file(source: str | os.PathLike, *names: str, required: bool = True) -> Path | None:
    """The first of `names` (or its .gz) in `source` or one folder below; None if optional and absent."""
    source = Path(source)
    for folder in (source, *sorted(_subfolders(source))):
        for name in names:
            for candidate in (name, name + ".gz"):
                if (folder / candidate).is_file():
                    return folder / candidate
    if required:
        alternatives = " or ".join(names)
        raise DatasetError(source, [f"expected file {alternatives} (or .gz) in {source}, not found"])
    return None


def read_table(path: str | os.PathLike, **options: object) -> pd.DataFrame:
    """pd.read_csv(path, **options); a file that is not UTF-8 CSV, has a ragged row, is empty or
    is a truncated .gz raises DatasetError naming it (pandas' message names the line)."""
    path = Path(path)
    try:
        return pd.read_csv(path, **options)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError, EOFError) as exc:
        raise DatasetError(path, [f"{path.name}: cannot be read as CSV ({type(exc).__name__}: {exc})"]) from exc


def read_list(path: Path) -> list[str]:
    """The whitespace-separated names of an official list file; DatasetError naming it when unreadable."""
    try:
        return path.read_text().split()
    except (UnicodeDecodeError, OSError) as exc:
        raise DatasetError(path, [f"{path.name}: cannot be read as a text list ({type(exc).__name__}: {exc})"]) from exc


def require_unique(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    """DatasetError naming the lines (header on line 1, no rows skipped) that repeat a key."""
    twice = frame.duplicated(columns, keep=False).to_numpy()
    if twice.any():
        keys = frame.loc[twice, columns].astype(str).agg("/".join, axis=1).to_numpy()
        lines = pd.Series(np.flatnonzero(twice) + 2).groupby(keys, sort=False).agg(list)
        raise DatasetError(path, [f"{path.name} lines {', '.join(map(str, found))}: {'/'.join(columns)} {key} is listed more than once"
                                  for key, found in lines.items()])


def require_folder(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(path, [f"expected {what} folder {path}, not found"])
    return path.resolve()


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Raise DatasetError naming the file and every missing column."""
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DatasetError(path, [f"{path.name}: column(s) {', '.join(absent)} missing (has {', '.join(map(str, frame.columns))})"])


def index_files(root: Path, folders: Iterable[str], suffixes: Iterable[str]) -> dict[str, str]:
    """Map file name -> path relative to `root` for files in the folders (glob patterns) under root.

    One directory listing per folder, so indexing 100k images costs a second, not a stat each.
    The first folder (in sorted order) wins when a name occurs twice.
    """
    wanted = {s.lower() for s in suffixes}
    found: dict[str, str] = {}
    for pattern in folders:
        for folder in sorted(root.glob(pattern)):
            if not folder.is_dir():
                continue
            rel_folder = folder.relative_to(root).as_posix()
            with os.scandir(folder) as entries:
                for entry in entries:
                    if os.path.splitext(entry.name)[1].lower() in wanted and entry.name not in found:
                        found[entry.name] = f"{rel_folder}/{entry.name}" if rel_folder != "." else entry.name
    return found


def keep_present(frame: pd.DataFrame, present: pd.Series, what: str, where: Path) -> pd.DataFrame:
    """Drop the rows whose image file is absent, logging how many; raise if none is left."""
    missing = int((~present).sum())
    if missing:
        log.warning("%d of %d %s have no image file under %s; skipped", missing, len(frame), what, where)
    if not present.any():
        raise DatasetError(where, [f"none of the {len(frame)} {what} has an image file under {where}"])
    return frame[present.to_numpy()].copy()


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [Path(e.path) for e in entries if e.is_dir()]
