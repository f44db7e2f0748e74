"""Random-logit test (medattn.metrics.faithfulness.randomisation): Quantus 0.6's draw of the
other class and its (flattened) SSIM reproduced, and the 2-D default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.metrics.faithfulness import random_logit
from medattn.metrics.similarity import ssim
from tests.faithfulness_cases import CLASSES, cnn, gradient, inputs, quantus


def quantus_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Quantus's ssim on the maps as it calls it: flattened to 1-D signals."""
    from quantus.functions.similarity_func import ssim as theirs

    return theirs(a.ravel(), b.ravel())


def test_random_logit_equals_quantus():
    q = quantus()
    model, (x, _, y) = cnn(), inputs(batch=2)

    def explain(model, inputs, targets, **kwargs):
        return gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()[:, None]

    maps = explain(model, x, y)
    for i in range(len(x)):  # Quantus draws one other class per image of the batch: one image per call
        metric = q.RandomLogit(num_classes=CLASSES, seed=11, normalise=False, disable_warnings=True)
        theirs = metric(model=model, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1], a_batch=maps[i:i + 1],
                        explain_func=explain, softmax=False, device="cpu")
        ours = random_logit(model, x[i:i + 1], y[i:i + 1], lambda m, xx, t: explain(m, xx, t)[:, 0],
                            similarity=quantus_ssim, seed=11)
        assert ours[0] == pytest.approx(theirs[0], abs=1e-6)


def test_default_similarity_is_2d_ssim_of_the_other_class_map():
    model, (x, _, y) = cnn(), inputs(batch=2)
    explain = lambda m, xx, t: gradient(m, xx, t)  # noqa: E731
    values = random_logit(model, x, y, explain, seed=0)
    off = np.random.RandomState(0).randint(0, CLASSES - 1, 1)[0]
    for i, target in enumerate(y):
        other = [c for c in range(CLASSES) if c != target][off]
        expected = ssim(explain(model, x[i:i + 1], [target])[0].numpy(), explain(model, x[i:i + 1], [other])[0].numpy())
        assert values[i] == pytest.approx(expected)
    same = random_logit(model, x, y, lambda m, xx, t: torch.ones(len(xx), 16, 16), seed=0)
    assert (same == 1).all()  # a map blind to the class is as similar as can be
    with pytest.raises(ValueError, match="two classes"):
        random_logit(model, x, y, explain, num_classes=1)
