"""Opening an image in Compare from another page: the caller stores a request and switches
page; Compare applies it before its widgets exist (the only time their state may be set)."""

from __future__ import annotations

import streamlit as st

from medattn.data.dataset import Dataset

REQUEST_KEY = "compare_request"
COMPARE_PAGE = "pages/compare.py"


def open_in_compare(image_id: str, target_class: str) -> None:
    """Switch to Compare showing this image and class (ends the current run)."""
    st.session_state[REQUEST_KEY] = {"image_id": image_id, "target_class": target_class}
    st.switch_page(COMPARE_PAGE)


def apply(data: Dataset) -> None:
    """Show the requested image: its split, no other filter, its class as the target."""
    request = st.session_state.pop(REQUEST_KEY, None)
    if not request or request["image_id"] not in data.images.index:
        return
    image_id = request["image_id"]
    st.session_state.update({"cmp_split": str(data.images.at[image_id, "split"]), "cmp_class": "any",
                             "cmp_label": "any", "cmp_outcome": "any", "cmp_fair": False, "image": image_id})
    if request.get("target_class") in data.classes:
        st.session_state["cmp_target"] = request["target_class"]
        st.session_state["cmp_target_for"] = image_id


def default_target(data: Dataset, image_id: str) -> None:
    """On a new image, target its first labelled class (the first class for a normal image)."""
    if st.session_state.get("cmp_target_for") == image_id and st.session_state.get("cmp_target") in data.classes:
        return
    labelled = [c for c in data.classes if data.images.at[image_id, c]]
    st.session_state["cmp_target"] = (labelled or data.classes)[0]
    st.session_state["cmp_target_for"] = image_id
