"""Claims on units of work, so that runs over the same work share it instead of each doing all.

A claim is a file `<root>/<sha1 of the key>.claim`, created with O_CREAT | O_EXCL (atomic on a
local or NFSv3+ file system), holding the claimant's host, pid and a token unique to its
`Claims` object (so two runs in one process are told apart). Another run skips a held key and
comes back to it; a claim whose holder died (same host, pid gone) or that is older than
`stale_s` is taken over, so a killed run never blocks the work. Claims are released (deleted)
when the work's results are stored. In a rare race two runs may both take over one stale claim
and compute that unit twice: duplicates, never lost or corrupt results (score tables keep the
newest row per key).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path

from medattn.processes import pid_alive

STALE_S = 3600.0  # a claim older than this is taken over even when its holder looks alive


class Claims:
    def __init__(self, root: str | os.PathLike, stale_s: float = STALE_S):
        self.root = Path(root)
        self.stale_s = stale_s
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()

    def path(self, key: str) -> Path:
        return self.root / f"{hashlib.sha1(key.encode()).hexdigest()[:24]}.claim"

    def acquire(self, key: str) -> bool:
        """Claim `key` for this object: True when it is now ours (also when it already was)."""
        path = self.path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(path)
                if holder is None:
                    continue  # released meanwhile: try again
                if holder.get("token") == self.token:
                    return True
                if self._alive(holder, path):
                    return False
                try:  # the holder died: move its claim away (only one taker succeeds), then claim
                    os.rename(path, path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}"))
                except FileNotFoundError:
                    pass
                for stale in self.root.glob(f"{path.name}.stale-*"):
                    stale.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"host": self.host, "pid": os.getpid(), "token": self.token, "time": time.time(), "key": key}, handle)
            return True
        return False

    def held_elsewhere(self, key: str) -> bool:
        """Whether a live claim of another run holds `key`."""
        holder = self._holder(self.path(key))
        return holder is not None and holder.get("token") != self.token and self._alive(holder, self.path(key))

    def release(self, key: str) -> None:
        """Delete our claim on `key` (another run's claim is left alone)."""
        path = self.path(key)
        holder = self._holder(path)
        if holder is not None and holder.get("token") == self.token:
            path.unlink(missing_ok=True)

    def _holder(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return None
        except ValueError:  # being written this instant, or damaged: judged by its age
            return {"token": None, "host": None, "pid": None}

    def _alive(self, holder: dict, path: Path) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        if age > self.stale_s:
            return False
        if holder.get("host") != self.host or holder.get("pid") is None:
            return True  # another machine, or half-written: trusted until stale
        return pid_alive(int(holder["pid"]))
