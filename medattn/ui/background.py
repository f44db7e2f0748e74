"""Slow maps computed on one background worker per app process, so that a rerun (any widget
change while PDA or integrated gradients run on a CPU) never throws away work in progress: the
next run finds the same job still going, or its map in the cache.

Jobs are keyed by what determines the map; a second request for a key that is in flight joins
it instead of starting another. One worker: the jobs are CPU- or GPU-bound, so running two at
once would not finish either sooner.

Two priorities: maps a reader waits for, and maps prefetched for the images next to the one on
screen (so ▶ finds them in the cache). A prefetch never delays a waiting reader for long: it is
queued behind every waited-for job, a request for its key promotes it, a newer prefetch from the
same session drops its queued ones, and a running prefetch that reports progress (PDA's
windows) yields at its next tick when a reader's job is queued, and is queued again.
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import streamlit as st

Progress = Callable[[int, int], None]
WAITED, PREFETCH = 0, 1


class Preempted(Exception):
    """Raised inside a prefetch job's progress tick to hand the worker to a waiting reader."""


@dataclass
class Job:
    future: Future
    work: Callable[[Progress], Any] | None = None
    priority: int = WAITED
    owner: Hashable = None
    started: bool = False
    progress: list[int] = field(default_factory=lambda: [0, 0])  # done, total, as last reported

    def tick(self, done: int, total: int) -> None:
        self.progress[:] = [done, total]


class Worker:
    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._jobs: dict[Hashable, Job] = {}
        self._waiting = 0  # reader jobs queued, not started
        self._lock = threading.RLock()
        self._stopping = False
        # Not a daemon, said explicitly: a thread inherits daemon from the thread that starts it,
        # and Streamlit's script threads (AppTest's too) are daemons. A daemon worker still inside
        # torch or pyarrow when the interpreter finalises aborted it (SIGABRT, "terminate called
        # without an active exception") or hung it in pyarrow's exit handlers. Stopped at exit the
        # way concurrent.futures stops its workers: before non-daemon threads are joined.
        threading._register_atexit(self.stop)
        self._thread = threading.Thread(target=self._serve, name="medattn-maps", daemon=False)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel the queued jobs, stop the one at work at its next progress tick (or let it
        finish), end the thread and wait up to `timeout` seconds (None: until it ends) for it;
        whether it has ended."""
        with self._lock:
            self._stopping = True
            for job in self._jobs.values():
                job.future.cancel()
            self._queue.put((-1, -1, None))  # wakes the thread
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, key: Hashable, work: Callable[[Progress], Any], prefetch: bool = False,
               owner: Hashable = None) -> Job:
        """The job computing `work(progress)` for `key`: the one in flight (promoted when a
        reader now waits for a prefetched one), or a new one."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.future.done():
                if not prefetch and job.priority == PREFETCH:
                    job.priority = WAITED  # never preempted from now on: a reader holds its future
                    if not job.started:
                        self._put(key, job)
                return job
            job = Job(Future(), work, PREFETCH if prefetch else WAITED, owner)
            self._jobs[key] = job
            self._put(key, job)
            return job

    def prefetch(self, owner: Hashable, work: Sequence[tuple[Hashable, Callable[[Progress], Any]]]) -> None:
        """Queue `work` (key, function) behind every waited-for job, in this order, in place of
        `owner`'s earlier prefetches that have not started."""
        keys = {key for key, _ in work}
        with self._lock:
            for key, job in list(self._jobs.items()):
                if job.owner == owner and job.priority == PREFETCH and not job.started and key not in keys:
                    job.future.cancel()
                    del self._jobs[key]
            for key, function in work:
                self.submit(key, function, prefetch=True, owner=owner)

    def pending(self) -> int:
        """Jobs queued or at work."""
        with self._lock:
            return sum(not job.future.done() for job in self._jobs.values())

    def running(self, key: Hashable) -> Job | None:
        """The job for `key` if it has started and not finished."""
        with self._lock:
            job = self._jobs.get(key)
            return job if job is not None and job.started and not job.future.done() else None

    def _put(self, key: Hashable, job: Job) -> None:
        self._waiting += job.priority == WAITED
        self._queue.put((job.priority, next(self._order), key))

    def _serve(self) -> None:
        while True:
            priority, _, key = self._queue.get()
            if self._stopping:
                return
            with self._lock:
                self._waiting -= priority == WAITED
                job = self._jobs.get(key)
                if job is None or job.started or job.priority != priority or not job.future.set_running_or_notify_cancel():
                    continue  # done, cancelled, or an entry left behind by a promotion
                job.started = True
            self._run(key, job)

    def _run(self, key: Hashable, job: Job) -> None:
        def tick(done: int, total: int) -> None:
            job.tick(done, total)
            if self._stopping or (job.priority == PREFETCH and self._waiting):
                raise Preempted

        try:
            result = job.work(tick)
        except Preempted:
            with self._lock:
                if self._stopping:  # no one will run it again
                    job.future.set_exception(Preempted("the app is shutting down"))
                    return
                job.started, job.future = False, Future()  # back in the queue, behind the reader's job
                self._put(key, job)
            return
        except BaseException as exc:  # noqa: BLE001 - the waiting page shows it on the panel
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
        with self._lock:  # finished maps are in the on-disk cache; later requests read them there
            if self._jobs.get(key) is job:
                del self._jobs[key]


@st.cache_resource
def worker() -> Worker:
    """The process's worker, shared by every session."""
    return Worker()
