"""One view of a background job (`medattn.jobs`) of any kind, precompute or training: progress
with its unit (maps, batches), rate, ETA and stage, the log tail, Stop or Resume, refreshed every
`POLL_S` while it runs (`st.fragment(run_every=...)`); and the list of every job. The precompute
panel (Leaderboard, Failure cases) and the Models page's training panel both use it."""

from __future__ import annotations

import time

import streamlit as st

from medattn.jobs import JobManager, JobStatus
from medattn.ui.errors import guard

POLL_S = 1.0  # how often a page showing a running job reads its status


def job_view(job: str, key: str) -> None:
    """The job's progress, log tail and Stop/Resume, live while it runs; the whole page reruns
    when it ends (so that what it made, rows or a checkpoint, appears). `key`: unique per job
    on the page."""
    status = JobManager().status(job)
    if status is not None:
        (_live_job if status.active else _job)(job, key)


def _job(job: str, key: str) -> None:
    manager = JobManager()
    status = manager.status(job)
    if status is None:
        return
    st.progress(min(status.fraction, 1.0), text=describe(status))
    with st.expander("Log", expanded=status.state == "failed"):
        st.code(manager.log_tail(job) or "(empty)", language=None)
    if status.active:
        if st.button("Stop job", key=f"{key}_stop", icon=":material/stop:"):
            # the worker stores the rows of the maps it has finished before it ends: seconds, and
            # up to a minute for a slow model, with nothing else on the page moving meanwhile
            with st.spinner("Stopping the job: storing the maps it has finished…"):
                manager.stop(job)
            st.rerun(scope="app")
    elif status.state in ("stopped", "failed", "interrupted"):
        if st.button("Resume", key=f"{key}_resume", icon=":material/play_arrow:"):
            resumed = False
            with guard("Resume"):  # its message stays on the page: a rerun would wipe it
                manager.resume(job)
                resumed = True
            if resumed:
                st.rerun(scope="app")
    elif st.session_state.get(f"{key}_seen") == "active":
        st.session_state[f"{key}_seen"] = status.state
        st.rerun(scope="app")  # it just finished: the page around it reads what it made now
    st.session_state[f"{key}_seen"] = "active" if status.active else status.state


@st.fragment(run_every=POLL_S)
def _live_job(job: str, key: str) -> None:
    _job(job, key)


def describe(status: JobStatus) -> str:
    """'running: 120/480 maps · 2.4 maps/s · ETA 2 min 30 s' or 'running: epoch 2/5 · 14/40
    batches · 1.2 batches/s · ETA 21 s' style line."""
    if status.active and not status.total:  # loading, predicting: nothing counted yet
        return f"{status.state}: {status.message}"
    stage = f"{status.stage} · " if status.stage else ""
    parts = [f"{status.state}: {stage}{status.done}/{status.total} {status.unit}"]
    if status.rate:
        parts.append(f"{status.rate:.2f} {status.unit}/s")
    if status.active and status.eta_s is not None:
        parts.append(f"ETA {_duration(status.eta_s)}")
    if status.message and not status.active:
        parts.append(status.message)
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def jobs_list() -> None:
    """Every background job with its state, progress, rate and ETA (refreshed while any runs)."""
    jobs = JobManager().list()
    if not jobs:
        return
    active = sum(j.active for j in jobs)
    with st.expander(f"Background jobs ({active} running)" if active else f"Background jobs ({len(jobs)})",
                     expanded=bool(active)):
        (_live_list if active else _list)()


def _list() -> list[JobStatus]:
    jobs = JobManager().list()
    for status in jobs:
        when = time.strftime("%H:%M:%S", time.localtime(status.updated))
        st.progress(min(status.fraction, 1.0), text=f"**{status.title}** · {describe(status)} · updated {when}")
    return jobs


@st.fragment(run_every=POLL_S)
def _live_list() -> None:
    if not any(status.active for status in _list()):  # ended or died: the header's count is stale
        st.rerun(scope="app")
