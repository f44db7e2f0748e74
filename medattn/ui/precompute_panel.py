"""Precompute as a background job (`medattn.jobs`): the panel that starts one over the test
split for the selected checkpoints and methods and follows it (progress, maps/s, ETA, log tail,
Stop, Resume), and the list of every job. The job runs in its own process, so it goes on when
the reader switches pages, closes the tab or the server restarts (then it reads as interrupted
and Resume continues it); the Leaderboard and Failure cases pages read the rows it stores."""

from __future__ import annotations

import time

import streamlit as st

from medattn import pipeline
from medattn.explain import METHODS
from medattn.jobs import JobManager, JobRunning, JobStatus, job_id, precompute_spec
from medattn.precompute import FAST_METHODS
from medattn.ui import loaders
from medattn.ui.errors import guard
from medattn.ui.sidebar import Selection

POLL_S = 1.0  # how often a page showing a running job reads its status


def precompute_panel(selection: Selection, key: str, expanded: bool) -> None:
    """An expander with the method choice, the Start button and the job of this dataset ×
    checkpoint set; the page reruns when the job finishes, so that its rows appear."""
    data = selection.dataset
    test = data.split("test")
    manager = JobManager()
    checkpoints = [m.path for m in selection.models]
    with st.expander("Compute scores over the test split", expanded=expanded):
        defaults = [m for m in selection.methods if m in FAST_METHODS] or ["saliency", "gradcam"]
        methods = st.multiselect("Methods to score", list(METHODS), default=defaults, key=f"{key}_methods",
                                 help="Fast methods by default; PDA over a whole split takes long on a CPU.")
        limit = st.number_input("Test images (0 = all)", min_value=0, max_value=len(test), value=0, step=10,
                                key=f"{key}_limit")
        st.caption(f"{len(test)} test images × {len(selection.models)} checkpoint(s). Runs as a background job: "
                   "it goes on when you leave this page; finished rows are kept, so a rerun only computes what is missing.")
        ids = list(test.index[: int(limit)] if limit else test.index)
        spec = precompute_spec(data.root, checkpoints, methods, ids, None, loaders.run_for(data).root,
                               pipeline.CACHE_DIR / "heatmaps", selection.device, app_params=True)
        job = job_id(spec)
        status = manager.status(job)
        if st.button("Run precompute", key=f"{key}_run", type="primary",
                     disabled=not (methods and selection.models) or bool(status and status.active)):
            with guard("Precompute"):
                try:
                    manager.start(spec)
                except JobRunning as exc:
                    st.warning(str(exc))
                else:
                    st.rerun(scope="app")  # the button shows disabled, the job's progress below it
        if status is not None:
            (_live_job if status.active else _job)(job, key)


def _job(job: str, key: str) -> None:
    """The job's progress, log tail and Stop/Resume; reruns the whole page when it ends."""
    manager = JobManager()
    status = manager.status(job)
    if status is None:
        return
    st.progress(min(status.fraction, 1.0), text=describe(status))
    with st.expander("Log", expanded=status.state == "failed"):
        st.code(manager.log_tail(job) or "(empty)", language=None)
    if status.active:
        if st.button("Stop", key=f"{key}_stop", icon=":material/stop:"):
            manager.stop(job)
            st.rerun(scope="app")
    elif status.state in ("stopped", "failed", "interrupted"):
        if st.button("Resume", key=f"{key}_resume", icon=":material/play_arrow:"):
            with guard("Resume"):
                manager.resume(job)
            st.rerun(scope="app")
    elif st.session_state.get(f"{key}_seen") == "active":
        st.session_state[f"{key}_seen"] = status.state
        st.rerun(scope="app")  # it just finished: the page above reads its rows now
    st.session_state[f"{key}_seen"] = "active" if status.active else status.state


@st.fragment(run_every=POLL_S)
def _live_job(job: str, key: str) -> None:
    _job(job, key)


def describe(status: JobStatus) -> str:
    """'running: 120/480 maps · 2.4 maps/s · ETA 2 min 30 s' style line."""
    if status.active and not status.total:  # loading models, predicting: no maps planned yet
        return f"{status.state}: {status.message}"
    parts = [f"{status.state}: {status.done}/{status.total} maps"]
    if status.maps_per_s:
        parts.append(f"{status.maps_per_s:.2f} maps/s")
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
    """Every background job with its state, progress, maps/s and ETA (refreshed while any runs)."""
    jobs = JobManager().list()
    if not jobs:
        return
    active = sum(j.active for j in jobs)
    with st.expander(f"Background jobs ({active} running)" if active else f"Background jobs ({len(jobs)})"):
        (_live_list if active else _list)()


def _list() -> None:
    for status in JobManager().list():
        when = time.strftime("%H:%M:%S", time.localtime(status.updated))
        st.progress(min(status.fraction, 1.0), text=f"**{status.title}** · {describe(status)} · updated {when}")


@st.fragment(run_every=POLL_S)
def _live_list() -> None:
    _list()
