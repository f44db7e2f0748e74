"""The sidebar every page shares: dataset, checkpoints, device and method set.

`sidebar()` runs in workbench.py before the page, so its widgets keep their values across pages;
it stores the resulting `Selection` where `current()` finds it. The dataset and checkpoints also
live in the URL (`url_state`): a reload or a new tab opens them again. Problems (a folder that is not a
valid dataset, a checkpoint that cannot be read or predicts other classes) are shown in the
sidebar and leave the rest of the app working.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
import torch

from medattn import inference
from medattn.data.dataset import Dataset
from medattn.data.demo import ensure_demo
from medattn.device import best_device, describe
from medattn.explain import METHODS
from medattn.inference import LoadedModel, list_all_checkpoints
from medattn.ui import loaders, url_state
from medattn.ui.entrypoint import ensure_entrypoint
from medattn.ui.errors import message, show_error
from medattn.ui.methods import DEFAULT_METHODS, PDA_SAMPLES, unavailable
from medattn.ui.plain import plain

STATE_KEY = "medattn_selection"
DATASET_KEY = "sb_dataset_path"
# The baseline and the WILDCAT model are selected by default: they carry every default method
# (WILDCAT class maps need the wildcat head) and keep a cold first grid quick on a CPU.
DEFAULT_HEADS = ("linear", "wildcat")


@dataclass
class Selection:
    """What the sidebar chose: the dataset (None with `dataset_problem` when it failed), the
    loaded models whose classes match it, and what could not be used, with the reason."""

    dataset: Dataset | None = None
    dataset_problem: str | None = None
    models: list[LoadedModel] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)  # checkpoint name → why
    device: str = "auto"
    methods: list[str] = field(default_factory=list)

    def model(self, name: str) -> LoadedModel | None:
        return next((m for m in self.models if m.name == name), None)


def current() -> Selection:
    """The selection made by the sidebar in this run (an empty one outside the app)."""
    ensure_entrypoint()
    return st.session_state.get(STATE_KEY) or Selection()


def _base(path: Path) -> Path:
    """NAME for NAME, NAME.json or NAME.safetensors."""
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def _meta(base: Path) -> dict:
    """A checkpoint's NAME.json without loading its weights; {} when unreadable."""
    try:
        return json.loads((base.parent / f"{base.name}.json").read_text())
    except (OSError, ValueError):
        return {}


def default_checkpoints(paths: list[Path]) -> list[str]:
    """Names selected on first start: the DEFAULT_HEADS checkpoints, else the first two."""
    chosen = [p.name for p in paths if _meta(p).get("head") in DEFAULT_HEADS]
    return chosen or [p.name for p in paths[:2]]


def opening_checkpoints(data: Dataset | None) -> list[Path]:
    """The checkpoints a session opened without a link starts with (`default_checkpoints`)
    that can answer `data`'s classes: what the server loads before its first visitor
    (`medattn.ui.warmup`)."""
    found = list_all_checkpoints()
    chosen = set(default_checkpoints(found))
    return [p for p in found if p.name in chosen and (data is None or _unusable_reason(_meta(_base(p)), data) is None)]


def use_dataset(path: str) -> None:
    """Point the sidebar at a dataset folder (from a page button): applied on the next run."""
    st.session_state["sb_pending_dataset"] = str(path)


def use_checkpoint(name: str) -> None:
    """Add a checkpoint of the folder to the sidebar's choice (from a page button): applied on
    the next run."""
    st.session_state.setdefault("sb_pending_checkpoints", []).append(name)


def _unusable_reason(meta: dict, data: Dataset) -> str | None:
    """Why a checkpoint cannot answer the dataset's classes, from its json alone; None when it
    can (same names, a subset of its outputs, or a mapping saved for this dataset)."""
    from medattn.models.class_names import exact_mapping, suggest_mapping

    classes = [str(c) for c in meta.get("classes") or []]
    if not classes or exact_mapping(classes, data.classes) is not None or data.name in (meta.get("class_map") or {}):
        return None
    suggested = suggest_mapping(classes, data.classes)
    if len(suggested) == len(data.classes):
        spelled = [f"{m} → {c}" for c, m in suggested.items() if c != m]
        return (f"class names differ in spelling only ({', '.join(spelled[:3])}{', …' if len(spelled) > 3 else ''}); "
                "confirm the mapping on the Models page")
    def short(names: list[str]) -> str:
        return ", ".join(names[:4]) + (f", … ({len(names)} classes)" if len(names) > 4 else "")

    return (f"predicts {short([c for c in classes if c])}, but the dataset has {short(list(data.classes))}; "
            "map or import on the Models page")


