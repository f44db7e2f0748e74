"""Sparseness (Gini) and complexity (entropy) of maps (medattn.metrics.faithfulness.concentration):
parity with Quantus 0.6 and the definitions on hand-built maps."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.metrics.faithfulness import complexity, sparseness
from tests.faithfulness_cases import inputs, quantus


def test_sparseness_and_complexity_equal_quantus():
    q = quantus()
    x, maps, y = inputs(batch=3)
    common = dict(model=None, x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None].numpy().copy())
    theirs_gini = q.Sparseness(normalise=False, disable_warnings=True)(**common)
    common["a_batch"] = maps[:, None].numpy().copy()  # Quantus changes a_batch in place
    theirs_entropy = q.Complexity(normalise=False, disable_warnings=True)(**common)
    np.testing.assert_allclose(sparseness(maps), theirs_gini, atol=1e-6)  # their +1e-7 on every value
    np.testing.assert_allclose(complexity(maps), theirs_entropy, atol=1e-6)  # their +1e-12 in the log


def test_definitions_on_hand_built_maps():
    n = 16
    flat, one_hot = np.ones((1, 4, 4)), np.zeros((1, 4, 4))
    one_hot[0, 1, 2] = -3.0  # |φ| counts: a negative spike is as concentrated as a positive one
    assert sparseness(flat)[0] == 0 and sparseness(np.zeros((1, 4, 4)))[0] == 0
    assert sparseness(one_hot)[0] == pytest.approx(1 - 1 / n)
    assert complexity(flat)[0] == pytest.approx(np.log(n)) and complexity(one_hot)[0] == 0
    half = np.zeros((1, 4, 4))
    half[0, :2] = 1.0
    assert complexity(half)[0] == pytest.approx(np.log(8))
    assert sparseness(half)[0] == pytest.approx(0.5)
    assert sparseness(5 * half)[0] == pytest.approx(0.5)  # scale-free
    with pytest.warns(RuntimeWarning, match="all-zero"):
        assert np.isnan(complexity(np.zeros((2, 4, 4)))).all()


def test_errors():
    with pytest.raises(ValueError, match="maps"):
        sparseness(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        complexity(np.full((1, 2, 2), np.nan))
