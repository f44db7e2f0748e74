"""Where a Stop may cut a job's work short, and nowhere else.

A precompute job's SIGTERM handler (`medattn.jobs.worker`) calls `interrupt()`. Inside an
`interruptible()` block (one map in `score_batch`, the loading before the maps) that raises
`Interrupted` there and then, so a long map (PDA, integrated gradients) ends at once. Anywhere
else it does nothing, and the work sees its `stop()` before the next map: so a Stop never cuts
short the writing of a batch's rows, a claim or the status, which is what made a Stop that
arrived while a batch was being stored lose that batch's finished rows.

Signal handlers run in the main thread, so only blocks entered there are marked; a block in
another thread (the app, a test running two precomputes in threads) is never interrupted.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_armed = False  # the main thread is inside an interruptible block


class Interrupted(BaseException):
    """Raised by `interrupt()` inside an `interruptible()` block: `score_batch` returns the rows
    finished before it, precompute stores them and returns when its `stop()` says so. A
    BaseException, so that no `except Exception` swallows it."""


@contextmanager
def interruptible() -> Iterator[None]:
    """Mark the block as one a SIGTERM may end at once (`Interrupted` raised inside it); a no-op
    outside the main thread and inside an outer block."""
    global _armed
    if _armed or threading.current_thread() is not threading.main_thread():
        yield
        return
    _armed = True
    try:
        yield
    finally:
        _armed = False


def interrupt() -> None:
    """For a signal handler: raise `Interrupted` when the main thread is in an `interruptible()`
    block (disarming it, so that the raise happens once even when it lands while the block
    exits); return otherwise."""
    global _armed
    if _armed:
        _armed = False
        raise Interrupted
