"""Every builder: declared vs stored image sizes, and one bad file or case skipped, counted and
named (dataset.json 'skipped') while the build finishes; `strict` fails on it instead."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from medattn.data import load_dataset
from medattn.data.build import main
from medattn.data.builders.boxes import uniform_rescale
from medattn.data.builders.cbis_ddsm import build_cbis_ddsm
from medattn.data.builders.coco import build_coco
from medattn.data.builders.mimic_cxr import build_mimic_cxr
from medattn.data.builders.nih import build_nih
from medattn.data.builders.rsna import build_rsna
from medattn.data.builders.sipakmed import build_sipakmed
from medattn.errors import DatasetError, ImageReadError
from tests.test_builders import _cbis_source, _mask, _mimic_source, _sipakmed_source, _write_dicom


def _png(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width), 100, np.uint8))


def _skipped(ds) -> dict[str, str]:
    return {s["item"]: s["reason"] for s in ds.meta["skipped"]}


def test_uniform_rescale_rule():
    declared = [[1024, 1024], [1024, 1024], [40, 60], [2500, 2048], [100, 100]]
    stored = [[512, 512], [1024, 800], [60, 40], [1251, 1025], [np.nan, 100]]
    assert uniform_rescale(np.array(declared), np.array(stored)).tolist() == [True, False, False, True, False]


# ---------------------------------------------------------------- COCO: declared width/height


def _coco(tmp_path, declared, stored, bbox=(4, 6, 8, 10)):
    _png(tmp_path / "a.png", *stored)
    _png(tmp_path / "b.png", 30, 30)
    entry = {"id": 1, "file_name": "a.png"}
    if declared:
        entry["width"], entry["height"] = declared
    coco = {"categories": [{"id": 1, "name": "Lesion"}], "images": [entry, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": list(bbox)}] if bbox else []}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    return tmp_path / "ann.json"


def test_coco_transposed_size_is_skipped_and_named(tmp_path):
    """Declared 40x60, stored 60x40: the box cannot be placed; the image is skipped, never silently."""
    annotations = _coco(tmp_path, (40, 60), (60, 40))
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=annotations))
    assert list(ds.images.index) == ["b"] and ds.boxes.empty
    reason = _skipped(ds)["a"]
    assert "40x60" in reason and "a.png is 60x40" in reason and "ann.json" in reason
    with pytest.raises(DatasetError, match=r"(?s)40x60.*a\.png is 60x40"):
        build_coco(tmp_path, tmp_path / "strict", annotations=annotations, strict=True)


def test_coco_uniform_rescale_moves_the_boxes(tmp_path):
    annotations = _coco(tmp_path, (120, 80), (60, 40), bbox=(20, 10, 40, 20))
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=annotations))
    assert ds.images.loc["a", ["width", "height"]].tolist() == [60, 40] and not ds.meta["skipped"]
    np.testing.assert_allclose(ds.boxes_for("a")[["x", "y", "w", "h"]].to_numpy()[0], [10, 5, 20, 10])


@pytest.mark.parametrize("declared", [None, (60, 40)])
def test_coco_without_or_with_matching_size_keeps_boxes_as_drawn(tmp_path, declared):
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=_coco(tmp_path, declared, (60, 40))))
    np.testing.assert_allclose(ds.boxes_for("a")[["x", "y", "w", "h"]].to_numpy()[0], [4, 6, 8, 10])


def test_coco_size_mismatch_without_boxes_keeps_the_stored_size(tmp_path):
    annotations = _coco(tmp_path, (40, 60), (60, 40), bbox=None)
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=annotations))
    assert ds.images.loc["a", ["width", "height"]].tolist() == [60, 40] and not ds.meta["skipped"]


# ---------------------------------------------------------------- NIH and RSNA: the 1024 frame

NIH_HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"


def _nih(source, sizes):
    rows, boxes = [], []
    for k, (width, height) in enumerate(sizes, start=1):
        name = f"0000000{k}_000.png"
        _png(source / "images" / name, width, height)
        rows.append(f"{name},Mass,0,{k},40,F,PA\n")
        boxes.append(f"{name},Mass,512,256,128,256\n")
    (source / "Data_Entry_2017.csv").write_text(NIH_HEADER + "".join(rows))
    (source / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + "".join(boxes))


def _rsna(source, sizes):
    lines = ["patientId,x,y,width,height,Target\n"]
    for k, (width, height) in enumerate(sizes, start=1):
        _png(source / "images" / f"p{k}.png", width, height)
        lines.append(f"p{k},512,256,128,256,1\n")
    (source / "stage_2_train_labels.csv").write_text("".join(lines))


@pytest.mark.parametrize("kind", ["nih", "rsna"])
def test_1024_frame_rescaled_or_skipped(tmp_path, kind):
    """Stored 1024, 256 (uniform: boxes /4) and 1024x800 (not uniform: skipped, named)."""
    source = tmp_path / kind
    (_nih if kind == "nih" else _rsna)(source, [(1024, 1024), (256, 256), (1024, 800)])
    ds = load_dataset((build_nih if kind == "nih" else build_rsna)(source, tmp_path / "out"))
    ids = sorted(ds.images.index)
    assert len(ids) == 2
    boxes = {i: ds.boxes_for(i)[["x", "y", "w", "h"]].to_numpy()[0].tolist() for i in ids}
    assert boxes[ids[0]] == [512, 256, 128, 256] and boxes[ids[1]] == [128, 64, 32, 64]
    (item, reason), = _skipped(ds).items()
    assert item in ("00000003_000", "p3") and "1024x1024 frame" in reason and "is 1024x800" in reason


# ---------------------------------------------------------------- MIMIC: metadata Rows/Columns


def test_mimic_width_height_are_the_stored_jpgs(tmp_path):
    source = tmp_path / "mimic"
    source.mkdir()
    _mimic_source(source)  # metadata says 16x12 …
    cv2.imwrite(str(source / "files/p10/p10000032/s50414267/d1.jpg"), np.zeros((24, 32), np.uint8))  # … stored 32x24
    cv2.imwrite(str(source / "files/p10/p10000032/s53189527/d3.jpg"), np.zeros((16, 12), np.uint8))  # transposed
    ds = load_dataset(build_mimic_cxr(source, tmp_path / "out"))
    assert ds.images.loc["d1", ["width", "height"]].tolist() == [32, 24]
    assert ds.images.loc["d3", ["width", "height"]].tolist() == [12, 16]  # no boxes: kept, stored size
    assert not ds.meta["skipped"]


# ---------------------------------------------------------------- CBIS-DDSM: masks


def test_cbis_mask_of_another_size_skips_that_case_and_the_build_finishes(tmp_path):
    source = _cbis_source(tmp_path / "cbis")
    mask = source / "Calc-Test_P_00002_RIGHT_MLO_1/1.3/1.4/1-2.dcm"
    _write_dicom(mask, _mask((32, 24), 3, 3, 5, 5))  # the mammogram is 64x48 (rows x columns)
    ds = load_dataset(build_cbis_ddsm(source, tmp_path / "out", seed=1))
    assert len(ds.images) == 3 and "Calc-Test_P_00002_RIGHT_MLO" not in ds.images.index
    reason = _skipped(ds)["Calc-Test_P_00002_RIGHT_MLO"]
    assert "calc_case_description_test_set.csv line 2" in reason and "48x64" in reason and "1-2.dcm is 24x32" in reason
    with pytest.raises(DatasetError, match="Calc-Test_P_00002_RIGHT_MLO"):
        build_cbis_ddsm(source, tmp_path / "strict", strict=True)


def test_cbis_missing_mammogram_and_empty_mask_are_skipped(tmp_path):
    source = _cbis_source(tmp_path / "cbis")
    (source / "Calc-Test_P_00002_RIGHT_MLO/1.1/1.2/1-1.dcm").unlink()
    _write_dicom(source / "Mass-Training_P_00001_LEFT_CC_1/1.3/1.4/000001.dcm", np.zeros((60, 40)))
    ds = load_dataset(build_cbis_ddsm(source, tmp_path / "out", seed=1))
    skipped = _skipped(ds)
    assert set(skipped) == {"Calc-Test_P_00002_RIGHT_MLO", "Mass-Training_P_00001_LEFT_CC"}
    assert "no DICOM" in skipped["Calc-Test_P_00002_RIGHT_MLO"] and "is empty" in skipped["Mass-Training_P_00001_LEFT_CC"]
    assert len(ds.images) == 2


# ---------------------------------------------------------------- one corrupt image, every builder


def _corrupt(path):
    path.write_bytes(b"\x00garbage" * 4)
    return path


def _nih_one_corrupt(tmp):
    _nih(tmp, [(64, 64), (64, 64)])
    return build_nih, _corrupt(tmp / "images" / "00000002_000.png"), "00000002_000", {}


def _rsna_one_corrupt(tmp):
    _rsna(tmp, [(64, 64), (64, 64)])
    return build_rsna, _corrupt(tmp / "images" / "p2.png"), "p2", {}


def _coco_one_corrupt(tmp):
    annotations = _coco(tmp, (60, 40), (60, 40))
    return build_coco, _corrupt(tmp / "b.png"), "b", {"annotations": annotations}


def _cbis_one_corrupt(tmp):
    source = _cbis_source(tmp)
    return build_cbis_ddsm, _corrupt(source / "Mass-Test_P_00003_LEFT_MLO/1.1/1.2/000000.dcm"), "Mass-Test_P_00003_LEFT_MLO", {}


def _sipakmed_one_corrupt(tmp):
    source = _sipakmed_source(tmp)
    return build_sipakmed, _corrupt(source / "im_Parabasal/im_Parabasal/002.bmp"), "Parabasal_002", {}


def _mimic_one_corrupt(tmp):
    tmp.mkdir()
    _mimic_source(tmp)
    return build_mimic_cxr, _corrupt(tmp / "files/p10/p10000764/s57375967/d4.jpg"), "d4", {}


@pytest.mark.parametrize("setup", [_nih_one_corrupt, _rsna_one_corrupt, _coco_one_corrupt, _cbis_one_corrupt,
                                   _sipakmed_one_corrupt, _mimic_one_corrupt], ids=lambda f: f.__name__.split("_")[1])
def test_one_corrupt_image_costs_that_image_only(tmp_path, setup):
    build, bad, image_id, options = setup(tmp_path / "source")
    ds = load_dataset(build(tmp_path / "source", tmp_path / "out", **options))
    assert image_id not in ds.images.index and len(ds.images) >= 1
    assert [s["item"] for s in ds.meta["skipped"]] == [image_id]
    assert ds.meta["skipped"][0]["path"] == str(bad) and bad.name in ds.meta["skipped"][0]["reason"]
    with pytest.raises(ImageReadError, match=bad.name):
        build(tmp_path / "source", tmp_path / "strict", strict=True, **options)


def test_sipakmed_cell_outside_its_image_skips_that_image(tmp_path):
    source = _sipakmed_source(tmp_path / "sipakmed")
    (source / "im_Metaplastic/im_Metaplastic/001_cyt03.dat").write_text("10,5\n90,5\n90,25\n")  # the image is 60 wide
    ds = load_dataset(build_sipakmed(source, tmp_path / "out"))
    assert "Metaplastic_001" not in ds.images.index and len(ds.images) == 9
    assert "001_cyt03.dat" in _skipped(ds)["Metaplastic_001"]


def test_cli_strict_fails_on_the_first_bad_file(tmp_path, capsys):
    annotations = _coco(tmp_path, (40, 60), (60, 40))
    argv = ["coco", "--source", str(tmp_path), "--out", str(tmp_path / "out"), "--annotations", str(annotations)]
    assert main(argv) == 0
    assert main([*argv, "--strict"]) == 2
    assert "a.png is 60x40" in capsys.readouterr().err
