"""Whether a study's cases can answer what it asks: a detection study measures sensitivity,
specificity and AUC, so it reads images with the finding and images without it; a study with
one of the two has N0 = 0 or N1 = 0 and every one of those figures undefined.

- `image_truth`: 0/1 per image (the study's `target_class`, else any labelled class: abnormal vs
  normal), the one definition the MRMC table and these checks use.
- `balance_problem`: the sentence saying what is missing, or None.
- `check_balance(spec)`: a detection spec whose cases are all positive (or all negative) is
  refused (`StudyError`) at creation and on import, when its dataset can be read.
- `study_warnings`: the problems of an existing study, written into every export's provenance and
  shown in Study admin (a rating study may lack negatives: its ratings stand, its MRMC does not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from medattn.data.dataset import Dataset, load_dataset
from medattn.errors import DatasetError
from medattn.reader.errors import StudyError

MEASURED_KINDS = ("detection", "heatmap_rating")  # kinds whose exports carry truth (MRMC, iMRMC)


def image_truth(dataset: Dataset, image_ids: Sequence[str], target_class: str | None) -> pd.Series:
    """0/1 per image id (in the order given, repeats kept): labelled with `target_class`, or
    without one, with any class. StudyError naming an image not in the dataset or an unknown class."""
    missing = sorted(set(image_ids) - set(dataset.images.index))
    if missing:
        raise StudyError(f"{len(missing)} case image(s) not in dataset {dataset.root}, e.g. {missing[0]}")
    if target_class is not None and target_class not in dataset.classes:
        raise StudyError(f"target_class {target_class!r} is not a class of {dataset.root}")
    labels = dataset.images.loc[list(image_ids), [target_class] if target_class else dataset.classes]
    return pd.Series(labels.max(axis=1).astype(int).to_numpy(), index=list(image_ids), name="truth")


def balance_problem(n_positive: int, n_negative: int, finding: str | None = None) -> str | None:
    """What a set of cases lacks to measure detection, or None when it has both kinds."""
    what = finding or "a finding"
    if n_negative == 0:
        return (f"all {n_positive} images have {what} and none is without it (N0 = 0): specificity, AUC and the MRMC "
                "analysis are undefined; add images without it (untick 'Only images with the finding')")
    if n_positive == 0:
        return (f"none of the {n_negative} images has {what} (N1 = 0): sensitivity, AUC and the MRMC analysis are "
                "undefined; add images with it")
    return None


def _dataset(folder: str) -> Dataset | None:
    if not Path(folder).is_dir():
        return None
    try:
        return load_dataset(folder, check_files=False)
    except DatasetError:
        return None


def check_balance(spec: Mapping) -> None:
    """Refuse a detection spec whose images are all with (or all without) the finding; other
    kinds, and a dataset that cannot be read (an import before its images are repointed), pass."""
    if spec["kind"] != "detection":
        return
    dataset = _dataset(spec["dataset"])
    if dataset is None:
        return
    truth = image_truth(dataset, list(dict.fromkeys(spec["cases"])), spec.get("target_class"))
    problem = balance_problem(int(truth.sum()), int((truth == 0).sum()), spec.get("target_class"))
    if problem:
        raise StudyError(f"study spec field 'cases': a detection study needs images with and without the finding: "
                         f"{problem}")


def study_warnings(spec: Mapping, image_ids: Sequence[str]) -> list[str]:
    """Problems of a study (its `spec` and its cases' image ids) that make some of its figures
    undefined; [] when there are none or its dataset cannot be read now."""
    if spec["kind"] not in MEASURED_KINDS:
        return []
    dataset = _dataset(spec["dataset"])
    if dataset is None:
        return []
    try:
        truth = image_truth(dataset, list(dict.fromkeys(image_ids)), spec.get("target_class"))
    except StudyError as error:
        return [str(error)]
    problem = balance_problem(int(truth.sum()), int((truth == 0).sum()), spec.get("target_class"))
    return [problem] if problem else []