def _dataset_section(selection: Selection) -> None:
    st.sidebar.subheader("Dataset")
    if "sb_pending_dataset" in st.session_state:
        st.session_state[DATASET_KEY] = st.session_state.pop("sb_pending_dataset")
    elif DATASET_KEY not in st.session_state:  # a session's first run: the link's, else the server's default
        linked = url_state.linked_dataset()
        st.session_state[DATASET_KEY] = default_dataset() if linked is None else linked
    typed = st.sidebar.text_input("Dataset folder", key=DATASET_KEY, placeholder="empty: the embedded demo",
                                  help="A folder with dataset.json, images.csv and boxes.csv. Empty: the demo.")
    try:
        if typed.strip():
            path = Path(typed.strip()).expanduser()
        else:
            with st.spinner("Building the demo dataset (first start only)…"):
                path = ensure_demo()
        selection.dataset = loaders.dataset(path)
    except Exception as exc:  # noqa: BLE001 - shown in the sidebar; the pages say what is missing
        selection.dataset_problem = message(exc)
        show_error(exc, "Dataset not loaded", st.sidebar)
        return
    data = selection.dataset
    st.sidebar.caption(f"**{plain(data.name)}** · {len(data.images)} images · {data.task} · "
                       f"classes: {plain(', '.join(data.classes))}")


def _checkpoint_section(selection: Selection) -> None:
    st.sidebar.subheader("Checkpoints")
    folders = inference.checkpoint_folders()
    found = list_all_checkpoints()
    names = [p.name for p in found]
    if "sb_checkpoints" not in st.session_state:  # a session's first run: the link's, else the defaults
        linked = url_state.linked_models()
        st.session_state["sb_checkpoints"] = default_checkpoints(found) if linked is None else linked
        gone = [n for n in linked or [] if n not in names]
        if gone:
            st.sidebar.warning(f"The link names {plain(', '.join(gone))}, not among the checkpoints (renamed or deleted?)")
    pending = st.session_state.pop("sb_pending_checkpoints", [])
    # checkpoints removed from the folder drop out of the choice
    st.session_state["sb_checkpoints"] = [n for n in dict.fromkeys(st.session_state["sb_checkpoints"] + pending) if n in names]
    # Pills show every name whole (a multiselect's chips cut them at about 25 characters).
    chosen = st.sidebar.pills("Yours and the repository's", names, selection_mode="multi", key="sb_checkpoints",
                              format_func=plain,  # pills render markdown: names show as typed
                              help="Every NAME.safetensors + NAME.json in " + plain(" and ".join(str(f) for f in folders))) or []
    extra = st.sidebar.text_input("Another checkpoint (path)", key="sb_extra_checkpoint",
                                  placeholder="path/to/NAME.safetensors")
    if not found:
        st.sidebar.info(f"No checkpoints in {plain(' or '.join(str(f) for f in folders))}; import or train one on the "
                        "Models page.")
    paths = [p for p in found if p.name in chosen] + ([Path(extra.strip()).expanduser()] if extra.strip() else [])
    for path in paths:
        name = _base(path).name
        data = selection.dataset
        why = _unusable_reason(_meta(_base(path)), data) if data is not None else None
        if why is not None:
            selection.unusable[name] = why
            continue
        try:
            loaded = loaders.model(path, selection.device)
            selection.models.append(loaded.for_dataset(data) if data is not None else loaded)
        except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not hide the others
            selection.unusable[name] = message(exc)
    by_reason: dict[str, list[str]] = {}
    for name, why in selection.unusable.items():
        by_reason.setdefault(why, []).append(f"**{plain(name)}**")
    for why, names in by_reason.items():
        st.sidebar.warning(f"{', '.join(names)} not used: {plain(why)}")
    if selection.unusable:
        st.sidebar.page_link("pages/models.py", label="Models page: import, map classes", icon=":material/model_training:")


def _device_section(selection: Selection) -> None:
    options = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    selection.device = st.sidebar.selectbox("Device", options, key="sb_device")
    try:
        st.sidebar.caption(f"Running on {describe(best_device(selection.device))}")
    except ValueError as exc:
        st.sidebar.error(str(exc))


def default_methods(models: list[LoadedModel]) -> list[str]:
    """DEFAULT_METHODS less those no chosen model supports (WILDCAT class maps without a WILDCAT
    head): the grid then opens without columns that could show nothing."""
    return [m for m in DEFAULT_METHODS if not models or any(unavailable(model, m) is None for model in models)]


def _method_section(selection: Selection) -> None:
    # The default follows the chosen models for as long as nobody picked other methods.
    default, previous = default_methods(selection.models), st.session_state.get("sb_methods_default")
    if "sb_methods" not in st.session_state or st.session_state["sb_methods"] == previous:
        st.session_state["sb_methods"] = default
    st.session_state["sb_methods_default"] = default
    selection.methods = st.sidebar.multiselect("Methods", list(METHODS), key="sb_methods")
    st.sidebar.caption(f"PDA (fast): a window of 1/8 of the model's input (16 px at 128) every half window, "
                       f"{PDA_SAMPLES} marginal samples.")


def sidebar() -> Selection:
    """Draw the shared sidebar and remember its selection for the page."""
    selection = Selection()
    _dataset_section(selection)
    _device_section(selection)
    _checkpoint_section(selection)
    _method_section(selection)
    url_state.record(st.session_state[DATASET_KEY], default_dataset(), list(st.session_state["sb_checkpoints"]))
    st.session_state[STATE_KEY] = selection
    return selection


def default_dataset() -> str:
    """The folder a session opens without a link: MEDATTN_DATASET, else "" (the embedded demo)."""
    return os.environ.get("MEDATTN_DATASET", "")
