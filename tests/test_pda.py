"""Prediction difference analysis: the weight-of-evidence formula, where the evidence lands on
toy models whose output depends on a known region, both samplers, output modes, progress,
seeding, and the feature-map variant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medattn.explain import explain
from medattn.explain.pda import (FeaturePredictionDifference, PredictionDifference,
                                 weight_of_evidence, window_starts)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
REGIONS = [(slice(4, 12), slice(4, 12)), (slice(20, 28), slice(18, 26))]  # rows, cols


def model_input(grey: torch.Tensor) -> torch.Tensor:
    """Grey (..., H, W) in [0, 1] → three channels normalised as medattn's transforms do."""
    return (grey.unsqueeze(-3) - MEAN) / STD


class RegionModel(nn.Module):
    """Logit k = 8 · (grey mean inside REGIONS[k] − 0.5): only those pixels matter."""

    def __init__(self, classes: int = 1, task: str | None = "binary"):
        super().__init__()
        self.classes = classes
        if task is not None:
            self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x[:, 1] * STD[1] + MEAN[1]
        return torch.stack([8 * (grey[:, rows, cols].mean(dim=(1, 2)) - 0.5)
                            for rows, cols in REGIONS[:self.classes]], dim=1)


def bright(*regions: int) -> torch.Tensor:
    """A dark 32×32 image with the given REGIONS bright, as a model input (3, 32, 32)."""
    grey = torch.full((32, 32), 0.1)
    for k in regions:
        grey[REGIONS[k]] = 0.9
    return model_input(grey)


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    """Twelve smooth random grey images of varying brightness (mostly darker than 0.9)."""
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(12, 1, 8, 8, generator=g) * torch.rand(12, 1, 1, 1, generator=g)
    return model_input(F.interpolate(coarse, size=(32, 32), mode="bilinear")[:, 0])


def near(region: tuple[slice, slice], margin: int) -> torch.Tensor:
    """Mask (32, 32) of the region grown by `margin` pixels."""
    rows, cols = region
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[max(rows.start - margin, 0):rows.stop + margin, max(cols.start - margin, 0):cols.stop + margin] = True
    return mask


def assert_evidence_in(m: torch.Tensor, region: tuple[slice, slice], window: int,
                       only_there: bool = True) -> None:
    """The map's argmax and most of its positive mass lie in `region`; with `only_there`, the
    map is zero (to float rounding between batch sizes) wherever no window touching the region
    covers a pixel."""
    inside = near(region, 0)
    row, col = divmod(int(m.argmax()), m.shape[1])
    assert inside[row, col], f"argmax at {(row, col)} outside the region"
    positive = m.clamp(min=0)
    assert positive[inside].sum() > 0.5 * positive.sum()
    if only_there:  # windows that never touch the region cannot change the output
        assert m[~near(region, window - 1)].abs().max() < 1e-4


def test_weight_of_evidence_matches_the_formula_by_hand():
    # N = 8, K = 2: p' = (0.9·8 + 1)/10 = 0.82, q' = (0.5·8 + 1)/10 = 0.5
    # WE = log2(0.82/0.18) − log2(0.5/0.5) = log2(41/9)
    assert weight_of_evidence(0.9, 0.5, 8, 2) == pytest.approx(math.log2(41 / 9))
    # K = 4, N = 6: p' = (0.5·6 + 1)/10 = 0.4, q' = (0.0·6 + 1)/10 = 0.1
    # WE = log2(0.4/0.6) − log2(0.1/0.9) = log2(6)
    assert weight_of_evidence(0.5, 0.0, 6, 4) == pytest.approx(math.log2(6))


def test_weight_of_evidence_is_vectorised_signed_and_finite_at_the_extremes():
    p = np.array([0.9, 0.5, 1.0])
    q = np.array([0.5, 0.9, 0.0])
    we = weight_of_evidence(p, q, 8, 2)
    assert we.shape == (3,) and we[0] > 0 and we[1] == pytest.approx(-we[0])
    assert np.isfinite(we[2])
    t = weight_of_evidence(torch.tensor(p), torch.tensor(q), 8, 2)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(we))
    assert weight_of_evidence(0.3, 0.3, 100, 5) == 0
    with pytest.raises(ValueError, match="n_classes"):
        weight_of_evidence(0.5, 0.5, 10, 1)


