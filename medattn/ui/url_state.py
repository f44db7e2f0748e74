"""The sidebar's choice and Compare's image in the page's URL, so that a reload, a bookmark or a
new tab opens the same work: `?dataset=FOLDER&models=NAME&models=NAME&image=ID`. The sidebar (and
Compare, `compare_request.follow_link`) read them on a session's first run, before their widgets
exist, and write them back whenever the choice changes. Written here rather than bound to the
widgets (`bind="query-params"`), because a bound widget drops its parameter while its value is
its default: the first image of a split vanished from the URL and a reload opened another one.
Only researchers' sessions have the sidebar: a reader's page never carries a folder in its URL.
"""

from __future__ import annotations

import streamlit as st

DATASET, MODELS, IMAGE = "dataset", "models", "image"


def linked_dataset() -> str | None:
    """The dataset folder the URL names ("" is the embedded demo); None when it names none."""
    return st.query_params.get(DATASET)


def linked_models() -> list[str] | None:
    """The checkpoint names the URL names (possibly none); None when it says nothing of models."""
    if MODELS not in st.query_params:
        return None
    return [name for name in st.query_params.get_all(MODELS) if name]


def record(dataset: str, default_dataset: str, models: list[str]) -> None:
    """Put the current dataset (left out while it is the default one) and models in the URL,
    touching it only where it changed (each write is a message to the browser)."""
    if dataset == default_dataset:
        if DATASET in st.query_params:
            del st.query_params[DATASET]
    elif st.query_params.get(DATASET) != dataset:
        st.query_params[DATASET] = dataset
    if linked_models() != list(models):
        st.query_params[MODELS] = list(models) or [""]


def linked_image() -> str | None:
    """The image id the URL names; None when it names none."""
    return st.query_params.get(IMAGE)


def record_image(image_id: str) -> None:
    """Put Compare's image in the URL (only when it changed)."""
    if st.query_params.get(IMAGE) != image_id:
        st.query_params[IMAGE] = image_id
