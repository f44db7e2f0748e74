"""Infidelity and max-sensitivity (medattn.metrics.faithfulness.robustness): parity with
Captum 0.9's `infidelity` and `sensitivity_max` on the same draws, captum#613 shown, and the
analytic oracles (exact attributions of a linear model: infidelity 0; a constant explanation:
sensitivity 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max
from torch import nn

from medattn.metrics.faithfulness import infidelity, max_sensitivity
from tests.faithfulness_cases import cnn, gradient, inputs

STD, SAMPLES = 0.2, 12


def captum_value(model, x, maps, target, seed, normalize):
    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(seed)) * STD
        return noise, inputs - noise

    broadcast = maps[:, None].expand_as(x)
    return float(captum_infidelity(model, perturb, x, broadcast, target=int(target), n_perturb_samples=SAMPLES,
                                   normalize=normalize)[0])


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_infidelity_equals_captum(normalize, channels):
    model, (x, maps, y) = cnn(channels), inputs(channels=channels)
    ours = infidelity(model, x, maps, y, n_samples=SAMPLES, noise_std=STD, normalize=normalize, seed=4)
    for i in range(len(x)):
        assert ours[i] == pytest.approx(captum_value(model, x[i:i + 1], maps[i:i + 1], y[i], 4, normalize), rel=1e-4)


def test_infidelity_is_scale_invariant_only_when_normalized():
    """captum#613: without `normalize`, doubling the map changes Captum's infidelity."""
    model, (x, maps, y) = cnn(), inputs(batch=1)
    assert captum_value(model, x, maps, y[0], 0, False) != pytest.approx(captum_value(model, x, 2 * maps, y[0], 0, False),
                                                                         rel=1e-3)
    ours = infidelity(model, x, maps, y, n_samples=SAMPLES, noise_std=STD)
    assert infidelity(model, x, 2 * maps, y, n_samples=SAMPLES, noise_std=STD) == pytest.approx(ours, rel=1e-9)


def test_gradient_of_a_linear_model_has_infidelity_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 3)).eval()
    x, _, y = inputs()
    exact = gradient(model, x, y)  # the weights: Iᵀφ = f(x) − f(x − I) for every I
    assert infidelity(model, x, exact, y, n_samples=SAMPLES, noise_std=1.0, normalize=False) == pytest.approx(0, abs=1e-8)
    assert infidelity(model, x, exact, y, n_samples=SAMPLES, noise_std=1.0) == pytest.approx(0, abs=1e-8)
    wrong = infidelity(model, x, torch.rand_like(exact), y, n_samples=SAMPLES, noise_std=1.0)
    assert (wrong > 1e-3).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_max_sensitivity_equals_captum(channels):
    model, (x, _, y) = cnn(channels), inputs(channels=channels)

    def explain(m, inputs, targets):
        return gradient(m, inputs, targets)

    ours = max_sensitivity(model, x, y, explain, radius=0.1, n_samples=6, seed=9)
    for i in range(len(x)):
        torch.manual_seed(9)
        theirs = sensitivity_max(lambda inp, target: (gradient(model, inp, target),), x[i:i + 1], target=int(y[i]),
                                 perturb_radius=0.1, n_perturb_samples=6)
        assert ours[i] == pytest.approx(float(theirs[0]), rel=1e-5)


def test_constant_explanation_has_sensitivity_zero_and_batches_agree():
    model, (x, _, y) = cnn(), inputs()
    constant = lambda m, inputs, targets: torch.ones(inputs.shape[0], *inputs.shape[2:])  # noqa: E731
    assert (max_sensitivity(model, x, y, constant, radius=0.5) == 0).all()
    explain = lambda m, inputs, targets: gradient(m, inputs, targets)  # noqa: E731
    whole = max_sensitivity(model, x, y, explain, radius=0.1, n_samples=6, seed=2, batch_size=None)
    chunked = max_sensitivity(model, x, y, explain, radius=0.1, n_samples=6, seed=2, batch_size=4)
    np.testing.assert_allclose(whole, chunked, rtol=1e-6)
    assert max_sensitivity(model, x[1:], y[1:], explain, radius=0.1, n_samples=6, seed=2)[0] == pytest.approx(whole[1])


def test_errors():
    model, (x, maps, y) = cnn(), inputs()
    with pytest.raises(ValueError, match="noise_std"):
        infidelity(model, x, maps, y, noise_std=0)
    with pytest.raises(ValueError, match="n_samples"):
        max_sensitivity(model, x, y, lambda m, i, t: maps, n_samples=0)
