"""Patient-level train/val/test split, seeded, honouring official split lists.

Images of one patient always share a split, so no patient leaks between training and
evaluation. The draw depends only on the set of patient ids and the seed, never on row order.
A whole folder goes to one split with `only` (`--split test`: evaluating an external model on
every image), or to test with `test_frac=1` (then nothing is left for val).
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
    only: str | None = None,
) -> pd.Series:
    """Return the split ('train' | 'val' | 'test') of each image, indexed like `patient_ids`.

    `only` puts every image in that split (official lists are then ignored). Otherwise
    `official` (same index, values 'train'/'val'/'test' or missing) fixes the split of the
    patients it names: a patient with any official test image goes to test (test wins when a
    list is not patient-disjoint). When the official lists have no 'val', the val patients are
    drawn from the official train patients with `val_frac`. Patients no list names are drawn
    with both fractions; `test_frac=1` sends them all to test whatever `val_frac` says.
    ValueError for fractions out of range or an unknown `only`.
    """
    check_fractions(val_frac, test_frac, only)
    patients = patient_ids.astype(str)
    if patients.isna().any():
        raise ValueError("patient ids must not be empty")
    if only is not None:
        if official is not None and official.notna().any():
            log.info("every image goes to %s (--split); the official split lists are not used", only)
        return pd.Series(only, index=patient_ids.index, dtype=object).astype(str)
    if test_frac == 1:
        val_frac = 0.0
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


def check_fractions(val_frac: float, test_frac: float, only: str | None = None) -> None:
    """ValueError unless 0 <= val_frac < 1, 0 <= test_frac <= 1 and val_frac + test_frac < 1 (or
    test_frac is 1: everything to test), and `only` is None or a split name."""
    if only is not None and only not in SPLIT_RANK:
        raise ValueError(f"split must be one of {', '.join(SPLIT_RANK)}, got {only!r}")
    if not (0 <= val_frac < 1 and 0 <= test_frac <= 1 and (val_frac + test_frac < 1 or test_frac == 1)):
        raise ValueError(f"need 0 <= val_frac < 1, 0 <= test_frac <= 1 and val_frac + test_frac < 1 (or test_frac 1: "
                         f"every image in test), got val_frac {val_frac}, test_frac {test_frac}")


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


def split_record(*, seed: int, val_frac: float, test_frac: float, official: list[str] | None = None,
                 only: str | None = None) -> dict:
    """How the split was made, stored in dataset.json for provenance."""
    if only is not None:
        return {"by": "fixed", "split": only, "official": []}
    return {"by": "patient", "seed": seed, "val_frac": 0.0 if test_frac == 1 else val_frac, "test_frac": test_frac,
            "official": official or []}
