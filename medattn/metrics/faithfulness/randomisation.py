"""Random-logit test (Sixt et al. 2020, "When explanations lie: why many modified BP
attributions fail", ICML): is the map of the target class different from the map of another
class?"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from medattn.metrics.faithfulness._core import Targets, as_input, as_maps, as_targets, image_rng
from medattn.metrics.faithfulness.robustness import Explain, _explained
from medattn.metrics.similarity import ssim

Similarity = Callable[[np.ndarray, np.ndarray], float]


def random_logit(model: nn.Module, x: Tensor, targets: Targets, explain: Explain, *,
                 attributions: Tensor | np.ndarray | None = None, similarity: Similarity = ssim,
                 num_classes: int | None = None, seed: int = 0) -> np.ndarray:
    """Similarity between each image's map of its target and its map of one other class drawn
    at random: `similarity(map_target, map_other)` per image (default: SSIM of the min-max
    normalised 2-D maps, `medattn.metrics.similarity.ssim`). Lower is better: a map that
    stays the same for another class does not explain the class (Sixt et al. 2020, §5).

    The other class is `others[RandomState(seed).randint(0, K − 1, 1)[0]]`, `others` the K − 1
    classes but the target in order: Quantus's RandomLogit draw for one image (K from the
    model's output when `num_classes` is None). `attributions` (B, H, W): the target maps when
    already computed. Quantus compares maps flattened to 1-D signals (SSIM windows then run
    across row ends); pass such a `similarity` to match it. Undefined for a one-class model
    (ValueError). Returns (B,) float64.
    """
    x = as_input(x)
    t = as_targets(targets, x.shape[0])
    if num_classes is None:
        with torch.inference_mode():
            num_classes = int(model(x[:1]).shape[1])
    if num_classes < 2:
        raise ValueError("random_logit needs a model with at least two classes")
    off = int(image_rng(seed).randint(0, num_classes - 1, 1)[0])
    other = np.array([[c for c in range(num_classes) if c != target][off] for target in t])
    target_maps = as_maps(_explained(explain, model, x, torch.as_tensor(t)) if attributions is None
                          else attributions, x)
    other_maps = as_maps(_explained(explain, model, x, torch.as_tensor(other)), x)
    return np.array([float(similarity(a, b)) for a, b in zip(target_maps, other_maps)])
