"""File discipline shared by every store: writes through a unique temporary and a rename, and
reads that set an unreadable file aside instead of failing.

A write goes to `.<name>.<pid>-<random>.tmp<suffix>` next to its target and is renamed over it
(`os.replace`, atomic on POSIX within one file system), so concurrent writers (two processes,
or two threads of one) never share a temporary and a reader never sees half a file. A file
that fails to read (truncated by a crash, written by a broken tool) is renamed to
`<name>.corrupt-<UTC time>`, named in the log, and treated as absent, so that its contents are
recomputed and a cache never makes a page unusable.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd

log = logging.getLogger("medattn.store")
T = TypeVar("T")


def temporary_for(path: Path) -> Path:
    """A temporary name beside `path`, unique to this call, with the same suffix (np.save and
    other writers infer the format from it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)` and rename the temporary over `path`; nothing is left behind
    when `write` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def set_aside(path: Path, reason: BaseException | str) -> Path | None:
    """Rename an unreadable file to `<name>.corrupt-<UTC time>` and log it; None when another
    process already moved it."""
    stamp = pd.Timestamp.now("UTC").strftime("%Y%m%dT%H%M%S%f")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    log.warning("unreadable %s (%s): set aside as %s; its contents will be recomputed", path, reason, aside.name)
    return aside


def read_or_set_aside(path: str | os.PathLike, read: Callable[[Path], T]) -> T | None:
    """`read(path)`, or None when the file is absent or unreadable (then it is set aside). A
    file replaced by a writer while it was being read is read again, never set aside."""
    path = Path(path)
    for _ in range(3):
        try:
            before = os.stat(path)
        except FileNotFoundError:
            return None
        try:
            return read(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - any reader error means the file cannot be used
            try:
                after = os.stat(path)
            except FileNotFoundError:
                return None
            if (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size):
                set_aside(path, f"{type(exc).__name__}: {exc}")
                return None
    return None
