"""The Compare grid's work: one map per model × method for one image and class, from the heatmap
cache or computed with a progress bar, then scored and laid out as panels.

Quick methods run in the page's own run; slow ones (integrated gradients, PDA, occlusion,
SmoothGrad on a CPU) run on the background worker, cheapest first, and the panels fill in as
they finish while the progress bar names the panel at work and, for PDA, its window count. A
widget change reruns the page at the next progress tick, but the job goes on: the new run joins
it, or reads its map from the cache.
"""

from __future__ import annotations

from concurrent.futures import wait
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from medattn.data.dataset import Dataset
from medattn.explain import DEFAULT_SIGN
from medattn.inference import LoadedModel
from medattn.metrics.boxes import as_box_array
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.pipeline import MapResult, compute_map, ground_truth, score
from medattn.store import file_hash
from medattn.ui import background, loaders
from medattn.ui.errors import message
from medattn.ui.methods import app_params, cost_rank, unavailable
from medattn.ui.sidebar import Selection
from medattn.viz.colormaps import window_level
from medattn.viz.grid import Panel
from medattn.viz.scaling import shared_normalize

# Run on the background worker (see medattn.ui.background): seconds or more on a CPU.
SLOW = ("integrated_gradients", "smoothgrad", "smoothgrad_ig", "occlusion", "pda", "pda_features")
POLL_SECONDS = 0.2
NUMBER_COLUMNS = ["image_id", "target_class", "checkpoint", "model", "method", "probability", "auprc", "hit", "miou",
                  "degenerate", "n_boxes", "seconds", "cached"]
FLAT_NOTE = "flat map: no evidence"


@dataclass
class Display:
    """How maps are shown (never how they are scored)."""

    colormap: str = "jet"
    opacity: float = 0.5
    shared: bool = False
    side_by_side: bool = False
    center: float = 0.5
    width: float = 1.0


@st.cache_data(max_entries=2048, show_spinner=False)
def _scores(key: tuple, _raw: np.ndarray, method: str, _truth, shape: tuple[int, ...], protocol: str, _place) -> dict:
    return score(_raw, method, _truth, shape, protocol, _place)


def caption(probability: float, scores: dict[str, float], class_name: str) -> str:
    """One ASCII line per panel: the model's probability for the class and the map's scores;
    a flat map says so (it ranks nothing: chance AUPRC, no hit)."""
    flat = f"  {FLAT_NOTE}" if scores.get("degenerate") else ""
    if not np.isfinite(scores["auprc"]):
        return f"p={probability:.2f}  no {class_name} box{flat}"
    pointed = "yes" if scores["hit"] == 1 else "no"
    return f"p={probability:.2f}  AUPRC={scores['auprc']:.2f}  hit={pointed}  IoU={scores['miou']:.2f}{flat}"


def _map(loaded: LoadedModel, data: Dataset, image_id: str, method: str, target: int, image: np.ndarray,
         progress: Callable[[int, int], None] | None = None, protocol: str = DEFAULT_PROTOCOL) -> MapResult:
    params = get_protocol(protocol).params(method, app_params(method, loaded.input_size))
    with loaders.model_lock(loaded.name):
        return compute_map(loaded, data, image_id, method, target, params, progress=progress, image=image)


