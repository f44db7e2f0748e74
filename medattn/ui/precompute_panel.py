"""The button that fills a dataset's score table: precompute over the test split for the
selected checkpoints and methods, with a progress bar (the Leaderboard and Failure cases pages
read that table)."""

from __future__ import annotations

import streamlit as st

from medattn.data.skips import Skips
from medattn.explain import METHODS
from medattn.precompute import FAST_METHODS, precompute
from medattn.ui import loaders
from medattn.ui.errors import guard
from medattn.ui.methods import precompute_params, unavailable
from medattn.ui.sidebar import Selection


def precompute_panel(selection: Selection, key: str, expanded: bool) -> None:
    """An expander with the method choice and the run button; reruns the page when done."""
    data = selection.dataset
    test = data.split("test")
    with st.expander("Compute scores over the test split", expanded=expanded):
        defaults = [m for m in selection.methods if m in FAST_METHODS] or ["saliency", "gradcam"]
        methods = st.multiselect("Methods to score", list(METHODS), default=defaults, key=f"{key}_methods",
                                 help="Fast methods by default; PDA over a whole split takes long on a CPU.")
        if st.session_state.get(f"{key}_skipped"):
            st.warning(f"The last run left out {st.session_state[f'{key}_skipped']}")
        limit = st.number_input("Test images (0 = all)", min_value=0, max_value=len(test), value=0, step=10,
                                key=f"{key}_limit")
        st.caption(f"{len(test)} test images × {len(selection.models)} checkpoint(s); finished rows are kept, "
                   "so a rerun only computes what is missing.")
        if not st.button("Run precompute", key=f"{key}_run", type="primary", disabled=not (methods and selection.models)):
            return
        ids = list(test.index[: int(limit)] if limit else test.index)
        bar = st.progress(0.0, text="Starting…")
        skips = Skips("images")
        with guard("Precompute"):
            for number, loaded in enumerate(selection.models):
                usable = [m for m in methods if unavailable(loaded, m) is None]

                def tick(done: int, total: int, number: int = number) -> None:
                    share = (number + done / max(total, 1)) / len(selection.models)
                    bar.progress(min(share, 1.0), text=f"{loaded.name}: {done}/{total} maps")

                if usable:
                    precompute(data, [loaded.path], usable, image_ids=ids, run=loaders.run_for(data),
                               device=selection.device, params=precompute_params(loaded), progress=tick, skips=skips)
            bar.progress(1.0, text="Done")
            st.session_state[f"{key}_skipped"] = skips.summary()
            st.rerun()
