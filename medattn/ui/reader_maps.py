"""Maps behind a reader's blinded panels, computed on the server with the app's pipeline
(`medattn.pipeline.compute_map`: the heatmap cache first) and the app's method settings.

Only the map leaves this module: the checkpoint, method and class behind a code are read
from the store here and never reach the page. A failing panel raises `PanelUnavailable` with a
message that names nothing; the cause goes to the server log.
"""

from __future__ import annotations

import logging

import numpy as np

from medattn.pipeline import cached_map, compute_map
from medattn.store.annotations import AnnotationStore
from medattn.ui import loaders
from medattn.ui.methods import app_params

log = logging.getLogger("medattn.ui.reader")


class PanelUnavailable(Exception):
    """The map of a panel could not be made (the message is safe to show a reader)."""


def _labelled_target(data, image_id: str, target_class: str | None) -> int | None:
    """The study's (or case's) class, else the image's first labelled class, else None."""
    if target_class in data.classes:
        return data.classes.index(target_class)
    labelled = np.flatnonzero(data.labels(image_id))
    return int(labelled[0]) if labelled.size else None


def _target(loaded, data, image_id: str, target_class: str | None) -> int:
    """The class the map explains: the study's (or case's) class, else the image's first
    labelled class, else the model's most probable class."""
    index = _labelled_target(data, image_id, target_class)
    if index is not None:
        return index
    return int(np.argmax(loaders.predictions(loaded, data, [image_id]).to_numpy()[0]))


def case_finding(store: AnnotationStore, study_id: str, reader: str, case_id: str, codes: list[str]) -> str | None:
    """The name of the class the case's maps explain, for the questions to name it ("How well
    does each map point at nodule?"): the case's or study's class, else the image's first
    labelled class. None without panels, or when the maps explain the model's most probable
    class (no label); the questions then keep their generic words. Names no model or method."""
    if not codes:
        return None
    try:
        target = store.panel_target(study_id, reader, case_id, codes[0])
        data = loaders.dataset(target["dataset"])
        index = _labelled_target(data, target["image_id"], target["target_class"])
    except Exception:  # noqa: BLE001 - the panels show their own note; the question stays generic
        log.exception("the finding of %s/%s for %s", study_id, case_id, reader)
        return None
    return None if index is None else data.classes[index]


def panel_map(store: AnnotationStore, study_id: str, reader: str, case_id: str, code: str) -> np.ndarray:
    """The display map (H, W) in [0, 1], stored-image frame, of one panel the reader is shown."""
    try:
        target = store.panel_target(study_id, reader, case_id, code)
        data = loaders.dataset(target["dataset"])
        loaded = loaders.model(target["checkpoint"], "auto")
        index = _target(loaded, data, target["image_id"], target["target_class"])
        params = app_params(target["method"], loaded.input_size)
        result = cached_map(loaded, data, target["image_id"], target["method"], index, params)
        if result is None:  # the lock only to compute: a cached map never waits for another reader's
            with loaders.model_lock(loaded.name):
                result = compute_map(loaded, data, target["image_id"], target["method"], index, params)
    except Exception as error:  # noqa: BLE001 - any cause; the reader sees a neutral message
        log.exception("panel %s of %s/%s for %s failed", code, study_id, case_id, reader)
        raise PanelUnavailable(f"map {code} is unavailable right now") from error
    return result.display
