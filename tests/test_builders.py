"""Dataset builders: real samples give the official counts and boxes, synthetic layouts cover the rest."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medattn.data import load_dataset
from medattn.data.build import main
from medattn.data.builders.boxes import fit_boxes
from medattn.data.builders.cbis_ddsm import build_cbis_ddsm
from medattn.data.builders.coco import build_coco
from medattn.data.builders.mimic_cxr import build_mimic_cxr
from medattn.data.builders.nih import FINDINGS, build_nih, nih_tables
from medattn.data.builders.rsna import build_rsna
from medattn.data.builders.sipakmed import CLASSES as SIPAKMED_CLASSES
from medattn.data.builders.sipakmed import build_sipakmed
from medattn.data.builders.splits import split_by_patient
from medattn.data.skips import Skips
from medattn.errors import DatasetError

# ---------------------------------------------------------------- real samples


def test_nih_sample_boxes_equal_official_list(shared_data, tmp_path):
    sample = shared_data / "nih-cxr14-sample"
    ds = load_dataset(build_nih(sample, tmp_path / "nih"))
    assert len(ds.images) == 150 and ds.classes == FINDINGS and ds.task == "multilabel"
    assert (ds.images[["width", "height"]] == 1024).all().all()
    official = pd.read_csv(sample / "BBox_List_2017.csv", header=None, skiprows=1, usecols=range(6))
    official.columns = ["file", "label", "x", "y", "w", "h"]
    official["image_id"] = official["file"].str.replace(".png", "", regex=False)
    official["label"] = official["label"].replace({"Infiltrate": "Infiltration"})
    assert len(ds.boxes) == 12
    merged = ds.boxes.merge(official, on=["image_id", "label"], suffixes=("", "_official"))
    assert len(merged) == 12
    for c in "xywh":
        np.testing.assert_allclose(merged[c], merged[f"{c}_official"], atol=1e-3)
    # every box's finding is a positive label of its image
    assert all(ds.images.loc[b.image_id, b.label] == 1 for b in ds.boxes.itertuples())


def test_nih_full_label_files_account_for_every_box(shared_data):
    labels = shared_data / "labels"
    images, boxes = nih_tables(labels / "Data_Entry_2017_v2020.csv.gz", labels / "BBox_List_2017.csv.gz")
    assert len(images) == 112_120 and images["image_id"].is_unique
    assert len(boxes) == 984 and boxes["image_id"].nunique() == 880
    assert set(boxes["label"]) <= set(FINDINGS) and "Infiltration" in set(boxes["label"])
    assert set(boxes["image_id"]) <= set(images["image_id"])
    raw = pd.read_csv(labels / "BBox_List_2017.csv.gz", header=None, skiprows=1, usecols=range(6))
    np.testing.assert_allclose(boxes[["x", "y", "w", "h"]].to_numpy(), raw[[2, 3, 4, 5]].to_numpy())

    kept, kept_boxes = nih_tables(
        labels / "Data_Entry_2017_v2020.csv.gz", labels / "BBox_List_2017.csv.gz", drop_no_finding=True, exclude_hernia=True
    )
    assert "Hernia" not in kept.columns
    assert (kept[[c for c in FINDINGS if c != "Hernia"]].sum(axis=1) > 0).all()
    assert len(kept) < len(images) and len(kept_boxes) == 984


def test_rsna_sample_boxes_scaled_to_stored_size(shared_data, tmp_path):
    sample = shared_data / "rsna-pneumonia-sample"
    ds = load_dataset(build_rsna(sample, tmp_path / "rsna"))
    assert len(ds.images) == 100 and ds.classes == ["Pneumonia"] and ds.task == "binary"
    assert (ds.images[["width", "height"]] == 320).all().all() and (ds.images["Pneumonia"] == 1).all()
    official = pd.read_csv(sample / "stage_2_train_labels.csv").dropna()
    assert len(ds.boxes) == 172 == len(official)
    ours = ds.boxes.sort_values(["image_id", "x", "y"]).reset_index(drop=True)
    theirs = official.sort_values(["patientId", "x", "y"]).reset_index(drop=True)
    assert (ours["image_id"] == theirs["patientId"]).all()
    for c, o in zip("xywh", ["x", "y", "width", "height"]):
        np.testing.assert_allclose(ours[c], theirs[o] * 320 / 1024, atol=1e-3)


def test_coco_tbx11k_sample(shared_data, tmp_path):
    sample = shared_data / "tbx11k-sample"
    annotations = sample / "annotations" / "json" / "TBX11K_train.json"
    ds = load_dataset(build_coco(sample / "imgs", tmp_path / "tbx", annotations=annotations))
    assert len(ds.images) == 3 and len(ds.boxes) == 3
    assert ds.classes == ["ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis"]
    assert ds.labels("h0001").sum() == 0  # listed without annotation: negative
    assert list(ds.labels("tb0007")) == [0, 1, 0]
    bbox = json.loads(annotations.read_text())["annotations"][0]["bbox"]
    np.testing.assert_allclose(ds.boxes_for("tb0005")[["x", "y", "w", "h"]].to_numpy()[0], bbox, atol=1e-3)


# ---------------------------------------------------------------- patient split


def _patients(n_patients=300, seed=1) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series([f"p{i}" for i in range(n_patients) for _ in range(rng.integers(1, 4))])


def test_split_keeps_patients_together_and_is_seeded():
    patients = _patients()
    splits = split_by_patient(patients, seed=3, val_frac=0.1, test_frac=0.2)
    assert (splits.groupby(patients).nunique() == 1).all()
    per_patient = splits.groupby(patients).first().value_counts()
    assert per_patient["test"] == 60 and per_patient["val"] == 30 and per_patient["train"] == 210
    assert splits.equals(split_by_patient(patients, seed=3, val_frac=0.1, test_frac=0.2))
    shuffled = patients.sample(frac=1, random_state=0)
    assert split_by_patient(shuffled, seed=3).sort_index().equals(split_by_patient(patients, seed=3))
    assert not splits.equals(split_by_patient(patients, seed=4, val_frac=0.1, test_frac=0.2))


def test_split_honours_official_lists():
    patients = pd.concat([_patients(), pd.Series(["mixed"] * 3)], ignore_index=True)
    number = pd.to_numeric(patients.str[1:], errors="coerce").fillna(-1).astype(int)
    official = pd.Series(np.where(number < 100, "test", "train"), index=patients.index, dtype=object)
    official[patients == "mixed"] = ["train", "test", "train"]  # a list that is not patient-disjoint
    splits = split_by_patient(patients, seed=0, val_frac=0.1, official=official)
    assert (splits[(official == "test") | (patients == "mixed")] == "test").all()  # test wins
    assert set(splits[number >= 100]) == {"train", "val"}
    # official lists with their own val: official train patients stay train
    with_val = official.where(~patients.isin(["p120", "p121"]), "val")
    splits = split_by_patient(patients, seed=0, official=with_val)
    assert set(splits[number >= 100]) <= {"train", "val"}
    assert set(splits[with_val == "val"]) == {"val"} and set(splits[(with_val == "train") & (patients != "mixed")]) == {"train"}


def test_nih_official_test_list_is_used(shared_data, tmp_path):
    sample = shared_data / "nih-cxr14-sample"
    source = tmp_path / "nih-src"
    source.mkdir()
    for name in ("images", "Data_Entry_2017.csv", "BBox_List_2017.csv"):
        (source / name).symlink_to(sample / name)
    files = sorted(p.name for p in (sample / "images").glob("*.png"))
    (source / "test_list.txt").write_text("\n".join(files[:40]) + "\n")
    (source / "train_val_list.txt").write_text("\n".join(files[40:]) + "\n")
    ds = load_dataset(build_nih(source, tmp_path / "nih", seed=5))
    test = set(ds.split("test")["path"].str.rsplit("/", n=1).str[-1])
    assert test == set(files[:40])
    assert ds.meta["split"]["official"] == ["train_val_list.txt", "test_list.txt"]


def test_whole_folder_in_one_split():
    patients = _patients(50)
    assert set(split_by_patient(patients, only="test")) == {"test"}
    assert set(split_by_patient(patients, test_frac=1.0)) == {"test"}  # whatever val_frac says
    official = pd.Series("train", index=patients.index)
    assert set(split_by_patient(patients, only="test", official=official)) == {"test"}  # lists ignored
    with pytest.raises(ValueError, match="test_frac"):
        split_by_patient(patients, val_frac=0.5, test_frac=0.6)
    with pytest.raises(ValueError, match="split must be one of"):
        split_by_patient(patients, only="holdout")


@pytest.mark.parametrize("flag", [["--split", "test"], ["--test-frac", "1.0"]])
def test_cli_puts_an_external_folder_in_test(shared_data, tmp_path, flag):
    """An external model's test images: the NIH sample with --split test (official lists or
    not) or --test-frac 1.0 lands entirely in test, and dataset.json says how."""
    out = tmp_path / "nih"
    assert main(["nih", "--source", str(shared_data / "nih-cxr14-sample"), "--out", str(out), *flag]) == 0
    ds = load_dataset(out)
    assert set(ds.images["split"]) == {"test"} and len(ds.images) == len(list((shared_data / "nih-cxr14-sample" / "images").glob("*.png")))
    assert ds.meta["split"] == ({"by": "fixed", "split": "test", "official": []} if flag[0] == "--split"
                                else {"by": "patient", "seed": 0, "val_frac": 0.0, "test_frac": 1.0, "official": []})


def test_cli_refuses_bad_fractions_before_reading_anything(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["nih", "--source", str(tmp_path / "empty"), "--out", str(tmp_path / "x"), "--test-frac", "1.5"]) == 2
    assert "test_frac" in capsys.readouterr().err


# ---------------------------------------------------------------- CLI and validation


def test_cli_builds_and_names_missing_file(shared_data, tmp_path, capsys):
    out = tmp_path / "tbx"
    argv = ["coco", "--source", str(shared_data / "tbx11k-sample" / "imgs"), "--out", str(out), "--seed", "2",
            "--annotations", str(shared_data / "tbx11k-sample" / "annotations" / "json" / "TBX11K_train.json")]  # fmt: skip
    assert main(argv) == 0
    assert len(load_dataset(out).images) == 3
    (tmp_path / "empty").mkdir()
    assert main(["rsna", "--source", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "stage_2_train_labels.csv" in capsys.readouterr().err
    assert main(["nih", "--source", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "Data_Entry_2017.csv" in capsys.readouterr().err


def test_boxes_clipped_when_slightly_out_else_reported():
    images = pd.DataFrame({"image_id": ["a"], "width": [100], "height": [50]})
    boxes = pd.DataFrame({"image_id": ["a", "a"], "label": ["L", "L"], "x": [-1.5, 10.0], "y": [0.0, 5.0],
                          "w": [20.0, 91.0], "h": [51.9, 10.0], "origin": ["f.csv line 2", "f.csv line 3"]})  # fmt: skip
    kept, fitted = fit_boxes(boxes, images, "f.csv")
    assert list(kept["image_id"]) == ["a"]
    np.testing.assert_allclose(fitted.loc[0, ["x", "y", "w", "h"]].astype(float), [0, 0, 18.5, 50])
    np.testing.assert_allclose(fitted.loc[1, ["x", "w"]].astype(float), [10, 90])
    boxes.loc[1, "w"] = 95.0
    with pytest.raises(DatasetError, match="f.csv line 3.*outside the 100x50 image"):
        fit_boxes(boxes, images, "f.csv")
    skips = Skips()
    kept, fitted = fit_boxes(boxes, images, "f.csv", skips)  # with a report: the image is skipped and named
    assert kept.empty and fitted.empty and skips.names == ["a"] and "f.csv line 3" in skips.items[0].reason


def test_coco_box_far_outside_image_names_the_annotation(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((20, 30), np.uint8))
    coco = {"categories": [{"id": 1, "name": "Lesion"}], "images": [{"id": 7, "file_name": "a.png"}, {"id": 8, "file_name": "b.png"}],
            "annotations": [{"id": 9, "image_id": 7, "category_id": 1, "bbox": [25, 2, 10, 5]}]}  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = load_dataset(build_coco(tmp_path, tmp_path / "out", annotations=tmp_path / "ann.json"))
    assert list(ds.images.index) == ["b"]  # the build finishes; the bad image is skipped and named
    (skip,) = ds.meta["skipped"]
    assert skip["item"] == "a" and re.search(r"ann.json annotations\[0\] \(id=9\).*outside the 30x20 image", skip["reason"])
    with pytest.raises(DatasetError, match=r"ann.json annotations\[0\] \(id=9\).*outside the 30x20 image"):
        build_coco(tmp_path, tmp_path / "strict", annotations=tmp_path / "ann.json", strict=True)


# ---------------------------------------------------------------- synthetic CBIS-DDSM


def _write_dicom(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _mask(shape, x, y, w, h):
    mask = np.zeros(shape, np.uint8)
    mask[y : y + h, x : x + w] = 255
    return mask


def _cbis_source(root):
    """Three patients in three layouts: files at the CSV paths ("csv"), the CSV naming the
    cropped lesion image as the mask ("swapped"), TCIA download names 1-1/1-2.dcm ("tcia")."""
    cases = [
        ("mass", "train", "P_00001", "Mass-Training_P_00001_LEFT_CC", "MALIGNANT", (60, 40), (5, 7, 10, 6), "csv"),
        ("mass", "test", "P_00003", "Mass-Test_P_00003_LEFT_MLO", "BENIGN", (50, 50), (0, 0, 50, 3), "swapped"),
        ("calc", "train", "P_00001", "Calc-Training_P_00001_LEFT_CC", "BENIGN_WITHOUT_CALLBACK", (60, 40), (30, 2, 4, 4), "csv"),
        ("calc", "test", "P_00002", "Calc-Test_P_00002_RIGHT_MLO", "MALIGNANT", (64, 48), (30, 20, 12, 9), "tcia"),
    ]
    for kind, split, patient, case, pathology, shape, box, layout in cases:
        image_csv, crop_csv, mask_csv = f"{case}/1.1/1.2/000000.dcm", f"{case}_1/1.3/1.4/000000.dcm", f"{case}_1/1.3/1.4/000001.dcm"
        tcia = layout == "tcia"
        _write_dicom(root / (f"{case}/1.1/1.2/1-1.dcm" if tcia else image_csv), np.full(shape, 9))
        _write_dicom(root / (f"{case}_1/1.3/1.4/1-2.dcm" if tcia else mask_csv), _mask(shape, *box))
        _write_dicom(root / (f"{case}_1/1.3/1.4/1-1.dcm" if tcia else crop_csv), np.ones((4, 4)))
        frame = pd.DataFrame({
            "patient_id": [patient], "left or right breast": [case.split("_")[3]], "image view": [case.split("_")[4]],
            "abnormality id": [1], "pathology": [pathology], "image file path": [image_csv],
            "cropped image file path": [crop_csv], "ROI mask file path": [(crop_csv if layout == "swapped" else mask_csv) + "\n"],
        })  # fmt: skip
        csv = root / f"{kind}_case_description_{split}_set.csv"
        frame.to_csv(csv, mode="a", header=not csv.exists(), index=False)
    return root


def test_cbis_ddsm_synthetic(tmp_path):
    source = _cbis_source(tmp_path / "cbis")
    ds = load_dataset(build_cbis_ddsm(source, tmp_path / "out", seed=1))
    assert ds.classes == ["Benign", "Malignant"] and len(ds.images) == 4
    assert list(ds.labels("Mass-Training_P_00001_LEFT_CC")) == [0, 1]
    assert list(ds.labels("Calc-Training_P_00001_LEFT_CC")) == [1, 0]
    box = ds.boxes_for("Calc-Test_P_00002_RIGHT_MLO")
    assert box["label"].tolist() == ["Malignant"]
    np.testing.assert_allclose(box[["x", "y", "w", "h"]].to_numpy()[0], [30, 20, 12, 9])
    np.testing.assert_allclose(ds.boxes_for("Mass-Test_P_00003_LEFT_MLO")[["x", "y", "w", "h"]].to_numpy()[0], [0, 0, 50, 3])
    assert ds.images.loc["Calc-Test_P_00002_RIGHT_MLO", ["width", "height"]].tolist() == [48, 64]
    splits = ds.images.groupby("patient_id")["split"].first()
    assert splits["P_00002"] == "test" and splits["P_00003"] == "test" and splits["P_00001"] in ("train", "val")
    assert ds.read_image("Mass-Training_P_00001_LEFT_CC").shape == (60, 40)

    (source / "calc_case_description_test_set.csv").unlink()
    with pytest.raises(DatasetError, match="calc_case_description_test_set.csv"):
        build_cbis_ddsm(source, tmp_path / "out2")
    assert len(load_dataset(build_cbis_ddsm(source, tmp_path / "out3", abnormality="mass")).images) == 2


# ---------------------------------------------------------------- synthetic SIPaKMeD


def _sipakmed_source(root):
    for k, label in enumerate(SIPAKMED_CLASSES):
        folder = root / f"im_{label}" / f"im_{label}"
        (folder / "CROPPED").mkdir(parents=True)
        for n in (1, 2):
            cv2.imwrite(str(folder / f"00{n}.bmp"), np.full((40, 60, 3), 200, np.uint8))
            (folder / f"00{n}_cyt01.dat").write_text("10,5\n30.5,5\n30.5,25\n10,25\n")
            (folder / f"00{n}_nuc01.dat").write_text("15,10\n20,10\n20,15\n")
            (folder / f"00{n}_cyt02.dat").write_text(f"{4 + k}.0000000e+00,1.0000000e+00\n5.0000000e+01,3.9000000e+01\n")
            for cell in (1, 2):
                cv2.imwrite(str(folder / "CROPPED" / f"00{n}_0{cell}.bmp"), np.full((12, 10, 3), 100, np.uint8))
    return root


def test_sipakmed_synthetic_cluster_images_and_crops(tmp_path):
    source = _sipakmed_source(tmp_path / "sipakmed")
    ds = load_dataset(build_sipakmed(source, tmp_path / "out"))
    assert ds.task == "multiclass" and ds.classes == SIPAKMED_CLASSES and len(ds.images) == 10
    assert (ds.label_matrix().sum(axis=1) == 1).all()
    assert ds.labels("Parabasal_001").tolist() == [0, 0, 0, 1, 0]
    boxes = ds.boxes_for("Metaplastic_002").sort_values("x")
    assert len(ds.boxes) == 20 and boxes["label"].eq("Metaplastic").all()
    np.testing.assert_allclose(boxes[["x", "y", "w", "h"]].to_numpy(), [[6, 1, 44, 38], [10, 5, 20.5, 20]])

    crops = load_dataset(build_sipakmed(source, tmp_path / "crops", cropped=True, seed=2))
    assert len(crops.images) == 20 and crops.boxes.empty
    assert (crops.images[["width", "height"]].to_numpy() == [10, 12]).all()
    assert crops.images.loc["Koilocytotic_001_02", "patient_id"] == "Koilocytotic_001"
    assert (crops.images.groupby("patient_id")["split"].nunique() == 1).all()


# ---------------------------------------------------------------- synthetic MIMIC-CXR


def _mimic_source(root):
    studies = [("10000032", "50414267", 1, -1), ("10000032", "53189527", 0, None), ("10000764", "57375967", -1, 1),
               ("11000011", "52000000", None, 0)]  # fmt: skip
    chexpert = pd.DataFrame(studies, columns=["subject_id", "study_id", "Pleural Effusion", "Edema"])
    chexpert.to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    images = [("d1", "10000032", "50414267", "PA"), ("d2", "10000032", "50414267", "LATERAL"),
              ("d3", "10000032", "53189527", "AP"), ("d4", "10000764", "57375967", "AP"),
              ("d5", "11000011", "52000000", "PA"), ("d6", "11000011", "59999999", "PA")]  # fmt: skip
    meta = pd.DataFrame(images, columns=["dicom_id", "subject_id", "study_id", "ViewPosition"])
    meta["Rows"], meta["Columns"] = 12, 16
    meta.to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    for dicom, subject, study, _ in images:
        path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((12, 16), np.uint8))
    split = pd.DataFrame({"dicom_id": ["d1", "d2", "d3", "d4", "d5"], "split": ["train", "train", "train", "validate", "test"]})
    split.to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    return root


def test_mimic_cxr_synthetic(tmp_path):
    source = tmp_path / "mimic"
    source.mkdir()
    _mimic_source(source)
    ds = load_dataset(build_mimic_cxr(source, tmp_path / "out"))
    assert ds.classes == ["Pleural Effusion"] and ds.task == "binary"
    assert sorted(ds.images.index) == ["d1", "d3", "d4", "d5"]  # frontal, with a labelled study
    assert ds.images["Pleural Effusion"].to_dict() == {"d1": 1, "d3": 0, "d4": 0, "d5": 0}
    assert ds.images["split"].to_dict() == {"d1": "train", "d3": "train", "d4": "val", "d5": "test"}
    assert ds.images.loc["d1", "path"] == "files/p10/p10000032/s50414267/d1.jpg"
    assert ds.images.loc["d1", ["width", "height"]].tolist() == [16, 12]

    both = load_dataset(build_mimic_cxr(source, tmp_path / "both", classes=["Pleural Effusion", "Edema"], uncertain="one", views=None))
    assert both.task == "multilabel" and len(both.images) == 5
    assert both.images.loc["d4", ["Pleural Effusion", "Edema"]].tolist() == [1, 1]
    assert both.images.loc["d1", "Edema"] == 1
    ignore = load_dataset(build_mimic_cxr(source, tmp_path / "ignore", uncertain="ignore"))
    assert "d4" not in ignore.images.index

    with pytest.raises(DatasetError, match="mimic-cxr-2.0.0-chexpert.csv.gz: column\\(s\\) Hernia missing"):
        build_mimic_cxr(source, tmp_path / "bad", classes=["Hernia"])


# ---------------------------------------------------------------- synthetic NIH / RSNA layouts


def test_nih_tarball_layout_rescales_boxes_and_skips_absent_images(tmp_path, caplog):
    source = tmp_path / "nih"
    (source / "images_001" / "images").mkdir(parents=True)
    cv2.imwrite(str(source / "images_001" / "images" / "00000001_000.png"), np.zeros((512, 512), np.uint8))
    cv2.imwrite(str(source / "images_001" / "images" / "00000002_000.png"), np.zeros((1024, 1024), np.uint8))
    (source / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        "00000001_000.png,Infiltration|Mass,0,1,058Y,M,PA,2500,2048,0.143,0.143,\n"
        "00000002_000.png,No Finding,0,2,40,F,AP,2500,2048,0.143,0.143,\n"
        "00000003_000.png,Hernia,0,3,40,F,AP,2500,2048,0.143,0.143,\n"
    )
    (source / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Infiltrate,100,200,300,400\n"
    )
    ds = load_dataset(build_nih(source, tmp_path / "out"))
    assert sorted(ds.images.index) == ["00000001_000", "00000002_000"]
    assert "1 of 3 rows of Data_Entry_2017.csv have no image file" in caplog.text
    assert ds.images.loc["00000001_000", "path"] == "images_001/images/00000001_000.png"
    assert ds.images.loc["00000001_000", "age"] == 58
    np.testing.assert_allclose(ds.boxes[["x", "y", "w", "h"]].to_numpy()[0], [50, 100, 150, 200])
    assert ds.boxes["label"].tolist() == ["Infiltration"]

    (source / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
        "00000001_000.png,Infiltration|Cancer,0,1,58,M,PA\n"
    )
    with pytest.raises(DatasetError, match="Data_Entry_2017.csv line 2: unknown finding"):
        build_nih(source, tmp_path / "bad")


def test_rsna_dicom_images_and_not_normal_option(tmp_path):
    source = tmp_path / "rsna"
    for pid in ("a", "b", "c"):
        _write_dicom(source / "stage_2_train_images" / f"{pid}.dcm", np.zeros((256, 256)))
    (source / "stage_2_train_labels.csv").write_text(
        "patientId,x,y,width,height,Target\na,100,200,300,400,1\na,500,200,100,100,1\nb,,,,,0\nc,,,,,0\n"
    )
    ds = load_dataset(build_rsna(source, tmp_path / "out"))
    assert ds.images["Pneumonia"].to_dict() == {"a": 1, "b": 0, "c": 0}
    np.testing.assert_allclose(ds.boxes.sort_values("x")[["x", "y", "w", "h"]].to_numpy(), [[25, 50, 75, 100], [125, 50, 25, 25]])
    with pytest.raises(DatasetError, match="stage_2_detailed_class_info.csv"):
        build_rsna(source, tmp_path / "out2", drop_not_normal=True)
    (source / "stage_2_detailed_class_info.csv").write_text(
        "patientId,class\na,Lung Opacity\na,Lung Opacity\nb,No Lung Opacity / Not Normal\nc,Normal\n"
    )
    assert sorted(load_dataset(build_rsna(source, tmp_path / "out3", drop_not_normal=True)).images.index) == ["a", "c"]
