"""Cached loaders: datasets and models load once per process (st.cache_resource), keyed by
content stamps so that an edited manifest or a retrained checkpoint is picked up; score tables
and predictions are read again only when their files change."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import pandas as pd
import streamlit as st

from medattn.data.dataset import Dataset, dataset_hash, load_dataset
from medattn.data.skips import Skips
from medattn.inference import LoadedModel, cached_predictions, load_model, stored_predictions as stored_rows
from medattn.metrics.classification import correct_images
from medattn.metrics.fair_set import fair_comparison_set
from medattn import pipeline
from medattn.pipeline import current_rows
from medattn.store import Run


def run_for(data: Dataset) -> Run:
    """Where precompute keeps this dataset's predictions and scores (under the cache folder,
    looked up at call time so that tests and callers may point it elsewhere)."""
    return Run.for_dataset(data, pipeline.CACHE_DIR / "runs")


@st.cache_resource(max_entries=8, show_spinner="Loading the dataset…")
def _dataset(path: str, stamp: str) -> Dataset:
    return load_dataset(path)


def dataset(path: str | os.PathLike) -> Dataset:
    """The validated dataset at `path`; DatasetError lists every problem."""
    path = str(Path(path).expanduser().resolve())
    stamp = dataset_hash(path) if Path(path).is_dir() else "missing"
    return _dataset(path, stamp)


@st.cache_resource(max_entries=16, show_spinner="Loading the checkpoint…")
def _model(path: str, device: str, stamp: int) -> LoadedModel:
    return load_model(path, device)


def model(path: str | os.PathLike, device: str) -> LoadedModel:
    """A checkpoint loaded for inference on `device` ("auto", "cpu", "cuda"…)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
    weights = base.parent / f"{base.name}.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.exists() else 0
    return _model(str(base.resolve()), device, stamp)


@st.cache_resource
def model_lock(name: str) -> threading.Lock:
    """One lock per checkpoint: explainers attach hooks to the shared model, so two sessions
    must not explain with the same model at once."""
    return threading.Lock()


def predictions(loaded: LoadedModel, data: Dataset, image_ids: Sequence[str], skips: Skips | None = None) -> pd.DataFrame:
    """Class probabilities of these images, stored with the dataset's run (computed once); with
    `skips`, unreadable images get NaN rows and are named there."""
    run = run_for(data)
    stored = stored_rows(loaded, list(image_ids), run.prediction_store)  # no lock: a map computing with this model
    if stored is not None:  # must not hold up probabilities that are already stored
        return stored
    with model_lock(loaded.name):
        return cached_predictions(loaded, data, list(image_ids), run.prediction_store, skips)


def _stamp(folder: Path) -> tuple:
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.parquet")))


@st.cache_data(max_entries=8, show_spinner=False)
def _scores(root: str, stamp: tuple) -> pd.DataFrame:
    return Run(Path(root)).scores.read()


def scores(data: Dataset, models: Sequence[LoadedModel]) -> pd.DataFrame:
    """The dataset's score table restricted to the rows that hold for these checkpoints: same
    weights, current scoring definitions (`precompute.current_rows`)."""
    run = run_for(data)
    table = _scores(str(run.root), _stamp(run.root / "scores"))
    return current_rows(table, {m.name: m.hash for m in models})


def stored_predictions(data: Dataset, models: Sequence[LoadedModel]) -> dict[str, pd.DataFrame]:
    """Predictions precompute stored for these checkpoints (class columns only, these weights)."""
    store = run_for(data).prediction_store
    stored = [(loaded, store.read(loaded.name, loaded.hash)) for loaded in models]
    return {loaded.name: frame[loaded.classes] for loaded, frame in stored if frame is not None}


def fair_set(data: Dataset, models: Sequence[LoadedModel], image_ids: Sequence[str], skips: Skips | None = None) -> pd.Index:
    """The images among `image_ids` that every model classifies correctly (exact match); an
    unreadable image has no prediction, so it is not in the set, and is named in `skips`."""
    skips = skips if skips is not None else Skips("images")
    correct = {}
    for loaded in models:
        probs = predictions(loaded, data, image_ids, skips)
        probs = probs[probs.notna().all(axis=1)]
        labels = data.label_matrix(probs.index)
        thresholds = loaded.decision(data.task).thresholds
        correct[loaded.name] = pd.Series(correct_images(labels, probs.to_numpy(), data.task, thresholds), index=probs.index)
    return fair_comparison_set(correct)
