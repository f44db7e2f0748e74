"""Builders on a messy download: a bad box row costs its image only (skipped, named with its
row), a file that cannot be read or a malformed entry is a DatasetError naming the file, entry
and field, never a bare traceback. Sources are made here, tiny."""

from __future__ import annotations

import json
import re
import struct
import zlib

import cv2
import numpy as np
import pandas as pd
import pytest

from medattn.data import load_dataset
from medattn.data.builders.cbis_ddsm import build_cbis_ddsm
from medattn.data.builders.coco import build_coco
from medattn.data.builders.mimic_cxr import build_mimic_cxr
from medattn.data.builders.nih import build_nih
from medattn.data.builders.rsna import build_rsna
from medattn.errors import DatasetError
from tests.test_builders import _cbis_source, _mimic_source

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")
GOOD_BOX = ("100", "100", "200", "200")


def _png(path, size=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size), 100, np.uint8))


def _nih(source, box, extra_rows=""):
    for i in range(4):
        _png(source / "images" / f"0000000{i}_000.png")
    rows = "".join(f"0000000{i}_000.png,Nodule,0,{i},058Y,M,PA,1024,1024,0.14,0.14\n" for i in range(4))
    (source / "Data_Entry_2017.csv").write_text(NIH_HEADER + rows + extra_rows)
    boxes = [("00000000_000.png", *GOOD_BOX), ("00000001_000.png", *box)]
    (source / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                               + "".join(f"{f},Nodule,{','.join(b)}\n" for f, *b in boxes))
    return build_nih, "BBox_List_2017.csv line 3", "00000001_000"


def _rsna(source, box, extra_rows=""):
    for i in range(4):
        _png(source / "images" / f"p{i}.png")
    rows = [f"p0,{','.join(GOOD_BOX)},1\n", f"p1,{','.join(box)},1\n", "p2,,,,,0\n", "p3,,,,,0\n"]
    (source / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\n" + "".join(rows) + extra_rows)
    return build_rsna, "stage_2_train_labels.csv line 3", "p1"


def _coco_json(source, data):
    for name in ("a", "b", "c"):
        _png(source / f"{name}.png")
    (source / "ann.json").write_text(data if isinstance(data, str) else json.dumps(data))


def _coco(source, box):
    values = ",".join("null" if v == "" else ('"abc"' if v == "abc" else v) for v in box)
    images = ",".join(f'{{"id": {i}, "file_name": "{n}.png", "width": 64, "height": 64}}' for i, n in enumerate("abc", 1))
    _coco_json(source, f'{{"categories": [{{"id": 1, "name": "TB"}}], "images": [{images}], "annotations": ['
                       f'{{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}},'
                       f'{{"id": 2, "image_id": 2, "category_id": 1, "bbox": [{values}]}}]}}')

    def build(src, out, **kw):
        return build_coco(src, out, annotations=src / "ann.json", **kw)

    return build, "ann.json annotations[1] (id=2)", "b"


BUILDERS = {"nih": _nih, "rsna": _rsna, "coco": _coco}
# x, y, w, h as a source writes them ('' is an empty CSV cell / a json null)
BAD_BOXES = {"nan-x": ("nan", "10", "50", "50"), "empty-x": ("", "10", "50", "50"), "text-x": ("abc", "10", "50", "50"),
             "inf-w": ("10", "10", "inf", "50"), "negative-w": ("10", "10", "-50", "50")}
CASES = [(b, c) for b in BUILDERS for c in BAD_BOXES if not (b == "coco" and c in ("nan-x", "inf-w"))]


@pytest.mark.parametrize("builder,case", CASES, ids=[f"{b}-{c}" for b, c in CASES])
def test_bad_box_costs_its_image_only(tmp_path, builder, case):
    build, row, image_id = BUILDERS[builder](tmp_path / "src", BAD_BOXES[case])
    ds = load_dataset(build(tmp_path / "src", tmp_path / "out"))
    assert image_id not in ds.images.index and len(ds.images) >= 2
    assert len(ds.boxes) == 1 and np.isfinite(ds.boxes[["x", "y", "w", "h"]].to_numpy(float)).all()
    skipped = {s["item"]: s["reason"] for s in ds.meta["skipped"]}
    assert list(skipped) == [image_id] and row in skipped[image_id]
    if case == "text-x":  # --strict fails on it, naming the row
        with pytest.raises(DatasetError, match=re.escape(row)):
            build(tmp_path / "src", tmp_path / "strict", strict=True)


def test_coco_nan_bbox_costs_its_image_only(tmp_path):
    _coco_json(tmp_path, '{"categories": [{"id": 1, "name": "TB"}], "images": [{"id": 1, "file_name": "a.png"}, '
                         '{"id": 2, "file_name": "b.png"}, {"id": 3, "file_name": "c.png"}], "annotations": [{"id": 7, "image_id": 1, "category_id": 1, '
                         '"bbox": [NaN, 1, 10, 10]}, {"id": 8, "image_id": 2, "category_id": 1, "bbox": [1, 1, Infinity, 10]}, '
                         '{"id": 9, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}]}')
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=tmp_path / "ann.json"))
    assert ds.meta["skipped"] and {s["item"] for s in ds.meta["skipped"]} == {"a", "b"}
    assert "annotations[0] (id=7)" in ds.meta["skipped"][0]["reason"]


