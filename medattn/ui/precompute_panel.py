"""Precompute as a background job (`medattn.jobs`): the panel that starts one over a split (test
first; a dataset built with `--split train` has none) for the selected checkpoints and methods
and follows it (progress, maps/s, ETA, log tail, Stop, Resume: `medattn.ui.job_view`, shared
with training), and the list of every job. The job
runs in its own process, so it goes on when the reader switches pages, closes the tab or the
server restarts (then it reads as interrupted and Resume continues it); the Leaderboard and
Failure cases pages read the rows it stores."""

from __future__ import annotations

import streamlit as st

from medattn import pipeline
from medattn.explain import METHODS
from medattn.jobs import JobManager, JobRunning, job_id, precompute_spec
from medattn.jobs.precompute import FAST_METHODS
from medattn.metrics.faithfulness import REFERENCE_MAPS, reference_name
from medattn.ui import loaders
from medattn.ui.errors import guard
from medattn.ui.job_view import job_view, jobs_list  # noqa: F401 - jobs_list: the pages import it from here
from medattn.ui.plain import plain
from medattn.ui.sidebar import Selection
from medattn.ui.split_scope import data_splits, split_images


def precompute_panel(selection: Selection, key: str, expanded: bool) -> None:
    """An expander with the method choice and the Start button, and below it, always in sight,
    the job of this dataset × checkpoint set (progress, Stop, Resume): coming back to the page
    while it runs shows it unfolded. The page reruns when the job finishes, so that its rows
    appear."""
    data = selection.dataset
    manager = JobManager()
    checkpoints = [m.path for m in selection.models]
    with st.expander("Compute scores over a split", expanded=expanded):
        left, right = st.columns([1, 3])
        split = left.selectbox("Split", data_splits(data), key=f"{key}_split")
        images = split_images(data, split)
        defaults = [m for m in selection.methods if m in FAST_METHODS] or ["saliency", "gradcam"]
        methods = right.multiselect("Methods to score", list(METHODS), default=defaults, key=f"{key}_methods",
                                    help="Fast methods by default; PDA over a whole split takes long on a CPU.")
        limit = st.number_input(f"Images of the {split} split (0 = all)", min_value=0, max_value=len(images), value=0,
                                step=10, key=f"{key}_limit")
        st.caption(f"{len(images)} {split} images × {len(selection.models)} checkpoint(s). Runs as a background job: "
                   "it goes on when you leave this page; finished rows are kept, so a rerun only computes what is missing.")
        faithful = st.checkbox("Faithfulness metrics and reference maps", value=False, key=f"{key}_faithfulness",
                               help="Deletion, insertion, ROAD (MoRF, LeRF), sparseness and complexity in every row "
                                    "(about 160 more forward passes per map), and the blank, random, centre and "
                                    "box-prior reference maps scored beside the methods.")
        ids = list(images[: int(limit)] if limit else images)
        references = [reference_name(kind) for kind in REFERENCE_MAPS] if faithful else []
        spec = precompute_spec(data.root, checkpoints, [*methods, *references], ids, None, loaders.run_for(data).root,
                               pipeline.CACHE_DIR / "heatmaps", selection.device, app_params=True,
                               faithfulness=pipeline.FaithfulnessSettings().fields() if faithful else None)
        job = job_id(spec)
        status = manager.status(job)
        waiting = ("This precompute is already running (from this or another tab): its progress and Stop are below."
                   if status is not None and status.active else
                   None if methods and selection.models else "Choose at least one method and one checkpoint.")
        if waiting:
            st.caption(waiting)
        if st.button("Run precompute", key=f"{key}_run", type="primary", disabled=waiting is not None, help=waiting):
            with guard("Precompute"):
                try:
                    manager.start(spec)
                except JobRunning as exc:
                    st.warning(plain(exc))
                else:
                    st.rerun(scope="app")  # the button shows disabled, the job's progress below it
    if status is not None:
        job_view(job, key)
