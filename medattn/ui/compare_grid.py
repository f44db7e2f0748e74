"""The Compare grid's work: one map per model × method for one image and class, from the heatmap
cache or computed with a progress bar, then scored and laid out as panels.

Quick methods run in the page's own run; slow ones (integrated gradients, PDA, occlusion,
SmoothGrad on a CPU) run on the background worker, cheapest first, and the panels fill in as
they finish while the progress bar names the panel at work and, for PDA, its window count. A
widget change reruns the page at the next progress tick, but the job goes on: the new run joins
it, or reads its map from the cache.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import wait
from dataclasses import dataclass
from functools import partial
from typing import Callable, Hashable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from medattn.data.dataset import Dataset
from medattn.explain import DEFAULT_SIGN
from medattn.inference import LoadedModel
from medattn.metrics.boxes import as_box_array
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.pipeline import MapResult, cached_map, compute_map, faithfulness_curves, ground_truth, score
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
MIN_SHOW_SECONDS = 1.0  # panels finishing closer together wait for the next update: each resends the figure
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
def _scores(key: tuple, _raw: np.ndarray, method: str, _truth, shape: tuple[int, ...], protocol: str,
            _preprocessing) -> dict:
    return score(_raw, method, _truth, shape, _preprocessing, protocol)


def caption(probability: float, scores: dict[str, float], class_name: str) -> str:
    """One ASCII line per panel: the model's probability for the class and the map's scores;
    a flat map says so (it ranks nothing: chance AUPRC, no hit)."""
    flat = f"  {FLAT_NOTE}" if scores.get("degenerate") else ""
    if not np.isfinite(scores["auprc"]):
        return f"p={probability:.2f}  no {class_name} box{flat}"
    pointed = "yes" if scores["hit"] == 1 else "no"
    return f"p={probability:.2f}  AUPRC={scores['auprc']:.2f}  hit={pointed}  IoU={scores['miou']:.2f}{flat}"


def _map(loaded: LoadedModel, data: Dataset, image_id: str, method: str, target: int, image: np.ndarray | None,
         progress: Callable[[int, int], None] | None = None, protocol: str = DEFAULT_PROTOCOL) -> MapResult:
    with loaders.model_lock(loaded.name):
        return compute_map(loaded, data, image_id, method, target, _params(loaded, method, protocol), progress=progress,
                           image=image)


def _params(loaded: LoadedModel, method: str, protocol: str) -> dict:
    """The explainer parameters of a Compare panel: the app's settings under the protocol's."""
    return get_protocol(protocol).params(method, app_params(method, loaded.input_size))


def _job_key(loaded: LoadedModel, data: Dataset, image_id: str, method: str, target: int,
             protocol: str = DEFAULT_PROTOCOL) -> tuple:
    """What determines a map and its scores: the weights, the dataset and image, method, class
    and scoring protocol (which may set the explainer's parameters)."""
    return (loaded.hash, str(data.root), data.hash, file_hash(data.image_path(image_id)), image_id, method, target,
            protocol)


def panel_curves(selection: Selection, image_id: str, target: int, panels: Sequence[tuple[LoadedModel, str]],
                 protocol: str = DEFAULT_PROTOCOL, steps: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """Deletion and insertion curves (`pipeline.faithfulness_curves`) of Compare panels, "model ·
    method" → curves: each panel's map as the grid shows it (from the cache, computed when
    missing), its model's class score, fills in the image's own terms."""
    data = selection.dataset
    image = data.read_image(image_id)
    out = {}
    for loaded, method in panels:
        result = _map(loaded, data, image_id, method, target, image, protocol=protocol)
        with loaders.model_lock(loaded.name):
            out[f"{loaded.name} · {method}"] = faithfulness_curves(loaded, image, result.raw, method, target, steps)
    return out


def layout(selection: Selection) -> tuple[list[list[tuple[LoadedModel, str]]], list[str]]:
    """Rows of (model, method) panels, and one line per reason a method cannot explain some
    model (said once, under the grid, instead of a panel each). Methods every model supports
    come first, so the columns line up as far as they can."""
    models, methods = selection.models, selection.methods
    missing: dict[str, list[str]] = {}
    for m in models:
        for method in methods:
            why = unavailable(m, method)
            if why is not None:
                missing.setdefault(why, []).append(f"{method} for {m.name}")
    shared = [x for x in methods if all(unavailable(m, x) is None for m in models)]
    order = shared + [x for x in methods if x not in shared]
    rows = [[(m, x) for x in order if unavailable(m, x) is None] for m in models]
    notes = [f"Not shown: {', '.join(panels)} ({why})." for why, panels in missing.items()]
    return rows, notes


def compute_grid(selection: Selection, image_id: str, target: int, display: Display,
                 show: Callable[[list[list[Panel]]], None], protocol: str = DEFAULT_PROTOCOL, status=st,
                 show_first: bool = False) -> tuple[list[list[Panel]], pd.DataFrame]:
    """Panels (rows: models, columns: methods, see `layout`) and their numbers; `show(panels)`
    is called whenever freshly computed panels are ready, so the page fills in as the work goes,
    and at once with the plain image when `show_first` (a new image or class: the previous
    panels must not stay on screen). The progress bar goes into `status`. Scores follow
    `protocol` (`medattn.metrics.protocols`); the panels show medattn's display map."""
    data = selection.dataset
    image = data.read_image(image_id)
    shown = window_level(image, display.center, display.width)
    class_name = data.classes[target]
    boxes = data.boxes_for(image_id, class_name)
    truth = ground_truth(data, image_id, class_name)
    box_array = as_box_array(boxes)
    rows_of_panels, _ = layout(selection)
    cells = {(m.name, method): Panel(m.name, method, shown, boxes=box_array, note="computing…")
             for row in rows_of_panels for m, method in row}
    if show_first and cells:
        show([[cells[(m.name, method)] for m, method in row] for row in rows_of_panels])
    probability = {m.name: float(loaders.predictions(m, data, [image_id]).iloc[0, target]) for m in selection.models}
    results: dict[tuple[str, str], MapResult] = {}
    rows: list[dict] = []
    worker = background.worker()

    def grid() -> list[list[Panel]]:
        return [[cells[(m.name, method)] for m, method in row] for row in rows_of_panels]

    def finish(loaded: LoadedModel, method: str, work: Callable[[], MapResult]) -> bool:
        """Fill one panel from `work()`; whether its map was freshly computed."""
        cell = cells[(loaded.name, method)]
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - one failing panel says why; the others still show
            cell.note = f"failed: {message(exc)}"
            return False
        results[(loaded.name, method)] = result
        scores = _scores(_job_key(loaded, data, image_id, method, target, protocol), result.raw, method, truth,
                         image.shape, protocol, loaded.preprocessing)
        cell.heatmap, cell.support = result.display, result.support
        cell.point = result.peak  # None for a flat map: no ✕
        cell.caption, cell.note = caption(probability[loaded.name], scores, class_name), ""
        rows.append({"image_id": image_id, "target_class": class_name, "checkpoint": loaded.name, "model": loaded.label,
                     "method": method, "probability": probability[loaded.name], **scores, "n_boxes": len(boxes),
                     "seconds": float("nan") if result.cached else round(result.seconds, 3), "cached": result.cached})
        return not result.cached

    def cached(loaded: LoadedModel, method: str) -> MapResult | None:
        """The panel's map from the cache, without the model's lock or the worker: a ▶ to an
        image whose maps were prefetched never waits behind a map computing for another."""
        return cached_map(loaded, data, image_id, method, target, _params(loaded, method, protocol), image=image)

    def quick(loaded: LoadedModel, method: str) -> MapResult:
        """In this run, or joined when a prefetch is computing it right now."""
        job = worker.running(_job_key(loaded, data, image_id, method, target, protocol))
        return (job.future.result() if job is not None
                else _map(loaded, data, image_id, method, target, image, protocol=protocol))

    panels = sorted(((m, method) for row in rows_of_panels for m, method in row), key=lambda panel: cost_rank(panel[1]))
    from_cache = {(m.name, method): result for m, method in panels if (result := cached(m, method)) is not None}
    for m, method in panels:
        if (m.name, method) in from_cache:
            finish(m, method, lambda result=from_cache[(m.name, method)]: result)
    panels = [(m, method) for m, method in panels if (m.name, method) not in from_cache]
    bar = status.progress(0.0, text="Maps") if panels else None
    slow = [(m, method, worker.submit(_job_key(m, data, image_id, method, target, protocol),
                                      partial(_map, m, data, image_id, method, target, image, protocol=protocol)))
            for m, method in panels if method in SLOW]
    unshown, shown_at = False, 0.0  # freshly computed panels not yet on screen; when the grid was last sent

    def update(now: bool = False) -> None:
        """Send the grid when panels wait to be shown, at most every MIN_SHOW_SECONDS."""
        nonlocal unshown, shown_at
        if (unshown or now) and (now or time.monotonic() - shown_at >= MIN_SHOW_SECONDS):
            show(grid())
            unshown, shown_at = False, time.monotonic()

    for number, (loaded, method) in enumerate(p for p in panels if p[1] not in SLOW):
        bar.progress(number / len(panels), text=f"{number + 1}/{len(panels)}: {method} · {loaded.name}")
        unshown |= finish(loaded, method, partial(quick, loaded, method))
    if slow and (unshown or show_first):
        update(now=True)
    for number, (loaded, method, job) in enumerate(slow, len(panels) - len(slow)):
        label = f"{number + 1}/{len(panels)}: {method} · {loaded.name}"
        while not wait([job.future], timeout=POLL_SECONDS).done:
            done, total = job.progress
            bar.progress((number + (done / total if total else 0)) / len(panels),
                         text=f"{label}: window {done}/{total}" if total else label)
            update()
        unshown |= finish(loaded, method, job.future.result)
        if number + 1 < len(panels):
            update()
    if bar is not None:
        bar.empty()
    if display.shared:
        _share_scale(cells, results, selection.methods, image.shape,
                     {m.name: m.preprocessing.place for m in selection.models})
    order = {(m.name, method): i for i, (m, method) in enumerate(p for row in rows_of_panels for p in row)}
    rows.sort(key=lambda r: order[(r["checkpoint"], r["method"])])
    return grid(), pd.DataFrame(rows, columns=NUMBER_COLUMNS)


def prefetch(selection: Selection, targets: Sequence[tuple[str, int]], protocol: str = DEFAULT_PROTOCOL) -> None:
    """Queue the maps of these (image, class) pairs on the background worker, behind any map a
    reader waits for and cheapest first over all pairs, so that the next image opens from the
    cache; replaces this session's earlier prefetches that have not started. MEDATTN_PREFETCH=0
    turns this off (a server shared by many readers, or tests that time other work)."""
    if os.environ.get("MEDATTN_PREFETCH", "1") == "0":
        return
    data = selection.dataset
    context = get_script_run_ctx()
    owner: Hashable = context.session_id if context is not None else None
    rows_of_panels, _ = layout(selection)
    work = [(cost_rank(method), n, loaded, method, image_id, target)
            for n, (image_id, target) in enumerate(targets) for row in rows_of_panels for loaded, method in row]
    # the probabilities first: a grid needs them, and computing them takes the model's lock,
    # which a map of the worker (integrated gradients cannot yield) may hold for seconds
    ids = list(dict.fromkeys(image_id for image_id, _ in targets))
    probabilities = [(("predictions", loaded.hash, str(data.root), data.hash, tuple(ids)),
                      partial(_predictions, loaded, data, ids)) for loaded in selection.models]
    background.worker().prefetch(owner, probabilities + [
        (_job_key(loaded, data, image_id, method, target, protocol),
         partial(_map, loaded, data, image_id, method, target, None, protocol=protocol))
        for _, _, loaded, method, image_id, target in sorted(work, key=lambda w: w[:2])])


def _predictions(loaded: LoadedModel, data: Dataset, image_ids: list[str], progress=None) -> pd.DataFrame:
    """A prefetch job: these images' probabilities, computed and stored (`loaders.predictions`)."""
    return loaders.predictions(loaded, data, image_ids)


def _share_scale(cells: dict, results: dict, methods: list[str], shape: tuple[int, int], places: dict) -> None:
    """Replace each method's panel maps by maps on one common scale (display only)."""
    for method in methods:
        keys = [key for key in results if key[1] == method]
        raws = [results[k].raw for k in keys]
        for key, shared in zip(keys, shared_normalize(raws, DEFAULT_SIGN[method], shape, places=[places[k[0]] for k in keys])):
            cells[key].heatmap = shared
