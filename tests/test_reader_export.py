"""Reader-study exports: each format loads in the tool it is for; JSON round-trips; bad imports fail whole."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from argon2 import PasswordHasher

from medattn.data import load_dataset
from medattn.reader import analysis
from medattn.reader.__main__ import main
from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.errors import ImportFormatError, StudyError
from medattn.reader.export import FORMATS, export_study, import_study, mrmc_cases
from medattn.reader.presets import default_questions
from medattn.store.annotations import AnnotationStore

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
READERS = ("ana", "ben")


@pytest.fixture(scope="module")
def study(tiny_demo, tmp_path_factory):
    """A detection study on 8 tiny_demo images with two readers, arms, and every case answered
    (tests only read it; failed imports must leave it as it is)."""
    store = AnnotationStore(tmp_path_factory.mktemp("study") / "study.db", password_hasher=FAST)
    images = load_dataset(tiny_demo).images.index[:8].tolist()
    study_id = store.create_study({
        "name": "Nodule detection", "kind": "detection", "dataset": str(tiny_demo), "cases": images,
        "questions": default_questions("detection"), "target_class": "nodule", "seed": 5,
        "panels": [{"checkpoint": "checkpoints/demo_resnet18_wildcat", "method": "gradcam"}]})
    for k, reader in enumerate(READERS):
        store.add_reader(study_id, reader, "correct horse")
        for i, case in enumerate(store.cases_for(study_id, reader)):
            store.mark_shown(study_id, reader, case)
            boxes = [{"x": 10 + i, "y": 20, "w": 8, "h": 6, "label": "nodule"}] if (i + k) % 3 else []
            store.submit_case(study_id, reader, case, {"present": bool(boxes), "confidence": 1 + (i + k) % 5,
                                                        "boxes": boxes})
    # a changed answer (in the last session: earlier sessions are final once a later one has started)
    store.submit(study_id, "ana", store.cases_for(study_id, "ana")[-1], "confidence", 5)
    return store, study_id, images


def test_every_format_has_provenance_and_no_image_ids(study, tmp_path):
    store, study_id, images = study
    for fmt in FORMATS:
        out = tmp_path / f"export.{fmt}"
        assert main(["export", "--db", str(store.path), "--study", study_id, "--format", fmt, "--out", str(out)]) == 0
        content = out.read_text()
        assert study_id in content and "app_version" in content and "exported_at" in content, fmt
        assert any(image in content for image in images) == (fmt == "key"), fmt  # only the key names images
    assert not list(tmp_path.glob(".*.tmp"))  # temporary files renamed away


def test_json_round_trip_gives_the_same_answers(study, tmp_path):
    store, study_id, _ = study
    out = export_study(store, study_id, "json", tmp_path / "study.json", with_key=True)
    other = AnnotationStore(tmp_path / "other.db", password_hasher=FAST)
    assert main(["import", "--db", str(other.path), "--json", str(out)]) == 0
    (imported,) = other.list_studies()["id"]
    assert_same = pd.testing.assert_frame_equal
    assert_same(other.answers(imported), store.answers(study_id))
    assert other.panel_key(imported).equals(store.panel_key(study_id))
    for reader in READERS:
        assert other.cases_for(imported, reader) == store.cases_for(study_id, reader)
        assert other.arm_for(imported, reader, "case-0001") == store.arm_for(study_id, reader, "case-0001")
    assert len(other.events(imported)) == len(store.events(study_id))
    assert not other.authenticate("ana", "correct horse")  # accounts come back locked, no hashes exported
    other.add_admin("boss", "admin password")
    other.set_password("boss", "ana", "a new password")
    assert other.authenticate("ana", "a new password")


def test_a_json_backup_reimports_with_its_images(study, tmp_path, capsys):
    """The re-imported study's cases show the same images (they showed "case-0001", an image
    that does not exist, when the export had no image ids). An export without them is refused,
    or takes the study's key file."""
    store, study_id, _ = study
    original = store.case_key(study_id)[["case_id", "image_id"]]
    backup = export_study(store, study_id, "json", tmp_path / "backup.json", with_key=True)
    other = AnnotationStore(tmp_path / "other.db", password_hasher=FAST)
    copy = import_study(other, backup)
    pd.testing.assert_frame_equal(other.case_key(copy)[["case_id", "image_id"]], original)
    other.add_reader(copy, "cy", "correct horse")
    case = other.cases_for(copy, "cy")[0]
    assert other.case_image(copy, "cy", case).shape == (64, 64)  # the image is found

    shared = export_study(store, study_id, "json", tmp_path / "shared.json")  # no image ids: for sharing
    assert main(["import", "--db", str(other.path), "--json", str(shared)]) == 2
    assert "exported without its case key" in capsys.readouterr().err
    key = export_study(store, study_id, "key", tmp_path / "key.csv")
    table = pd.read_csv(key, comment="#")
    assert list(table.columns) == ["case_id", "image_id", "arm", "mrmc_case", "checkpoint", "method", "target_class",
                                   "category"]
    assert set(table["arm"]) == {WITH_AI, WITHOUT_AI} and table.groupby("image_id")["mrmc_case"].nunique().eq(1).all()
    assert main(["import", "--db", str(other.path), "--json", str(shared), "--key", str(key)]) == 0
    again = other.list_studies()["id"].iloc[-1]
    pd.testing.assert_frame_equal(other.case_key(again)[["case_id", "image_id"]], original)


