"""Localization metrics on hand-built maps and boxes, against the published definitions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

from medattn.data.preprocess import Preprocessing
from medattn.explain import normalize
from medattn.pipeline import peak_of, score

from medattn.metrics import (
    argmax_point,
    box_auprc,
    box_mask,
    boxes_by_class,
    hit,
    hit_at,
    hit_rate,
    localization_scores,
    miou,
    pointwise_ap,
    pointwise_map,
    spearman,
    ssim,
    tune_threshold,
)

STRETCH = Preprocessing()  # a map stretched back onto the image (a medattn-trained model's placement)


def cells(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask))}


def test_box_mask_is_inclusive_with_truncated_ends():
    mask = box_mask([[1.7, 2.2, 3, 2]], (8, 8))
    assert cells(mask) == {(r, c) for r in range(2, 5) for c in range(1, 5)}


def test_box_mask_clips_to_the_image_and_unions_boxes():
    frame = pd.DataFrame(
        {"image_id": ["a", "a"], "label": ["x", "x"],
         "x": [6.0, 0.0], "y": [6.0, -0.5], "w": [10.0, 0.5], "h": [10.0, 0.5]}
    )
    mask = box_mask(frame, (8, 8))
    assert cells(mask) == {(6, 6), (6, 7), (7, 6), (7, 7), (0, 0)}
    assert not box_mask([[20, 20, 3, 3]], (8, 8)).any()
    assert not box_mask(None, (8, 8)).any()


def test_box_mask_rejects_malformed_boxes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_mask([[1, 2, 3]], (8, 8))
    with pytest.raises(ValueError, match="lacks column"):
        box_mask(pd.DataFrame({"x": [1.0]}), (8, 8))


BOX = [[2, 3, 3, 2]]  # rows 3..5, cols 2..5: 12 pixels of a 10 x 10 image


def test_perfect_map_scores_one_whatever_its_scale():
    mask = box_mask(BOX, (10, 10))
    assert box_auprc(mask.astype(float), BOX) == 1.0
    assert box_auprc(5 * mask + 3.0, BOX, shape=(10, 10)) == 1.0


def test_inverted_map_scores_half_the_prevalence():
    mask = box_mask(BOX, (10, 10))
    inverted = 1.0 - mask
    precision, recall, _ = precision_recall_curve(mask.ravel(), inverted.ravel())
    assert box_auprc(inverted, BOX) == pytest.approx(auc(recall, precision))
    assert box_auprc(inverted, BOX) == pytest.approx(0.12 / 2)




def test_every_metric_is_undefined_without_box_pixels():
    heatmap = np.random.default_rng(0).random((10, 10))
    for boxes in (None, np.zeros((0, 4)), [[30, 30, 2, 2]]):
        assert math.isnan(box_auprc(heatmap, boxes))
        assert math.isnan(miou(heatmap, boxes))
        assert hit(heatmap, boxes) is None
        scores = localization_scores(heatmap, boxes)
        assert scores.pop("degenerate") is False
        assert all(math.isnan(v) for v in scores.values())


def test_map_must_be_in_the_image_frame():
    with pytest.raises(ValueError, match="resize"):
        box_auprc(np.zeros((5, 5)), BOX, shape=(10, 10))
    with pytest.raises(ValueError, match="NaN"):
        hit(np.full((10, 10), np.nan), BOX)


def test_hit_takes_the_first_argmax_in_row_major_order():
    heatmap = np.zeros((6, 6))
    heatmap[1, 4] = heatmap[3, 0] = 1.0
    assert hit(heatmap, [[0, 3, 0.5, 0.5]]) is False  # box holds only (3, 0), the second maximum
    assert hit(heatmap, [[4, 1, 0.5, 0.5]]) is True  # box holds only (1, 4), the first
    assert hit(np.ones((6, 6)), [[0, 0, 0, 0]]) is False  # a flat map points nowhere
    assert hit_rate([True, None, False, float("nan"), True]) == pytest.approx(2 / 3)
    assert math.isnan(hit_rate([None]))


def test_hit_at_a_given_point_uses_the_same_inclusive_mask():
    box = [[2, 1, 1.5, 1.5]]  # cols 2..3, rows 1..2
    assert hit_at((2, 3), box, (6, 6)) is True and hit_at((3, 3), box, (6, 6)) is False
    assert hit_at((0, 0), [[0, 0, 0, 0]], (6, 6)) is True
    assert hit_at((0, 0), [[10, 10, 2, 2]], (6, 6)) is None  # no box pixel in the image
    with pytest.raises(ValueError, match="outside the image"):
        hit_at((6, 0), box, (6, 6))


def test_pointing_game_plays_at_the_maximum_before_clipping():
    """The display policy clips the top 0.5% into a plateau; its first pixel in row-major order
    is not the maximum. The score table's hit (pipeline.score_map with MapResult.peak) is played
    at the maximum, like the app's cross."""
    raw = np.zeros((40, 40), np.float32)
    raw[2, 5:13] = 5.0  # a ridge near the top: inside the clipped plateau, before the maximum
    raw[30, 30] = 9.0  # the maximum, inside the box
    box = pd.DataFrame({"x": [28.0], "y": [28.0], "w": [4.0], "h": [4.0]})
    display = normalize(raw, "positive")
    assert display[2, 5] == display[30, 30] == 1.0  # clipped to one plateau
    assert hit(display, box) is False  # the displayed map's first argmax is the ridge
    assert peak_of(raw, "wildcat", (40, 40), STRETCH) == (30, 30)
    assert score(raw, "wildcat", box, (40, 40), STRETCH)["hit"] == 1.0
    assert peak_of(raw, "wildcat", (80, 80), STRETCH)[0] in (60, 61)  # resized to the image frame like the display


