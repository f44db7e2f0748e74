"""ROAD and its noisy linear imputation (medattn.metrics.faithfulness.imputation): the published
imputation (Rong et al. 2022) on hand-checked cases, parity with Quantus 0.6's imputation and
accuracy curve on the same draws, and Quantus's ROAD faults (Quantus#333) shown."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.metrics.faithfulness import noisy_linear_imputation, road
from tests.faithfulness_cases import SIDE, cnn, inputs, quantus


def test_imputation_solves_the_neighbourhood_equations():
    rng = np.random.RandomState(0)
    image = rng.rand(2, 6, 7)
    removed = np.array([8, 9, 16, 30, 0, 41])  # a block, an edge pixel, a corner
    out = noisy_linear_imputation(image, removed, noise=0.0)
    kept = np.setdiff1d(np.arange(42), removed)
    np.testing.assert_array_equal(out.reshape(2, -1)[:, kept], image.reshape(2, -1)[:, kept])
    weights = {(1, 1): 1 / 12, (0, 1): 1 / 6, (-1, 1): 1 / 12, (1, -1): 1 / 12, (0, -1): 1 / 6,
               (-1, -1): 1 / 12, (1, 0): 1 / 6, (-1, 0): 1 / 6}
    for p in removed:  # each removed value is the weighted mean of its neighbours inside the image
        r, c = divmod(int(p), 7)
        inside = [((r + dr) * 7 + c + dc, w) for (dr, dc), w in weights.items() if 0 <= r + dr < 6 and 0 <= c + dc < 7]
        mean = sum(w * out.reshape(2, -1)[:, q] for q, w in inside) / sum(w for _, w in inside)
        np.testing.assert_allclose(out.reshape(2, -1)[:, p], mean, atol=1e-12)


def test_imputation_of_a_linear_ramp_is_exact_and_affine_equivariant():
    ramp = np.broadcast_to(np.arange(8.0)[None, None, :], (1, 8, 8)).copy()
    removed = np.arange(64).reshape(8, 8)[2:6, 2:6].ravel()
    np.testing.assert_allclose(noisy_linear_imputation(ramp, removed, noise=0.0), ramp, atol=1e-12)
    image = np.random.RandomState(1).rand(1, 8, 8)
    np.testing.assert_allclose(noisy_linear_imputation(3 * image - 2, removed, noise=0.0),
                               3 * noisy_linear_imputation(image, removed, noise=0.0) - 2, atol=1e-12)


def test_imputation_equals_quantus_with_the_same_draws():
    quantus()
    from quantus.functions.perturb_func import noisy_linear_imputation as theirs

    x, maps, _ = inputs(batch=1, channels=3)
    removed = np.argsort(-maps[0].numpy().ravel())[:100]
    np.random.seed(5)
    expected = theirs(arr=x[0].numpy(), indices=removed, noise=0.01)
    ours = noisy_linear_imputation(x[0], removed, 0.01, np.random.RandomState(5))
    np.testing.assert_allclose(ours, expected, atol=1e-6)  # Quantus keeps the input's float32


def test_road_curve_is_the_score_of_quantus_imputed_images():
    """On a one-channel image with the same seed, our curve is the class probability of the
    images Quantus imputes, and Quantus's ROAD is that image's accuracy (argmax = target)."""
    q = quantus()
    model, (x, maps, y) = cnn(), inputs(batch=1)
    percentages = [10, 50, 90]
    _, curve = road(model, x, maps, y, percentages=percentages, task="multiclass", seed=5, curves=True)
    from quantus.functions.perturb_func import noisy_linear_imputation as impute

    np.random.seed(5)
    order = np.argsort(-maps[0].numpy().ravel())
    imputed = torch.from_numpy(np.stack([impute(arr=x[0].numpy(), indices=order[:int(SIDE * SIDE * p / 100)], noise=0.01)
                                         for p in percentages])).float()
    with torch.no_grad():
        probabilities = torch.softmax(model(imputed), 1)
    np.testing.assert_allclose(curve[0], probabilities[:, y[0]].numpy(), atol=1e-5)
    np.random.seed(5)
    metric = q.ROAD(percentages=percentages, normalise=False, disable_warnings=True)
    accuracy = metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None].numpy(), softmax=True,
                      device="cpu")
    assert accuracy == {p: float(c == y[0]) for p, c in zip(percentages, probabilities.argmax(1).tolist())}


def test_quantus_road_reports_its_first_batch_only_and_fails_on_three_channels():
    """Quantus#333 (ROAD returns 0 all the time): its result is a dict of accuracies of the
    first batch alone, whatever the other batches hold; on a 3-channel image it ranks channel
    entries and indexes pixels with them."""
    q = quantus()
    model, (x, maps, _) = cnn(), inputs(batch=2)
    with torch.no_grad():
        y = model(x).argmax(1).numpy()
    y_wrong = y.copy()
    y_wrong[1] = (y[1] + 1) % 3  # the second image is misclassified at every percentage
    metric = q.ROAD(percentages=[1], normalise=False, disable_warnings=True)
    common = dict(model=model, x_batch=x.numpy(), a_batch=maps[:, None].numpy(), softmax=True, device="cpu",
                  batch_size=1)
    assert metric(y_batch=y, **common) == metric(y_batch=y_wrong, **common)
    ours = road(model, x, maps, y, percentages=[1], task="multiclass")
    assert ours.shape == (2,)
    x3 = x.repeat(1, 3, 1, 1)
    with pytest.raises(IndexError):
        q.ROAD(percentages=[50], normalise=False, disable_warnings=True)(
            model=cnn(channels=3), x_batch=x3.numpy(), y_batch=y, a_batch=maps[:, None].numpy(), softmax=True,
            device="cpu")
    assert np.isfinite(road(cnn(channels=3), x3, maps, y, percentages=[50], task="multiclass")).all()


def test_road_morf_and_lerf_on_an_additive_model():
    """Logit = sum of the pixels: removing the largest pixels first (MoRF with the image as its
    own map) lowers the logit more than removing the smallest first (LeRF)."""

    class Additive(torch.nn.Module):
        def forward(self, x):
            total = x[:, 0].sum(dim=(1, 2))
            return torch.stack([total, -total], dim=1)

    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 3:6, 3:6] = 5.0
    common = dict(percentages=[5, 10], task="logit", noise=0.0)
    morf = road(Additive(), x, x[:, 0], [0], order="morf", **common)
    lerf = road(Additive(), x, x[:, 0], [0], order="lerf", **common)
    assert morf[0] < 30 < 45 <= lerf[0]  # LeRF imputes zeros, some next to the block


def test_road_errors():
    model, (x, maps, y) = cnn(), inputs()
    with pytest.raises(ValueError, match="order"):
        road(model, x, maps, y, order="random")
    with pytest.raises(ValueError, match="percentages"):
        road(model, x, maps, y, percentages=[120])
    with pytest.raises(ValueError, match="distinct"):
        noisy_linear_imputation(x[0], [1, 1])