def _bomb(path):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_header_costs_its_image_only(tmp_path):
    _nih(tmp_path, GOOD_BOX)
    _bomb(tmp_path / "images" / "00000003_000.png")
    ds = load_dataset(build_nih(tmp_path, tmp_path / "out"))
    assert "00000003_000" not in ds.images.index and len(ds.images) == 3
    assert "decompression bomb" in ds.meta["skipped"][0]["reason"]


# ------------------------------------------------------------ files and entries that stop the build, named

def _latin1_entry(source):
    _nih(source, GOOD_BOX)
    path = source / "Data_Entry_2017.csv"
    path.write_bytes(path.read_text().replace("058Y", "058\u00dd").encode("latin-1"))
    return build_nih, r"Data_Entry_2017\.csv: cannot be read as CSV"


def _bad_list(source):
    _nih(source, GOOD_BOX)
    (source / "test_list.txt").write_bytes(b"\xff\xfe\x00bad")
    return build_nih, r"test_list\.txt: cannot be read"


def _nih_duplicate(source):
    _nih(source, GOOD_BOX, extra_rows="00000001_000.png,Mass,0,1,058Y,M,PA,1024,1024,0.14,0.14\n")
    return build_nih, r"Data_Entry_2017\.csv lines 3, 6: file 00000001_000\.png is listed more than once"


def _rsna_ragged(source):
    _rsna(source, GOOD_BOX, extra_rows="p3,1,1,1,1,1,extra\n")
    return build_rsna, r"stage_2_train_labels\.csv: cannot be read as CSV.*line 6"


def _rsna_target(source):
    _rsna(source, GOOD_BOX, extra_rows="p3,,,,,yes\n")
    return build_rsna, r"stage_2_train_labels\.csv line 6: field Target is 'yes', not 0 or 1"


def _rewrite(path, change):
    frame = pd.read_csv(path, dtype=str)
    change(frame).to_csv(path, index=False)


def _mimic(change_file, change, message):
    def make(source):
        source.mkdir(parents=True)
        _mimic_source(source)
        _rewrite(source / change_file, change)
        return (lambda src, out: build_mimic_cxr(src, out, classes=["Pleural Effusion", "Edema"])), message
    return make


