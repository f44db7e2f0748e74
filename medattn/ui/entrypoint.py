"""The workbench script (workbench.py), and the one way into a page: through it.

Streamlit runs a pages/ script on its own (its legacy multipage mode: no workbench script, no sign-in
check, no sidebar) when a run starts before the app's st.navigation has switched that mode off,
as on the first request after a start when it names a page's URL, and on every AppTest run of the
app. `ensure_entrypoint()` runs the workbench script in its place instead.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

APP_SCRIPT = Path(__file__).resolve().parents[2] / "workbench.py"


def ensure_entrypoint() -> None:
    """In a run of a page on its own (the legacy mode), run the workbench script in its place, in this
    same run so that button clicks are not lost, then stop; elsewhere nothing."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP_SCRIPT), run_name="__main__")
        st.stop()
