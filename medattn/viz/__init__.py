"""Figures without Streamlit: heatmap overlays (OpenCV), panel grids and charts (Plotly), and the
grid PNG export (composited with OpenCV, so no browser or kaleido is needed)."""

from medattn.viz.charts import (agreement_scatter, box_size_histogram, cascading_figure, count_bars, interval_bars,
                                perturbation_curves_figure, pr_figure, reader_change_figure, reader_roc_figure,
                                roc_figure)
from medattn.viz.colormaps import COLORMAPS, colorize, overlay, to_rgb, window_level
from medattn.viz.grid import Panel, grid_figure, grid_png, render_panel
from medattn.viz.labels import as_label, as_labels
from medattn.viz.palette import model_colors

__all__ = [
    "COLORMAPS",
    "Panel",
    "agreement_scatter",
    "as_label",
    "as_labels",
    "box_size_histogram",
    "cascading_figure",
    "colorize",
    "count_bars",
    "grid_figure",
    "grid_png",
    "interval_bars",
    "model_colors",
    "overlay",
    "perturbation_curves_figure",
    "pr_figure",
    "reader_change_figure",
    "reader_roc_figure",
    "render_panel",
    "roc_figure",
    "to_rgb",
    "window_level",
]
