"""Deletion, insertion, pixel flipping, region perturbation and faithfulness correlation
(medattn.metrics.faithfulness.perturbation): parity with Quantus 0.6 on the same model, inputs
and draws, the published definitions on hand-built cases, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from medattn.metrics.faithfulness import (
    deletion, faithfulness_correlation, insertion, pixel_flipping, region_perturbation,
)
from tests.faithfulness_cases import SIDE, cnn, inputs, quantus

BASELINE = 0.3
TOL = 1e-5  # float32 forward passes; ours through the BatchNorm-folded evaluation copy


def softmax_scores(model: nn.Module, x: torch.Tensor, targets) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(x), 1)[np.arange(len(x)), targets].double().numpy()


def test_deletion_curve_equals_quantus_pixel_flipping():
    q = quantus()
    model, (x, maps, y) = cnn(), inputs()
    metric = q.PixelFlipping(features_in_step=16, perturb_baseline=BASELINE, normalise=False, disable_warnings=True)
    theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps.numpy()[:, None],
                             softmax=True, device="cpu"))
    area, ours = deletion(model, x, maps, y, steps=SIDE * SIDE // 16, baseline=BASELINE, task="multiclass", curves=True)
    assert ours.shape == (2, 17)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=TOL)  # Quantus's curve has no unperturbed point
    np.testing.assert_allclose(ours[:, 0], softmax_scores(model, x, y), atol=TOL)
    np.testing.assert_allclose(area, np.trapezoid(ours, dx=1 / 16, axis=1), atol=1e-12)


def test_pixel_flipping_drops_equal_quantus():
    q = quantus()
    model, (x, maps, y) = cnn(), inputs()
    metric = q.PixelFlipping(features_in_step=32, perturb_baseline=BASELINE, normalise=False, disable_warnings=True)
    theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps.numpy()[:, None],
                             softmax=True, device="cpu"))
    aopc, drops = pixel_flipping(model, x, maps, y, steps=8, baseline=BASELINE, task="multiclass", curves=True)
    np.testing.assert_allclose(drops[:, 1:], softmax_scores(model, x, y)[:, None] - theirs, atol=TOL)
    np.testing.assert_allclose(aopc, drops.mean(axis=1))
    assert (drops[:, 0] == 0).all()


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("patch_size", [4, 5])  # 5: the grid is centred, cut at both edges
def test_region_perturbation_equals_quantus(order, patch_size):
    q = quantus()
    model, (x, maps, y) = cnn(), inputs()
    metric = q.RegionPerturbation(patch_size=patch_size, regions_evaluation=7, order=order,
                                  perturb_baseline=BASELINE, normalise=False, disable_warnings=True)
    theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps.numpy()[:, None],
                             softmax=True, device="cpu"))
    aopc, drops = region_perturbation(model, x, maps, y, patch_size=patch_size, regions=7, order=order,
                                      baseline=BASELINE, task="multiclass", curves=True)
    np.testing.assert_allclose(drops[:, 1:], theirs, atol=TOL)
    np.testing.assert_allclose(aopc, drops.mean(axis=1))


def test_region_perturbation_random_order_draws_as_quantus_after_seeding():
    q = quantus()
    model, (x, maps, y) = cnn(), inputs(batch=1)
    np.random.seed(7)
    metric = q.RegionPerturbation(patch_size=4, regions_evaluation=6, order="random", perturb_baseline=BASELINE,
                                  normalise=False, disable_warnings=True)
    theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps.numpy()[:, None],
                             softmax=True, device="cpu"))
    _, drops = region_perturbation(model, x, maps, y, patch_size=4, regions=6, order="random", baseline=BASELINE,
                                   task="multiclass", curves=True, seed=7)
    np.testing.assert_allclose(drops[:, 1:], theirs, atol=TOL)


def test_faithfulness_correlation_equals_quantus_with_its_draws():
    q = quantus()
    model, (x, maps, y) = cnn(), inputs()
    ours = faithfulness_correlation(model, x, maps, y, n_subsets=20, subset_size=10, baseline=BASELINE,
                                    task="multiclass", seed=3)
    for i in range(len(x)):  # Quantus draws per image from the global stream: one image per call
        np.random.seed(3)
        metric = q.FaithfulnessCorrelation(nr_runs=20, subset_size=10, perturb_baseline=BASELINE, normalise=False,
                                           return_aggregate=False, disable_warnings=True)
        theirs = metric(model=model, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1], a_batch=maps[i:i + 1, None].numpy(),
                        softmax=True, device="cpu")
        assert ours[i] == pytest.approx(theirs[0], abs=1e-4)  # Pearson of float32 score differences


def test_quantus_has_no_seed_of_its_own_and_ours_does():
    """Quantus#130: its draws come from NumPy's global stream, so two identical calls differ."""
    q = quantus()
    model, (x, maps, y) = cnn(), inputs(batch=1)

    def theirs() -> float:
        metric = q.FaithfulnessCorrelation(nr_runs=10, subset_size=10, perturb_baseline=BASELINE, normalise=False,
                                           return_aggregate=False, disable_warnings=True)
        return metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None].numpy(), softmax=True,
                      device="cpu")[0]

    np.random.seed(0)
    assert theirs() != theirs()
    first = faithfulness_correlation(model, x, maps, y, n_subsets=10, subset_size=10, task="multiclass", seed=5)
    np.random.seed(123)  # the global stream does not reach ours
    assert faithfulness_correlation(model, x, maps, y, n_subsets=10, subset_size=10, task="multiclass",
                                    seed=5)[0] == first[0]


