"""WILDCAT pooling against hand-computed values (the semantics in DESIGN.md), and the head."""

from __future__ import annotations

import pytest
import torch

from medattn.models import build
from medattn.models.wildcat import ClassWisePool, WildcatPool2d, positive_k

# One 2×3 map, n = 6; sorted descending: 6 5 4 3 2 1.
MAP = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])


def score(kmax, kmin=None, alpha=1.0, x=MAP):
    return WildcatPool2d(kmax, kmin, alpha)(x).item()


def test_class_wise_pool_averages_each_class_consecutive_maps():
    x = torch.tensor([[[[1.0, 3.0]], [[5.0, 7.0]], [[0.0, 2.0]], [[4.0, -2.0]]]])  # (1, 2·2, 1, 2)
    out = ClassWisePool(2)(x)
    assert out.shape == (1, 2, 1, 2)
    assert out.tolist() == [[[[3.0, 5.0]], [[2.0, 0.0]]]]


def test_class_wise_pool_refuses_a_channel_count_not_divisible_by_num_maps():
    with pytest.raises(ValueError, match="not a multiple of num_maps=4"):
        ClassWisePool(4)(torch.zeros(1, 6, 2, 2))


@pytest.mark.parametrize("k, n, expected", [
    (0, 6, 0), (-1, 6, 0),          # k <= 0 → 0
    (0.5, 6, 3), (0.34, 6, 2),      # round(k·n)
    (0.25, 6, 2), (0.75, 6, 4),     # Python rounding: round(1.5) = 2, round(4.5) = 4
    (0.5, 49, 24),                  # round(24.5) = 24
    (10, 6, 6),                     # k > n → n
    (1, 6, 1), (2.7, 6, 2),         # int(k)
])
def test_positive_k(k, n, expected):
    assert positive_k(k, n) == expected


def test_kmin_none_means_kmin_equals_kmax():
    assert score(1) == pytest.approx((6 + 1) / 2)
    assert score(2, alpha=1.0) == pytest.approx((5.5 + 1.5) / 2)


def test_kmin_zero_or_negative_drops_the_low_term():
    assert score(2, kmin=0) == pytest.approx(5.5)
    assert score(1, kmin=-1) == pytest.approx(6.0)


def test_alpha_zero_drops_the_low_term_without_halving():
    assert score(1, kmin=1, alpha=0.0) == pytest.approx(6.0)
    assert score(1, kmin=1, alpha=0) == pytest.approx(6.0)


@pytest.mark.parametrize("alpha", [0.0, 0])
def test_reference_pooling_at_alpha_zero_halves_the_top_mean(alpha):
    """The reference code's `alpha is not 0` lets a float 0.0 through: (top + 0 · low) / 2."""
    assert WildcatPool2d(1, 1, alpha, alpha_zero_halves=True)(MAP).item() == pytest.approx(3.0)
    assert WildcatPool2d(2, 2, 0.7, alpha_zero_halves=True)(MAP).item() == pytest.approx(score(2, 2, 0.7))
    model = build("resnet18", "wildcat", 2, alpha=alpha, alpha_zero_halves=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        halved = model(x)
        model.spatial_pool.alpha_zero_halves = False
        assert torch.allclose(halved * 2, model(x))
    with pytest.raises(ValueError, match="alpha_zero_halves"):
        WildcatPool2d(1, alpha_zero_halves="yes")


def test_fractional_kmax_kmin_and_alpha():
    # kmax 0.5 → 3 regions (mean 5), kmin 0.34 → 2 regions (mean 1.5): (5 + 0.6·1.5) / 2
    assert score(0.5, kmin=0.34, alpha=0.6) == pytest.approx((5 + 0.6 * 1.5) / 2)


def test_k_above_n_takes_every_region():
    assert score(10, alpha=0.5) == pytest.approx((3.5 + 0.5 * 3.5) / 2)


def test_non_integer_k_above_one_is_truncated():
    assert score(2.7, kmin=0) == pytest.approx(5.5)


def test_each_image_and_class_is_pooled_separately():
    x = torch.stack([torch.cat([MAP[0], -MAP[0]]), torch.cat([2 * MAP[0], MAP[0]])])  # (2, 2, 2, 3)
    out = WildcatPool2d(1, 1, 1.0)(x)
    assert out.shape == (2, 2)
    assert torch.allclose(out, torch.tensor([[3.5, -3.5], [7.0, 3.5]]))


def test_gradient_reaches_only_the_selected_regions():
    x = MAP.clone().requires_grad_(True)
    WildcatPool2d(1, 1, 1.0)(x).sum().backward()
    expected = torch.zeros_like(MAP)
    expected[0, 0, 1, 2] = 0.5  # the maximum, weight 1/2
    expected[0, 0, 0, 0] = 0.5  # the minimum, weight alpha/2
    assert torch.equal(x.grad, expected)


def test_kmax_that_selects_nothing_is_refused():
    with pytest.raises(ValueError, match="kmax must be > 0"):
        WildcatPool2d(0)
    with pytest.raises(ValueError, match="selects no region of a 2×3 map"):
        WildcatPool2d(0.01)(MAP)


def test_wildcat_head_scores_are_the_pooled_class_maps():
    torch.manual_seed(0)
    model = build("resnet18", "wildcat", 3, num_maps=2, kmax=0.3, kmin=0.1, alpha=0.5).eval()
    assert model.params == {"num_maps": 2, "kmax": 0.3, "kmin": 0.1, "alpha": 0.5, "alpha_zero_halves": False}
    assert model.maps.out_channels == 3 * 2
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        maps = model.class_maps(x)
        logits = model(x)
    assert maps.shape == (2, 3, 3, 3)
    assert torch.allclose(logits, WildcatPool2d(0.3, 0.1, 0.5)(maps))


def test_wildcat_defaults_are_recorded():
    model = build("mobilenet_v3_small", "wildcat", 1)
    assert model.params == {"num_maps": 8, "kmax": 0.2, "kmin": None, "alpha": 0.7, "alpha_zero_halves": False}