GRADED = np.array(
    [
        [0, 0, 0, 0],
        [0, 1.0, 0.8, 0],
        [0, 0.6, 0.2, 0],
        [0, 0, 0, 0.4],
    ]
)
GRADED_BOX = [[1, 1, 1, 1]]  # rows 1..2, cols 1..2


def test_miou_with_fixed_thresholds_keeps_pixels_strictly_above():
    assert miou(GRADED, GRADED_BOX, threshold=0.5) == pytest.approx(3 / 4)
    assert miou(GRADED, GRADED_BOX, threshold=0.1) == pytest.approx(4 / 5)
    assert miou(GRADED, GRADED_BOX, threshold=0.6) == pytest.approx(2 / 4)


def test_miou_with_otsu():
    """CheXlocalize's segmentation: uint8 Otsu, then polygons of the contours filled."""
    region = np.zeros((6, 6))
    region[1:3, 1:4] = 1.0  # 6 pixels, 4 of them in the box
    assert miou(region, [[1, 1, 1, 1]]) == pytest.approx(4 / 6)
    # GRADED as uint8: 0, 255, 204, 153, 51, 102; Otsu keeps 153..255 (3 pixels, all in the box)
    assert miou(GRADED, GRADED_BOX, "otsu") == pytest.approx(3 / 4)
    assert miou(np.ones((6, 6)), [[1, 1, 1, 1]]) == 0.0
    with pytest.raises(ValueError, match="otsu"):
        miou(GRADED, GRADED_BOX, threshold="mean")


def test_tune_threshold_maximises_mean_iou_over_images_with_boxes():
    peaked = np.full((4, 4), 0.35)
    peaked[0, 0] = 1.0
    peaked[3, 3] = 0.0
    # GRADED: IoU 0.8 / 0.75 / 0.75 at 0.1 / 0.3 / 0.5; peaked: 1/15, 1/15, 1.
    maps, boxes = [GRADED, peaked, np.zeros((4, 4))], [GRADED_BOX, [[0, 0, 0, 0]], None]
    assert tune_threshold(maps, boxes, grid=[0.1, 0.3, 0.5]) == 0.5
    assert tune_threshold(maps[:1], boxes[:1], grid=[0.1, 0.3, 0.5]) == 0.1
    with pytest.raises(ValueError, match="no image"):
        tune_threshold(maps[2:], boxes[2:])


def test_localization_scores_match_the_single_metrics():
    heatmap = np.random.default_rng(1).random((12, 12))
    scores = localization_scores(heatmap, BOX, threshold=0.3)
    assert scores == {
        "auprc": box_auprc(heatmap, BOX),
        "hit": float(hit(heatmap, BOX)),
        "miou": miou(heatmap, BOX, threshold=0.3),
        "degenerate": False,
    }


