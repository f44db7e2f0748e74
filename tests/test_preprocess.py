"""Preprocessing as checkpoint metadata: torchvision's Resize → CenterCrop → ToTensor →
Normalize reproduced on the real NIH images, the intensity scales, maps placed back into the
stored image's frame, and a CheXNet-style import explained and scored on the NIH sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

from medattn.data.io import read_image
from medattn.data.preprocess import Preprocessing
from medattn.data.preprocess import to_input
from medattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CHEXNET = Preprocessing(resize="shorter_side_center_crop", size=256, crop=224, interpolation="bilinear")


def test_chexnet_preprocessing_equals_torchvision_on_the_nih_images(shared_data):
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    files = sorted((shared_data / "nih-cxr14-sample" / "images").glob("*.png"))
    assert len(files) == 150
    # every 10th image and the 4 RGBA PNGs among NIH's greyscale ones (all 150 take ~10 s)
    files = [f for i, f in enumerate(files) if i % 10 == 0 or Image.open(f).mode != "L"]
    worst = 0.0
    for file in files:
        ours = CHEXNET.to_input(read_image(file))
        theirs = reference(Image.open(file).convert("RGB"))[None]
        worst = max(worst, float((ours - theirs).abs().max()))
    assert worst <= 1e-3


@pytest.mark.parametrize("shape", [(1024, 1024), (300, 420), (421, 300), (257, 256), (2048, 1700)])
def test_crop_geometry_follows_torchvision(shape):
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    reference = T.Compose([T.Resize(256), T.CenterCrop(224)])(Image.fromarray(pixels))
    ours = CHEXNET.geometry(pixels.astype(np.float32) / 255)
    np.testing.assert_allclose(ours, np.asarray(reference, np.float32) / 255, atol=1e-6)


@pytest.mark.parametrize("shape,expected", [
    ((1024, 1024), (64, 64, 960, 960)),       # NIH: the outer 64 px on each side are never seen
    ((1024, 2048), (64, 576, 960, 1472)),     # landscape: the crop is the centre of the long side
    ((512, 256), (144, 16, 368, 240)),
])
def test_maps_on_the_crop_go_back_to_its_footprint_with_no_evidence_outside(shape, expected):
    top, left, bottom, right = expected
    assert CHEXNET.footprint(shape).pixels(shape) == expected
    placed = CHEXNET.place(np.ones((224, 224), np.float32), shape)
    assert placed.shape == shape
    assert placed[top:bottom, left:right].min() == 1 and placed.sum() == (bottom - top) * (right - left)
    support = CHEXNET.support(shape)
    assert support.sum() == (bottom - top) * (right - left) and support[top, left] and not support[0, 0]


def test_a_peak_on_the_crop_lands_on_the_same_anatomy():
    image = np.zeros((1024, 1024), np.float32)
    image[500:540, 700:740] = 1.0  # a bright spot
    square = CHEXNET.geometry(image)
    placed = CHEXNET.place(square, image.shape)
    row, col = np.unravel_index(np.argmax(placed), placed.shape)
    assert 500 <= row < 540 and 700 <= col < 740


def test_stretch_sees_everything_and_keeps_the_old_default():
    prep = Preprocessing.from_meta({"input_size": 64, "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}})
    assert prep == Preprocessing(size=64) and prep.support((100, 80)) is None
    image = np.random.default_rng(0).random((100, 80), dtype=np.float32)
    assert torch.equal(prep.to_input(image), to_input(image, 64))
    assert prep.place(np.ones((64, 64), np.float32), (100, 80)).shape == (100, 80)


@pytest.mark.parametrize("prep,low,high,channels", [
    (Preprocessing(size=8, channels=1, intensity="xrv"), -1024.0, 1024.0, 1),
    (Preprocessing(size=8, intensity="unit"), 0.0, 1.0, 3),
    (Preprocessing(size=8, channels=1, intensity="meanstd", mean=(0.5,), std=(0.25,)), -2.0, 2.0, 1),
    (Preprocessing(size=8), (0 - 0.485) / 0.229, (1 - 0.485) / 0.229, 3),
])
def test_intensity_scales(prep, low, high, channels):
    x = prep.to_input(np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1)))
    assert x.shape == (1, channels, 8, 8)
    assert float(x[0, 0].min()) == pytest.approx(low, abs=1e-5) and float(x[0, 0].max()) == pytest.approx(high, abs=1e-5)


@pytest.mark.parametrize("fields,named", [
    ({"resize": "crop"}, "resize"), ({"interpolation": "nearest"}, "interpolation"), ({"channels": 2}, "channels"),
    ({"intensity": "zscore"}, "intensity"), ({"resize": "shorter_side_center_crop", "size": 200, "crop": 224}, "crop"),
    ({"intensity": "meanstd", "mean": (0.5, 0.5), "std": (0.2, 0.2)}, "mean"), ({"size": 0}, "size"),
])
def test_bad_preprocessing_names_the_field(fields, named):
    with pytest.raises(ValueError, match=f"preprocessing: {named} must be"):
        Preprocessing(**fields)


def test_the_same_weights_fed_differently_are_another_model_for_the_caches(tmp_path):
    from medattn.inference import load_model
    from medattn.models import build, save_checkpoint

    model = build("mobilenet_v2", "linear", 2)
    save_checkpoint(model, tmp_path / "plain", input_size=224)
    save_checkpoint(model, tmp_path / "same", input_size=224, preprocessing=Preprocessing(size=224).to_meta())
    save_checkpoint(model, tmp_path / "crop", input_size=224, preprocessing=CHEXNET.to_meta())
    hashes = [load_model(tmp_path / name, "cpu").hash for name in ("plain", "same", "crop")]
    assert hashes[0] == hashes[1] != hashes[2] and hashes[2].startswith(hashes[0])


@pytest.fixture(scope="module")
def nih(shared_data, tmp_path_factory):
    from medattn.data import load_dataset
    from medattn.data.build import main

    out = tmp_path_factory.mktemp("nih") / "nih"
    assert main(["nih", "--source", str(shared_data / "nih-cxr14-sample"), "--out", str(out)]) == 0
    return load_dataset(out)


def test_chexnet_import_is_explained_and_scored_in_the_stored_frame(nih, tmp_path):
    """A CheXNet-layout DenseNet-121 (random weights, NIH's 14 classes, Resize 256 + CenterCrop
    224, PIL bilinear) imported, then explained and precomputed on the boxed NIH test image."""
    from medattn.inference import load_model
    from medattn.models.importer import main
    from medattn.pipeline import compute_map
    from medattn.jobs.precompute import precompute
    from medattn.store import Run
    from medattn.store import HeatmapCache

    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=len(nih.classes))
    torch.nn.init.constant_(net.classifier.bias, -8.0)  # predicts nothing: targets are the labels
    state = {f"module.densenet121.{k}".replace("classifier.", "classifier.0."): v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "model.pth.tar")
    assert main([str(tmp_path / "model.pth.tar"), "--arch", "densenet121", "--classes", *nih.classes,
                 "--task", "multilabel", "--input-size", "224", "--resize", "shorter_side_center_crop",
                 "--resize-size", "256", "--interpolation", "bilinear", "--out", str(tmp_path / "chexnet")]) == 0
    loaded = load_model(tmp_path / "chexnet", "cpu", nih)
    boxed = sorted(set(nih.boxes["image_id"]) & set(nih.split("test").index))
    assert boxed == ["00022084_000"]
    image_id = boxed[0]
    image = nih.read_image(image_id)
    assert torch.equal(loaded.to_input(image).cpu(), CHEXNET.to_input(image))
    cache = HeatmapCache(tmp_path / "heatmaps")
    target = nih.classes.index("Pneumonia")
    result = compute_map(loaded, nih, image_id, "gradcam", target, cache=cache, image=image)
    assert result.raw.shape == (224, 224) and result.display.shape == (1024, 1024)
    assert result.support is not None and not result.support[:64].any() and result.support[64:960, 64:960].all()
    assert result.display[~result.support].max() == 0 and 64 <= result.peak[0] < 960 and 64 <= result.peak[1] < 960
    frame = precompute(nih, [tmp_path / "chexnet"], ["gradcam", "saliency"], image_ids=[image_id],
                       run=Run(tmp_path / "run"), cache=cache, device="cpu", progress=lambda *_: None)
    assert set(frame["target_class"]) == {"Pneumonia", "Edema"}  # its positive labels
    scored = frame[(frame["target_class"] == "Pneumonia") & (frame["method"] == "gradcam")].iloc[0]
    assert scored["n_boxes"] == 1 and bool(scored["cached"])  # the map computed above, from the cache
    assert np.isfinite(scored[["auprc", "hit", "miou"]].astype(float)).all()
    # the README's snippet gives precompute's number on this cropping model (it stretched the map
    # back before the placement was part of what `score` is given: issue 17)
    import re
    from pathlib import Path

    from medattn.pipeline import ground_truth, score

    snippet = re.search(r"<!-- scoring-snippet -->\s*```python\n(.*?)```",
                        (Path(__file__).resolve().parents[1] / "README.md").read_text(), re.S).group(1)
    row = frame[(frame["target_class"] == "Pneumonia") & (frame["method"] == "saliency")].iloc[0]
    namespace = {"DATASET": nih.root, "CHECKPOINT": tmp_path / "chexnet", "IMAGE_ID": image_id, "TARGET": target}
    exec(snippet, namespace)
    np.testing.assert_allclose([namespace["scores"][k] for k in ("auprc", "hit", "miou")],
                               row[["auprc", "hit", "miou"]].astype(float), rtol=1e-6)
    stretched = score(namespace["raw"], "saliency", ground_truth(nih, image_id, "Pneumonia"), image.shape,
                      Preprocessing(size=224))
    assert stretched["auprc"] != pytest.approx(row["auprc"], abs=1e-3)  # the placement matters here
    with pytest.raises(TypeError, match="needs the model's Preprocessing"):
        score(namespace["raw"], "saliency", ground_truth(nih, image_id, "Pneumonia"), image.shape, loaded.preprocessing.place)


XRV = Preprocessing(resize="center_crop_resize", size=224, interpolation="xrv", channels=1, intensity="xrv")


def test_xrv_preprocessing_equals_torchxrayvisions_own_pipeline_on_nih_images(shared_data):
    """The README's xrv import stretched non-square images while xrv centre-crops, 22 % of the
    range apart on average (issue 17); the xrv default is now XRayCenterCrop → XRayResizer."""
    import torchxrayvision as xrv

    files = sorted((shared_data / "nih-cxr14-sample" / "images").glob("*.png"))[:60:20]
    pipeline = T.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])
    stretched = Preprocessing(size=224, channels=1, intensity="xrv")
    worst, stretch_gap = 0.0, []
    for file in files:
        pixels = np.asarray(Image.open(file).convert("L"))
        for rows, cols in ((slice(None), slice(90, 890)), (slice(40, 1000), slice(None))):  # portrait and landscape
            crop = np.ascontiguousarray(pixels[rows, cols])
            theirs = torch.from_numpy(pipeline(xrv.datasets.normalize(crop, 255)[None]))[None]
            ours = XRV.to_input(crop.astype(np.float32) / 255)
            worst = max(worst, float((ours - theirs).abs().max()) / 2048)
            stretch_gap.append(float((stretched.to_input(crop.astype(np.float32) / 255) - theirs).abs().mean()) / 2048)
    assert worst <= 1e-4  # of xrv's [-1024, 1024] range
    assert np.mean(stretch_gap) > 0.02  # what the README's old command fed the model instead


def test_xrv_geometry_places_maps_on_the_centre_square():
    assert XRV.footprint((1024, 800)).pixels((1024, 800)) == (112, 0, 912, 800)
    placed = XRV.place(np.ones((224, 224), np.float32), (1024, 800))
    assert placed[112:912].min() == 1 and placed.sum() == 800 * 800
    assert XRV.support((600, 600)) is None
