"""Scores that cannot mislead: flat maps at chance for every metric, CheXlocalize's segmentation
and modes against a numpy transcription of the published steps, mask ground truth (SIIM RLE,
polygons, mask images), the arun2021 protocol on hand-computed values, and one scoring path
(the README's snippet gives precompute's row)."""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from medattn.data import load_dataset
from medattn.errors import DatasetError
from medattn.explain import explain
from medattn.inference import load_model
from medattn.leaderboard import localization_table
from medattn.metrics import chexlocalize
from medattn.metrics.localization import (
    NO_POINT, argmax_point, box_auprc, hit, hit_at, is_flat, localization_scores, miou, pointwise_ap, tune_threshold,
)
from medattn.metrics.masks import image_mask, polygon_mask, rle_decode, truth_mask
from medattn.metrics.protocols import PROTOCOLS, get_protocol, scale_coordinate, scaled_truth
from medattn.pipeline import ground_truth, peak_of, score
from medattn.jobs.precompute import precompute, targets_for
from medattn.inference import cached_predictions
from medattn.store import Run
from medattn.store import HeatmapCache
from medattn.ui.compare_grid import FLAT_NOTE, caption

from medattn.data.preprocess import Preprocessing

STRETCH = Preprocessing()  # a map stretched back onto the image (a medattn-trained model's placement)

REPO = Path(__file__).resolve().parents[1]
BOX = [[2, 3, 3, 2]]  # cols 2..5, rows 3..5 of a 10×10 image: 12 pixels, p = 0.12


def _mask() -> np.ndarray:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:4, 6:9] = True  # 9 pixels, p = 0.09
    return mask


TRUTHS = {"boxes": (BOX, 0.12), "mask": (_mask(), 0.09)}


# --- flat maps: every metric ---------------------------------------------------------------

@pytest.mark.parametrize("value", [0.0, 7.0, -3.5])
@pytest.mark.parametrize("kind", list(TRUTHS))
def test_flat_map_scores_chance_no_hit_and_empty_segmentation_in_every_metric(value, kind):
    truth, share = TRUTHS[kind]
    flat = np.full((10, 10), value)
    assert is_flat(flat)
    assert box_auprc(flat, truth) == pytest.approx(share)  # chance, not sklearn's (1 + p) / 2
    assert hit(flat, truth) is False
    assert hit_at(None, truth, (10, 10)) is False
    for threshold in ("otsu", 0.3):
        assert miou(flat, truth, threshold) == 0.0  # IoU of an empty segmentation
        assert not chexlocalize.segment(flat, threshold).any()
    assert chexlocalize.image_iou(flat, truth, mode="full") == 0.0
    assert math.isnan(chexlocalize.image_iou(flat, truth, mode="true_positive"))  # left out
    assert localization_scores(flat, truth) == {"auprc": pytest.approx(share), "hit": 0.0, "miou": 0.0,
                                                "degenerate": True}
    assert argmax_point(flat, (40, 40)) == NO_POINT
    # A flat class map never counts as a pointwise hit, whatever its box.
    points = np.array([[argmax_point(flat, (10, 10))], [(4, 3)]])
    assert pointwise_ap(points, np.array([[0.9], [0.2]]), [{0: [[0, 0, 9, 9]]}, {0: BOX}])[0] == pytest.approx(0.5)
    # medattn's tuning counts the flat map as IoU 0 at every threshold
    assert tune_threshold([flat], [truth], grid=[0.1, 0.5]) == 0.1


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("method", ["gradcam", "wildcat", "saliency", "occlusion"])
def test_flat_raw_maps_score_chance_under_every_protocol(protocol, method):
    """Grad-CAM or WILDCAT with no positive evidence: negative everywhere becomes flat under the
    "positive" sign; a zero gradient map is flat under any sign."""
    raw = np.full((10, 10), -2.0 if method in ("gradcam", "wildcat", "occlusion") else 0.0, np.float32)
    if get_protocol(protocol).sign == "absolute" and method != "saliency":
        raw = np.zeros((10, 10), np.float32)
    scores = score(raw, method, BOX, (10, 10), STRETCH, protocol)
    share = scaled_truth(BOX, (10, 10), (10, 10)).mean() if get_protocol(protocol).frame == "input" else 0.12
    assert scores == {"auprc": pytest.approx(share), "hit": 0.0, "miou": 0.0, "degenerate": True}
    assert peak_of(raw, method, (10, 10), STRETCH, protocol) is None  # no ✕ on the panel