def compute_grid(selection: Selection, image_id: str, target: int, display: Display,
                 show: Callable[[list[list[Panel]]], None],
                 protocol: str = DEFAULT_PROTOCOL) -> tuple[list[list[Panel]], pd.DataFrame]:
    """Panels (rows: models, columns: methods) and their numbers; `show(panels)` is called
    whenever freshly computed panels are ready, so the page fills in as the work goes. Scores
    follow `protocol` (`medattn.metrics.protocols`); the panels show medattn's display map."""
    data = selection.dataset
    image = data.read_image(image_id)
    shown = window_level(image, display.center, display.width)
    class_name = data.classes[target]
    boxes = data.boxes_for(image_id, class_name)
    truth = ground_truth(data, image_id, class_name)
    box_array = as_box_array(boxes)
    models, methods = selection.models, selection.methods
    probability = {m.name: float(loaders.predictions(m, data, [image_id]).iloc[0, target]) for m in models}
    cells = {
        (m.name, method): Panel(m.name, method, shown, boxes=box_array, note=unavailable(m, method) or "computing…")
        for m in models for method in methods
    }
    results: dict[tuple[str, str], MapResult] = {}
    rows: list[dict] = []
    stamp = (str(data.root), data.hash, file_hash(data.image_path(image_id)))  # what the image and boxes are

    def grid() -> list[list[Panel]]:
        return [[cells[(m.name, method)] for method in methods] for m in models]

    def finish(loaded: LoadedModel, method: str, work: Callable[[], MapResult]) -> bool:
        """Fill one panel from `work()`; whether its map was freshly computed."""
        cell = cells[(loaded.name, method)]
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - one failing panel says why; the others still show
            cell.note = f"failed: {message(exc)}"
            return False
        results[(loaded.name, method)] = result
        scores = _scores((loaded.hash, stamp, image_id, method, target), result.raw, method, truth, image.shape,
                         protocol, loaded.preprocessing.place)
        cell.heatmap, cell.support = result.display, result.support
        cell.point = result.peak  # None for a flat map: no ✕
        cell.caption, cell.note = caption(probability[loaded.name], scores, class_name), ""
        rows.append({"image_id": image_id, "target_class": class_name, "checkpoint": loaded.name, "model": loaded.label,
                     "method": method, "probability": probability[loaded.name], **scores, "n_boxes": len(boxes),
                     "seconds": round(result.seconds, 3), "cached": result.cached})
        return not result.cached

    panels = sorted(((m, method) for m in models for method in methods if unavailable(m, method) is None),
                    key=lambda panel: cost_rank(panel[1]))
    bar = st.progress(0.0, text="Maps") if panels else None
    slow = [(m, method, background.worker().submit((m.hash, stamp, image_id, method, target, protocol),
                                                   partial(_map, m, data, image_id, method, target, image, protocol=protocol)))
            for m, method in panels if method in SLOW]
    fresh = False
    for number, (loaded, method) in enumerate(p for p in panels if p[1] not in SLOW):
        bar.progress(number / len(panels), text=f"{number + 1}/{len(panels)}: {method} · {loaded.name}")
        fresh |= finish(loaded, method, partial(_map, loaded, data, image_id, method, target, image, protocol=protocol))
    if fresh and slow:
        show(grid())
    for number, (loaded, method, job) in enumerate(slow, len(panels) - len(slow)):
        label = f"{number + 1}/{len(panels)}: {method} · {loaded.name}"
        while not wait([job.future], timeout=POLL_SECONDS).done:
            done, total = job.progress
            bar.progress((number + (done / total if total else 0)) / len(panels),
                         text=f"{label}: window {done}/{total}" if total else label)
        if finish(loaded, method, job.future.result) and number + 1 < len(panels):
            show(grid())
    if bar is not None:
        bar.empty()
    if display.shared:
        _share_scale(cells, results, methods, image.shape, {m.name: m.preprocessing.place for m in models})
    order = {(m.name, method): i for i, (m, method) in enumerate((m, x) for m in models for x in methods)}
    rows.sort(key=lambda r: order[(r["checkpoint"], r["method"])])
    return grid(), pd.DataFrame(rows, columns=NUMBER_COLUMNS)


def _share_scale(cells: dict, results: dict, methods: list[str], shape: tuple[int, int], places: dict) -> None:
    """Replace each method's panel maps by maps on one common scale (display only)."""
    for method in methods:
        keys = [key for key in results if key[1] == method]
        raws = [results[k].raw for k in keys]
        for key, shared in zip(keys, shared_normalize(raws, DEFAULT_SIGN[method], shape, places=[places[k[0]] for k in keys])):
            cells[key].heatmap = shared
