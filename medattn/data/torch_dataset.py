"""A torch Dataset over one split of a dataset folder, for training and batch inference."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from medattn.data.dataset import Dataset
from medattn.data.preprocess import Preprocessing


class ImageSplit(TorchDataset):
    """Yields (image (1, S, S) in [0, 1], labels (C,), index) for the given image ids: the
    geometry of `size` (a `Preprocessing`, or an int for medattn's default stretch to S × S);
    the model's intensity scale is applied to the batch (`Preprocessing.intensity_scale`).

    Images are read and resized once and kept as uint8 (S·S bytes each), so epochs after the
    first never touch the disk: 1,500 demo images at 128 px hold 25 MB.
    """

    def __init__(self, dataset: Dataset, image_ids: Sequence[str], size: int | Preprocessing, augment=None):
        self.dataset = dataset
        self.image_ids = list(image_ids)
        self.preprocessing = size if isinstance(size, Preprocessing) else Preprocessing(size=size)
        self.size = self.preprocessing.input_size
        self.augment = augment
        self.labels = torch.from_numpy(dataset.label_matrix(self.image_ids))
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.image_ids)

    def image(self, index: int) -> np.ndarray:
        if index not in self._cache:
            pixels = self.preprocessing.geometry(self.dataset.read_image(self.image_ids[index]))
            self._cache[index] = np.round(pixels * 255).astype(np.uint8)
        return self._cache[index]

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.image(index)).float().div_(255.0)[None]
        if self.augment is not None:
            image = self.augment(image)
        return image, self.labels[index], index
