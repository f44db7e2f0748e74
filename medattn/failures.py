"""Failure cases per model and class, from a precompute score table (no Streamlit needed).

Categories, for one (image, checkpoint, class) at the score table's decision (`predicted`: the
model's decision rule, `medattn.metrics.decision`, argmax for multiclass):
- false_positive: predicted, not labelled;
- false_negative: labelled, not predicted;
- mislocalized: labelled and predicted (a true positive) with boxes of that class, whose map
  from the chosen method points outside every box (`hit` is 0) or scores AUPRC under the
  threshold.
Precompute explains every labelled and every predicted class of an image, so every false
positive and false negative of the scored images has rows; their category does not depend on
the method, so they appear once, with the chosen method's scores attached where present.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES: dict[str, str] = {
    "false_positive": "false positive",
    "false_negative": "false negative",
    "mislocalized": "true positive, mislocalized",
}
SORTS = ("confidence", "score")
KEY = ["image_id", "checkpoint", "target"]
COLUMNS = ["image_id", "checkpoint", "model", "target", "target_class", "category", "probability", "label",
           "predicted", "method", "auprc", "hit", "miou", "n_boxes", "split", "reason"]


def failure_cases(
    scores: pd.DataFrame,
    method: str,
    auprc_threshold: float = 0.3,
    checkpoint: str | None = None,
    target_class: str | None = None,
) -> pd.DataFrame:
    """Every failure in `scores` (precompute rows), one row per image × checkpoint × class, with
    `category` (a CATEGORIES key), the `method`'s scores and a human `reason`."""
    missing = {"image_id", "checkpoint", "method", "target", "target_class", "label", "predicted", "probability",
               "auprc", "hit", "n_boxes"} - set(scores.columns)
    if missing:
        raise ValueError(f"score table lacks column(s) {', '.join(sorted(missing))}")
    rows = scores[~scores["method"].astype(str).str.startswith("sanity:")]
    if checkpoint is not None:
        rows = rows[rows["checkpoint"] == checkpoint]
    if target_class is not None:
        rows = rows[rows["target_class"] == target_class]
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    ours = rows[rows["method"] == method].drop_duplicates(KEY)
    # One row per decision: the method's own row when it exists, else any method's row.
    decisions = pd.concat([ours, rows]).drop_duplicates(KEY, keep="first")
    label, predicted = decisions["label"].astype(int), decisions["predicted"].astype(int)
    category = pd.Series(None, index=decisions.index, dtype=object)
    category[(label == 0) & (predicted == 1)] = "false_positive"
    category[(label == 1) & (predicted == 0)] = "false_negative"
    from_method = decisions["method"] == method
    auprc = decisions["auprc"].astype(float).where(from_method)
    hit = decisions["hit"].astype(float).where(from_method)
    missed = (hit == 0) | (auprc < auprc_threshold)
    category[(label == 1) & (predicted == 1) & (decisions["n_boxes"] > 0) & from_method & missed] = "mislocalized"
    chosen = category.notna()
    out = decisions[chosen].copy()
    out["category"] = category[chosen]
    out["method"] = method
    out["auprc"], out["hit"] = auprc[chosen], hit[chosen]
    out["miou"] = out["miou"].astype(float).where(from_method[chosen]) if "miou" in out else np.nan
    out["reason"] = [_reason(row, auprc_threshold) for row in out.itertuples()]
    for column in COLUMNS:
        if column not in out:
            out[column] = np.nan
    return out[COLUMNS].reset_index(drop=True)


def _reason(row, threshold: float) -> str:
    p = f"p={row.probability:.2f}"
    if row.category == "false_positive":
        return f"{p} for {row.target_class}, not labelled"
    if row.category == "false_negative":
        return f"{p} for {row.target_class}, labelled"
    parts = []
    if row.hit == 0:
        parts.append("argmax outside every box")
    if row.auprc < threshold:
        parts.append(f"AUPRC {row.auprc:.2f} < {threshold:.2f}")
    return f"{p}; " + "; ".join(parts)


def sort_failures(cases: pd.DataFrame, by: str = "confidence") -> pd.DataFrame:
    """"confidence": most confident mistakes first (p for false positives and mislocalized
    cases, 1 - p for false negatives); "score": lowest AUPRC first (cases without one last)."""
    if by not in SORTS:
        raise ValueError(f"sort by one of {', '.join(SORTS)}, got {by!r}")
    if by == "confidence":
        p = cases["probability"].astype(float)
        confidence = np.where(cases["category"] == "false_negative", 1 - p, p)
        order = np.argsort(-confidence, kind="stable")
    else:
        order = np.argsort(cases["auprc"].astype(float).fillna(np.inf).to_numpy(), kind="stable")
    return cases.iloc[order].reset_index(drop=True)


def failure_counts(cases: pd.DataFrame) -> pd.DataFrame:
    """Number of cases per checkpoint × class (rows) and category (columns, all of CATEGORIES)."""
    if cases.empty:
        return pd.DataFrame(columns=list(CATEGORIES))
    counts = cases.groupby(["checkpoint", "target_class", "category"]).size().unstack("category", fill_value=0)
    return counts.reindex(columns=list(CATEGORIES), fill_value=0)