def test_softmax_of_a_multilabel_model_couples_classes_and_ours_does_not():
    """Quantus#233: Quantus scores every model through a softmax (or raw logits), so in a
    multi-label model the target's score moves when another class's logit moves. Here the
    target's logit ignores the image, another class's logit reads it: its sigmoid deletion
    curve is flat, Quantus's softmax curve is not."""
    q = quantus()

    class TwoHeads(nn.Module):
        def forward(self, x):
            other = x.mean(dim=(1, 2, 3)) * 20
            return torch.stack([torch.full_like(other, 0.5), other], dim=1)

    model, (x, maps, _) = TwoHeads().eval(), inputs(batch=1, seed=4)
    x = x.abs() + 0.5
    ours = deletion(model, x, maps, [0], steps=16, baseline=0.0, curves=True)[1]
    assert np.ptp(ours) < 1e-7
    metric = q.PixelFlipping(features_in_step=16, perturb_baseline=0.0, normalise=False, disable_warnings=True)
    theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=np.array([0]), a_batch=maps[:, None].numpy(),
                             softmax=True, device="cpu"))
    assert np.ptp(theirs) > 0.1


class Additive(nn.Module):
    """Logit 0 = sum of the pixels of channel 0 (logit 1 = 0): every removal is exactly visible."""

    def forward(self, x):
        total = x[:, 0].sum(dim=(1, 2))
        return torch.stack([total, torch.zeros_like(total)], dim=1)


def test_deletion_of_an_additive_model_follows_the_map_order():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    good, bad = x[0, 0], -x[0, 0]
    _, curve = deletion(Additive(), x, good[None], [0], steps=16, baseline=0.0, task="logit", curves=True)
    removed = np.concatenate([[0.0], np.cumsum(np.arange(15, -1, -1))])  # largest pixel first
    np.testing.assert_allclose(curve[0], 120.0 - removed)
    assert deletion(Additive(), x, good[None], [0], steps=16, task="logit")[0] < \
        deletion(Additive(), x, bad[None], [0], steps=16, task="logit")[0]


def test_insertion_starts_at_the_blurred_image_and_ends_at_the_image():
    model, (x, maps, y) = cnn(), inputs()
    _, curve = insertion(model, x, maps, y, steps=8, task="multiclass", curves=True)
    blurred = TF.gaussian_blur(x, [11, 11], [5.0, 5.0])
    np.testing.assert_allclose(curve[:, 0], softmax_scores(model, blurred, y), atol=TOL)
    np.testing.assert_allclose(curve[:, -1], softmax_scores(model, x, y), atol=TOL)
    # inserting the k most relevant pixels into b = deleting the N − k least relevant from x
    _, back = deletion(model, x, -maps, y, steps=8, baseline=blurred, task="multiclass", curves=True)
    np.testing.assert_allclose(curve, back[:, ::-1], atol=TOL)


def test_baselines_per_channel_and_shape_errors():
    model, (x, maps, y) = cnn(channels=3), inputs(channels=3)
    black = torch.tensor([-2.1, -2.0, -1.8]).view(3, 1, 1)
    values = deletion(model, x, maps, y, steps=4, baseline=black, task="multiclass")
    assert values.shape == (2,) and np.isfinite(values).all()
    with pytest.raises(ValueError, match="attributions must be maps"):
        deletion(model, x, maps[:, :8], y, steps=4)
    with pytest.raises(ValueError, match="does not broadcast"):
        deletion(model, x, maps, y, steps=4, baseline=torch.zeros(2, 1, 1))
    with pytest.raises(ValueError, match="targets for 2 images"):
        deletion(model, x, maps, [0, 1, 2], steps=4)
    with pytest.raises(ValueError, match="steps"):
        insertion(model, x, maps, y, steps=SIDE * SIDE + 1)
    with pytest.raises(ValueError, match="task"):
        deletion(model, x, maps, y, steps=4, task="softmax")
    with pytest.raises(ValueError, match="baseline"):
        deletion(model, x, maps, y, steps=4, baseline="mean")
    with pytest.raises(ValueError, match="order"):
        region_perturbation(model, x, maps, y, order="best")


def test_faithfulness_correlation_of_a_flat_map_is_undefined():
    model, (x, maps, y) = cnn(), inputs(batch=1)
    with pytest.warns(RuntimeWarning, match="undefined"):
        value = faithfulness_correlation(model, x, torch.ones_like(maps), y, n_subsets=10, task="multiclass")
    assert np.isnan(value[0])


def test_signed_maps_rank_negative_evidence_last_where_quantus_takes_abs():
    """Quantus#338: Quantus's AttributionLocalisation takes |φ| by default, so a map whose only
    evidence inside the box is strongly negative (against the class) scores as if it pointed
    there; our perturbation order ranks by signed value and removes those pixels last."""
    q = quantus()
    from medattn.metrics.faithfulness import pixel_ranks

    maps = np.full((1, SIDE, SIDE), 0.01)
    maps[0, 4:8, 4:8] = -5.0  # strong evidence against the class, inside the box
    box = np.zeros((1, 1, SIDE, SIDE))
    box[0, 0, 4:8, 4:8] = 1
    x, _, y = inputs(batch=1)
    theirs = q.AttributionLocalisation(normalise=False, disable_warnings=True)(
        model=cnn(), x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None], s_batch=box, device="cpu")
    assert theirs[0] > 0.95  # |φ|: nearly all the mass is in the box
    ranks = pixel_ranks(maps, seed=0)
    assert (ranks[0, 4:8, 4:8] >= SIDE * SIDE - 16).all()  # ours: removed last
