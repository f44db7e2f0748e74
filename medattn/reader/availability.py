"""Whether a study's case images can be found: the one check the Reader page, Study admin and
the analyses share, so a case whose image left the dataset (dataset rebuilt, file deleted, file
unreadable) costs that case only: the reader skips it, the admin sees it counted.

- `study_images(folder)`: the study's dataset loaded (manifests only); DatasetMovedError naming
  the folder when it is gone or no longer a dataset.
- `image_problem(dataset, image_id)`: why a case's image cannot be read, as far as can be told
  without decoding it (not in images.csv, no such file, no read permission), else None; with
  `decode`, a file that does not decode too (else found when a reader opens the case:
  `AnnotationStore.case_image`).
- `case_problems(folder, image_ids)`: the same for every case, one entry per id.
These messages name files: admins and server logs only, never a reader's page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from medattn.data.dataset import Dataset, load_dataset
from medattn.errors import DatasetError, ImageReadError
from medattn.reader.errors import DatasetMovedError


def study_images(folder: str) -> Dataset:
    """The dataset at `folder` (images.csv, boxes.csv; image files not checked);
    DatasetMovedError when the folder is gone or does not load as a dataset."""
    if not Path(folder).is_dir():
        raise DatasetMovedError(f"dataset folder {folder} is gone; an admin can point the study at its new place "
                                "(Study admin → new dataset folder)")
    try:
        return load_dataset(folder, check_files=False)
    except DatasetError as error:
        raise DatasetMovedError(f"dataset folder {folder} is no longer a valid dataset: {error}") from error


def image_problem(dataset: Dataset, image_id: str, decode: bool = False) -> str | None:
    """Why the image `image_id` of `dataset` cannot be read, else None; `decode`: read the
    whole image too (slow: a corrupt file is found only so)."""
    if image_id not in dataset.images.index:
        return f"image {image_id!r} is not in {dataset.root / 'images.csv'}"
    path = dataset.image_path(image_id)
    if not path.is_file():
        return f"image {image_id!r}: file {path} does not exist"
    if not os.access(path, os.R_OK):
        return f"image {image_id!r}: file {path} cannot be read (permissions)"
    if decode:
        try:
            dataset.read_image(image_id)
        except ImageReadError as error:
            return f"image {image_id!r}: {error}"
    return None


def case_problems(folder: str, image_ids: Sequence[str], decode: bool = False) -> list[str | None]:
    """`image_problem` of each id in `image_ids` (the folder's problem for all when it is gone);
    an id repeated (the two arms of a crossed study) is looked at once."""
    try:
        dataset = study_images(folder)
    except DatasetMovedError as error:
        return [str(error)] * len(image_ids)
    found = {image_id: image_problem(dataset, image_id, decode) for image_id in dict.fromkeys(image_ids)}
    return [found[image_id] for image_id in image_ids]
