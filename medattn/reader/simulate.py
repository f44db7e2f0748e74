"""A with-AI / without-AI detection study read by SIMULATED readers, so a coordinator can see the
Study admin's analysis (MRMC table, ROC curves, agreement, exports) before recruiting anyone.

Everything is labelled as simulated: the study's name ends "(simulated readers)", its
description says how the answers were made, readers are "sim-reader-1", "sim-reader-2", … with
random passwords nobody knows. The answers go through the store's reading path (`cases_for` in
each reader's order, `mark_shown`, `submit_case`), so the analysis the page shows is the one a
real study gets: one path to each number.

Ratings: a Roe–Metz model (Roe & Metz 1997, Acad Radiol 4:298–303; reader effects on the
separation as in Hillis 2012, Stat Med 31:2474): the latent score of reader j, arm i, case k is

    X = t_k (μ_i + R_j + TR_ij) + C_k + TC_ik + RC_jk + E_ijk

with t_k = 1 for an image with the finding, variances σ²_C = 0.3, σ²_TC = 0.1, σ²_RC = 0.2,
σ²_E = 0.4 (their sum is 1, so a reader's AUC is Φ(μ/√2)), and reader effects R ~ N(0, 0.2²),
TR ~ N(0, 0.1²). Defaults μ = 1.3 without AI and 1.75 with AI: expected AUCs 0.82 and 0.89, a
gain of the size AI-assistance studies report. Each reader turns X into the 1–5 confidence
scale with their own threshold offset (N(0, 0.3²)), answers "present" yes at confidence ≥ 4 and
draws a box there: on the lesion (jittered) when the image has one, else in the lung field.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from medattn.data import load_dataset
from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.errors import DuplicateReaderError, StudyError
from medattn.reader.presets import default_questions
from medattn.reader.validity import image_truth
from medattn.store.annotations import AnnotationStore

SEPARATION = {WITHOUT_AI: 1.3, WITH_AI: 1.75}  # μ_i: binormal separation of the latent score per arm
VARIANCES = {"case": 0.3, "arm_case": 0.1, "reader_case": 0.2, "error": 0.4}  # Roe–Metz, sum 1
READER_SD, ARM_READER_SD, THRESHOLD_SD = 0.2, 0.1, 0.3
CUTS = (0.0, 0.6, 1.1, 1.7)  # latent cut points of confidence 2, 3, 4, 5 (before a reader's offset)
READER_PREFIX = "sim-reader-"


def pick_cases(dataset, images: int, target_class: str | None, seed: int) -> list[str]:
    """`images` image ids of the test split (of the whole dataset when the test split lacks 2
    images with or 2 without the finding), half with the finding and half without where the data
    allow; seeded. StudyError when the dataset lacks 2 of either."""
    truth = image_truth(dataset, list(dataset.split("test").index), target_class)
    if min(int(truth.sum()), int((truth == 0).sum())) < 2:
        truth = image_truth(dataset, list(dataset.images.index), target_class)
    positives, negatives = list(truth.index[truth == 1]), list(truth.index[truth == 0])
    if len(positives) < 2 or len(negatives) < 2:
        raise StudyError(f"dataset {dataset.root}: {len(positives)} image(s) with the finding and {len(negatives)} "
                         "without; a detection study needs at least 2 of each")
    rng = np.random.default_rng([seed, 1])
    n_neg = min(images // 2, len(negatives), len(positives))
    n_pos = min(images - n_neg, len(positives))
    return sorted(rng.choice(positives, n_pos, replace=False).tolist() + rng.choice(negatives, n_neg, replace=False).tolist())


def _box(dataset, image_id: str, finding: str | None, labels: list[str], positive: bool,
         rng: np.random.Generator) -> dict:
    """One reader box: the lesion's box jittered by up to 10% of its size, or (no lesion of the
    finding) a lesion-sized box somewhere in the middle of the image."""
    row = dataset.images.loc[image_id]
    width, height = float(row["width"]), float(row["height"])
    truth = dataset.boxes_for(image_id, finding) if positive else pd.DataFrame()
    if not truth.empty:
        lesion = truth.iloc[int(rng.integers(len(truth)))]
        x, y, w, h = (float(lesion[c]) for c in ("x", "y", "w", "h"))
        x, y = x + rng.uniform(-0.1, 0.1) * w, y + rng.uniform(-0.1, 0.1) * h
        label = finding or (lesion["label"] if lesion["label"] in labels else labels[0])
    else:
        w = h = 0.12 * min(width, height)
        x, y = rng.uniform(0.2, 0.7) * width, rng.uniform(0.25, 0.65) * height
        label = finding or labels[int(rng.integers(len(labels)))]
    x, y = min(max(x, 0.0), width - w), min(max(y, 0.0), height - h)
    return {"x": round(x, 1), "y": round(y, 1), "w": round(w, 1), "h": round(h, 1), "label": label}


def _reader_prefix(store: AnnotationStore, study_id: str) -> str:
    """The first free name series, "sim-reader-", "sim2-reader-", …: adds its reader 1 to the
    study (accounts are per database, and an earlier demo study took "sim-reader-1")."""
    for series in range(1, 1000):
        prefix = READER_PREFIX if series == 1 else f"sim{series}-reader-"
        try:
            store.add_reader(study_id, f"{prefix}1", secrets.token_urlsafe(18))
            return prefix
        except DuplicateReaderError:
            continue
    raise StudyError("simulate_study: no free simulated reader names (sim-reader-1 … sim999-reader-1 taken)")


def simulate_study(store: AnnotationStore, dataset: str | Path, checkpoint: str | Path, *, readers: int = 5,
                   images: int = 40, target_class: str | None = None, method: str = "saliency", seed: int = 0,
                   done: float = 1.0, separation: Mapping[str, float] | None = None, author: str | None = None) -> str:
    """Create a crossed with-AI / without-AI detection study of `images` test images of `dataset`
    (half with the finding), the with-AI arm showing `checkpoint`'s `method` map; add `readers`
    simulated readers and let each read the first `done` fraction (0–1) of their cases in their
    order (the without-AI session first for odd-numbered readers, as the design alternates; 1:
    every case of both sessions). Returns the study id.

    `separation` {arm: μ} overrides `SEPARATION`. Seeded: the same arguments give the same
    answers. StudyError for a dataset without images of both kinds or 0 readers."""
    if readers < 1 or images < 4:
        raise StudyError(f"simulate_study: at least 1 reader and 4 images, got {readers} and {images}")
    if not 0.0 <= done <= 1.0:
        raise StudyError(f"simulate_study: done is a fraction from 0 to 1, got {done}")
    data = load_dataset(dataset)
    if target_class is not None and target_class not in data.classes:
        raise StudyError(f"simulate_study: {target_class!r} is not a class of {data.root} ({', '.join(data.classes)})")
    ids = pick_cases(data, images, target_class, seed)
    finding = target_class or "any finding"
    questions = default_questions("detection", finding=target_class, classes=data.classes)
    mu = {**SEPARATION, **(separation or {})}
    study_id = store.create_study({
        "name": f"Demo: {finding} with and without AI (simulated readers)", "kind": "detection",
        "dataset": str(Path(dataset).resolve()), "cases": ids, "seed": seed, "target_class": target_class,
        "questions": questions, "panels": [{"checkpoint": str(checkpoint), "method": method}], "arms": "crossed",
        "description": (f"SIMULATED readers, not people: answers drawn by "
                        f"medattn.reader.simulate (Roe–Metz model, seed {seed}, separation without AI "
                        f"{mu[WITHOUT_AI]:g}, with AI {mu[WITH_AI]:g}) to show the analysis before a real study.")},
        author=author)
    key = store.case_key(study_id).set_index("case_id")["image_id"]
    truth = image_truth(data, ids, target_class)
    labels = next(q for q in questions if q["type"] == "boxes")["labels"]
    rng = np.random.default_rng([seed, 2])
    case_effect = {i: rng.normal(0, np.sqrt(VARIANCES["case"])) for i in ids}
    arm_case = {(arm, i): rng.normal(0, np.sqrt(VARIANCES["arm_case"])) for arm in mu for i in ids}
    prefix = _reader_prefix(store, study_id)
    for number in range(1, readers + 1):
        name = f"{prefix}{number}"
        if number > 1:
            store.add_reader(study_id, name, secrets.token_urlsafe(18))  # nobody can sign in as a simulated reader
        skill = rng.normal(0, READER_SD)
        arm_skill = {arm: rng.normal(0, ARM_READER_SD) for arm in mu}
        offset = rng.normal(0, THRESHOLD_SD)
        reader_case = {i: rng.normal(0, np.sqrt(VARIANCES["reader_case"])) for i in ids}
        error = {(arm, i): rng.normal(0, np.sqrt(VARIANCES["error"])) for arm in mu for i in ids}
        order = store.cases_for(study_id, name)  # drawn from the reader's name: the draws above are not
        for case in order[: round(done * len(order))]:
            arm, image = store.arm_for(study_id, name, case), key[case]
            positive = bool(truth[image])
            latent = (positive * (mu[arm] + skill + arm_skill[arm]) + case_effect[image] + arm_case[arm, image]
                      + reader_case[image] + error[arm, image])
            confidence = int(np.searchsorted(np.asarray(CUTS) + offset, latent) + 1)
            where = np.random.default_rng([seed, 3, number, list(mu).index(arm), ids.index(image)])
            boxes = [_box(data, image, target_class, labels, positive, where)] if confidence >= 4 else []
            store.mark_shown(study_id, name, case)
            store.submit_case(study_id, name, case, {"present": confidence >= 4, "confidence": confidence,
                                                     "boxes": boxes})
    return study_id
