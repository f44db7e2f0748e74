"""Backups of an SQLite study database with SQLite's online backup API (`sqlite3.Connection.backup`):
a consistent copy taken while readers keep saving (pages are copied in steps; a write in
between restarts the copy of what changed). A PostgreSQL server is backed up by its own tools
(pg_dump), not here.

`Backups` runs in the app's process: one copy at start, then every `interval_s`, into
`<database>.backups/` next to the file (owner-only, like the database), keeping the newest `keep`.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from medattn.reader.errors import StorageError

log = logging.getLogger("medattn.backup")
BACKUP_EVERY_S = 6 * 3600.0
KEEP = 28  # a week of copies every 6 hours


def backup_sqlite(source: Path, target: Path) -> Path:
    """Copy the SQLite database `source` to `target` (temporary file, fsync, rename) with the
    online backup API; StorageError naming the file when either side fails."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(tmp) as dst:
            src.backup(dst, pages=1024)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except (sqlite3.Error, OSError) as error:
        raise StorageError(f"backup of {source} to {target} failed: {error}") from error
    finally:
        tmp.unlink(missing_ok=True)
    return target


class Backups:
    """A daemon thread that backs the SQLite file `source` up now and every `interval_s`."""

    def __init__(self, source: Path, interval_s: float = BACKUP_EVERY_S, keep: int = KEEP):
        self.source, self.interval_s, self.keep = Path(source), interval_s, keep
        self.folder = self.source.parent / f"{self.source.name}.backups"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="medattn-backups", daemon=True)

    def start(self) -> "Backups":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()

    def backup_now(self) -> Path:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = backup_sqlite(self.source, self.folder / f"{self.source.stem}-{stamp}Z{self.source.suffix or '.db'}")
        for old in sorted(self.folder.glob(f"{self.source.stem}-*"))[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def _run(self) -> None:
        while True:
            try:
                self.backup_now()
            except StorageError as error:  # the app goes on; the log says it
                log.error("%s", error)
            if self._stop.wait(self.interval_s):
                return
