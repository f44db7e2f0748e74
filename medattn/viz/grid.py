"""The Compare grid: panels of models × methods as one Plotly figure (linked zoom and pan) and as
a PNG composited with OpenCV (the export; no browser or kaleido needed).

A panel is the display image, its map in the image frame (already normalised to [0, 1]), the
ground-truth boxes and the map's maximum, drawn as ✕ on the page and in the PNG alike. The
figure has one colour scale (maps are on [0, 1]) and hovering a panel reads the map's value and
the image's pixel value there. "overlay" blends the coloured map over the image;
"side by side" puts one plain image with its boxes at the head of each row and shows the maps
alone, so neither hides the other.
"""

from __future__ import annotations

import base64
import textwrap
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from medattn.metrics.boxes import as_box_array
from medattn.viz.colormaps import colorize, overlay, to_rgb
from medattn.viz.labels import as_label, as_labels

BOX_RGB = (0, 255, 0)
POINT_RGB = (255, 255, 255)
MAX_FIGURE_SIDE = 384  # panel pixels sent to the browser; boxes stay in image coordinates
HOVER_SIDE = 64  # hover values per panel side (cell means): the readout, not the picture
COLORBAR_PX = 70  # right margin holding the colour bar
TITLE_LINES = 3  # every panel title is padded to this many lines, so panels keep one size


@dataclass
class Panel:
    """One cell of the grid. `heatmap` None means no map: `note` says why (error, not
    applicable, still computing)."""

    row: str
    column: str
    image: np.ndarray
    heatmap: np.ndarray | None = None
    boxes: np.ndarray | None = None
    point: tuple[int, int] | None = None
    caption: str = ""
    note: str = ""
    support: np.ndarray | None = None  # pixels the model saw (centre-cropped input); None = all

    def box_array(self) -> np.ndarray:
        return as_box_array(self.boxes)


Grid = Sequence[Sequence[Panel]]


def _cells(panels: Grid, side_by_side: bool) -> list[list[tuple[Panel, bool]]]:
    """Rows of (panel, show_map) cells; side by side adds a plain image cell at each row's head."""
    rows = []
    for row in panels:
        cells = [(panel, True) for panel in row]
        if side_by_side and row:
            head = row[0]
            cells.insert(0, (Panel(head.row, "image", head.image, boxes=head.boxes), False))
        rows.append(cells)
    return rows


def _cell_pixels(panel: Panel, show_map: bool, side_by_side: bool, colormap: str, opacity: float) -> np.ndarray:
    if not show_map or panel.heatmap is None:
        return to_rgb(panel.image)
    pixels = colorize(panel.heatmap, colormap) if side_by_side else overlay(panel.image, panel.heatmap, colormap, opacity)
    if panel.support is not None:  # outside the model's crop: no evidence, shown as the dimmed image
        pixels[~panel.support] = (to_rgb(panel.image)[~panel.support] * 0.45).astype(np.uint8)
    return pixels


def render_panel(panel: Panel, colormap: str = "jet", opacity: float = 0.5, side_by_side: bool = False,
                 show_map: bool = True, size: int | None = None) -> np.ndarray:
    """The panel as RGB uint8 with boxes (green) and the maximum (white ✕) drawn in; `size`
    scales the longer side (thumbnails, export)."""
    pixels = _cell_pixels(panel, show_map, side_by_side, colormap, opacity)
    scale = 1.0 if size is None else size / max(pixels.shape[:2])
    if scale != 1.0:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=interpolation)
    pixels = np.ascontiguousarray(pixels)
    thickness = max(2, round(max(pixels.shape[:2]) / 160))
    for x, y, w, h in panel.box_array():
        top_left = (int(int(x) * scale), int(int(y) * scale))
        bottom_right = (int((int(x + w) + 1) * scale) - 1, int((int(y + h) + 1) * scale) - 1)
        cv2.rectangle(pixels, top_left, bottom_right, BOX_RGB, thickness)
    if show_map and panel.point is not None and panel.heatmap is not None:
        centre = (int((panel.point[1] + 0.5) * scale), int((panel.point[0] + 0.5) * scale))
        arm = max(4, round(max(pixels.shape[:2]) / 30))
        cv2.drawMarker(pixels, centre, (0, 0, 0), cv2.MARKER_TILTED_CROSS, arm * 2 + 2, thickness + 2)
        cv2.drawMarker(pixels, centre, POINT_RGB, cv2.MARKER_TILTED_CROSS, arm * 2, thickness)
    return pixels


