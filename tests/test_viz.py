"""Figure builders: overlays, window/level, the grid figure and its PNG export, shared scaling."""

from __future__ import annotations

import cv2
import pandas as pd
import numpy as np
import pytest

from medattn.viz import Panel, grid_figure, grid_png, overlay, render_panel, window_level
from medattn.viz.scaling import shared_normalize


def panel(column: str = "saliency", heatmap: bool = True) -> Panel:
    image = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    heat = np.zeros_like(image)
    heat[10, 20] = 1.0
    return Panel("model a", column, image, heat if heatmap else None, np.array([[15, 5, 10, 8]]), (10, 20),
                 caption="p=0.90  AUPRC=0.50  hit=yes  IoU=0.20", note="" if heatmap else "head has no class maps")


def test_window_level_and_overlay():
    image = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]], np.float32)
    np.testing.assert_allclose(window_level(image, 0.5, 0.5), [[0, 0, 0.5, 1, 1]])
    with pytest.raises(ValueError, match="width"):
        window_level(image, 0.5, 0)
    blended = overlay(image, np.ones_like(image), "jet", opacity=0.0)
    np.testing.assert_array_equal(blended[..., 0], np.round(image * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="colormap"):
        overlay(image, image, "rainbow-unicorn")


def test_rendered_panel_draws_boxes_and_point():
    pixels = render_panel(panel(), opacity=0.0)
    assert pixels.shape == (48, 64, 3)
    assert tuple(pixels[9, 14]) == (0, 255, 0)  # the box's left edge, drawn around column 15 (inclusive)
    assert tuple(pixels[10, 20]) == (255, 255, 255)  # the maximum's marker
    # a ✕ as on the page (Plotly's "x"), not a +: its arms run along the diagonals
    assert tuple(pixels[12, 22]) == (255, 255, 255) and tuple(pixels[8, 18]) == (255, 255, 255)
    assert tuple(pixels[10, 23]) != (255, 255, 255) and tuple(pixels[7, 20]) != (255, 255, 255)
    assert render_panel(panel(), size=128).shape == (96, 128, 3)


def test_grid_figure_links_panels_and_titles_scores():
    figure = grid_figure([[panel("saliency"), panel("wildcat", heatmap=False)]], side_by_side=True)
    images = [trace for trace in figure.data if trace.type == "image"]
    assert len(images) == 3  # the plain image leads the row side by side
    titles = [a.text for a in figure.layout.annotations]
    assert any("AUPRC=0.50" in t for t in titles) and any("no class maps" in t for t in titles)
    assert figure.layout.xaxis2.matches == "x" and figure.layout.yaxis2.matches == "y"
    assert len(figure.layout.shapes) == 3  # one box per cell
    assert [t.marker.symbol for t in figure.data if t.type == "scatter" and t.x[0] is not None] == ["x"]


def test_grid_figure_hover_reads_map_and_pixel_values_and_has_one_colour_scale():
    figure = grid_figure([[panel("saliency"), panel("wildcat", heatmap=False)]], colormap="viridis")
    hover = [t for t in figure.data if t.type == "heatmap"]
    assert len(hover) == 2 and all(t.opacity == 0 for t in hover)
    mapped, plain = hover
    assert "map %{z" in mapped.hovertemplate and "pixel %{customdata" in mapped.hovertemplate
    assert "map" not in plain.hovertemplate and "pixel %{customdata" in plain.hovertemplate
    z, pixel = np.asarray(mapped.z), np.asarray(mapped.customdata)
    assert z.shape == pixel.shape == (48, 64)  # small images keep every pixel
    assert z[10, 20] == pytest.approx(1.0) and z.sum() == pytest.approx(1.0)
    assert pixel[47, 63] == pytest.approx(1.0, abs=1e-3) and pixel[0, 0] == 0.0
    scales = [t for t in figure.data if t.type == "scatter" and t.marker.showscale]
    assert len(scales) == 1 and scales[0].marker.colorscale[0][1] == "rgb(68,1,84)"  # viridis starts dark purple


def test_panels_keep_one_size_whatever_their_titles_say():
    short = panel()
    long = panel()
    long.caption = "p=0.90  AUPRC=0.50  hit=yes  IoU=0.20 " * 4
    sizes = {(grid_figure([[p, p]]).layout.height, str(grid_figure([[p, p]]).layout.yaxis.domain)) for p in (short, long)}
    assert len(sizes) == 1


def test_grid_png_is_a_decodable_grid():
    data = grid_png([[panel(), panel("pda")], [panel("wildcat", heatmap=False)]], cell=100, header=["image x"])
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[1] == 2 * 100 + 6
    with pytest.raises(ValueError):
        grid_png([])


def test_shared_scale_keeps_relative_strength():
    weak, strong = np.full((4, 4), 1.0), np.full((4, 4), 2.0)
    strong[0, 0] = 4.0
    scaled = shared_normalize([weak, strong], "absolute", (8, 8), clip_percentile=100)
    assert scaled[0].shape == (8, 8)
    assert scaled[0].max() == pytest.approx(0.25) and scaled[1].max() == pytest.approx(1.0)
    signed = shared_normalize([np.array([[-1.0, 1.0]])], "all", (1, 2), clip_percentile=100)
    np.testing.assert_allclose(signed[0], [[0.0, 1.0]])


def test_every_chart_gives_a_model_one_colour():
    from medattn.viz import interval_bars, pr_figure, roc_figure

    curve = (np.array([0.0, 1.0]), np.array([1.0, 0.5]), 0.7)
    curves = {"b_model": curve, "a_model": curve}
    table = pd.DataFrame({"checkpoint": ["a_model", "b_model"], "method": ["saliency"] * 2, "auprc": [0.5, 0.6],
                          "auprc_low": [0.4, 0.5], "auprc_high": [0.6, 0.7]})

    def colours(figure, attribute):
        return {t.name.split(" (")[0]: getattr(t, attribute).color for t in figure.data if t.name != "chance"}

    pr, roc = colours(pr_figure(curves), "line"), colours(roc_figure(curves), "line")  # ROC leads with the chance line
    bars = colours(interval_bars(table, "auprc", color="checkpoint"), "marker")
    assert pr == roc == bars and len(set(pr.values())) == 2


def test_charts_title_their_axes_with_the_metric_and_its_better_direction():
    """The Leaderboard's charts said 'deletion' and 'auprc' (column names) with no word on which
    way is better; a lower-is-better metric read like the others."""
    from medattn.viz import agreement_scatter, interval_bars, perturbation_curves_figure

    table = pd.DataFrame({"checkpoint": ["a", "a"], "method": ["saliency", "reference:blank"],
                          **{f"{m}{s}": [0.3, 0.5] for m in ("auprc", "deletion") for s in ("", "_low", "_high")}})
    bars = interval_bars(table, "deletion", color="checkpoint", label="Deletion AUC ↓", title="lower is better")
    assert (bars.layout.yaxis.title.text, bars.layout.title.text) == ("Deletion AUC ↓", "lower is better")
    assert interval_bars(table, "auprc", color="checkpoint").layout.yaxis.title.text == "auprc"
    scatter = agreement_scatter(table, table, "auprc", "deletion", "t", labels=("Box AUPRC ↑", "Deletion AUC ↓"))
    assert (scatter.layout.xaxis.title.text, scatter.layout.yaxis.title.text) == ("Box AUPRC ↑", "Deletion AUC ↓")
    curve = {"fraction": np.linspace(0, 1, 3), "deletion": np.array([1.0, 0.2, 0.0]), "insertion": np.array([0.1, 0.9, 1.0])}
    names = [t.name for t in perturbation_curves_figure({"m · saliency": curve}, "img").data]
    assert names == ["m · saliency · deletion (AUC 0.350 ↓)", "m · saliency · insertion (AUC 0.725 ↑)"]


def test_panel_titles_fit_their_panel_and_keep_names_whole_where_they_fit():
    """Side by side (five columns) a method and a long checkpoint name ran into the next panel's
    title; the model name is cut in its middle there, and kept whole where it fits."""
    import re

    image = np.zeros((32, 32), np.float32)
    methods = ["saliency", "integrated_gradients", "pda", "wildcat"]
    name = "demo_resnet18_wildcat"
    panels = [[Panel(name, m, image, heatmap=image, caption="p=0.99 AUPRC=0.29 hit=no IoU=0.14") for m in methods]]

    def first_lines(figure):
        return [re.sub("<[^>]+>", "", a.text.split("<br>")[0]) for a in figure.layout.annotations if a.text]

    overlay = first_lines(grid_figure(panels))
    assert f"integrated_gradients · {name}" in overlay  # four columns: whole
    side = first_lines(grid_figure(panels, side_by_side=True))
    cell_px = (1000 - 70) / 5  # grid_figure: width less the colour bar, over the columns
    assert all(len(line) <= int(cell_px / 5.2) for line in side), side
    assert any("…" in line and line.startswith("integrated_gradients · demo") for line in side), side
