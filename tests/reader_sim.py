"""A simulated with-AI / without-AI detection study, for analysis tests and screenshots: readers
rate each case on the 1–5 confidence scale from a binormal latent score whose separation is
larger with AI (seeded), answer "present" from it, and box positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data import load_dataset
from medattn.reader.presets import default_questions
from medattn.store.annotations import AnnotationStore

SEPARATION = {"without_ai": 1.0, "with_ai": 1.8}  # binormal d' of the latent score per arm


def simulate_ai_study(store: AnnotationStore, dataset: Path, checkpoint: str, readers: int = 4, images: int = 24,
                      seed: int = 0, password: str = "reader-password") -> str:
    """Create a crossed with-/without-AI detection study of `images` images of `dataset` (half
    with a finding where the data allow), add `readers` readers ("reader1", …) and answer every
    case of every reader in their order; returns the study id."""
    data = load_dataset(dataset)
    labelled = data.images[data.classes].to_numpy().astype(bool).any(axis=1)
    positives, negatives = list(data.images.index[labelled]), list(data.images.index[~labelled])
    half = min(images // 2, len(negatives))
    ids = positives[: images - half] + negatives[:half]
    study_id = store.create_study({"name": "AI assistance (simulated readers)", "kind": "detection",
                                   "dataset": str(dataset), "cases": ids, "seed": seed,
                                   "questions": default_questions("detection", classes=data.classes),
                                   "panels": [{"checkpoint": checkpoint, "method": "saliency"}]})
    key = store.case_key(study_id).set_index("case_id")["image_id"]
    truth = {i: bool(labelled[data.images.index.get_loc(i)]) for i in ids}
    rng = np.random.default_rng(seed)
    for number in range(readers):
        name = f"reader{number + 1}"
        store.add_reader(study_id, name, password)
        skill = rng.normal(0.0, 0.25)
        for case in store.cases_for(study_id, name):
            arm = store.arm_for(study_id, name, case)
            image = key[case]
            latent = rng.normal() + (SEPARATION[arm] + skill) * truth[image]
            rating = int(np.clip(np.digitize(latent, [-0.3, 0.4, 1.0, 1.6]) + 1, 1, 5))
            store.mark_shown(study_id, name, case)
            row = data.images.loc[image]
            boxes = [{"x": row["width"] * 0.3, "y": row["height"] * 0.3, "w": row["width"] * 0.2,
                      "h": row["height"] * 0.2, "label": data.classes[0]}] if rating >= 4 else []
            store.submit_case(study_id, name, case, {"present": rating >= 4, "confidence": rating, "boxes": boxes})
    return study_id
