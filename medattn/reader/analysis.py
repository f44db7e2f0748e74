"""Analyses of a reader study, joined to the study's dataset and to precompute score tables.

- Heatmap ratings per model × method: the mean over cases of each case's mean rating across
  readers, with a bootstrap 95% CI resampling cases (`medattn.metrics.bootstrap`).
- Ratings vs the map's scores: Spearman correlation (scipy) of each rating with the AUPRC and the
  pointing-game hit of the same image × checkpoint × method in a score table.
- Reader boxes vs ground truth: IoU of the union masks and a hit when a reader box's centre lies
  in a truth box (`medattn.metrics.boxes` convention); reader boxes as a boxes.csv table, or as
  a dataset folder that precompute and the Leaderboard score against.
- Failure-region tag counts per model × method × failure category (the seed's Figure 2).
Everything here is for admins: it reads the case key and the panel key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from medattn.data.dataset import Dataset, write_dataset
from medattn.metrics.bootstrap import bootstrap_ci
from medattn.metrics.boxes import box_mask
from medattn.metrics.localization import hit_at
from medattn.reader.arms import WITHOUT_AI
from medattn.reader.availability import study_images
from medattn.reader.errors import DatasetMovedError, StudyError
from medattn.reader.validity import image_truth
from medattn.store.annotations import AnnotationStore

BOX_COLUMNS = ["image_id", "label", "x", "y", "w", "h"]


def study_dataset(store: AnnotationStore, study_id: str) -> Dataset:
    """The study's dataset folder, loaded; DatasetMovedError naming the folder when it is gone
    or no longer a dataset (`medattn.reader.availability.study_images`)."""
    try:
        return study_images(store.study(study_id)["dataset"])
    except DatasetMovedError as error:
        raise DatasetMovedError(f"study {study_id}: {error}") from error


def checkpoint_name(checkpoint: str) -> str:
    """The name a score table gives a checkpoint path (its file name without .json/.safetensors)."""
    path = Path(str(checkpoint))
    return path.stem if path.suffix in (".json", ".safetensors") else path.name


def case_truth(store: AnnotationStore, study_id: str) -> pd.Series:
    """0/1 per case_id: the image's label of the study's `target_class`, or without one whether
    any class is labelled (abnormal vs normal): `medattn.reader.validity.image_truth`. A case
    whose image left the dataset has no truth and no entry (`study_warnings` counts it)."""
    spec, dataset = store.study(study_id), study_dataset(store, study_id)
    key = store.case_key(study_id)
    key = key[key["image_id"].isin(dataset.images.index)]
    try:
        truth = image_truth(dataset, list(key["image_id"]), spec.get("target_class"))
    except StudyError as error:
        raise StudyError(f"study {study_id}: {error}") from error
    return pd.Series(truth.to_numpy(), index=key["case_id"].to_numpy(), name="truth")


def panel_ratings(store: AnnotationStore, study_id: str, question_id: str = "rating") -> pd.DataFrame:
    """One row per reader × case × panel: reader, case_id, image_id, code, checkpoint, method, rating."""
    columns = ["reader", "case_id", "image_id", "code", "checkpoint", "method", "rating"]
    answers = store.answers(study_id)
    answers = answers[answers["question_id"] == question_id]
    rows = [{"reader": r.reader, "case_id": r.case_id, "code": code, "rating": float(v)}
            for r in answers.itertuples() if isinstance(r.value, dict) for code, v in r.value.items()]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows).merge(store.panel_key(study_id), on="code").merge(store.case_key(study_id), on="case_id")
    return frame[columns]


def mean_ratings(ratings: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per checkpoint × method: n_cases, n_ratings, mean rating and its bootstrap 95% CI
    (`low`, `high`), cases resampled (each case's readers averaged first)."""
    columns = ["checkpoint", "method", "n_cases", "n_ratings", "mean", "low", "high"]
    out = []
    for (checkpoint, method), group in ratings.groupby(["checkpoint", "method"], sort=True):
        per_case = group.groupby("case_id")["rating"].mean().to_numpy()
        estimate, low, high = bootstrap_ci(per_case, n_resamples, seed)
        out.append({"checkpoint": checkpoint, "method": method, "n_cases": len(per_case), "n_ratings": len(group),
                    "mean": estimate, "low": low, "high": high})
    return pd.DataFrame(out, columns=columns)


