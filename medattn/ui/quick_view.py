"""The Compare grid of a session's first image as a still image until its final grid.

Why: Streamlit loads Plotly's 4.7 MB bundle when a page first shows a Plotly chart, and
compiling it holds the browser's main thread: on a 2-core CPU a fresh headless Chromium drew a
minimal Streamlit page's first Plotly chart 2.1-2.4 s after navigation, an image 1.1-1.6 s (with
or without the browser's cache), and on Compare an image that had arrived waited 1 s more while
Plotly compiled. So until a session's first final grid, `GridView.show` sends the grid as one
image (`medattn.viz.grid.grid_png`: the same panels, titles and scores, ASCII), captioned with how
many panels show a map; once every one does (or has failed), a hidden one-point Plotly chart makes the browser
load Plotly behind the still image while the final maps compute, so the final grid, and every grid after it in the session,
is the interactive Plotly figure (hover values, linked zoom) without a blank wait.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from medattn.ui.compare_grid import settled
from medattn.viz.grid import Grid, grid_figure, grid_png

INTERACTIVE_KEY = "cmp_interactive"  # session state: a Plotly grid has been sent to this browser
PRELOAD_KEY = "cmp_plotly_preload"
QUICK_NOTE = "Still image of the grid until its maps are final (then hover and zoom): {shown} of {total} panels show a map."
FIGURE_WIDTH = 1000  # px: the width grid_figure lays the grid out for


class GridView:
    """The grid's slot on the page, and a hidden one for Plotly's preload (created in page order)."""

    def __init__(self) -> None:
        self.slot = st.empty()
        self._preload = st.empty()
        self._preloading = False

    def clear(self) -> None:
        """Remove the grid and the preload (the grid failed)."""
        self.slot.empty()
        self._preload.empty()

    def show(self, panels: Grid, colormap: str, opacity: float, side_by_side: bool, key: str,
             final: bool = False, **chart) -> None:
        """Draw the grid: the still image while this session has not been sent a Plotly grid
        (unless `final`), else the Plotly figure (`chart`: `st.plotly_chart`'s options)."""
        if final or st.session_state.get(INTERACTIVE_KEY):
            st.session_state[INTERACTIVE_KEY] = True
            self._preload.empty()
            self.slot.plotly_chart(grid_figure(panels, colormap, opacity, side_by_side), key=key, **chart)
            return
        cells = [panel for row in panels for panel in row]
        shown = sum(panel.heatmap is not None for panel in cells)
        columns = max((len(row) for row in panels), default=1) * (2 if side_by_side else 1)
        png = grid_png(panels, colormap, opacity, side_by_side, cell=max(160, min(320, FIGURE_WIDTH // columns)))
        self.slot.image(png, caption=QUICK_NOTE.format(shown=shown, total=len(cells)), width="stretch",
                        alt="Compare grid, still image: " + "; ".join(
                            f"{p.column} · {p.row}: {p.note or p.caption or 'map'}" for p in cells))
        if all(settled(panel) for panel in cells) and not self._preloading:  # compiling Plotly holds up painting: not before
            self._preloading = True
            with self._preload.container():
                st.html(f"<style>.st-key-{PRELOAD_KEY} {{display: none}}</style>")
                with st.container(key=PRELOAD_KEY):
                    st.plotly_chart(go.Figure(go.Scatter(x=[0], y=[0])), key=f"{PRELOAD_KEY}_chart")