def test_flat_panel_says_so_and_leaderboard_counts_flat_maps():
    flat = score(np.zeros((10, 10), np.float32), "gradcam", BOX, (10, 10), STRETCH)
    assert FLAT_NOTE == "flat map: no evidence" and caption(0.7, flat, "Pneumonia").endswith(FLAT_NOTE)
    ranked = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert FLAT_NOTE not in caption(0.7, score(ranked, "gradcam", BOX, (10, 10), STRETCH), "Pneumonia")
    rows = pd.DataFrame({
        "checkpoint": ["a"] * 4 + ["b"] * 2, "model": ["A"] * 4 + ["B"] * 2,
        "method": ["gradcam", "gradcam", "gradcam", "saliency", "gradcam", "gradcam"],
        "auprc": [0.12, 0.5, np.nan, 0.3, 0.2, 0.1], "hit": [0.0, 1, np.nan, 1, 0, 0], "miou": [0.0, .2, np.nan, .1, .1, 0],
        "degenerate": [True, False, True, False, False, True], "n_boxes": [1, 1, 0, 1, 1, 1],
        "target_class": "P", "image_id": list("uvwxyz"), "target": "0",
    })
    table = localization_table(rows, n_resamples=50).set_index(["checkpoint", "method"])
    # the flat map of an image without ground truth is not among the scored pairs
    assert table["flat"].to_dict() == {("a", "gradcam"): 1, ("a", "saliency"): 0, ("b", "gradcam"): 1}
    assert table.loc[("a", "gradcam"), "n"] == 2


# --- CheXlocalize, exactly ------------------------------------------------------------------

def transcribed_segmentation(heatmap: np.ndarray) -> np.ndarray:
    """The published steps written out in numpy/scipy: min-max ×255 in float32 → uint8; Otsu's
    level maximising the between-class variance of the 256-bin histogram (first maximum), kept
    strictly above; regions redrawn filled (holes filled), single-pixel regions (one-point
    contours) dropped."""
    shifted = heatmap.astype(np.float32) - np.float32(heatmap.min())
    levels = (np.float32(255) * (shifted / shifted.max())).astype(np.uint8)
    hist = np.bincount(levels.ravel(), minlength=256).astype(np.float64) / levels.size
    best, level = -1.0, 0
    mu_total = float(np.dot(np.arange(256), hist))
    q1 = mu1_sum = 0.0
    for t in range(256):
        q1 += hist[t]
        mu1_sum += t * hist[t]
        q2 = 1.0 - q1
        if q1 < 1e-12 or q2 < 1e-12:
            continue
        mu1, mu2 = mu1_sum / q1, (mu_total - mu1_sum) / q2
        between = q1 * q2 * (mu1 - mu2) ** 2
        if between > best + 1e-12:
            best, level = between, t
    binary = levels > level
    labels, count = ndimage.label(binary, structure=np.ones((3, 3)))
    sizes = ndimage.sum(binary, labels, range(1, count + 1))
    kept = np.isin(labels, [i + 1 for i, size in enumerate(sizes) if size > 1])
    return ndimage.binary_fill_holes(kept)


def ring() -> tuple[np.ndarray, list[list[float]]]:
    heatmap = np.zeros((9, 9))
    heatmap[1:8, 1:8] = 1.0
    heatmap[3:6, 3:6] = 0.0
    return heatmap, [[3, 3, 2, 2]]  # exactly over the 3×3 hole (inclusive box convention)


def test_ring_case_scores_chexlocalize_published_value():
    heatmap, box = ring()
    assert miou(heatmap, box, "otsu") == pytest.approx(9 / 49)
    assert round(miou(heatmap, box, "otsu"), 4) == 0.1837
    assert chexlocalize.segment(heatmap).sum() == 49  # the hole is filled
    assert np.array_equal(chexlocalize.segment(heatmap), transcribed_segmentation(heatmap))


