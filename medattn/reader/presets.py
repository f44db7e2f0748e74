"""Default questions of the three study kinds, and failure-review cases from `medattn.failures`.

Failure review follows Aggarwal et al. (papers/002, "Reader Study"): a radiologist inspects
false positives and mislocalized true positives and records where the map points (hilum, a
clavicle over the lung apex, ...).
"""

from __future__ import annotations

import copy

import pandas as pd

from medattn.failures import CATEGORIES

FAILURE_REGIONS = ["hilum", "clavicle/apex", "ribs", "heart border", "costophrenic angle", "diaphragm",
                   "mediastinum", "device/tube/marker", "outside the lung fields", "on the lesion", "other"]

PRESETS: dict[str, list[dict]] = {
    "failure_review": [
        {"id": "regions", "type": "tags", "label": "Where does the map's evidence lie?", "options": FAILURE_REGIONS},
        {"id": "finding_real", "type": "yes_no", "label": "Is the model's finding real?"},
        {"id": "comment", "type": "text", "label": "Comment", "required": False},
    ],
    "heatmap_rating": [
        {"id": "rating", "type": "scale", "min": 1, "max": 5, "per_panel": True,
         "label": "How well does each map point at the finding? (1 = not at all, 5 = exactly)"},
        {"id": "rank", "type": "rank", "label": "Rank the maps, best first", "required": False},
    ],
    "detection": [
        {"id": "present", "type": "yes_no", "label": "Is the finding present?"},
        {"id": "confidence", "type": "scale", "min": 1, "max": 5,
         "label": "Confidence that the finding is present (1 = definitely absent, 5 = definitely present)"},
        {"id": "boxes", "type": "boxes", "label": "Draw a box around each finding (none: submit no boxes)"},
    ],
}


def default_questions(kind: str, regions: list[str] | None = None, finding: str | None = None,
                      classes: list[str] | None = None) -> list[dict]:
    """A fresh copy of the kind's questions; `regions` replaces the failure-region tag list.

    `finding` (the study's target class) is named in the detection and rating questions
    ("Is effusion present?"); without one, `classes` are: a detection reader is asked about
    any finding of the list, a rater about the image's labelled finding. A detection study's
    boxes carry the finding's name (`labels`: the finding, else the classes to choose from)."""
    if kind not in PRESETS:
        raise ValueError(f"study kind {kind!r} is not one of {', '.join(PRESETS)}")
    questions = copy.deepcopy(PRESETS[kind])
    if finding:
        named = finding
    elif classes and kind == "detection":
        named = f"any finding ({', '.join(classes)})"
    elif classes:
        named = "the image's labelled finding"
    else:
        named = None
    for question in questions:
        if question["id"] == "regions" and regions is not None:
            question["options"] = list(regions)
        if named and kind != "failure_review":
            label = question["label"].replace("each finding", f"each {finding}") if finding else question["label"]
            question["label"] = label.replace("the finding", named)
        if question["type"] == "boxes" and (finding or classes):
            question["labels"] = [finding] if finding else list(classes)
    return questions


def failure_review_cases(failures: pd.DataFrame, categories: tuple[str, ...] = tuple(CATEGORIES)) -> dict:
    """Spec fields {"cases", "case_meta"} from `medattn.failures.failure_cases` rows of the
    chosen `categories`: one case per image × checkpoint × class, showing that checkpoint's map."""
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown failure categories {sorted(unknown)}; use {', '.join(CATEGORIES)}")
    chosen = failures[failures["category"].isin(categories)]
    return {
        "cases": [str(i) for i in chosen["image_id"]],
        "case_meta": [{"checkpoint": str(r.checkpoint), "method": str(r.method), "target_class": str(r.target_class),
                       "category": str(r.category)} for r in chosen.itertuples()],
    }
