"""Image and map resizing, z-normalisation and the training augmentation (the model input itself
is made by `medattn.data.preprocess`).

Grey radiographs are repeated to three channels and z-normalised with the checkpoint's
mean/std (ImageNet by default, as in Gonçalves 2021), so ImageNet-shaped backbones apply as is.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a (H, W) map to size (int: square; tuple: (H, W)); area filter when shrinking."""
    height, width = (size, size) if isinstance(size, int) else size
    if image.shape == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 1 or 3, H, W) in [0, 1] -> (B, 3, H, W) z-normalised."""
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    mean_t = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t


def training_augmentation(preset: str = "goncalves") -> v2.Transform:
    """Gonçalves 2021: rotation ±10°, translation (0.05, 0.1), scale 0.95–1.05, h-flip p=0.5."""
    if preset == "none":
        return v2.Identity()
    return v2.Compose(
        [
            v2.RandomAffine(degrees=10, translate=(0.05, 0.1), scale=(0.95, 1.05)),
            v2.RandomHorizontalFlip(p=0.5),
        ]
    )
