"""Patient-level train/val/test split, seeded, honouring official split lists.

Images of one patient always share a split, so no patient leaks between training and
evaluation. The draw depends only on the set of patient ids and the seed, never on row order.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SPLIT_RANK = {"train": 0, "val": 1, "test": 2}


def split_by_patient(
    patient_ids: pd.Series,
    *,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    official: pd.Series | None = None,
) -> pd.Series:
    """Return the split ('train' | 'val' | 'test') of each image, indexed like `patient_ids`.

    `official` (same index, values 'train'/'val'/'test' or missing) fixes the split of the
    patients it names: a patient with any official test image goes to test (test wins when a
    list is not patient-disjoint). When the official lists have no 'val', the val patients are
    drawn from the official train patients with `val_frac`. Patients no list names are drawn
    with both fractions.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"need 0 <= val_frac, test_frac and val_frac + test_frac < 1, got {val_frac}, {test_frac}")
    patients = patient_ids.astype(str)
    if patients.isna().any():
        raise ValueError("patient ids must not be empty")
    everyone = np.array(sorted(patients.unique()))
    assigned = pd.Series(pd.NA, index=everyone, dtype=object)
    rng = np.random.default_rng(seed)

    has_official_val = False
    if official is not None:
        official = official.reindex(patient_ids.index)
        unknown = set(official.dropna().unique()) - set(SPLIT_RANK)
        if unknown:
            raise ValueError(f"official split values must be train/val/test, got {sorted(unknown)}")
        ranks = official.map(SPLIT_RANK)
        known = ranks.notna()
        worst = ranks[known].groupby(patients[known]).max()
        mixed = ranks[known].groupby(patients[known]).nunique() > 1
        if mixed.any():
            log.warning(
                "%d patient(s) have images in more than one official split; they all go to the later split "
                "(test over val over train) so that no patient is in two splits",
                int(mixed.sum()),
            )
        names = {rank: name for name, rank in SPLIT_RANK.items()}
        assigned.loc[worst.index] = worst.astype(int).map(names)
        has_official_val = bool((official == "val").any())

    if official is not None and not has_official_val:
        pool = assigned.index[assigned == "train"].to_numpy()
        assigned.loc[pool] = _draw(pool, rng, val_frac=val_frac, test_frac=0.0)
    free = assigned.index[assigned.isna()].to_numpy()
    assigned.loc[free] = _draw(free, rng, val_frac=val_frac, test_frac=test_frac)
    return patients.map(assigned).astype(str)


def _draw(patients: np.ndarray, rng: np.random.Generator, *, val_frac: float, test_frac: float) -> np.ndarray:
    """Shuffle the (sorted) patients and cut the first test_frac to test, the next val_frac to val."""
    n = len(patients)
    order = rng.permutation(n)
    n_test = int(np.floor(test_frac * n + 0.5))
    n_val = int(np.floor(val_frac * n + 0.5))
    splits = np.full(n, "train", dtype=object)
    splits[order[:n_test]] = "test"
    splits[order[n_test : n_test + n_val]] = "val"
    return splits


def split_record(*, seed: int, val_frac: float, test_frac: float, official: list[str] | None = None) -> dict:
    """How the split was made, stored in dataset.json for provenance."""
    return {"by": "patient", "seed": seed, "val_frac": val_frac, "test_frac": test_frac, "official": official or []}