def test_isolated_pixels_are_dropped_like_one_point_contours():
    heatmap = np.zeros((12, 12))
    heatmap[2:6, 2:6] = 1.0
    heatmap[9, 9] = 1.0  # a one-pixel region: a one-point contour
    segmentation = chexlocalize.segment(heatmap)
    assert segmentation.sum() == 16 and not segmentation[9, 9]


@pytest.mark.parametrize("seed", range(8))
def test_chexlocalize_segmentation_equals_the_transcription_on_random_smooth_maps(seed):
    rng = np.random.default_rng(seed)
    if seed % 2:  # a coarse map upsampled bilinearly, as CheXlocalize does with Grad-CAM
        coarse = rng.random((7, 7)).astype(np.float32)
        heatmap = cv2.resize(coarse, (96, 80), interpolation=cv2.INTER_LINEAR)
    else:
        heatmap = ndimage.gaussian_filter(rng.normal(size=(80, 96)), sigma=4).astype(np.float32)
    truth = np.zeros(heatmap.shape, dtype=bool)
    truth[20:50, 30:70] = True
    expected = transcribed_segmentation(heatmap)
    assert np.array_equal(chexlocalize.segment(heatmap), expected)
    iou = (expected & truth).sum() / (expected | truth).sum()
    assert miou(heatmap, truth, "otsu") == pytest.approx(iou)


def test_tuned_threshold_grid_and_evaluation_modes():
    graded = np.array([[0, 0, 0, 0], [0, 1.0, 0.8, 0], [0, 0.6, 0.2, 0], [0, 0, 0, 0.45]])
    box = [[1, 1, 1, 1]]  # rows 1..2, cols 1..2
    peaked = np.full((4, 4), 0.1)
    peaked[0, 0] = 1.0
    empty_truth = np.zeros((4, 4), dtype=bool)
    assert chexlocalize.THRESHOLD_GRID.tolist() == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    # graded against its box (1, .8, .6, .2): strictly above 0.2..0.4 keeps 1, .8, .6, .45 → 3/5;
    # above 0.5 keeps 1, .8, .6 → 3/4; above 0.6 keeps 1, .8 → 2/4. peaked (truth (0, 0)): 1 always.
    # The third image has no ground truth: left out.
    maps, truths = [graded, peaked, graded], [box, [[0, 0, 0, 0]], empty_truth]
    per_threshold = [chexlocalize.class_miou(maps, truths, t) for t in chexlocalize.THRESHOLD_GRID]
    assert per_threshold[:5] == pytest.approx([0.8, 0.8, 0.8, 0.875, 0.75])
    assert chexlocalize.tune_threshold(maps, truths) == 0.5
    assert chexlocalize.tune_threshold([peaked], [[[0, 0, 0, 0]]]) == 0.2  # ties go to the first
    assert chexlocalize.tune_threshold([graded], [[[1, 1, 0, 0]]]) == 0.8  # only (1, 1) above 0.8
    # True-positive-only (default) leaves out the image without ground truth and any empty
    # prediction; the full mode counts an empty prediction as 0.
    flat = np.zeros((4, 4))
    assert chexlocalize.class_miou([graded, flat], [box, box], 0.5) == pytest.approx(0.75)
    assert chexlocalize.class_miou([graded, flat], [box, box], 0.5, mode="full") == pytest.approx(0.375)
    # Full-dataset mode with a probability cutoff: below it, nothing is predicted (IoU 0).
    assert chexlocalize.class_miou([graded, peaked], [box, [[0, 0, 0, 0]]], 0.5, "full", [0.9, 0.3],
                                   cutoff=0.5) == pytest.approx(0.375)
    assert chexlocalize.tune_cutoff([graded, peaked], [box, [[0, 0, 0, 0]]], [0.9, 0.3], threshold=0.5) == 0.0
    with pytest.raises(ValueError, match="mode"):
        chexlocalize.iou(graded > 0, graded > 0, mode="some")


# --- masks as ground truth ------------------------------------------------------------------