def test_one_class_studies_are_refused_or_warned_in_every_export(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    positives = [i for i in data.images.index if data.images.at[i, "nodule"]][:3]
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    base = {"dataset": str(tiny_demo), "cases": positives, "target_class": "nodule", "seed": 1}
    with pytest.raises(StudyError, match=r"N0 = 0"):  # detection: refused, nothing written
        store.create_study({**base, "name": "d", "kind": "detection", "questions": default_questions("detection")})
    assert store.list_studies().empty
    panels = [{"checkpoint": "a", "method": "gradcam"}, {"checkpoint": "b", "method": "saliency"}]
    study_id = store.create_study({**base, "name": "r", "kind": "heatmap_rating", "panels": panels,
                                   "questions": default_questions("heatmap_rating")})  # ratings stand: warned
    store.add_reader(study_id, "ana", "correct horse")
    for case in store.cases_for(study_id, "ana"):
        store.submit(study_id, "ana", case, "rating", {c: 3 for c in store.panels_for(study_id, "ana", case)})
    for fmt in FORMATS:
        text = export_study(store, study_id, fmt, tmp_path / f"out.{fmt}").read_text()
        assert "N0 = 0" in text and "AUC" in text, fmt
    assert json.loads((tmp_path / "out.json").read_text())["provenance"]["warnings"][0].startswith("all 3 images")


def test_maps_are_the_modalities_of_a_rating_study_mrmc(tiny_demo, tmp_path):
    from medattn.reader.mrmc_study import study_mrmc

    data = load_dataset(tiny_demo)
    images = data.images.index[:10].tolist()  # with and without nodules
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    panels = [{"checkpoint": "ckpt/good.safetensors", "method": "gradcam"}, {"checkpoint": "ckpt/bad", "method": "saliency"}]
    study_id = store.create_study({"name": "r", "kind": "heatmap_rating", "dataset": str(tiny_demo), "cases": images,
                                   "target_class": "nodule", "panels": panels, "seed": 3,
                                   "questions": default_questions("heatmap_rating", "nodule")})
    names = {r.code: r.method for r in store.panel_key(study_id).itertuples()}
    for k, reader in enumerate(("ana", "ben", "cy")):
        store.add_reader(study_id, reader, "correct horse")
        for i, case in enumerate(store.cases_for(study_id, reader)):
            truth = int(data.images.at[store.case_key(study_id).set_index("case_id").at[case, "image_id"], "nodule"])
            # gradcam's ratings follow the finding, saliency's do not
            store.submit(study_id, reader, case, "rating", {c: (4 + truth if names[c] == "gradcam" else 1 + (i + k) % 5)
                                                            for c in store.panels_for(study_id, reader, case)})
    result = study_mrmc(store, study_id)
    assert set(result["auc"]) == {"good · gradcam", "bad · saliency"}
    assert result["auc"]["good · gradcam"] == 1.0 and result["auc"]["bad · saliency"] < 0.8
    table = pd.read_csv(export_study(store, study_id, "mrmc", tmp_path / "maps.mrmc.csv"), comment="#")
    assert len(table) == 3 * 10 * 2 and set(table["modality"]) == set(result["auc"])


def test_boxes_export_has_reader_arm_and_finding(study, tmp_path):
    store, study_id, images = study
    table = pd.read_csv(export_study(store, study_id, "boxes", tmp_path / "boxes.csv", with_key=True), comment="#")
    assert list(table.columns) == ["image_id", "label", "x", "y", "w", "h", "reader", "arm", "case_id"]
    answers = store.answers(study_id)
    assert len(table) == sum(len(v) for v in answers[answers["question_id"] == "boxes"]["value"])
    assert set(table["reader"]) == set(READERS) and set(table["arm"]) == {WITH_AI, WITHOUT_AI}
    assert set(table["label"]) == {"nodule"} and set(table["image_id"]) <= set(images)
    blind = pd.read_csv(export_study(store, study_id, "boxes", tmp_path / "blind.csv"), comment="#")
    assert "image_id" not in blind.columns and len(blind) == len(table)
    truth = analysis.reader_ground_truth(store, study_id)  # the Leaderboard's ground truth: the unaided reading
    assert set(truth["arm"]) == {WITHOUT_AI} and len(truth) == (table["arm"] == WITHOUT_AI).sum()
    assert len(analysis.reader_ground_truth(store, study_id, arm="all")) == len(table)


def test_coco_export_loads_with_pycocotools(study, tmp_path):
    from pycocotools.coco import COCO

    store, study_id, _ = study
    coco = COCO(str(export_study(store, study_id, "coco", tmp_path / "boxes.json")))
    answers = store.answers(study_id)
    boxes = [box for value in answers[answers["question_id"] == "boxes"]["value"] for box in value]
    assert len(coco.getAnnIds()) == len(boxes) > 0
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["nodule"]
    first = coco.loadAnns(coco.getAnnIds())[0]
    assert first["reader"] in READERS and len(first["bbox"]) == 4
    assert coco.loadImgs(first["image_id"])[0]["width"] == 64


def test_mrmc_csv_is_fully_crossed_with_the_columns_mrmcaov_reads(study, tmp_path):
    store, study_id, images = study
    table = pd.read_csv(export_study(store, study_id, "mrmc", tmp_path / "mrmc.csv"), comment="#")
    assert list(table.columns) == ["reader", "modality", "case", "truth", "rating"]
    # crossed design: every reader reads every image once in each arm
    assert len(table) == len(READERS) * len(images) * 2
    read = table.groupby(["reader", "case"])["modality"].apply(sorted)
    assert all(modalities == [WITH_AI, WITHOUT_AI] for modalities in read)
    assert sorted(table["case"].unique()) == list(range(1, len(images) + 1))
    assert set(table["truth"]) <= {0, 1} and table["rating"].between(1, 5).all()
    labels = load_dataset(store.study(study_id)["dataset"]).images["nodule"]
    key = store.case_key(study_id)
    image_of_case = dict(zip(mrmc_cases(store, study_id), key["image_id"]))
    assert (table["truth"] == [int(labels[image_of_case[c]]) for c in table["case"]]).all()


def test_split_design_reads_each_image_once_per_reader_in_alternating_arms(tiny_demo, tmp_path):
    store = AnnotationStore(tmp_path / "split.db", password_hasher=FAST)
    images = load_dataset(tiny_demo).images.index[:6].tolist()
    study_id = store.create_study({"name": "split", "kind": "detection", "dataset": str(tiny_demo), "cases": images,
                                   "questions": default_questions("detection"), "arms": "split",
                                   "panels": [{"checkpoint": "m", "method": "gradcam"}]})
    for reader in READERS:
        store.add_reader(study_id, reader, "correct horse")
        for case in store.cases_for(study_id, reader):
            store.submit(study_id, reader, case, "confidence", 3)
    table = pd.read_csv(export_study(store, study_id, "mrmc", tmp_path / "mrmc.csv"), comment="#")
    assert len(table) == len(READERS) * len(images)
    assert (table.groupby("case")["modality"].nunique() == 2).all()


def test_imrmc_file_parses(study, tmp_path):
    store, study_id, images = study
    lines = export_study(store, study_id, "imrmc", tmp_path / "study.imrmc").read_text().splitlines()
    begin = lines.index("BEGIN DATA:")
    header = dict(line.split(":", 1) for line in lines[:begin] if line.split(":")[0] in ("NR", "N0", "N1", "NM"))
    rows = [line.split(",") for line in lines[begin + 1:]]
    assert all(len(row) == 4 for row in rows)
    truth = [row for row in rows if row[0] == "-1"]
    reads = [row for row in rows if row[0] != "-1"]
    assert int(header["NR"]) == 2 and int(header["NM"]) == 2
    assert int(header["N0"]) + int(header["N1"]) == len(truth) == len(images)
    assert {row[2] for row in truth} == {"0"} and {row[3] for row in truth} <= {"0", "1"}
    assert {int(row[0]) for row in reads} == {1, 2} and len(reads) == 2 * 2 * len(images)
    assert {row[1] for row in reads} == {row[1] for row in truth}
    assert all(row[1].isdigit() for row in rows) and {row[2] for row in reads} == {WITH_AI, WITHOUT_AI}
    store.add_reader(study_id, "carol", "carol-password")  # assigned, has read nothing
    lines = export_study(store, study_id, "imrmc", tmp_path / "again.imrmc").read_text().splitlines()
    assert "NR: 2" in lines and not any("carol" in line for line in lines)


def test_mrmc_needs_a_detection_or_rating_study(tiny_demo, tmp_path):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    study_id = store.create_study({"name": "r", "kind": "failure_review", "dataset": str(tiny_demo),
                                   "cases": ["demo_00000"], "questions": default_questions("failure_review")})
    with pytest.raises(StudyError, match="detection or heatmap-rating study"):
        export_study(store, study_id, "mrmc", tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def _corrupt(document: dict, change) -> dict:
    change(document)
    return document


@pytest.mark.parametrize("change, message", [
    (None, "not JSON"),
    (lambda d: d.pop("events"), "missing field 'events'"),
    (lambda d: d.update(format="something else"), "field 'format'"),
    (lambda d: d["study"].pop("kind"), "study: missing field 'kind'"),
    (lambda d: d["events"][3].update(case_id="case-9999"), r"events\[3\]\.case_id"),
    (lambda d: d["events"][0].update(submitted_at="yesterday"), r"events\[0\]\.submitted_at"),
    (lambda d: d["events"][1].pop("value"), r"events\[1\]: missing field 'value'"),
    (lambda d: d["panels"][0].update(code=7), r"panels\[0\]\.code"),
    (lambda d: d["readers"][1].update(case_order=["case-0001", "nope"]), r"readers\[1\]\.case_order"),
])
def test_malformed_import_names_the_field_and_writes_nothing(study, tmp_path, change, message):
    store, study_id, _ = study
    document = json.loads(export_study(store, study_id, "json", tmp_path / "good.json", with_key=True).read_text())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json" if change is None else json.dumps(_corrupt(document, change)))
    with pytest.raises(ImportFormatError, match=message) as raised:
        import_study(store, bad, name="upload.json")  # the Study admin page's upload: named as the admin knows it
    assert str(raised.value).startswith("upload.json: ") and str(tmp_path) not in str(raised.value)
    assert list(store.list_studies()["id"]) == [study_id]
    assert main(["import", "--db", str(store.path), "--json", str(bad)]) == 2


def test_exports_after_the_dataset_moved(tiny_demo, tmp_path, capsys):
    import shutil

    folder = Path(shutil.copytree(tiny_demo, tmp_path / "data"))
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    study_id = store.create_study({"name": "moved", "kind": "detection", "dataset": str(folder),
                                   "cases": ["demo_00000", "demo_00003"], "questions": default_questions("detection")})
    store.add_reader(study_id, "ana", "correct horse")
    for case in store.cases_for(study_id, "ana"):
        store.submit_case(study_id, "ana", case, {"present": True, "confidence": 4,
                                                  "boxes": [{"x": 1, "y": 2, "w": 3, "h": 4}]})
    folder.rename(tmp_path / "elsewhere")
    for fmt in ("csv", "json", "coco"):  # what needs no image data still exports
        export_study(store, study_id, fmt, tmp_path / f"out.{fmt}")
    assert "width" not in json.loads((tmp_path / "out.coco").read_text())["images"][0]
    for fmt in ("mrmc", "imrmc"):  # truth comes from the dataset: a clear error, no file
        assert main(["export", "--db", str(store.path), "--study", study_id, "--format", fmt,
                     "--out", str(tmp_path / f"out.{fmt}")]) == 2
        assert "dataset folder" in capsys.readouterr().err and not (tmp_path / f"out.{fmt}").exists()



@pytest.mark.parametrize("name, typed, code, said", [
    ("coordinator", ["admin-password", "admin-password"], 0, "can sign in"),
    ("coordinator", ["admin-password", "admin-passwort"], 2, "the two passwords differ"),
    ("coordinator", ["short", "short"], 2, "at least 8 characters"),
    ("taken", ["admin-password", "admin-password"], 2, "is taken"),
    ("bad\u202ename", ["admin-password", "admin-password"], 2, "control character"),
])
def test_add_admin_from_the_command_line(tmp_path, monkeypatch, capsys, name, typed, code, said):
    db = tmp_path / "studies.sqlite"
    AnnotationStore(db, password_hasher=FAST).add_admin("taken", "some-password")
    answers = iter(typed)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["add-admin", "--db", str(db), "--name", name]) == code
    out = capsys.readouterr()
    assert said in (out.out if code == 0 else out.err) and "Traceback" not in out.err
    assert AnnotationStore(db).authenticate(name, typed[0]) is (code == 0)
    assert typed[0] not in out.out + out.err  # the password is never echoed
