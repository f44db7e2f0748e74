"""EXIF/TIFF orientation 1-8 in every format that carries it (JPEG APP1, PNG eXIf, WebP EXIF,
TIFF's own tag): `read_image` shows what Pillow's `ImageOps.exif_transpose` shows, `image_size`
(what builders write to images.csv) is that image's size, and boxes drawn on the displayed image
land on what they were drawn around, in every builder (they all size images with `image_size`).
Orientation 1 and LZW TIFF (which Pillow decodes and turns as it loads) are controls; every other
row failed while the reader took the stored samples as they are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from medattn.data import load_dataset, read_image
from medattn.data.builders.coco import build_coco
from medattn.data.builders.headers import image_size
from medattn.data.builders.nih import build_nih
from tests.test_builders_sizes import NIH_HEADER

ORIENTATIONS = range(1, 9)
FORMATS = ("jpeg", "png", "webp", "tiff", "tiff-lzw")  # tiff-lzw: decoded by Pillow, not tifffile
# Pillow's exif_transpose turn per tag; its inverse writes the stored pixels of a displayed image
TURN = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90}
INVERSE = {6: 8, 8: 6}


def displayed_image(height: int = 40, width: int = 64, square: tuple[int, int, int] = (8, 30, 12)) -> np.ndarray:
    """An asymmetric grey picture: a ramp along x, a dark band on top, a bright square (y, x, side)."""
    picture = np.tile(np.linspace(40, 160, width), (height, 1))
    picture[:4] = 10
    y, x, side = square
    picture[y:y + side, x:x + side] = 250
    return picture.round().astype(np.uint8)


def write_oriented(path, displayed: np.ndarray, tag: int, fmt: str):
    """The stored pixels whose `tag` turn shows `displayed`, written with the tag in `fmt`."""
    stored = Image.fromarray(displayed)
    if tag != 1:
        stored = stored.transpose(TURN[INVERSE.get(tag, tag)])
    exif = Image.Exif()
    exif[0x0112] = tag
    if fmt == "tiff":
        tifffile.imwrite(path, np.asarray(stored), photometric="minisblack", extratags=[(274, "H", 1, tag, True)])
    elif fmt == "tiff-lzw":
        stored.save(path, "TIFF", compression="tiff_lzw", exif=exif)
    elif fmt == "jpeg":
        stored.save(path, "JPEG", quality=100, exif=exif)
    elif fmt == "webp":
        stored.save(path, "WEBP", lossless=True, exif=exif)
    else:
        stored.save(path, "PNG", exif=exif)  # the eXIf chunk
    return path


TABLE = [(fmt, tag) for fmt in FORMATS for tag in ORIENTATIONS]
SUFFIX = {"jpeg": "jpg", "tiff-lzw": "tif"}


def pillow_displayed(path, fmt: str, tag: int) -> np.ndarray:
    """What Pillow shows, in [0, 1]: exif_transpose of the opened file. Pillow 13 turns TIFFs as
    it loads them (TiffImagePlugin.load_end), and sizes an uncompressed TIFF with Orientation 5-8
    wrongly before that, so an uncompressed TIFF's reference is exif_transpose of its samples."""
    if fmt == "tiff":
        image = Image.fromarray(tifffile.imread(path))
        image.getexif()[0x0112] = tag
        return np.asarray(ImageOps.exif_transpose(image), np.float64) / 255
    with Image.open(path) as image:
        shown = image if fmt == "tiff-lzw" else ImageOps.exif_transpose(image)
        return np.asarray(shown.convert("L"), np.float64) / 255


@pytest.mark.parametrize("fmt,tag", TABLE, ids=[f"{f}-{t}" for f, t in TABLE])
def test_orientation_as_pillow_shows_it(tmp_path, fmt, tag):
    displayed = displayed_image()
    path = write_oriented(tmp_path / f"image.{SUFFIX.get(fmt, fmt)}", displayed, tag, fmt)
    image = read_image(path)
    reference = pillow_displayed(path, fmt, tag)
    assert image.shape == displayed.shape == reference.shape
    assert image_size(path) == (displayed.shape[1], displayed.shape[0])
    np.testing.assert_allclose(image, reference, atol=0.02 if fmt == "jpeg" else 1e-6)
    np.testing.assert_allclose(image, displayed / 255, atol=0.02 if fmt == "jpeg" else 1e-6)


@pytest.mark.parametrize("tag", ORIENTATIONS)
def test_coco_boxes_drawn_on_the_displayed_image_land_on_it(tmp_path, tag):
    displayed = displayed_image()
    write_oriented(tmp_path / "a.png", displayed, tag, "png")
    coco = {"categories": [{"id": 1, "name": "Lesion"}],
            "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 40}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [30, 8, 12, 12]}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=tmp_path / "ann.json"))
    (image_id,) = ds.images.index
    assert (ds.images.at[image_id, "width"], ds.images.at[image_id, "height"]) == (64, 40)
    box = ds.boxes_for(image_id).iloc[0]
    image = ds.read_image(image_id)
    inside = image[int(box.y):int(box.y + box.h), int(box.x):int(box.x + box.w)]
    assert inside.min() > 0.95  # the bright square, wherever the stored pixels had it


def test_nih_boxes_on_an_oriented_png_land_on_the_finding(tmp_path):
    """NIH's boxes are in the 1024 frame of the displayed image: a 256-px PNG stored turned
    (Orientation 6) keeps them on the finding after the /4 rescale."""
    source = tmp_path / "nih"
    (source / "images").mkdir(parents=True)
    displayed = displayed_image(256, 256, square=(64, 128, 32))
    write_oriented(source / "images" / "00000001_000.png", displayed, 6, "png")
    (source / "Data_Entry_2017.csv").write_text(NIH_HEADER + "00000001_000.png,Mass,0,1,40,F,PA\n")
    (source / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                               "00000001_000.png,Mass,512,256,128,128\n")
    ds = load_dataset(build_nih(source, tmp_path / "out"))
    box = ds.boxes_for("00000001_000").iloc[0]
    assert (box.x, box.y, box.w, box.h) == (128, 64, 32, 32)
    image = ds.read_image("00000001_000")
    assert image[64:96, 128:160].min() > 0.95