def _mimic_truncated_gz(source):
    source.mkdir(parents=True)
    _mimic_source(source)
    (source / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(b"\x1f\x8bjunk")
    return build_mimic_cxr, r"mimic-cxr-2\.0\.0-split\.csv\.gz: cannot be read as CSV"


def _cbis_empty_patient(source):
    source.mkdir(parents=True)
    _cbis_source(source)
    _rewrite(source / "mass_case_description_train_set.csv", lambda d: d.assign(patient_id=""))
    return build_cbis_ddsm, r"mass_case_description_train_set\.csv line 2: field patient_id is empty"


CHEXPERT, METADATA = "mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.0.0-metadata.csv.gz"
MIMIC_FAULTS = {
    "mimic-label-text": _mimic(CHEXPERT, lambda d: d.assign(Edema=d["Edema"].fillna("maybe")),
                               r"chexpert\.csv\.gz: label values must be 1, 0, -1 or blank; found 'maybe'"),
    "mimic-image-twice": _mimic(METADATA, lambda d: pd.concat([d, d.iloc[[0]]]),
                                r"metadata\.csv\.gz lines 2, 8: dicom_id d1 is listed more than once"),
    "mimic-study-twice": _mimic(CHEXPERT, lambda d: pd.concat([d, d.iloc[[0]]]),
                                r"chexpert\.csv\.gz lines 2, 6: subject_id/study_id 10000032/50414267"),
    "mimic-truncated-gz": _mimic_truncated_gz,
    "cbis-empty-patient": _cbis_empty_patient,
}
CATEGORY = [{"id": 1, "name": "TB"}]
IMAGES = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}]
COCO_FAULTS = {
    "category-without-name": ({"categories": [{"id": 1}], "images": IMAGES}, r"categories\[0\]: field 'name'"),
    "category-without-id": ({"categories": [{"name": "TB"}], "images": IMAGES}, r"categories\[0\]: field 'id'"),
    "category-id-twice": ({"categories": CATEGORY + [{"id": 1, "name": "X"}], "images": IMAGES}, r"categories\[1\]: id 1"),
    "category-name-twice": ({"categories": CATEGORY + [{"id": 2, "name": "TB"}], "images": IMAGES}, r"categories\[1\]: name 'TB'"),
    "no-categories": ({"categories": [], "images": IMAGES}, r"lists no categories"),
    "image-without-file": ({"categories": CATEGORY, "images": IMAGES + [{"id": 3}]}, r"images\[2\]: field 'file_name'"),
    "file-outside-source": ({"categories": CATEGORY, "images": IMAGES + [{"id": 3, "file_name": "../../etc/x.png"}]},
                            r"images\[2\]: field 'file_name' '\.\./\.\./etc/x\.png' leaves the image folder"),
    "file-absolute": ({"categories": CATEGORY, "images": IMAGES + [{"id": 3, "file_name": "/etc/x.png"}]},
                      r"images\[2\]: field 'file_name' '/etc/x\.png' leaves"),
    "image-id-twice": ({"categories": CATEGORY, "images": IMAGES + [{"id": 1, "file_name": "c.png"}]}, r"images\[2\]: id 1"),
    "width-text": ({"categories": CATEGORY, "images": [dict(IMAGES[0], width="sixty")]}, r"images\[0\]: field 'width' is 'sixty'"),
    "images-not-list": ({"categories": CATEGORY, "images": {"a": 1}}, r"'images' must be a list"),
    "annotation-not-object": ({"categories": CATEGORY, "images": IMAGES, "annotations": ["oops"]}, r"annotations\[0\]: must be an object"),
    "unknown-category": ({"categories": CATEGORY, "images": IMAGES, "annotations": [
        {"id": 4, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]}]}, r"annotations\[0\] \(id=4\): category_id 9"),
    "unknown-image": ({"categories": CATEGORY, "images": IMAGES, "annotations": [
        {"id": 4, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]}]}, r"annotations\[0\] \(id=4\): image_id 99"),
}


def _coco_fault(name):
    def make(source):
        _coco_json(source, COCO_FAULTS[name][0])
        return (lambda src, out: build_coco(src, out, annotations=src / "ann.json")), r"ann\.json:? " + COCO_FAULTS[name][1]
    return make


FAULTS = {"nih-latin1-csv": _latin1_entry, "nih-binary-test-list": _bad_list, "nih-duplicate-image": _nih_duplicate,
          "rsna-ragged-row": _rsna_ragged, "rsna-target-text": _rsna_target,
          **MIMIC_FAULTS, **{f"coco-{name}": _coco_fault(name) for name in COCO_FAULTS}}


@pytest.mark.parametrize("name", FAULTS)
def test_malformed_source_names_file_entry_and_field(tmp_path, name):
    build, message = FAULTS[name](tmp_path / "src")
    with pytest.raises(DatasetError, match=f"(?s){message}"):
        build(tmp_path / "src", tmp_path / "out")