def test_windows_cover_every_pixel():
    assert window_starts(32, 10, 8) == [0, 8, 16, 22]
    assert window_starts(32, 8, 8) == [0, 8, 16, 24]


@pytest.mark.parametrize("sampling", ["marginal", "conditional"])
def test_evidence_falls_inside_the_region_the_model_reads(reference, sampling):
    explainer = PredictionDifference(RegionModel(), window=4, stride=2, samples=6,
                                     sampling=sampling, reference=reference)
    m = explainer.attribute(bright(0), 0)
    assert m.shape == (1, 32, 32) and m.dtype == torch.float32
    assert torch.isfinite(m).all()
    assert_evidence_in(m[0], REGIONS[0], window=4)


def test_conditional_samples_stay_grey_and_follow_the_surroundings(reference):
    seen = []

    class Recorder(RegionModel):
        def forward(self, x):
            seen.append(x.clone())
            return super().forward(x)

    PredictionDifference(Recorder(), window=4, stride=4, samples=3, sampling="conditional",
                         padding=2, reference=reference).attribute(bright(0), 0)
    batch = torch.cat(seen)[-(1 + 64 * 3):]  # the sweep: the image, then 64 windows × 3 draws
    grey = batch[:, 0] * STD[0] + MEAN[0]
    for c in (1, 2):  # every channel is the same grey image under its own normalisation
        assert torch.allclose(batch[:, c] * STD[c] + MEAN[c], grey, atol=1e-5)
    # the window at (16, 16) sits in flat dark surroundings: its draws are close to them
    # (conditional), unlike marginal draws from the brighter, varied reference images
    draws = grey[1:].reshape(64, 3, 32, 32)[4 * 8 + 4, :, 16:20, 16:20]
    assert (draws.mean() - 0.1).abs() < 0.05


def test_without_reference_both_samplers_warn_and_still_give_finite_maps():
    for sampling in ("marginal", "conditional"):
        with pytest.warns(UserWarning, match="no reference"):
            m = PredictionDifference(RegionModel(), window=4, stride=4, samples=3,
                                     sampling=sampling).attribute(bright(0), 0)
        assert m.shape == (1, 32, 32) and torch.isfinite(m).all()


def test_multiclass_softmax_puts_the_evidence_in_the_target_class_region(reference):
    model = RegionModel(classes=2, task=None)  # no task: "auto" means softmax
    explainer = PredictionDifference(model, window=4, stride=2, samples=4, reference=reference)
    maps = explainer.attribute(torch.stack([bright(0), bright(1)]), torch.tensor([0, 1]))
    # under softmax the other class's region also carries (weaker) evidence
    assert_evidence_in(maps[0], REGIONS[0], window=4, only_there=False)
    assert_evidence_in(maps[1], REGIONS[1], window=4, only_there=False)
    softmax = explainer.attribute(bright(0), 0, output="softmax")
    assert torch.equal(softmax[0], maps[0])
    assert not torch.equal(explainer.attribute(bright(0), 0, output="sigmoid")[0], maps[0])


def test_multilabel_sigmoid_explains_each_class_on_its_own(reference):
    model = RegionModel(classes=2, task="multilabel")
    explainer = PredictionDifference(model, window=4, stride=2, samples=4, reference=reference)
    maps = explainer.attribute(torch.stack([bright(0, 1)] * 2), torch.tensor([0, 1]))
    assert_evidence_in(maps[0], REGIONS[0], window=4)
    assert_evidence_in(maps[1], REGIONS[1], window=4)
    assert torch.equal(explainer.attribute(bright(0, 1), 1, output="sigmoid")[0], maps[1])


def test_progress_counts_windows_up_to_the_total(reference):
    calls = []
    explainer = PredictionDifference(RegionModel(), batch_size=8, progress=lambda d, t: calls.append((d, t)),
                                     window=8, stride=8, samples=2, reference=reference)
    explainer.attribute(torch.stack([bright(0), bright(0)]), 0)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert {t for _, t in calls} == {2 * 16} and done[-1] == 32
    PredictionDifference(RegionModel(), progress=True, window=8, stride=8, samples=2,
                         reference=reference).attribute(bright(0), 0)  # a tqdm bar


