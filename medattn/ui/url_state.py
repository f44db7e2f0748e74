"""The sidebar's choice in the page's URL, so that a reload, a bookmark or a new tab opens the
same work: `?dataset=FOLDER&models=NAME&models=NAME` (Compare adds `image=ID`, bound to its image
chooser). The sidebar reads them on a session's first run, before its widgets exist, and writes
them back whenever the choice changes. Only researchers' sessions have the sidebar: a reader's
page never carries a folder in its URL.
"""

from __future__ import annotations

import streamlit as st

DATASET, MODELS = "dataset", "models"


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
