"""Whether a process on this machine still runs: used by job Stop, shared-work claims and the
upload spool's sweep, so that each treats a dead owner's leftovers the same way."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` runs here; a zombie counts as ended (/proc where there is one, else
    signal 0; a process of another user counts as running)."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
