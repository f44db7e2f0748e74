"""Reference maps (medattn.metrics.faithfulness.references): what each one is, and the box prior
carried through the model's own geometry."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.data.preprocess import Preprocessing
from medattn.metrics.faithfulness import box_prior, center, is_reference, random_map, reference_map, reference_name


def test_blank_random_and_center():
    assert (reference_map("blank", 8) == 0).all()
    np.testing.assert_array_equal(reference_map("reference:random", 8, seed=4), random_map(8, 4))
    assert not np.array_equal(random_map(8, 4), random_map(8, 5))
    c = center(9)
    assert c.shape == (9, 9) and c[4, 4] == pytest.approx(1.0) and c.argmax() == 40
    np.testing.assert_allclose(c, c.T)
    assert reference_name("center") == "reference:center" and is_reference("reference:center")
    assert not is_reference("gradcam")
    with pytest.raises(ValueError, match="unknown reference map"):
        reference_map("mean", 8)
    with pytest.raises(ValueError, match="box prior"):
        reference_map("box_prior", 8)


def test_box_prior_is_the_mean_box_mask_in_the_model_frame():
    stretch = Preprocessing(size=4, channels=1, intensity="unit")
    boxes = [((8, 8), np.array([[0, 0, 4, 4]])),  # top-left quarter (inclusive: 0..4 → 5 px at 8 px)
             ((8, 8), np.array([[0, 0, 8, 8]]))]   # everything
    prior = box_prior(boxes, stretch)
    assert prior.shape == (4, 4)
    assert prior[0, 0] == pytest.approx(1.0) and prior[3, 3] == pytest.approx(0.5)
    crop = Preprocessing(resize="shorter_side_center_crop", size=8, crop=4, channels=1, intensity="unit")
    centred = box_prior([((8, 16), np.array([[6, 2, 4, 4]]))], crop)  # a box in the crop's middle
    assert centred.shape == (4, 4) and centred.max() == pytest.approx(1.0)
    assert (box_prior([], stretch) == 0).all()
