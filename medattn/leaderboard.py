"""Leaderboard figures from a precompute run (no Streamlit needed).

- Localization per checkpoint × method: mean AUPRC, hit rate and mIoU over the scored
  (image, class) pairs that have ground truth (boxes or a mask) of that class, each with a
  bootstrap 95% CI that resamples those pairs (with one class selected, that is resampling
  images), and `flat`: how many of those maps were flat (scored at chance: `degenerate`).
- Classification per checkpoint: `medattn.metrics.classification_report` on the stored
  predictions of the run's images.
- Paired differences between two (checkpoint, method) pairs over the pairs both scored.
- Sanity checks: rows whose method starts with "sanity:" (written by the sanity-check runner)
  are kept apart from the leaderboard and summarised on their own.
- Which rows: one split at a time (`split_choices`, `rows_of_split`), and how much of it the
  table covers per checkpoint × method (`coverage_table`): a stopped job's means are partial.
- Faithfulness per checkpoint × method (`faithfulness_table`): the mean of each faithfulness
  metric precompute stored (`--metrics`) over every scored (image, class) pair, with bootstrap
  95% CIs; reference maps ("reference:…") are rows like methods, flagged `reference`.
- Rank agreement (`rank_agreement`): per checkpoint, Kendall's τ-b between the methods' order by
  a localization metric and by a faithfulness metric, each in its better direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from scipy.stats import kendalltau

from medattn.metrics.bootstrap import bootstrap_ci, paired_difference
from medattn.metrics.classification import classification_report
from medattn.metrics.decision import DecisionRule, decision_rule
from medattn.metrics.faithfulness import HIGHER, METRICS as FAITHFULNESS_METRICS, is_reference

METRICS = ("auprc", "hit", "miou")
METRIC_TITLES = {"auprc": "Box AUPRC ↑", "hit": "Pointing game hit rate ↑", "miou": "mIoU ↑"}  # all: higher is better
SANITY_PREFIX = "sanity:"
SANITY_KEYS = ("check", "explainer", "step", "layer", "other_checkpoint")
SANITY_VALUES = ("ssim", "spearman")
PAIR_KEY = ["image_id", "target"]
SPLIT_ORDER = ("test", "val", "train")


def split_sanity(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(explanation rows, sanity-check rows) of a score table."""
    if scores.empty or "method" not in scores:
        return scores, scores.iloc[0:0]
    sanity = scores["method"].astype(str).str.startswith(SANITY_PREFIX)
    return scores[~sanity], scores[sanity]


def split_choices(scores: pd.DataFrame) -> list[str]:
    """The splits a score table holds rows of (test, val, train order), then "all"."""
    present = set(scores["split"].dropna().astype(str)) if "split" in scores else set()
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER)) + ["all"]


