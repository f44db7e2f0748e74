"""Maps computed on one background worker per app process, so that a rerun (any widget change
while PDA or integrated gradients run on a CPU) never throws away work in progress: the next run
finds the same job still going, or its map in the cache.

Jobs are keyed by what determines the map; a second request for a key that is in flight joins
it instead of starting another. One worker: the jobs are CPU- or GPU-bound, so running two at
once would not finish either sooner.

Four priorities, most urgent first (`PRIORITIES`): what a reader sees first (quick maps and the
previews of slow ones, `first=True`), the previews prefetched for the images next to the one on
screen (so ▶ shows a map in every panel at once), the final maps a reader waits for, and the
final maps prefetched. A prefetch never delays a reader for long: it is queued behind every
job of a more urgent kind, a reader's request for its key promotes it, a newer prefetch from the
same session drops its queued ones, and a running prefetch yields at its next progress tick
(PDA's windows; every other method's forward passes, `explain.base.ticking`) when a more urgent
job is queued, and is queued again. A reader's job that no page waits for any more (the reader
moved on: `release`) becomes a prefetch, so it no longer holds the worker from the next image.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Sequence

import streamlit as st

Progress = Callable[[int, int], None]
FIRST, PREFETCH_FIRST, WAITED, PREFETCH = 0, 1, 2, 3
PRIORITIES = {FIRST: "a reader's quick maps and previews", PREFETCH_FIRST: "prefetched previews",
              WAITED: "a reader's final maps", PREFETCH: "prefetched final maps"}
_PREFETCHED = {FIRST: PREFETCH_FIRST, WAITED: PREFETCH}  # a reader's kind → its prefetch kind
_WAITED = {v: k for k, v in _PREFETCHED.items()}


class Preempted(Exception):
    """Raised inside a prefetch job's progress tick to hand the worker to a more urgent job."""


@dataclass
class Job:
    future: Future
    work: Callable[[Progress], Any] | None = None
    priority: int = WAITED
    owner: Hashable = None
    started: bool = False
    progress: list[int] = field(default_factory=lambda: [0, 0])  # done, total, as last reported
    waiters: int = 0  # page runs waiting for it (submit without prefetch, until `release`)
    entry: int | None = None  # its live queue entry (earlier ones are stale), None when not queued
    queued_as: int = WAITED  # the priority of that entry

    def tick(self, done: int, total: int) -> None:
        self.progress[:] = [done, total]

    @property
    def prefetched(self) -> bool:
        return self.priority in _WAITED


class Worker:
    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._jobs: dict[Hashable, Job] = {}
        self._queued: Counter = Counter()  # live queue entries per priority
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
               owner: Hashable = None, first: bool = False) -> Job:
        """The job computing `work(progress)` for `key`: the one in flight (promoted to a
        reader's kind when a reader now waits for a prefetched one), or a new one. `first`:
        quick maps and previews, ahead of final maps. A reader's request (not `prefetch`)
        counts as a waiter until `release`."""
        kind = FIRST if first else WAITED
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.future.done():
                job = Job(Future(), work, _PREFETCHED[kind] if prefetch else kind, owner)
                self._jobs[key] = job
                self._put(key, job)
            elif not prefetch and job.prefetched:
                job.priority = _WAITED[job.priority]  # a reader holds its future now
                if not job.started:
                    self._put(key, job)
            if not prefetch:
                job.waiters += 1
            return job

    def release(self, keys: Iterable[Hashable]) -> None:
        """A page run no longer waits for these jobs (it ended, or the reader moved on): the
        ones nobody else waits for become prefetches, so that the worker can leave them for
        the next image's maps and come back to them after."""
        with self._lock:
            for key in keys:
                job = self._jobs.get(key)
                if job is None or job.future.done() or job.waiters == 0:
                    continue
                job.waiters -= 1
                if job.waiters == 0 and not job.prefetched:
                    job.priority = _PREFETCHED[job.priority]
                    if not job.started:
                        self._put(key, job)

    def prefetch(self, owner: Hashable, work: Sequence[tuple[Hashable, Callable[[Progress], Any]]],
                 first: Iterable[Hashable] = ()) -> None:
        """Queue `work` (key, function) behind every job of a more urgent kind, in this order,
        in place of `owner`'s earlier prefetches that have not started; keys in `first` are
        previews (ahead of every final map)."""
        keys, first = {key for key, _ in work}, set(first)
        with self._lock:
            for key, job in list(self._jobs.items()):
                if job.owner == owner and job.prefetched and not job.started and key not in keys:
                    job.future.cancel()
                    self._unqueue(job)
                    del self._jobs[key]
            for key, function in work:
                self.submit(key, function, prefetch=True, owner=owner, first=key in first)

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
        """Queue `job` at its priority; an entry it already has becomes stale."""
        self._unqueue(job)
        job.entry, job.queued_as = next(self._order), job.priority
        self._queued[job.priority] += 1
        self._queue.put((job.priority, job.entry, key))

    def _unqueue(self, job: Job) -> None:
        if job.entry is not None:
            self._queued[job.queued_as] -= 1
            job.entry = None

    def _more_urgent_queued(self, priority: int) -> bool:
        with self._lock:
            return any(self._queued[p] for p in range(priority))

    def _serve(self) -> None:
        while True:
            priority, entry, key = self._queue.get()
            if self._stopping:
                return
            with self._lock:
                job = self._jobs.get(key)
                if job is None or job.entry != entry:
                    continue  # an entry left behind by a promotion, a demotion or a cancelled prefetch
                self._unqueue(job)
                if job.started or not job.future.set_running_or_notify_cancel():
                    continue
                job.started = True
            self._run(key, job)

    def _run(self, key: Hashable, job: Job) -> None:
        def tick(done: int, total: int) -> None:
            job.tick(done, total)
            if self._stopping or (job.prefetched and self._more_urgent_queued(job.priority)):
                raise Preempted

        try:
            result = job.work(tick)
        except Preempted:
            with self._lock:
                if self._stopping:  # no one will run it again
                    job.future.set_exception(Preempted("the app is shutting down"))
                    return
                job.started, job.future = False, Future()  # back in the queue, behind the urgent job
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