def _data_uri(rgb: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError("could not encode a panel as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode()


def _title(panel: Panel, show_map: bool, width_px: float) -> str:
    """Bold method, the model, then the scores or the note, wrapped to the panel's width
    (`width_px`); a model name that would run into the next panel's title is cut in its middle
    (the grid's rows are models: the row's image panel, side by side, or a wider grid names it)."""
    chars, header = max(16, int(width_px / 6.2)), int(width_px / 5.2)  # 11-px titles: wrapped text, one line
    if not show_map:
        return f"<b>image</b> · {as_label(_fit_name(panel.row, header - len('image · ')))}"
    lines = textwrap.wrap(panel.note or panel.caption, chars, max_lines=TITLE_LINES - 1, placeholder=" …")
    model = _fit_name(panel.row, header - len(panel.column) - len(" · "))
    return "<br>".join([f"<b>{as_label(panel.column)}</b> · {as_label(model)}", *as_labels(lines)])


def _fit_name(name: str, chars: int) -> str:
    """`name` within `chars` characters (at least 9), cut in the middle with an ellipsis."""
    chars = max(9, chars)
    if len(name) <= chars:
        return name
    head = (chars - 1) // 2
    return f"{name[:head]}…{name[len(name) - (chars - 1 - head):]}"


def colorscale(colormap: str = "jet", stops: int = 11) -> list[list]:
    """The OpenCV colormap as a Plotly colorscale, so the figure's colour bar matches the maps."""
    rgb = colorize(np.linspace(0.0, 1.0, stops, dtype=np.float32)[None, :], colormap)[0]
    return [[i / (stops - 1), f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(rgb.tolist())]


def _hover(panel: Panel, show_map: bool) -> go.Heatmap:
    """An invisible layer over a panel whose hover reads the map's value (the display
    normalisation, [0, 1]) and the image's pixel value ([0, 1]) at the pointer: cell means on a
    grid of at most HOVER_SIDE per side, placed in the stored image's pixel coordinates."""
    rows_px, cols_px = panel.image.shape
    step = max(1.0, max(rows_px, cols_px) / HOVER_SIDE)
    size = (max(1, round(cols_px / step)), max(1, round(rows_px / step)))
    pixel = cv2.resize(np.asarray(panel.image, np.float32), size, interpolation=cv2.INTER_AREA)
    hover = "x %{x:.0f}, y %{y:.0f}<br>pixel %{customdata:.2f}"
    z = pixel
    if show_map and panel.heatmap is not None:
        z = cv2.resize(np.asarray(panel.heatmap, np.float32), size, interpolation=cv2.INTER_AREA)
        hover = "x %{x:.0f}, y %{y:.0f}<br>map %{z:.2f}<br>pixel %{customdata:.2f}"
    dx, dy = cols_px / size[0], rows_px / size[1]
    return go.Heatmap(z=np.round(z, 3), customdata=np.round(pixel, 3), x0=(dx - 1) / 2, dx=dx, y0=(dy - 1) / 2, dy=dy,
                      opacity=0.0, showscale=False, zmin=0.0, zmax=1.0, hovertemplate=hover + "<extra></extra>",
                      name=f"{panel.column} · {panel.row}")


def grid_figure(panels: Grid, colormap: str = "jet", opacity: float = 0.5, side_by_side: bool = False,
                width: int = 1000) -> go.Figure:
    """One Plotly figure of the grid with matched axes: zooming or panning one panel moves all.
    Coordinates are pixels of the stored image; hover shows them with the map and pixel values,
    and one colour bar gives the maps' scale. `width` is the expected display width in pixels,
    used to size titles and the figure's height (the same for any scores or notes)."""
    cells = _cells(panels, side_by_side)
    n_rows, n_cols = len(cells), max((len(r) for r in cells), default=1)
    padded = [row + [None] * (n_cols - len(row)) for row in cells]
    cell_px = (width - COLORBAR_PX) / n_cols
    titles = [(_title(*cell, width_px=cell_px) if cell else "") for row in padded for cell in row]
    title_px = 16 * TITLE_LINES + 8
    height = int(n_rows * (cell_px + title_px) + 10)
    figure = make_subplots(rows=max(n_rows, 1), cols=n_cols, subplot_titles=titles, horizontal_spacing=0.01,
                           vertical_spacing=title_px / height if n_rows > 1 else 0.0)
    traces, at_rows, at_cols, shapes = [], [], [], []
    for r, row in enumerate(padded, 1):
        for c, cell in enumerate(row, 1):
            if cell is None:
                continue
            panel, show = cell
            rows_px, cols_px = panel.image.shape
            pixels = _cell_pixels(panel, show, side_by_side, colormap, opacity)
            step = max(1.0, max(rows_px, cols_px) / MAX_FIGURE_SIDE)
            if step > 1.0:
                pixels = cv2.resize(pixels, (round(cols_px / step), round(rows_px / step)), interpolation=cv2.INTER_AREA)
            cell_traces = [go.Image(source=_data_uri(pixels), x0=(step - 1) / 2, y0=(step - 1) / 2, dx=step, dy=step,
                                    name=as_label(f"{panel.column} · {panel.row}"), hoverinfo="skip"), _hover(panel, show)]
            if show and panel.point is not None and panel.heatmap is not None:
                cell_traces.append(
                    go.Scatter(x=[panel.point[1]], y=[panel.point[0]], mode="markers", showlegend=False,
                               marker=dict(symbol="x", size=13, color="white", line=dict(color="black", width=1.5)),
                               hovertemplate="maximum x %{x}, y %{y}<extra></extra>"))
            traces += cell_traces
            at_rows += [r] * len(cell_traces)
            at_cols += [c] * len(cell_traces)
            axis = "" if (r - 1) * n_cols + c == 1 else (r - 1) * n_cols + c  # make_subplots numbers row by row
            shapes += [dict(type="rect", x0=int(x) - 0.5, y0=int(y) - 0.5, x1=int(x + w) + 0.5, y1=int(y + h) + 0.5,
                            xref=f"x{axis}", yref=f"y{axis}", line=dict(color="rgb(0,255,0)", width=2))
                       for x, y, w, h in panel.box_array()]
    if traces:  # in one call each: Plotly validates per call, which cost seconds for a grid
        figure.add_traces(traces, rows=at_rows, cols=at_cols)
    scale_shown = any(t.type == "scatter" for t in traces)
    if scale_shown:  # one bar for all panels: every map is on [0, 1]
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                                    marker=dict(colorscale=colorscale(colormap), cmin=0.0, cmax=1.0, color=[0.0],
                                                showscale=True,
                                                colorbar=dict(title=dict(text="map", side="right"), thickness=12,
                                                              len=min(1.0, 420 / height), y=1.0, yanchor="top",
                                                              tickvals=[0, 0.5, 1], ticktext=["0 low", "0.5", "1 high"]))))
    axes = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False)
    layout = {}
    for k in range(1, max(n_rows, 1) * n_cols + 1):
        suffix = "" if k == 1 else k
        layout[f"xaxis{suffix}"] = dict(matches="x" if k > 1 else None, **axes)
        layout[f"yaxis{suffix}"] = dict(matches="y" if k > 1 else None, autorange="reversed", **axes)
    figure.update_annotations(font_size=11, yanchor="bottom")
    figure.update_layout(layout, shapes=shapes, height=height, margin=dict(l=2, r=COLORBAR_PX, t=title_px, b=2), dragmode="pan",
                         showlegend=False, paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    return figure


def _text_block(lines: Sequence[str], width: int, scale: float = 0.42) -> np.ndarray:
    line_height = int(22 * scale / 0.42)
    block = np.full((line_height * len(lines) + 6, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        text = line
        while text and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 6:
            text = text[:-1]
        cv2.putText(block, text, (3, line_height * (i + 1) - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return block


def _fit(pixels: np.ndarray, side: int) -> np.ndarray:
    """Letterbox an RGB image into a side × side black square."""
    out = np.zeros((side, side, 3), np.uint8)
    h, w = pixels.shape[:2]
    y, x = (side - h) // 2, (side - w) // 2
    out[y : y + h, x : x + w] = pixels
    return out


def grid_png(panels: Grid, colormap: str = "jet", opacity: float = 0.5, side_by_side: bool = False,
             cell: int = 320, header: Sequence[str] = ()) -> bytes:
    """The grid as PNG bytes: each cell titled with its method, model and scores; `header`
    lines (image id, target class) on top. Text is ASCII (OpenCV's fonts)."""
    cells = _cells(panels, side_by_side)
    if not cells:
        raise ValueError("no panels to export")
    n_cols = max(len(r) for r in cells)
    gap = 6
    rows = []
    for row in cells:
        tiles = []
        for panel, show in row:
            title = ["image", panel.row] if not show else [panel.column, panel.row, panel.note or panel.caption]
            pixels = _fit(render_panel(panel, colormap, opacity, side_by_side, show, size=cell), cell)
            tiles.append(np.vstack([_text_block([_ascii(t) for t in title], cell), pixels]))
        height = max(t.shape[0] for t in tiles)
        tiles = [np.vstack([t, np.full((height - t.shape[0], cell, 3), 255, np.uint8)]) for t in tiles]
        tiles += [np.full((height, cell, 3), 255, np.uint8)] * (n_cols - len(tiles))
        spacer = np.full((height, gap, 3), 255, np.uint8)
        rows.append(np.hstack([x for tile in tiles for x in (tile, spacer)][:-1]))
    width = rows[0].shape[1]
    parts = [_text_block([_ascii(h) for h in header], width, 0.55)] if header else []
    parts.append(_legend(colormap, width))
    for row in rows:
        parts += [row, np.full((gap, width, 3), 255, np.uint8)]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.vstack(parts), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the grid as PNG")
    return encoded.tobytes()


def _legend(colormap: str, width: int) -> np.ndarray:
    """The export's key, as on the page: the maps' colour scale, the boxes and the maximum."""
    block = np.full((28, width, 3), 255, np.uint8)
    x = 3
    for text in ("map  0 (low)", None, "1 (high)    green: boxes of the target class, X: the map's maximum"):
        if text is None:
            bar = colorize(np.linspace(0.0, 1.0, 160, dtype=np.float32)[None, :].repeat(12, axis=0), colormap)
            block[8:20, x : x + bar.shape[1]] = bar[:, : max(0, width - x)]
            x += bar.shape[1] + 6
            continue
        cv2.putText(block, text, (x, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0] + 6
    return block


_ASCII = str.maketrans({"…": "...", "·": "-", "✕": "x", "→": "->", "↑": "^", "↓": "v", "–": "-", "—": "-"})


def _ascii(text: str) -> str:
    """OpenCV's fonts draw ASCII only: the app's usual symbols spelled out, anything else '?'."""
    return text.translate(_ASCII).encode("ascii", "replace").decode()