def rating_score_correlation(ratings: pd.DataFrame, scores: pd.DataFrame, target_class: str | None = None) -> pd.DataFrame:
    """Spearman correlation of readers' ratings with the map's `auprc` and `hit` from a score
    table, per checkpoint × method and over all ("all", "all"): n, rho_auprc, p_auprc, rho_hit,
    p_hit. Score rows match on image_id, checkpoint name and method; only rows with boxes
    (`n_boxes` > 0) of `target_class` (all classes if None) count, averaged per image."""
    scored = scores[scores["n_boxes"] > 0]
    if target_class is not None:
        scored = scored[scored["target_class"] == target_class]
    per_map = scored.groupby(["image_id", "checkpoint", "method"], as_index=False)[["auprc", "hit"]].mean()
    joined = ratings.assign(checkpoint=ratings["checkpoint"].map(checkpoint_name)).merge(
        per_map, on=["image_id", "checkpoint", "method"], how="inner")
    groups = [(("all", "all"), joined)] + list(joined.groupby(["checkpoint", "method"], sort=True))
    out = []
    for (checkpoint, method), group in groups:
        record = {"checkpoint": checkpoint, "method": method, "n": len(group)}
        for metric in ("auprc", "hit"):
            valid = group[["rating", metric]].dropna()
            rho = p = float("nan")
            if len(valid) >= 3 and valid["rating"].nunique() > 1 and valid[metric].nunique() > 1:
                result = spearmanr(valid["rating"], valid[metric])
                rho, p = float(result.statistic), float(result.pvalue)
            record.update({f"rho_{metric}": rho, f"p_{metric}": p})
        out.append(record)
    return pd.DataFrame(out, columns=["checkpoint", "method", "n", "rho_auprc", "p_auprc", "rho_hit", "p_hit"])


def reader_boxes(store: AnnotationStore, study_id: str, question_id: str = "boxes") -> pd.DataFrame:
    """Every current reader box: reader, arm ("" without arms), case_id, image_id, label (the
    finding the reader named), x, y, w, h (admin view)."""
    columns = ["reader", "arm", "case_id", "image_id", "label", "x", "y", "w", "h"]
    answers = store.answers(study_id)
    answers = answers[answers["question_id"] == question_id]
    rows = [{"reader": r.reader, "case_id": r.case_id, **box} for r in answers.itertuples() for box in r.value]
    if not rows:
        return pd.DataFrame(columns=columns)
    arms = {(a.reader, case): arm for a in store.reader_assignments(study_id).itertuples() if a.arms
            for case, arm in a.arms.items()}
    frame = pd.DataFrame(rows).merge(store.case_key(study_id)[["case_id", "image_id"]], on="case_id")
    frame["arm"] = [arms.get((r, c), "") for r, c in zip(frame["reader"], frame["case_id"])]
    return frame[columns]


def reader_ground_truth(store: AnnotationStore, study_id: str, readers: Sequence[str] | None = None,
                        label: str | None = None, question_id: str = "boxes", arm: str | None = None) -> pd.DataFrame:
    """Reader boxes as a boxes.csv table (image_id, label, x, y, w, h, then reader, arm): the
    union of the chosen `readers`' boxes (all by default) read in one arm: `arm` (default the
    without-AI reading in a study with arms, the unaided ground truth; "all" keeps both, each row
    naming its arm), so an image read twice by a reader is not boxed twice. `label` replaces each
    box's label (default: the finding the reader named, else the study's target_class), so the
    table scores maps of that class."""
    boxes = reader_boxes(store, study_id, question_id)
    if readers is not None:
        boxes = boxes[boxes["reader"].isin(set(readers))]
    if arm is None and store.study(study_id).get("arms"):
        arm = WITHOUT_AI
    if arm not in (None, "all"):
        boxes = boxes[boxes["arm"] == arm]
    fallback = label or store.study(study_id).get("target_class") or ""
    boxes = boxes.assign(label=label if label else boxes["label"].where(boxes["label"].astype(str) != "", fallback))
    return boxes[BOX_COLUMNS + ["reader", "arm"]].reset_index(drop=True)


