"""The Compare grid's work: one map per model × method for one image and class, from the heatmap
cache or computed, then scored and laid out as panels.

Every map is computed on the background worker (`medattn.ui.background`), in this order: the
quick methods' maps and the previews of the slow ones (integrated gradients, SmoothGrad,
SmoothGrad-IG, occlusion, PDA: the same method with less work, `ui.methods.preview_params`),
cheapest first, then the slow methods' final maps, cheapest first. A panel shows its map as
soon as it exists: a preview labelled "preview" with its final map's progress, replaced by the
final map, which alone is scored and stored. Previews live in memory only (`PREVIEWS`). A
widget change reruns the page, but the work goes on: the new run joins it, or reads its map
from the cache; work no run waits for any more yields to the next image's (`Worker.release`).

"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from functools import partial
from typing import Callable, Hashable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from medattn.data.dataset import Dataset
from medattn.explain import DEFAULT_SIGN, work_size
from medattn.inference import LoadedModel
from medattn.metrics.boxes import as_box_array
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.pipeline import MapResult, cached_map, compute_map, faithfulness_curves, ground_truth, score
from medattn.store import MemoryHeatmapCache, file_hash
from medattn.ui import background, loaders
from medattn.ui.errors import message
from medattn.ui.methods import app_params, cost_rank, preview_params, unavailable
from medattn.ui.plain import plain
from medattn.ui.sidebar import Selection
from medattn.viz.colormaps import window_level
from medattn.viz.grid import Panel
from medattn.viz.scaling import shared_normalize

POLL_SECONDS = 0.2
PREVIEWS = MemoryHeatmapCache(size=128)  # previews of this process: shown, never scored nor stored
PREVIEW_NOTE = "preview"
FAILED_NOTE = "failed"  # a panel whose map failed: "failed: why"
PREVIEW_SECONDS = 1.0  # about what a preview may compute on a CPU (`explain.work_size`)
MIN_SHOW_SECONDS = 1.0  # panels finishing closer together wait for the next update: each resends the figure
NUMBER_COLUMNS = ["image_id", "target_class", "checkpoint", "model", "method", "probability", "auprc", "hit", "miou",
                  "degenerate", "n_boxes", "seconds", "cached", "precision"]
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
         progress: Callable[[int, int], None] | None = None, protocol: str = DEFAULT_PROTOCOL,
         preview: bool = False) -> MapResult:
    """A panel's final map (stored in the heatmap cache), or with `preview` its preview (kept
    in `PREVIEWS`; the final map instead when that is stored already, as a prefetch may find)."""
    params = _params(loaded, method, protocol)
    if preview:
        stored = cached_map(loaded, data, image_id, method, target, params, image=image)
        if stored is not None:
            return stored
    with loaders.model_lock(loaded.name):
        if preview:
            work_size.macs(loaded.model, loaded.constant_input())  # counted once: sizes previews to the model
            params = _preview_params(loaded, method, protocol)
        return compute_map(loaded, data, image_id, method, target, params, progress=progress, image=image,
                           cache=PREVIEWS if preview else None)


def settled(panel: Panel) -> bool:
    """Whether a panel shows all it will until its final map: a map (preview or final), or its failure."""
    return panel.heatmap is not None or panel.note.startswith(FAILED_NOTE)


def _params(loaded: LoadedModel, method: str, protocol: str) -> dict:
    """The explainer parameters of a Compare panel: the app's settings under the protocol's."""
    return get_protocol(protocol).params(method, app_params(method, loaded.input_size))


def _preview_params(loaded: LoadedModel, method: str, protocol: str) -> dict | None:
    """The parameters of a panel's preview (`methods.preview_params` over the panel's own); None
    for a quick method, or where the protocol's own settings leave nothing to save."""
    side = loaded.input_size  # the model input's shape, without building one: this runs for every panel on every rerun
    per_image = work_size.known_macs(loaded.model, (loaded.preprocessing.channels, side, side))
    if per_image is None or loaded.device.type != "cpu":
        coarse = preview_params(method, loaded.input_size)
    else:
        coarse = preview_params(method, loaded.input_size,
                                work_size.evaluations(per_image, PREVIEW_SECONDS, backward=True),
                                work_size.evaluations(per_image, PREVIEW_SECONDS, backward=False))
    if coarse is None:
        return None
    final = _params(loaded, method, protocol)
    preview = {**final, **coarse}
    return None if preview == final else preview


