"""Invariances every faithfulness metric keeps (in the manner of scikit-learn's
metrics/tests/test_common.py), over the whole METRICS table: one finite value per image, the
same value for the same seed, for an image alone or in a batch, at any forward batch size, and
for a map scaled by a positive factor (every metric here is scale-free); the rank-based ones
also under any increasing transform of the map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medattn.metrics.faithfulness as F
from tests.faithfulness_cases import cnn, gradient, inputs


def explain(model, x, targets):
    return gradient(model, x, targets)


CALLS = {  # column → f(model, x, maps, targets, seed, batch_size)
    "deletion": lambda m, x, a, t, s, b: F.deletion(m, x, a, t, steps=8, task="multiclass", seed=s, batch_size=b),
    "insertion": lambda m, x, a, t, s, b: F.insertion(m, x, a, t, steps=8, seed=s, batch_size=b),
    "road_morf": lambda m, x, a, t, s, b: F.road(m, x, a, t, percentages=[20, 60], seed=s, batch_size=b),
    "road_lerf": lambda m, x, a, t, s, b: F.road(m, x, a, t, percentages=[20, 60], order="lerf", seed=s, batch_size=b),
    "pixel_flipping": lambda m, x, a, t, s, b: F.pixel_flipping(m, x, a, t, steps=8, seed=s, batch_size=b),
    "region_perturbation": lambda m, x, a, t, s, b: F.region_perturbation(m, x, a, t, patch_size=4, regions=6, seed=s,
                                                                          batch_size=b),
    "faithfulness_correlation": lambda m, x, a, t, s, b: F.faithfulness_correlation(m, x, a, t, n_subsets=12, seed=s,
                                                                                    batch_size=b),
    "infidelity": lambda m, x, a, t, s, b: F.infidelity(m, x, a, t, n_samples=6, seed=s, batch_size=b),
    "max_sensitivity": lambda m, x, a, t, s, b: F.max_sensitivity(m, x, t, explain, n_samples=4, seed=s, batch_size=b),
    "sparseness": lambda m, x, a, t, s, b: F.sparseness(a),
    "complexity": lambda m, x, a, t, s, b: F.complexity(a),
    "random_logit": lambda m, x, a, t, s, b: F.random_logit(m, x, t, explain, attributions=a, seed=s),
}
RANK_BASED = ("deletion", "insertion", "road_morf", "road_lerf", "pixel_flipping")


def test_every_metric_of_the_table_is_exercised_and_described():
    assert set(CALLS) == set(F.METRICS)
    for column, info in F.METRICS.items():
        assert info.column == column and info.better in (F.HIGHER, F.LOWER)
        assert info.category in ("faithfulness", "robustness", "complexity", "randomisation")
        assert info.source and info.reference and info.needs in ("map", "model", "explain")
    with pytest.raises(ValueError, match="unknown faithfulness metric"):
        F.metric_info("auprc")


@pytest.fixture(scope="module")
def case():
    model, (x, maps, y) = cnn(channels=3), inputs(batch=3, channels=3)
    return model, x, maps, y


@pytest.mark.parametrize("column", list(CALLS))
def test_one_finite_value_per_image_seeded_and_batch_free(column, case):
    model, x, maps, y = case
    call = CALLS[column]
    values = call(model, x, maps, y, 3, 64)
    assert values.shape == (3,) and np.isfinite(values).all()
    np.testing.assert_allclose(call(model, x, maps, y, 3, 64), values, rtol=1e-12)  # same seed, same value
    np.testing.assert_allclose(call(model, x, maps, y, 3, 5), values, rtol=1e-5, atol=1e-7)  # batch size
    alone = call(model, x[2:], maps[2:], y[2:], 3, 64)
    np.testing.assert_allclose(alone, values[2:], rtol=1e-5, atol=1e-7)  # not the batch it was in


@pytest.mark.parametrize("column", [c for c in CALLS if c not in ("max_sensitivity", "random_logit")])
def test_scale_free(column, case):
    model, x, maps, y = case
    call = CALLS[column]
    np.testing.assert_allclose(call(model, x, 7.5 * maps, y, 0, 64), call(model, x, maps, y, 0, 64), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("column", RANK_BASED)
def test_rank_based_metrics_see_only_the_order(column, case):
    model, x, maps, y = case
    call = CALLS[column]
    np.testing.assert_allclose(call(model, x, torch.exp(3 * maps), y, 0, 64), call(model, x, maps, y, 0, 64),
                               rtol=1e-6)
