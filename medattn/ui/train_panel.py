"""Training as a background job from the Models page: a form (arch, head, seed-paper preset,
epochs, input size, a new checkpoint name) that starts `medattn.train.train` through
`medattn.jobs` on the sidebar's dataset, and the training jobs with progress in batches, ETA,
Stop/Resume and the log tail (`medattn.ui.job_view`, as the precompute panel). The job outlives
the page; when it ends the page reruns and the new checkpoint is in the list above."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from medattn.jobs import JobManager, JobRunning, job_id, train_spec
from medattn.models.backbones import ARCHS
from medattn import inference
from medattn.models.catalog import free_name
from medattn.models.registry import HEADS
from medattn.train import PRESETS
from medattn.ui.errors import guard
from medattn.ui.job_view import job_view
from medattn.ui.plain import plain
from medattn.ui.sidebar import Selection, use_checkpoint

SHOWN_JOBS = 8  # the newest training jobs listed


def train_panel(selection: Selection, folder: Path) -> None:
    """The form and the training jobs that are not running (those are `running_trainings`)."""
    data = selection.dataset
    if data is None:
        st.info("Load a dataset in the sidebar to train a model on it.")
    else:
        _form(selection, folder)
    _jobs(folder, active=False)


def running_trainings(folder: Path) -> None:
    """The running training jobs with their progress and Stop, for the top of the page: coming
    back to it while one runs shows it, not inside a tab the page does not open on."""
    _jobs(folder, active=True)


def _form(selection: Selection, folder: Path) -> None:
    data = selection.dataset
    split = data.images["split"].value_counts()
    st.caption(f"Train a model on the current dataset, **{plain(data.name)}** ({split.get('train', 0)} train, "
               f"{split.get('val', 0)} val, {split.get('test', 0)} test images; {plain(', '.join(data.classes))}). "
               "It runs in the background: it goes on when you leave this page; Stop keeps the finished epochs "
               "and Resume continues from them. The best weights by validation loss become the checkpoint.")
    a, b, c = st.columns(3)
    arch = a.selectbox("Backbone", ARCHS, index=ARCHS.index("resnet18"), key="models_train_arch")
    head = b.selectbox("Head", list(HEADS), key="models_train_head")
    presets = list(PRESETS)  # goncalves first: the training CLI's default
    preset = c.selectbox("Preset", presets, key="models_train_preset",
                         help="Seed-paper protocols (learning rate, batch size, augmentation, early stopping).")
    chosen = PRESETS[preset]
    batch = f"batch {chosen.batch_size}"
    c.caption(chosen.note + ("" if batch in chosen.note else f", {batch}"))
    a, b, c = st.columns(3)
    epochs = a.number_input("Epochs", 1, 1000, 10, key="models_train_epochs",
                            help=f"The preset's own: {PRESETS[preset].epochs}")
    input_size = b.number_input("Input side (px)", 32, 1024, 224, step=32, key="models_train_input")
    name = c.text_input("New checkpoint name", key="models_train_name", placeholder="e.g. demo_resnet18_wildcat")
    if st.button("Start training", type="primary", key="models_train_start"):
        with guard("Training"):
            if not name.strip():
                raise ValueError("give the new checkpoint a name")
            # a plain name, taken in no listed folder: nothing is overwritten, no two share a name
            out = free_name(folder, name.strip(), [f for f in inference.checkpoint_folders() if f != Path(folder)])
            spec = train_spec(data.root, arch, head, out, preset, int(epochs), int(input_size), selection.device)
            try:
                JobManager().start(spec)
            except JobRunning as exc:
                st.warning(plain(exc))
            else:
                st.session_state[f"{_key(job_id(spec))}_seen"] = "active"
                st.rerun()


def _key(job: str) -> str:
    return f"models_train_{job}"


def _jobs(folder: Path, active: bool) -> None:
    manager = JobManager()
    jobs = [s for s in manager.list() if s.kind == "train" and s.active == active][:SHOWN_JOBS]
    if not jobs:
        return
    st.subheader("Training now" if active else "Training jobs")
    for status in jobs:
        st.markdown(f"**{plain(status.title)}**")
        job_view(status.id, _key(status.id))
        spec = manager.spec(status.id) or {}
        out = Path(spec.get("out", ""))
        made = out.with_name(out.name + ".json")
        if status.state == "done" and out.parent == Path(folder).resolve() and made.exists():
            if st.button(f"Use {plain(out.name)} in Compare", key=f"{_key(status.id)}_use"):
                use_checkpoint(out.name)
                st.rerun()
