"""Bootstrap intervals by image and paired differences between two model/method pairs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medattn.metrics import bootstrap_ci, paired_difference


def test_interval_resamples_images_with_the_seeded_generator():
    values = np.random.default_rng(0).random(50)
    estimate, low, high = bootstrap_ci(values, n_resamples=200, seed=3)
    index = np.random.default_rng(3).integers(0, 50, size=(200, 50))
    expected = np.percentile(values[index].mean(axis=1), [2.5, 97.5])
    assert estimate == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(tuple(expected))
    assert low < estimate < high


def test_interval_is_deterministic_for_a_seed():
    values = np.random.default_rng(1).normal(size=300)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


def test_interval_drops_undefined_images_and_handles_degenerate_input():
    values = np.array([0.2, np.nan, 0.4, 0.6, np.nan])
    assert bootstrap_ci(values).estimate == pytest.approx(0.4)
    assert bootstrap_ci(np.full(10, 0.7)) == pytest.approx((0.7, 0.7, 0.7))
    assert all(math.isnan(v) for v in bootstrap_ci([np.nan, np.nan]))
    assert bootstrap_ci([1.0, 2.0, 10.0], statistic=np.median).estimate == 2.0


def test_wider_level_gives_a_wider_interval():
    values = np.random.default_rng(2).random(200)
    _, low90, high90 = bootstrap_ci(values, level=0.90)
    _, low99, high99 = bootstrap_ci(values, level=0.99)
    assert low99 < low90 and high90 < high99


def test_paired_difference_sign_interval_and_p_value():
    rng = np.random.default_rng(4)
    b = rng.random(400)
    a = b + 0.05 + rng.normal(scale=0.02, size=400)
    diff, low, high, p = paired_difference(a, b)
    assert diff == pytest.approx(np.mean(a - b))
    assert 0 < low < diff < high and p < 0.01
    reverse = paired_difference(b, a)
    assert reverse.difference == pytest.approx(-diff) and reverse.high < 0
    same = paired_difference(a, a)
    assert same.difference == 0 and same.p_value == 1.0


def test_paired_p_value_is_never_zero_and_undefined_for_one_pair():
    """A difference over one image printed "p = 0.000": one pair has nothing to resample, and
    B resamples all on one side give the Monte Carlo floor 2 / (B + 1), never 0."""
    one = paired_difference(np.array([0.9]), np.array([0.1]))
    assert one.difference == pytest.approx(0.8) and np.isnan(one.p_value) and np.isnan(one.low)
    sure = paired_difference(np.arange(10.0) + 1, np.arange(10.0), n_resamples=999)
    assert sure.p_value == pytest.approx(2 / 1000) and sure.low == pytest.approx(1.0) == sure.high


def test_paired_difference_pairs_images_and_drops_incomplete_pairs():
    a = np.array([1.0, np.nan, 3.0, 4.0])
    b = np.array([0.5, 2.0, np.nan, 3.0])
    assert paired_difference(a, b).difference == pytest.approx(((1.0 - 0.5) + (4.0 - 3.0)) / 2)
    left = pd.Series([1.0, 2.0, 3.0], index=["x", "y", "z"])
    right = pd.Series([2.5, 0.0], index=["z", "x"])
    assert paired_difference(left, right).difference == pytest.approx(((1.0 - 0.0) + (3.0 - 2.5)) / 2)
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(np.ones(3), np.ones(4))


def test_large_inputs_give_the_same_interval_as_one_index_matrix():
    values = np.random.default_rng(5).random(10_000)  # resampled in blocks internally
    index = np.random.default_rng(0).integers(0, 10_000, size=(1000, 10_000))
    expected = np.percentile(values[index].mean(axis=1), [2.5, 97.5])
    assert bootstrap_ci(values)[1:] == pytest.approx(tuple(expected))
