"""A study chooser whose option labels never change within a session.

Streamlit's browser sends a selectbox's choice back as the LABEL it was shown; when the label of
the chosen option changes between runs (progress in it, a study renamed by another admin), the
next interaction no longer matches it, the page falls to another study and a form submitted in
that run is dropped. So each option keeps the first label this session showed for it. Labels
are also unique (a name shared by two studies gets the id added): the browser's label maps back
to the first option that has it, so the second "Round 1" could not be opened.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import streamlit as st


def study_picker(labels: Mapping[str, str], key: str, label: str = "Study") -> str:
    """A selectbox over study ids (`labels`: id → label now); returns the chosen id."""
    shown = st.session_state.setdefault(f"{key}__labels", {})
    taken = Counter(labels.values())
    for study_id, text in labels.items():
        if study_id not in shown:
            shown[study_id] = text if taken[text] == 1 and text not in shown.values() else f"{text} ({study_id})"
    return st.selectbox(label, list(labels), format_func=shown.get, key=key)