def test_argmax_point_maps_the_cell_centre_to_the_image():
    class_map = np.array([[0.0, 0.5], [0.9, 0.9]])
    assert argmax_point(class_map) == (1, 0)
    assert argmax_point(class_map, (8, 8)) == (6, 2)


def test_pointwise_map_on_a_hand_case():
    # 3 images, 4 classes, points in a 10 x 10 image frame.
    box = np.array([[2.0, 2.0, 2.0, 2.0]])  # rows 2..4, cols 2..4
    inside, outside = (3, 3), (8, 8)
    points = np.array(
        [
            [inside, outside, inside, outside],
            [outside, inside, outside, inside],
            [inside, inside, outside, outside],
        ]
    )
    probabilities = np.array([[0.6, 0.2, 0.5, 0.9], [0.9, 0.7, 0.5, 0.1], [0.3, 0.4, 0.5, 0.5]])
    boxes = [{0: box, 3: box}, {0: box, 1: box}, {0: box}]
    # class 0: hits [1, 0, 1] ranked by [0.6, 0.9, 0.3] -> 1/2 * 1/2 + 1/2 * 2/3 = 7/12
    # class 1: hits [0, 1, 0] -> 1.0 (image 2 points inside but has no class-1 box)
    # class 2: no box anywhere -> NaN; class 3: boxes but no hit -> 0.0
    aps = pointwise_ap(points, probabilities, boxes)
    assert aps[0] == pytest.approx(7 / 12)
    assert aps[0] == pytest.approx(average_precision_score([1, 0, 1], probabilities[:, 0]))
    assert aps[1] == 1.0 and math.isnan(aps[2]) and aps[3] == 0.0
    assert pointwise_map(points, probabilities, boxes) == pytest.approx((7 / 12 + 1.0 + 0.0) / 3)
    assert math.isnan(pointwise_map(points, probabilities, [{}, {}, {}]))
    with pytest.raises(ValueError, match=r"\(N, C, 2\)"):
        pointwise_ap(points[:, :2], probabilities, boxes)


def test_boxes_by_class_groups_a_boxes_table_per_image():
    table = pd.DataFrame(
        {"image_id": ["a", "a", "b", "a"], "label": ["mass", "nodule", "mass", "mass"],
         "x": [1.0, 2.0, 3.0, 4.0], "y": [0.0] * 4, "w": [1.0] * 4, "h": [1.0] * 4}
    )
    grouped = boxes_by_class(table, ["a", "b", "c"], ["nodule", "mass"])
    assert sorted(grouped[0]) == [0, 1] and grouped[0][1][:, 0].tolist() == [1.0, 4.0]
    assert list(grouped[1]) == [1] and grouped[2] == {}


def test_similarity_of_maps():
    rng = np.random.default_rng(2)
    a = rng.random((16, 16))
    assert ssim(a, 10 * a + 1) == pytest.approx(1.0)
    assert ssim(a, 1 - a) < 0
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a, np.ones((16, 16))))
    with pytest.raises(ValueError, match="one shape"):
        ssim(a, a[:8])


def test_real_rsna_boxes_score_a_box_shaped_map_perfectly(shared_data):
    """RSNA boxes (1024 frame) scaled to the 320 x 320 sample images, scored per image."""
    labels = pd.read_csv(shared_data / "rsna-pneumonia-sample" / "stage_2_train_labels.csv")
    scale = 320 / 1024
    boxes = labels.rename(columns={"width": "w", "height": "h"})[["patientId", "x", "y", "w", "h"]]
    boxes[["x", "y", "w", "h"]] *= scale
    scores = []
    for _, rows in list(boxes.groupby("patientId"))[:20]:
        mask = box_mask(rows, (320, 320))
        assert 0 < mask.sum() < 320 * 320
        box_shaped = mask + 0.001 * np.random.default_rng(0).random((320, 320))
        scores.append(localization_scores(box_shaped, rows, shape=(320, 320)))
        corner = np.zeros((320, 320))
        corner[0, 0] = 1.0
        assert hit(corner, rows) is False
    assert all(s["auprc"] == 1.0 and s["hit"] == 1.0 and s["miou"] == 1.0 for s in scores)