def _job_key(loaded: LoadedModel, data: Dataset, image_id: str, method: str, target: int,
             protocol: str = DEFAULT_PROTOCOL, preview: bool = False) -> tuple:
    """What determines a map and its scores: the weights, the dataset and image, method, class
    and scoring protocol (which may set the explainer's parameters); and whether it is the
    preview."""
    return (loaded.hash, str(data.root), data.hash, file_hash(data.image_path(image_id)), image_id, method, target,
            protocol) + (("preview",) if preview else ())


def _preview_note(job: background.Job | None) -> str:
    """A preview panel's title: that it is one, and how far its final map is."""
    if job is None or not job.started:
        return f"{PREVIEW_NOTE} · final map queued"
    done, total = job.progress
    return f"{PREVIEW_NOTE} · final map {10 * (10 * done // total)}%" if total else f"{PREVIEW_NOTE} · final map computing"


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
        """Fill one panel from `work()`, its final map; whether that was freshly computed."""
        cell = cells[(loaded.name, method)]
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - one failing panel says why; the others still show
            cell.heatmap, cell.point, cell.caption, cell.note = None, None, "", f"{FAILED_NOTE}: {message(exc)}"
            return True
        results[(loaded.name, method)] = result
        scores = _scores(_job_key(loaded, data, image_id, method, target, protocol), result.raw, method, truth,
                         image.shape, protocol, loaded.preprocessing)
        cell.heatmap, cell.support = result.display, result.support
        cell.point = result.peak  # None for a flat map: no ✕
        cell.caption, cell.note = caption(probability[loaded.name], scores, class_name), ""
        rows.append({"image_id": image_id, "target_class": class_name, "checkpoint": loaded.name, "model": loaded.label,
                     "method": method, "probability": probability[loaded.name], **scores, "n_boxes": len(boxes),
                     "seconds": float("nan") if result.cached else round(result.seconds, 3), "cached": result.cached,
                     "precision": result.precision})
        return not result.cached

    def sketch(loaded: LoadedModel, method: str, result: MapResult, final: background.Job | None) -> None:
        """Show a preview in its panel: the map, no scores, no ✕, labelled."""
        cell = cells[(loaded.name, method)]
        cell.heatmap, cell.support, cell.point = result.display, result.support, None
        cell.caption, cell.note = "", _preview_note(final)

    def lookup(loaded: LoadedModel, method: str, preview: bool = False) -> MapResult | None:
        """The panel's final map from the cache (or its preview from memory), without the
        model's lock or the worker: a ▶ to an image whose maps were prefetched never waits
        behind a map computing for another."""
        params = _preview_params(loaded, method, protocol) if preview else _params(loaded, method, protocol)
        if params is None:
            return None
        return cached_map(loaded, data, image_id, method, target, params, image=image,
                          cache=PREVIEWS if preview else None)

    panels = sorted(((m, method) for row in rows_of_panels for m, method in row), key=lambda panel: cost_rank(panel[1]))
    fresh = found = False
    for m, method in panels:
        stored = lookup(m, method)
        if stored is not None:
            finish(m, method, lambda result=stored: result)
            found = True
    todo = [(m, method) for m, method in panels if (m.name, method) not in results]
    for m, method in todo:
        kept = lookup(m, method, preview=True)
        if kept is not None:
            sketch(m, method, kept, None)
            fresh = True
    coarse = {(m.name, method) for m, method in todo if _preview_params(m, method, protocol) is not None
              and cells[(m.name, method)].heatmap is None}  # slow panels without a preview in memory
    # quick maps and previews first, then the slow methods' final maps, each cheapest first
    previews, finals = {}, {}
    for m, method in todo:
        quick = _preview_params(m, method, protocol) is None
        if quick or (m.name, method) in coarse:
            jobs, preview = (finals, False) if quick else (previews, True)
            jobs[(m.name, method)] = worker.submit(
                _job_key(m, data, image_id, method, target, protocol, preview=preview),
                partial(_map, m, data, image_id, method, target, image, protocol=protocol, preview=preview), first=True)
    for m, method in todo:
        if (m.name, method) not in finals:
            finals[(m.name, method)] = worker.submit(_job_key(m, data, image_id, method, target, protocol),
                                                     partial(_map, m, data, image_id, method, target, image,
                                                             protocol=protocol))
    keys = [_job_key(m, data, image_id, method, target, protocol, preview=True) for m, method in todo
            if (m.name, method) in previews] + [_job_key(m, data, image_id, method, target, protocol) for m, method in todo]
    by_name = {(m.name, method): m for m, method in todo}
    bar = status.progress(0.0, text="Maps") if todo else None
    shown_at, mapped, full = 0.0, False, False  # when the grid was last sent; whether it showed a map, one in every panel

    def update(now: bool = False) -> None:
        """Send the grid when panels wait to be shown, at most every MIN_SHOW_SECONDS, but at
        once when it shows the first map or, for the first time, a map in every panel."""
        nonlocal fresh, shown_at, mapped, full
        every = all(settled(cell) for cell in cells.values())
        milestone = fresh and (not mapped or (every and not full))
        if (fresh or now) and (now or milestone or time.monotonic() - shown_at >= MIN_SHOW_SECONDS):
            show(grid())
            mapped |= any(cell.heatmap is not None for cell in cells.values())
            full |= every
            fresh, shown_at = False, time.monotonic()

    if fresh or (show_first and found):  # show_first sent the plain grid already
        update(now=True)
    try:
        while finals or previews:
            futures = [job.future for job in [*finals.values(), *previews.values()]]
            wait(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for panel, job in list(previews.items()):
                if job.future.done():
                    del previews[panel]
                    if panel in finals and not job.future.cancelled() and job.future.exception() is None:
                        sketch(by_name[panel], panel[1], job.future.result(), finals[panel])
                        fresh = True
            for panel, job in list(finals.items()):
                if job.future.done():
                    del finals[panel]
                    fresh |= finish(by_name[panel], panel[1], job.future.result)
                elif cells[panel].note.startswith(PREVIEW_NOTE):
                    note = _preview_note(job)
                    fresh |= note != cells[panel].note
                    cells[panel].note = note
            done = len(todo) - len(finals)
            running = next(((panel, job) for panel, job in [*previews.items(), *finals.items()] if job.started), None)
            text = f"{done}/{len(todo)} final maps"
            if running is not None:
                (name, method), job = running
                kind = "preview of " if running[0] in previews and job is previews[running[0]] else ""
                at, total = job.progress
                text += f" · {kind}{method} · {plain(name)}" + (f": window {at}/{total}" if total else "")
            bar.progress(done / len(todo), text=text)
            update()
    finally:
        worker.release(keys)  # a rerun or another image: work nobody waits for yields to theirs
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
    panels = [(n, loaded, method, image_id, target)
              for n, (image_id, target) in enumerate(targets) for row in rows_of_panels for loaded, method in row]
    # quick maps and previews (each image in turn), then the final maps, cheapest first over all images
    first = [(n, cost_rank(method), loaded, method, image_id, target, _preview_params(loaded, method, protocol) is not None)
             for n, loaded, method, image_id, target in panels]
    later = [(cost_rank(method), n, loaded, method, image_id, target, False)
             for n, loaded, method, image_id, target in panels if _preview_params(loaded, method, protocol) is not None]
    # the probabilities first: a grid needs them, and computing them takes the model's lock
    ids = list(dict.fromkeys(image_id for image_id, _ in targets))
    probabilities = [(("predictions", loaded.hash, str(data.root), data.hash, tuple(ids)),
                      partial(_predictions, loaded, data, ids)) for loaded in selection.models]
    work, soon = list(probabilities), {key for key, _ in probabilities}
    for *_, loaded, method, image_id, target, preview in sorted(first, key=lambda w: w[:2]) + sorted(later, key=lambda w: w[:2]):
        key = _job_key(loaded, data, image_id, method, target, protocol, preview=preview)
        work.append((key, partial(_map, loaded, data, image_id, method, target, None, protocol=protocol, preview=preview)))
        if preview or (_preview_params(loaded, method, protocol) is None):
            soon.add(key)
    background.worker().prefetch(owner, work, first=soon)


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
