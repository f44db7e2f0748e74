"""Slow maps computed on one background worker per app process, so that a rerun (any widget
change while PDA or integrated gradients run on a CPU) never throws away work in progress: the
next run finds the same job still going, or its map in the cache.

Jobs are keyed by what determines the map; a second request for a key that is in flight joins
it instead of starting another. One worker: the jobs are CPU- or GPU-bound, so running two at
once would not finish either sooner.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import streamlit as st

Progress = Callable[[int, int], None]


@dataclass
class Job:
    future: Future
    progress: list[int] = field(default_factory=lambda: [0, 0])  # done, total, as last reported

    def tick(self, done: int, total: int) -> None:
        self.progress[:] = [done, total]


class Worker:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medattn-maps")
        self._jobs: dict[Hashable, Job] = {}
        self._lock = threading.RLock()  # a job done before add_done_callback forgets itself at once

    def submit(self, key: Hashable, work: Callable[[Progress], Any]) -> Job:
        """The job computing `work(progress)` for `key`: the one in flight, or a new one."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.future.done():
                job = Job(Future())
                job.future = self._pool.submit(work, job.tick)
                self._jobs[key] = job
                job.future.add_done_callback(lambda _, key=key: self._forget(key))
            return job

    def _forget(self, key: Hashable) -> None:
        with self._lock:  # finished maps are in the on-disk cache; later requests read them there
            if key in self._jobs and self._jobs[key].future.done():
                del self._jobs[key]


@st.cache_resource
def worker() -> Worker:
    """The process's worker, shared by every session."""
    return Worker()