def test_models_that_view_their_input_run_as_well(reference):
    class Viewing(RegionModel):  # .view() needs a contiguous input (no channels-last)
        def forward(self, x):
            return super().forward(x.view(len(x), -1).view(x.shape))

    params = dict(window=8, stride=8, samples=2, reference=reference)
    plain = PredictionDifference(RegionModel(), **params).attribute(bright(0), 0)
    assert torch.allclose(PredictionDifference(Viewing(), **params).attribute(bright(0), 0),
                          plain, atol=1e-5)


def test_maps_depend_on_the_seed_alone(reference):
    explainer = PredictionDifference(RegionModel(), window=4, stride=4, samples=3,
                                     sampling="conditional", reference=reference)
    image = bright(0)
    first = explainer.attribute(image, 0)
    assert torch.equal(first, explainer.attribute(image, 0))
    in_a_batch = explainer.attribute(torch.stack([bright(1), image]), 0)
    assert torch.equal(in_a_batch[1], first[0])
    assert not torch.equal(explainer.attribute(image, 0, seed=1), first)


def test_registry_explain_returns_the_input_frame_map(reference):
    m = explain(RegionModel(), bright(0), 0, "pda", window=8, stride=8, samples=2,
                reference=reference)
    assert isinstance(m, np.ndarray) and m.shape == (32, 32) and m.dtype == np.float32


def test_bad_parameters_are_refused_by_name(reference):
    explainer = PredictionDifference(RegionModel(), window=4, stride=4, samples=2)
    with pytest.raises(ValueError, match="reference"):
        explainer.attribute(bright(0), 0, reference=reference[:, :, :16])
    with pytest.raises(ValueError, match="window"):
        explainer.attribute(bright(0), 0, window=40)
    with pytest.raises(ValueError, match="sampling"):
        explainer.attribute(bright(0), 0, sampling="uniform", reference=reference)
    with pytest.raises(ValueError, match="target"):
        explainer.attribute(bright(0), 3, reference=reference)


class FeatureModel(nn.Module):
    """features: 4×4 average pooling (8×8 cells); head: logit from the cells under REGIONS[0]
    (cells 1..2 of each axis). With `reshape_by_input` the head reshapes by the input's batch
    size, so the rest of the network cannot run on more maps than images."""

    gradcam_layer = "features"
    task = "binary"

    def __init__(self, reshape_by_input: bool = False):
        super().__init__()
        self.features = nn.AvgPool2d(4)
        self.reshape_by_input = reshape_by_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        n = x.shape[0] if self.reshape_by_input else f.shape[0]
        cells = f[:, 1, 1:3, 1:3].reshape(n, -1) * STD[1] + MEAN[1]
        return 8 * (cells.mean(dim=1, keepdim=True) - 0.5)


def test_feature_pda_maps_back_to_the_input_frame_where_the_head_reads(reference):
    explainer = FeaturePredictionDifference(FeatureModel(), samples=6, reference=reference)
    m = explainer.attribute(bright(0), 0)
    assert m.shape == (1, 32, 32) and torch.isfinite(m).all()
    assert_evidence_in(m[0], REGIONS[0], window=4)


def test_feature_pda_runs_models_that_need_one_copy_of_the_image_per_map(reference):
    fast = FeaturePredictionDifference(FeatureModel(), samples=4, reference=reference)
    copies = FeaturePredictionDifference(FeatureModel(reshape_by_input=True), samples=4,
                                         reference=reference)
    assert torch.allclose(copies.attribute(bright(0), 0), fast.attribute(bright(0), 0))
    assert copies._expand_input and not fast._expand_input


def test_feature_pda_refuses_conditional_sampling_clearly(reference):
    explainer = FeaturePredictionDifference(FeatureModel(), reference=reference)
    with pytest.raises(ValueError, match="marginal"):
        explainer.attribute(bright(0), 0, sampling="conditional")