def rows_of_split(scores: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of images of `split` ("all": every row); sanity-check rows, which compare maps
    and name no split, are kept with every split."""
    if split == "all" or "split" not in scores:
        return scores
    sanity = scores["method"].astype(str).str.startswith(SANITY_PREFIX)
    return scores[(scores["split"].astype(str) == split) | sanity]


def coverage_table(scores: pd.DataFrame, image_ids: Sequence[str]) -> pd.DataFrame:
    """How much of a split the score table covers, per checkpoint × method: `images` with rows,
    `of` the images of the split (`image_ids`), `share` and `complete`. A stopped precompute job
    leaves means over the images it reached: pages show this beside them so that they are never
    taken for the split's."""
    rows, _ = split_sanity(scores)
    wanted = set(map(str, image_ids))
    columns = ["checkpoint", "method", "images", "of", "share", "complete"]
    if rows.empty or not wanted:
        return pd.DataFrame(columns=columns)
    rows = rows[rows["image_id"].astype(str).isin(wanted)]
    counts = rows.groupby(["checkpoint", "method"])["image_id"].nunique().rename("images").reset_index()
    counts["of"] = len(wanted)
    counts["share"] = counts["images"] / counts["of"]
    counts["complete"] = counts["images"] == counts["of"]
    return counts[columns]


def _scored(scores: pd.DataFrame, target_class: str | None, image_ids: Sequence[str] | None) -> pd.DataFrame:
    rows, _ = split_sanity(scores)
    if rows.empty:
        return rows
    rows = rows[rows["auprc"].notna()]  # pairs with ground truth: every metric is NaN without
    if target_class is not None:
        rows = rows[rows["target_class"] == target_class]
    if image_ids is not None:
        rows = rows[rows["image_id"].isin(set(image_ids))]
    return rows


def localization_table(
    scores: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    target_class: str | None = None,
    image_ids: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per checkpoint × method: `n` scored pairs, `flat` (how many of their maps were
    flat, i.e. `degenerate`), `precision` (what their maps were computed in; "" for rows that
    do not record it) and, per metric, the mean and its bootstrap 95% interval (`{metric}`,
    `{metric}_low`, `{metric}_high`)."""
    rows = _scored(scores, target_class, image_ids)
    columns = ["checkpoint", "model", "method", "n", "flat", "precision"] + [f"{m}{s}" for m in metrics
                                                                           for s in ("", "_low", "_high")]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for (checkpoint, method), group in rows.groupby(["checkpoint", "method"], sort=True):
        flat = int(group["degenerate"].fillna(False).astype(bool).sum()) if "degenerate" in group else 0
        precision = ", ".join(sorted(group["precision"].dropna().astype(str).unique())) if "precision" in group else ""
        record = {"checkpoint": checkpoint, "model": group["model"].iloc[0], "method": method, "n": len(group),
                  "flat": flat, "precision": precision}
        for metric in metrics:
            estimate, low, high = bootstrap_ci(group[metric].to_numpy(dtype=float), n_resamples, seed)
            record.update({metric: estimate, f"{metric}_low": low, f"{metric}_high": high})
        out.append(record)
    return pd.DataFrame(out, columns=columns)


def paired_comparison(
    scores: pd.DataFrame,
    a: tuple[str, str],
    b: tuple[str, str],
    metric: str = "auprc",
    target_class: str | None = None,
    image_ids: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """metric(a) - metric(b) for two (checkpoint, method) pairs on the (image, class) pairs both
    scored: difference, 95% CI, bootstrap p-value and the number of pairs `n`."""
    rows = _scored(scores, target_class, image_ids)

    def values(pair: tuple[str, str]) -> pd.Series:
        chosen = rows[(rows["checkpoint"] == pair[0]) & (rows["method"] == pair[1])]
        return chosen.set_index(PAIR_KEY)[metric].astype(float)

    first, second = values(a), values(b)
    first, second = first.align(second, join="inner")
    keep = first.notna() & second.notna()
    result = paired_difference(first[keep].to_numpy(), second[keep].to_numpy(), n_resamples, seed)
    return {**result._asdict(), "n": int(keep.sum())}


def stored_predictions(run_root: str | Path) -> dict[str, pd.DataFrame]:
    """The class probabilities precompute stored per checkpoint (name → image × class)."""
    folder = Path(run_root) / "predictions"
    if not folder.is_dir():
        return {}
    return {path.stem: pd.read_parquet(path) for path in sorted(folder.glob("*.parquet"))}


def classification_table(
    predictions: Mapping[str, pd.DataFrame], labels: pd.DataFrame, classes: Sequence[str], task: str,
    rules: Mapping[str, DecisionRule] | None = None,
) -> pd.DataFrame:
    """One row per checkpoint: n images, accuracy, binary accuracy, macro F1, mean ROC AUC and
    the ROC AUC of each class, on the images present in both its predictions and `labels`;
    predictions decided by the checkpoint's rule in `rules` (default: `task`'s, at 0.5)."""
    out = []
    for name, frame in predictions.items():
        if not set(classes) <= set(frame.columns):
            continue
        ids = frame.index.intersection(labels.index)
        if len(ids) == 0:
            continue
        thresholds = (rules or {}).get(name, decision_rule(task, classes)).thresholds
        report = classification_report(labels.loc[ids, list(classes)].to_numpy(), frame.loc[ids, list(classes)].to_numpy(),
                                       task, classes, thresholds)
        record = {"checkpoint": name, "n": report["n_images"], "accuracy": report["accuracy"],
                  "binary_accuracy": report["binary_accuracy"], "f1_macro": report["f1_macro"],
                  "roc_auc_mean": report["roc_auc_mean"]}
        record.update({f"auc_{c}": report["per_class"][c]["roc_auc"] for c in classes})
        out.append(record)
    table = pd.DataFrame(out, columns=["checkpoint", "n", "accuracy", "binary_accuracy", "f1_macro", "roc_auc_mean",
                                       *(f"auc_{c}" for c in classes)])
    numbers = table.columns.drop("checkpoint")
    table[numbers] = table[numbers].apply(pd.to_numeric, errors="coerce")  # report's None → NaN
    return table


def curves(
    predictions: Mapping[str, pd.DataFrame], labels: pd.DataFrame, target_class: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, float]], dict[str, tuple[np.ndarray, np.ndarray, float]]]:
    """PR (recall, precision, AP) and ROC (fpr, tpr, AUC) of one class per checkpoint; a
    checkpoint whose images hold only one label value for the class is left out."""
    pr, roc = {}, {}
    for name, frame in predictions.items():
        if target_class not in frame.columns:
            continue
        ids = frame.index.intersection(labels.index)
        y, s = labels.loc[ids, target_class].to_numpy(dtype=int), frame.loc[ids, target_class].to_numpy(dtype=float)
        if np.unique(y).size < 2:
            continue
        precision, recall, _ = precision_recall_curve(y, s)
        fpr, tpr, _ = roc_curve(y, s)
        pr[name] = (recall, precision, float(average_precision_score(y, s)))
        roc[name] = (fpr, tpr, float(roc_auc_score(y, s)))
    return pr, roc


def sanity_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Sanity-check rows (medattn.metrics.sanity) averaged over images: one row per checkpoint ×
    check step (the method name, e.g. "sanity:cascading:gradcam@2"), with the descriptive
    columns the rows carry (check, explainer, step, layer, other_checkpoint), `images`, and the
    mean of each similarity (ssim, spearman; any other numeric column when those are absent)."""
    _, sanity = split_sanity(scores)
    if sanity.empty:
        return sanity
    keys = ["checkpoint", "method"] + [k for k in SANITY_KEYS if k in sanity.columns]
    values = [v for v in SANITY_VALUES if v in sanity.columns]
    if not values:
        skip = set(keys) | {"target", "label", "predicted", "correct", "n_boxes", "seconds", "cached", "seed"}
        values = [c for c in sanity.select_dtypes("number").columns if c not in skip and sanity[c].notna().any()]
    grouped = sanity.groupby(keys, sort=False, dropna=False)
    table = grouped[values].mean() if values else grouped.size().to_frame("images").iloc[:, :0]
    table.insert(0, "images", grouped.size())
    order = [k for k in ("checkpoint", "check", "explainer", "step", "method") if k in keys]
    return table.reset_index().sort_values(order, kind="stable").reset_index(drop=True)


def faithfulness_metrics(scores: pd.DataFrame) -> list[str]:
    """The faithfulness metrics a score table holds values of, in `METRICS` order."""
    return [m for m in FAITHFULNESS_METRICS if m in scores.columns and scores[m].notna().any()]


def faithfulness_table(
    scores: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    target_class: str | None = None,
    image_ids: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per checkpoint × method with faithfulness values: `reference` (a reference map),
    `n` (scored (image, class) pairs with any of the metrics) and, per metric, the mean over the
    pairs where it is defined with its bootstrap 95% interval (`{m}`, `{m}_low`, `{m}_high`).
    Unlike localization, every pair counts, with or without boxes."""
    rows, _ = split_sanity(scores)
    metrics = list(metrics) if metrics is not None else faithfulness_metrics(rows)
    columns = ["checkpoint", "model", "method", "reference", "n"] + [f"{m}{s}" for m in metrics for s in ("", "_low", "_high")]
    if rows.empty or not metrics:
        return pd.DataFrame(columns=columns)
    rows = rows[rows[metrics].notna().any(axis=1)]
    if target_class is not None:
        rows = rows[rows["target_class"] == target_class]
    if image_ids is not None:
        rows = rows[rows["image_id"].isin(set(image_ids))]
    out = []
    for (checkpoint, method), group in rows.groupby(["checkpoint", "method"], sort=True):
        record = {"checkpoint": checkpoint, "model": group["model"].iloc[0], "method": method,
                  "reference": is_reference(method), "n": len(group)}
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            estimate, low, high = bootstrap_ci(values, n_resamples, seed) if len(values) else (np.nan,) * 3
            record.update({metric: estimate, f"{metric}_low": low, f"{metric}_high": high})
        out.append(record)
    table = pd.DataFrame(out, columns=columns)
    return table.sort_values(["checkpoint", "reference", "method"], kind="stable").reset_index(drop=True)


def rank_agreement(localization: pd.DataFrame, faithfulness: pd.DataFrame, localization_metric: str = "auprc",
                   faithfulness_metric: str = "deletion", references: bool = False) -> pd.DataFrame:
    """Do localization and faithfulness rank methods alike? Per checkpoint (and "all": every
    checkpoint × method pair pooled), Kendall's τ-b between the methods' means under
    `localization_metric` (higher is better) and under `faithfulness_metric` taken in its better
    direction (`METRICS[...].better`), over the methods both tables hold (reference maps only
    with `references`). τ = 1: the same order; -1: reversed; NaN with fewer than 3 methods or
    a tie everywhere. Columns: checkpoint, methods, tau, p_value, best_localization,
    best_faithfulness."""
    sign = 1.0 if FAITHFULNESS_METRICS[faithfulness_metric].better == HIGHER else -1.0
    keys = ["checkpoint", "method"]
    joined = localization[keys + [localization_metric]].merge(faithfulness[keys + [faithfulness_metric]], on=keys)
    if not references:
        joined = joined[~joined["method"].map(is_reference)]
    joined = joined.dropna(subset=[localization_metric, faithfulness_metric])
    groups = [(str(c), g) for c, g in joined.groupby("checkpoint", sort=True)]
    if len(groups) > 1:
        groups.append(("all", joined))
    out = []
    for name, group in groups:
        a, b = group[localization_metric].to_numpy(float), sign * group[faithfulness_metric].to_numpy(float)
        tau, p = (kendalltau(a, b) if len(group) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0 else (np.nan, np.nan))
        label = group["method"] if name != "all" else group["checkpoint"] + " · " + group["method"]
        out.append({"checkpoint": name, "methods": len(group), "tau": float(tau), "p_value": float(p),
                    "best_localization": label.iloc[int(np.argmax(a))] if len(group) else None,
                    "best_faithfulness": label.iloc[int(np.argmax(b))] if len(group) else None})
    return pd.DataFrame(out, columns=["checkpoint", "methods", "tau", "p_value", "best_localization", "best_faithfulness"])
