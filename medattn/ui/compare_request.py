"""Opening an image in Compare from another page or from a link (`?image=ID`): the caller stores
a request and switches page, or the link is read on a session's first run; Compare applies it
before its widgets exist (the only time their state may be set), showing the image whatever
filters the page would have opened with."""

from __future__ import annotations

import streamlit as st

from medattn.data.dataset import Dataset
from medattn.ui import url_state

REQUEST_KEY = "compare_request"
COMPARE_PAGE = "pages/compare.py"


def open_in_compare(image_id: str, target_class: str) -> None:
    """Switch to Compare showing this image and class (ends the current run)."""
    st.session_state[REQUEST_KEY] = {"image_id": image_id, "target_class": target_class}
    st.switch_page(COMPARE_PAGE)


def follow_link(data: Dataset) -> str | None:
    """On a session's first run of Compare, a link's `?image=ID` (any image of the dataset)
    becomes a request; later runs write the chosen image to the URL (`url_state`). Returns the
    linked id when the dataset has no such image (the page says so instead of silently
    showing another one)."""
    linked = url_state.linked_image()
    if linked is None or "image" in st.session_state or REQUEST_KEY in st.session_state:
        return None
    if linked not in data.images.index:
        return linked
    st.session_state[REQUEST_KEY] = {"image_id": linked, "target_class": None}
    return None


def apply(data: Dataset) -> str | None:
    """Show the requested image: its split, no other filter, its class as the target
    (`first_target` when the request names none). Returns a link's image id that is not in the
    dataset, or None."""
    unknown = follow_link(data)
    request = st.session_state.pop(REQUEST_KEY, None)
    if not request or request["image_id"] not in data.images.index:
        return unknown
    image_id = request["image_id"]
    st.session_state.update({"cmp_split": str(data.images.at[image_id, "split"]), "cmp_class": "any",
                             "cmp_label": "any", "cmp_outcome": "any", "cmp_fair": False, "cmp_boxed": False,
                             "image": image_id})
    if request.get("target_class") in data.classes:
        st.session_state["cmp_target"] = request["target_class"]
        st.session_state["cmp_target_for"] = image_id


def default_target(data: Dataset, image_id: str) -> None:
    """On a new image, target `first_target`'s class."""
    if st.session_state.get("cmp_target_for") == image_id and st.session_state.get("cmp_target") in data.classes:
        return
    st.session_state["cmp_target"] = first_target(data, image_id)
    st.session_state["cmp_target_for"] = image_id


def first_target(data: Dataset, image_id: str) -> str:
    """The class Compare explains first: the first class (in the dataset's order) the image has
    ground truth of (a box, else a mask), since those maps can be scored; else its first labelled
    class; else the first class. An image labelled Effusion and Nodule whose only box is a
    Nodule opens on Nodule, not on "no Effusion box"."""
    truth = set(data.boxes_for(image_id)["label"]) or set(data.masks.loc[data.masks["image_id"] == image_id, "label"])
    boxed = [c for c in data.classes if c in truth]
    labelled = [c for c in data.classes if data.images.at[image_id, c]]
    return (boxed or labelled or data.classes)[0]