def write_reader_truth(store: AnnotationStore, study_id: str, out: str | Path, readers: Sequence[str] | None = None,
                       label: str | None = None) -> Path:
    """A dataset folder (`out`) of the study's images whose boxes.csv holds the readers' boxes
    (`reader_ground_truth`): precompute and the Leaderboard score maps against it unchanged.
    Labels, splits and image files are the original dataset's (image_root points there)."""
    dataset = study_dataset(store, study_id)
    ids = [i for i in dict.fromkeys(store.case_key(study_id)["image_id"]) if i in dataset.images.index]
    images = dataset.images.loc[ids].drop(columns="image_id", errors="ignore").rename_axis("image_id").reset_index()
    boxes = reader_ground_truth(store, study_id, readers, label)
    return write_dataset(out, name=f"{dataset.name} · reader boxes of {study_id}", classes=dataset.classes,
                         task=dataset.task, images=images, boxes=boxes[boxes["image_id"].isin(ids)],
                         image_root=dataset.image_root.resolve(), source=f"medattn reader study {study_id}")


def box_accuracy(store: AnnotationStore, study_id: str, question_id: str = "boxes") -> pd.DataFrame:
    """Per reader × answered case: reader, case_id, n_boxes, n_truth, iou (union of reader boxes
    vs union of truth boxes of the target class; NaN when both are empty) and hit (a reader box
    centre inside a truth box; None without truth boxes). Cases whose image left the dataset
    are left out (`study_warnings` counts them)."""
    dataset, spec = study_dataset(store, study_id), store.study(study_id)
    target = spec.get("target_class")
    key = store.case_key(study_id).set_index("case_id")["image_id"]
    answers = store.answers(study_id)
    out = []
    for r in answers[answers["question_id"] == question_id].itertuples():
        image_id = key[r.case_id]
        if image_id not in dataset.images.index:
            continue
        shape = (int(dataset.images.at[image_id, "height"]), int(dataset.images.at[image_id, "width"]))
        truth = dataset.boxes_for(image_id, target) if target else dataset.boxes_for(image_id)
        read = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in r.value]).reshape(-1, 4)
        mine, theirs = box_mask(read, shape), box_mask(truth, shape)
        union = np.logical_or(mine, theirs).sum()
        iou = float(np.logical_and(mine, theirs).sum() / union) if union else float("nan")
        hit = None
        if len(truth):
            centres = [(min(int(y + h / 2), shape[0] - 1), min(int(x + w / 2), shape[1] - 1)) for x, y, w, h in read]
            hit = any(hit_at(c, truth, shape) for c in centres)
        out.append({"reader": r.reader, "case_id": r.case_id, "n_boxes": len(read), "n_truth": len(truth),
                    "iou": iou, "hit": hit})
    return pd.DataFrame(out, columns=["reader", "case_id", "n_boxes", "n_truth", "iou", "hit"])


def tag_counts(store: AnnotationStore, study_id: str, question_id: str = "regions") -> pd.DataFrame:
    """How often each tag was chosen per checkpoint × method × failure category (from each
    case's `case_meta`; "" where a case has none): checkpoint, method, category, tag, count."""
    columns = ["checkpoint", "method", "category", "tag", "count"]
    answers = store.answers(study_id)
    answers = answers[answers["question_id"] == question_id]
    meta = store.case_key(study_id).set_index("case_id")["meta"]
    rows = [{"checkpoint": meta[r.case_id].get("checkpoint", ""), "method": meta[r.case_id].get("method", ""),
             "category": meta[r.case_id].get("category", ""), "tag": tag}
            for r in answers.itertuples() for tag in r.value]
    if not rows:
        return pd.DataFrame(columns=columns)
    return (pd.DataFrame(rows).groupby(columns[:-1]).size().rename("count").reset_index()
            .sort_values(columns[:-1]).reset_index(drop=True))