def _siim_rows(shared_data: Path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    with gzip.open(shared_data / "labels" / "siim-pneumothorax-train-rle.csv.gz", "rt") as handle:
        next(handle)
        for line in handle:
            image_id, rle = line.rstrip("\n").split(",", 1)
            rows.setdefault(image_id, []).append(rle.strip())
            if len(rows) > 40:
                break
    return rows


def test_siim_rle_rows_decode_on_the_real_dicom_and_a_real_lesion(shared_data):
    import pydicom

    dicom = next((shared_data / "dicom").glob("siim-pneumothorax-*.dcm"))
    header = pydicom.dcmread(dicom, stop_before_pixels=True)
    shape = (int(header.Rows), int(header.Columns))
    rows = _siim_rows(shared_data)
    uid = dicom.stem.removeprefix("siim-pneumothorax-")
    assert rows[uid] == ["-1"]  # this DICOM's row: no pneumothorax
    assert not rle_decode(rows[uid][0], shape).any()
    lesion = "1.2.276.0.7230010.3.1.4.8323329.13666.1517875247.117800"
    counts = [int(v) for v in rows[lesion][0].split()]
    mask = rle_decode(rows[lesion][0], (1024, 1024))
    assert mask.sum() == sum(counts[1::2])
    first = counts[0]  # column-major: pixel index = col · 1024 + row
    assert mask[first % 1024, first // 1024] and not mask[(first - 1) % 1024, (first - 1) // 1024]
    end = first + counts[1]
    assert mask[(end - 1) % 1024, (end - 1) // 1024] and not mask[end % 1024, end // 1024]


def test_rle_polygon_and_mask_image_decode_by_hand(tmp_path):
    assert rle_decode("3 2 1 4", (4, 3)).astype(int).T.ravel().tolist() == [0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="more than"):
        rle_decode("10 5", (3, 3))
    with pytest.raises(ValueError, match="pairs"):
        rle_decode("1 2 3", (3, 3))
    square = polygon_mask([1, 1, 5, 1, 5, 4, 1, 4], (6, 7))
    assert square.sum() == 12 and square[1:4, 1:5].all()
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), (square * 255).astype(np.uint8))
    assert np.array_equal(image_mask(path, (6, 7)), square)
    with pytest.raises(ValueError, match="m.png"):
        image_mask(path, (7, 7))
    with pytest.raises(ValueError, match="differs"):
        truth_mask(square, (7, 7))


def chexlocalize_create_mask(polygons: list, img_dims: tuple[int, int]) -> np.ndarray:
    """CheXlocalize's definition (create_mask, segmentation/annotation_to_segmentation.py):
    every polygon [[x, y], ...] drawn with PIL ImageDraw, outline=1 and fill=1, on one mode "1"
    image of width img_dims[1] and height img_dims[0]."""
    from PIL import Image, ImageDraw

    canvas = Image.new("1", (img_dims[1], img_dims[0]))
    for polygon in polygons:
        ImageDraw.Draw(canvas).polygon([(x, y) for x, y in polygon], outline=1, fill=1)
    return np.array(canvas, dtype=int)


def test_polygons_drawn_as_each_protocol_draws_them():
    square = [1, 1, 5, 1, 5, 4, 1, 4]
    # CheXlocalize: the outline is in, rows 1..4 × columns 1..5 (20 pixels); COCO: 4 × 3 = 12
    assert polygon_mask(square, (6, 7), "chexlocalize").astype(int).tolist() == [
        [0] * 7, *[[0, 1, 1, 1, 1, 1, 0]] * 4, [0] * 7]
    assert polygon_mask(square, (6, 7), "coco").sum() == 12
    rng = np.random.default_rng(3)
    polygons = [[[float(x), float(y)] for x, y in rng.uniform(2, 60, (int(n), 2))] for n in (3, 5, 7, 9)]
    union = np.zeros((48, 64), bool)
    for polygon in polygons:
        union |= polygon_mask([v for point in polygon for v in point], (48, 64), "chexlocalize")
    expected = chexlocalize_create_mask(polygons, (48, 64))
    assert np.array_equal(union, expected.astype(bool)) and expected.sum() > 100
    coco = np.zeros((48, 64), bool)
    for polygon in polygons:
        coco |= polygon_mask([v for point in polygon for v in point], (48, 64), "coco")
    assert not np.array_equal(coco, union)  # the rule the old code used differs on the boundary
    with pytest.raises(ValueError, match="chexlocalise"):
        polygon_mask(square, (6, 7), "chexlocalise")


def test_chexlocalize_polygons_score_their_own_mask_at_iou_1(tiny_demo, tmp_path):
    """masks.csv polygons of a dataset whose polygon_protocol is chexlocalize, in CheXlocalize's
    [[x, y], ...] form: the ground truth is CheXlocalize's mask, so a map that is that mask
    scores IoU 1 (drawn by pycocotools it scored less)."""
    folder = tmp_path / "chexlocalize"
    shutil.copytree(tiny_demo, folder)
    images = pd.read_csv(folder / "images.csv", dtype={"image_id": str}).set_index("image_id")
    image_id = images.index[0]
    label = json.loads((folder / "dataset.json").read_text())["classes"][0]
    polygon = [[10.4, 12.7], [40.2, 15.1], [33.6, 41.8], [14.9, 30.3]]
    pd.DataFrame([{"image_id": image_id, "label": label, "polygon": json.dumps(polygon)}]).to_csv(
        folder / "masks.csv", index=False)
    boxes = pd.read_csv(folder / "boxes.csv", dtype={"image_id": str})
    boxes[boxes["image_id"] != image_id].to_csv(folder / "boxes.csv", index=False)
    meta = json.loads((folder / "dataset.json").read_text())
    shape = (int(images.at[image_id, "height"]), int(images.at[image_id, "width"]))
    theirs = chexlocalize_create_mask([polygon], shape).astype(bool)
    for protocol, iou in (("chexlocalize", 1.0), ("coco", None)):
        (folder / "dataset.json").write_text(json.dumps({**meta, "polygon_protocol": protocol}))
        truth = ground_truth(load_dataset(folder), image_id, label)
        got = score(theirs.astype(np.float32), "saliency", truth, shape, STRETCH)["miou"]
        if iou is None:
            assert got < 0.97
        else:
            assert np.array_equal(truth, theirs) and got == pytest.approx(iou)
    (folder / "dataset.json").write_text(json.dumps({**meta, "polygon_protocol": "pil"}))
    with pytest.raises(DatasetError, match="polygon_protocol"):
        load_dataset(folder)


def _masked_copy(tiny_demo: Path, tmp_path: Path) -> Path:
    """tiny_demo with its boxes turned into masks.csv rows (one RLE, one polygon, mask images)."""
    folder = tmp_path / "masked"
    shutil.copytree(tiny_demo, folder)
    boxes = pd.read_csv(folder / "boxes.csv", dtype={"image_id": str})
    images = pd.read_csv(folder / "images.csv", dtype={"image_id": str}).set_index("image_id")
    rows = []
    for number, box in enumerate(boxes.itertuples()):
        height, width = int(images.at[box.image_id, "height"]), int(images.at[box.image_id, "width"])
        x0, y0, x1, y1 = int(box.x), int(box.y), int(box.x + box.w), int(box.y + box.h)
        if number % 3 == 0:
            mask = np.zeros((height, width), dtype=bool)
            mask[y0:y1, x0:x1] = True
            flat = np.flatnonzero(mask.T.ravel())
            runs, start, previous = [], flat[0], flat[0]
            for index in list(flat[1:]) + [None]:
                if index is None or index != previous + 1:
                    runs.append((start, previous - start + 1))
                    start = index
                previous = index if index is not None else previous
            encoded, position = [], 0
            for begin, length in runs:
                encoded += [begin - position, length]
                position = begin + length
            rows.append({"image_id": box.image_id, "label": box.label, "rle": " ".join(map(str, encoded))})
        elif number % 3 == 1:
            rows.append({"image_id": box.image_id, "label": box.label, "polygon": f"[{x0}, {y0}, {x1}, {y0}, {x1}, {y1}, {x0}, {y1}]"})
        else:
            name = f"masks/{box.image_id}_{number}.png"
            (folder / "masks").mkdir(exist_ok=True)
            pixels = np.zeros((height, width), np.uint8)
            pixels[y0:y1, x0:x1] = 255
            cv2.imwrite(str(folder / name), pixels)
            rows.append({"image_id": box.image_id, "label": box.label, "mask": name})
    pd.DataFrame(rows).to_csv(folder / "masks.csv", index=False)
    boxes.iloc[0:0].to_csv(folder / "boxes.csv", index=False)
    return folder


def test_masks_csv_is_validated_naming_file_and_line(tiny_demo, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_demo, folder)
    image_id = pd.read_csv(folder / "images.csv", dtype={"image_id": str})["image_id"][0]
    pd.DataFrame([{"image_id": image_id, "label": "nope", "rle": "1 2"},
                  {"image_id": "ghost", "label": "nope", "rle": "1 2", "polygon": "[1, 2]"}]).to_csv(folder / "masks.csv", index=False)
    with pytest.raises(DatasetError) as error:
        load_dataset(folder)
    text = str(error.value)
    assert "masks.csv line 2" in text and "masks.csv line 3" in text and "image_id is not in images.csv" in text
    assert "exactly one of rle, polygon, mask" in text


# --- one scoring path; masks end to end -----------------------------------------------------

def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- scoring-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its scoring snippet"
    return match.group(1)


def test_readme_snippet_gives_precomputes_row_on_mask_ground_truth(tiny_demo, tiny_checkpoint, tmp_path):
    folder = _masked_copy(tiny_demo, tmp_path)
    dataset = load_dataset(folder)
    with_masks = sorted(set(dataset.masks["image_id"]) & set(dataset.split("test").index))[:2]
    frame = precompute(dataset, [tiny_checkpoint], ["saliency", "gradcam"], image_ids=with_masks,
                       run=Run(tmp_path / "run"), cache=HeatmapCache(tmp_path / "cache"), device="cpu")
    scored = frame[frame["auprc"].notna()]
    assert len(scored) and (scored["n_boxes"] == 0).all()  # scored against masks, not boxes
    assert {"degenerate", "protocol"} <= set(frame.columns)
    row = scored[scored["method"] == "saliency"].iloc[0]
    namespace = {"DATASET": folder, "CHECKPOINT": tiny_checkpoint, "IMAGE_ID": row["image_id"], "TARGET": int(row["target"])}
    exec(readme_snippet(), namespace)
    got = namespace["scores"]
    # precompute explains the batch's images together (one forward pass per image, another batch
    # size than the snippet's single image): the same map to float32 rounding
    np.testing.assert_allclose([got["auprc"], got["hit"], got["miou"]], [row["auprc"], row["hit"], row["miou"]], rtol=1e-4)
    assert got["degenerate"] == row["degenerate"]
    truth = ground_truth(dataset, row["image_id"], row["target_class"])
    assert truth.dtype == bool and truth.any()


# --- Arun et al. 2021 -----------------------------------------------------------------------

def hand_auprc(values: np.ndarray, truth: np.ndarray) -> float:
    """sklearn's precision_recall_curve + auc written out: one point per distinct score, from
    the highest down to the first that reaches full recall, then (recall 0, precision 1);
    trapezoids over recall."""
    points = [(0.0, 1.0)]
    total = truth.sum()
    for level in np.unique(values)[::-1]:
        chosen = values >= level
        tp = (chosen & truth).sum()
        points.append((tp / total, tp / chosen.sum()))
        if tp == total:
            break
    points.sort(key=lambda p: p[0])
    return float(sum((r1 - r0) * (p0 + p1) / 2 for (r0, p0), (r1, p1) in zip(points, points[1:])))


def test_arun2021_scales_boxes_as_published():
    assert scale_coordinate(512, 320, 1024) == 160  # int(320 · 512 / 1023) = int(160.16)
    assert scale_coordinate(1023, 320, 1024) == 320
    assert scale_coordinate(100.9, 320, 1024) == 31  # int(c) first: int(320 · 100 / 1023)
    mask = scaled_truth([[2, 2, 3, 3]], (8, 8), (4, 4))  # corners 2 and 5 → int(4·2/7)=1, int(4·5/7)=2
    assert mask.astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def test_arun2021_scores_hand_built_map_to_1e6():
    raw = np.arange(16, dtype=np.float32).reshape(4, 4)  # model-input frame 4×4, image 8×8
    box = [[2, 2, 3, 3]]  # → rows 1..2, cols 1..2 of the input frame: values 5, 6, 9, 10
    scores = score(raw, "saliency", box, (8, 8), STRETCH, "arun2021")
    # 99th percentile of 0..15 (linear): 14.85; clipped, min-max → v / 14.85
    norm = np.minimum(raw, 14.85) / 14.85
    truth = np.zeros((4, 4), dtype=bool)
    truth[1:3, 1:3] = True
    # ranked: 15,14,13,12,11 miss; 10 hit (P 1/6, R .25); 9 hit (2/7, .5); 8, 7 miss; 6 hit (3/10, .75); 5 hit (4/11, 1)
    expected = 0.125 * (4 / 11 + 3 / 10 + 3 / 10 + 2 / 9 + 2 / 7 + 1 / 6 + 1 / 6)
    assert hand_auprc(norm, truth) == pytest.approx(expected, abs=1e-12)
    assert scores["auprc"] == pytest.approx(expected, abs=1e-6)
    assert scores["hit"] == 0.0  # the maximum (15) at (3, 3) lies outside the box
    assert scores["degenerate"] is False


def test_arun2021_explains_the_predicted_class_with_their_settings():
    protocol = get_protocol("arun2021")
    assert targets_for(np.array([1, 0]), np.array([0.3, 0.7]), protocol="arun2021") == [1]
    assert protocol.params("integrated_gradients") == {"channels": "sum_abs", "steps": 10}
    assert protocol.params("smoothgrad", {"n_samples": 5}) == {"n_samples": 5, "channels": "sum_abs", "squared": True}
    assert protocol.clip_percentile == 99.0 and protocol.sign == "absolute" and protocol.frame == "input"
    with pytest.raises(ValueError, match="arun2021"):
        get_protocol("arun")


def test_pointwise_ap_takes_masks_where_there_are_no_boxes():
    mask = _mask()  # rows 1..3, cols 6..8
    points = np.array([[(2, 7)], [(5, 5)], [NO_POINT]])
    probabilities = np.array([[0.9], [0.8], [0.7]])
    truths = [{0: mask}, {0: mask}, {0: mask}]
    assert pointwise_ap(points, probabilities, truths)[0] == pytest.approx(1.0)  # the one hit ranks first
    assert math.isnan(pointwise_ap(points, probabilities, [{0: np.zeros((10, 10), bool)}] * 3)[0])


def test_precompute_under_arun2021_maps_the_predicted_class_into_its_own_run(tiny_demo, tiny_checkpoint, tmp_path):
    dataset = load_dataset(tiny_demo)
    ids = [i for i in dataset.split("test").index if len(dataset.boxes_for(i))][:2]
    assert Run.for_dataset(dataset, tmp_path, protocol="arun2021").root.name.endswith("-arun2021")
    frame = precompute(dataset, [tiny_checkpoint], ["saliency"], image_ids=ids, run=Run(tmp_path / "run"),
                       cache=HeatmapCache(tmp_path / "cache"), device="cpu", protocol="arun2021")
    assert len(frame) == len(ids) and (frame["protocol"] == "arun2021").all()
    assert '"channels":"sum_abs"' in frame["params"].iloc[0]
    loaded = load_model(tiny_checkpoint, "cpu")
    for row in frame.itertuples():
        image = dataset.read_image(row.image_id)
        probabilities = cached_predictions(loaded, dataset, [row.image_id], Run(tmp_path / "run").prediction_store).iloc[0].to_numpy()
        assert int(row.target) == int(np.argmax(probabilities))
        raw = explain(loaded.model, loaded.to_input(image), int(row.target), "saliency", device="cpu", channels="sum_abs")
        expected = score(raw, "saliency", dataset.boxes_for(row.image_id), image.shape, STRETCH, "arun2021")
        np.testing.assert_allclose([row.auprc, row.hit, row.miou], [expected["auprc"], expected["hit"], expected["miou"]],
                                   rtol=1e-6)
