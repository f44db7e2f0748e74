"""Which split a score page lists, said on the page, and how much of it the scores cover.

The Leaderboard and Failure cases read the dataset's whole score table, which may hold rows of
several splits (precompute over test, a CLI run over train) and stop short of a split (a job
stopped at 145 of 1,479 maps). Both pages list one split at a time, name it, and show the
coverage per model × method, warning when a mean is over part of the split only.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medattn import leaderboard as lb
from medattn.data.dataset import Dataset
from medattn.ui.plain import plain


def data_splits(data: Dataset) -> list[str]:
    """The splits that have images (test, val, train order), then "all": a precompute's choices."""
    present = set(data.images["split"])
    return [s for s in lb.SPLIT_ORDER if s in present] + ["all"]


def split_images(data: Dataset, split: str) -> pd.Index:
    """The image ids of `split` ("all": every image)."""
    return data.images.index if split == "all" else data.split(split).index


def scoped_scores(data: Dataset, scores: pd.DataFrame, key: str, column=st) -> tuple[pd.DataFrame, str, pd.DataFrame]:
    """A split chooser (the splits the scores hold; test first), then the rows of that split,
    its name and its coverage table (`leaderboard.coverage_table`); a warning names every
    model × method whose rows cover part of the split only."""
    split = column.selectbox("Split", lb.split_choices(scores), key=f"{key}_split", persist_state="session",
                             help="Scores of the images of this split (each image's split is in images.csv).")
    rows = lb.rows_of_split(scores, split)
    coverage = lb.coverage_table(rows, split_images(data, split))
    partial = coverage[~coverage["complete"].astype(bool)]
    if len(partial):
        listed = "; ".join(f"{r.checkpoint} · {r.method}: {r.images:,} of {r.of:,} images" for r in partial.itertuples())
        st.warning(f"Partial results on the {split} split: {plain(listed)}. Their means and counts cover those images "
                   "only; resume or run precompute to complete them.")
    return rows, split, coverage


def coverage_label(coverage: pd.DataFrame) -> pd.Series:
    """'145 / 1,479' per (checkpoint, method), to show beside a mean."""
    if coverage.empty:
        return pd.Series(dtype=object)
    labels = [f"{r.images:,} / {r.of:,}" for r in coverage.itertuples()]
    return pd.Series(labels, index=pd.MultiIndex.from_frame(coverage[["checkpoint", "method"]]))
