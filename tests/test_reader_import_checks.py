"""A study JSON import goes through the checks the app applies to what it writes itself, and a
case whose image cannot be read costs that case only.

- Imports: image ids that are paths or not in the study's dataset, times the app never writes
  (before shown, before the study, after the export or now, without a zone), fields the app
  never writes (unknown spec fields, nested case meta, a target class the dataset lacks, a
  negative seed, partial reader orders or arms, repeated panel codes, provenance not an object),
  JSON nested past the decoder or past any export, a file over the size cap: each refused by
  name, nothing written, in the library, the CLI (exit 2, no traceback) and the page's message.
- Read time: every place that resolves a case's image (the Reader's `case_image`, Study admin's
  count, the exports and analyses) survives an image gone from images.csv, a deleted file and a
  file that does not decode: the case is named unavailable, the rest goes on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medattn.data import load_dataset
from medattn.reader import export as export_module
from medattn.reader.__main__ import main
from medattn.reader.analysis import box_accuracy, case_truth, write_reader_truth
from medattn.reader.errors import CaseUnavailableError, DatasetMovedError, StudyError
from medattn.reader.export import FORMATS, export_study, import_study
from medattn.reader.mrmc_study import mrmc_table
from medattn.reader.presets import default_questions
from medattn.store.annotations import AnnotationStore
from medattn.ui.errors import message
from tests.test_reader_export import FAST, study  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]


def _event(document: dict, i: int = 0) -> dict:
    return document["events"][i]


def _shift(stamp: str, **delta) -> str:
    return (pd.Timestamp(stamp) + pd.Timedelta(**delta)).isoformat()


TAMPERED = [  # (what is changed, the words of the refusal)
    (lambda d: d["cases"][0].update(image_id="/etc/passwd"), r"cases\[0\]\.image_id: '/etc/passwd' is a file path"),
    (lambda d: d["cases"][1].update(image_id="../../etc/passwd"), r"cases\[1\]\.image_id: .* is a file path"),
    (lambda d: d["cases"][2].update(image_id="C:\\Windows\\win.ini"), r"cases\[2\]\.image_id: .* is a file path"),
    (lambda d: d["cases"][3].update(image_id="demo_99999"),
     r"cases\[3\]\.image_id: image id 'demo_99999' is not in dataset"),
    (lambda d: _event(d).update(submitted_at="1900-01-01T00:00:00+00:00"), r"events\[0\]\.submitted_at: .* outside"),
    (lambda d: _event(d).update(shown_at="1900-01-01T00:00:00+00:00"), r"events\[0\]\.shown_at: .* outside"),
    (lambda d: _event(d).update(submitted_at=_shift(_event(d)["shown_at"], seconds=-1)),
     r"events\[0\]\.submitted_at: .* before the case was shown"),
    (lambda d: _event(d, 3).update(submitted_at="2999-01-01T00:00:00+00:00"), r"events\[3\]\.submitted_at: .* outside"),
    (lambda d: _event(d).update(submitted_at=_shift(d["provenance"]["exported_at"], hours=1)),
     r"events\[0\]\.submitted_at: .* outside"),  # after the file was written
    (lambda d: d["provenance"].update(created_at=_shift(d["provenance"]["exported_at"], hours=1)),
     r"events\[0\]\.(shown|submitted)_at: .* outside"),  # answered before the study existed
    (lambda d: _event(d).update(submitted_at="2026-12-01T10:00:00"), r"events\[0\]\.submitted_at: .* no time zone"),
    (lambda d: _event(d).update(submitted_at="yesterday"), r"events\[0\]\.submitted_at: not an ISO 8601"),
    (lambda d: d["study"].update(target_class="no such class"), "'target_class': 'no such class' is not a class"),
    (lambda d: d["study"].update(target_class={"$ne": 1}), "'target_class': text expected"),
    (lambda d: d["study"].update(seed=-1), "'seed': an integer from 0"),
    (lambda d: d["study"].update(blinded="no"), "'blinded': true or false"),
    (lambda d: d["study"].update(payload=[[["x"]]]), "'payload' is not a field of a study"),
    (lambda d: d["cases"][0]["meta"].update(extra={"deep": [1]}), r"cases\[0\]\.meta\.extra: text, a number"),
    (lambda d: d["cases"][0]["meta"].update(arm="both"), r"cases\[0\]\.meta\.arm: 'both' is not one of"),
    (lambda d: d["readers"][0].update(case_order=d["readers"][0]["case_order"][1:]), "exactly once"),
    (lambda d: d["readers"][0]["arms"].pop(next(iter(d["readers"][0]["arms"]))), r"readers\[0\]\.arms: every case"),
    (lambda d: d["readers"][0].update(arms=None), r"readers\[0\]\.arms: every case"),
    (lambda d: d["panels"].append(dict(d["panels"][0])), "panel code is listed twice"),
    (lambda d: d.update(provenance=["not", "an", "object"]), "field 'provenance'"),
]


@pytest.mark.parametrize("change, words", TAMPERED)
def test_an_import_refuses_what_the_app_never_writes(study, tmp_path, change, words):  # noqa: F811
    store, study_id, _ = study
    document = json.loads(export_study(store, study_id, "json", tmp_path / "good.json", with_key=True).read_text())
    change(document)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(StudyError, match=words):
        import_study(store, bad, name="upload.json")
    assert list(store.list_studies()["id"]) == [study_id]  # nothing written


def test_the_original_import_and_its_reexport_still_import(study, tmp_path):  # noqa: F811
    """The checks refuse what the app never writes, not what it does: a backup imports, and the
    copy's own backup (times older than the import, the original's creation kept) imports too."""
    store, study_id, _ = study
    other = AnnotationStore(tmp_path / "other.db", password_hasher=FAST)
    copy = import_study(other, export_study(store, study_id, "json", tmp_path / "a.json", with_key=True))
    assert other.created_at(copy) == store.created_at(study_id)
    again = import_study(other, export_study(other, copy, "json", tmp_path / "b.json", with_key=True))
    pd.testing.assert_frame_equal(other.answers(again), store.answers(study_id))


@pytest.mark.parametrize("text, words", [
    ("[" * 200_000 + "]" * 200_000, "not a valid study export: its JSON nests too deep"),
    (json.dumps({"format": "medattn.reader-study", "x": [[[[[[[[[[[]]]]]]]]]]]}), "nests 12 levels deep"),
])
def test_deeply_nested_json_is_refused_in_words(study, tmp_path, text, words):  # noqa: F811
    store, study_id, _ = study
    deep = tmp_path / "deep.json"
    deep.write_text(text)
    with pytest.raises(StudyError, match=words) as raised:
        import_study(store, deep, name="deep.json")
    # the Study admin page shows message(error) under "Import": the words, no exception type
    assert message(raised.value).startswith("deep.json: not a valid study export")
    run = subprocess.run([sys.executable, "-m", "medattn.reader", "import", "--db", str(store.path), "--json", str(deep)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "error: " in run.stderr and "not a valid study export" in run.stderr
    assert list(store.list_studies()["id"]) == [study_id]


def test_an_import_over_the_size_cap_is_refused_before_reading(study, tmp_path, monkeypatch, capsys):  # noqa: F811
    store, study_id, _ = study
    good = export_study(store, study_id, "json", tmp_path / "good.json", with_key=True)
    monkeypatch.setattr(export_module, "MAX_IMPORT_BYTES", good.stat().st_size - 1)
    assert main(["import", "--db", str(store.path), "--json", str(good)]) == 2
    assert "not a valid study export" in capsys.readouterr().err


def test_creating_a_study_checks_its_image_ids_too(tiny_demo, tmp_path):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    spec = {"name": "s", "kind": "heatmap_rating", "dataset": str(tiny_demo), "questions": default_questions("heatmap_rating")}
    with pytest.raises(StudyError, match=r"cases\[1\]'?: image id 'nope' is not in dataset"):
        store.create_study({**spec, "cases": ["demo_00000", "nope"]})
    with pytest.raises(StudyError, match="is a file path"):
        store.create_study({**spec, "cases": ["/etc/passwd"]})
    assert store.list_studies().empty


# --- read time ---------------------------------------------------------------------------------

def _break_images_csv(folder: Path, image_id: str) -> None:  # the dataset rebuilt without the image
    for name in ("images.csv", "boxes.csv"):
        table = pd.read_csv(folder / name, dtype=str)
        table[table["image_id"] != image_id].to_csv(folder / name, index=False)


def _delete_file(folder: Path, image_id: str) -> None:
    (folder / "images" / load_dataset(folder).images.at[image_id, "path"]).unlink()


def _corrupt_file(folder: Path, image_id: str) -> None:
    (folder / "images" / load_dataset(folder).images.at[image_id, "path"]).write_bytes(b"not an image")


@pytest.fixture
def answered(tiny_demo, tmp_path):
    """A detection study on a copy of tiny_demo (4 images, 2 with the finding), one reader, every case answered."""
    folder = Path(shutil.copytree(tiny_demo, tmp_path / "data"))
    data = load_dataset(folder)
    positive = [i for i in data.images.index if data.labels(i)[data.classes.index("nodule")]][:2]
    negative = [i for i in data.images.index if not data.labels(i)[data.classes.index("nodule")]][:2]
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    study_id = store.create_study({"name": "read", "kind": "detection", "dataset": str(folder), "target_class": "nodule",
                                   "cases": positive + negative, "questions": default_questions("detection")})
    for reader in ("ana", "ben"):
        store.add_reader(study_id, reader, "correct horse")
        for case in store.cases_for(study_id, reader):
            store.submit_case(study_id, reader, case, {"present": True, "confidence": 3,
                                                       "boxes": [{"x": 1, "y": 2, "w": 3, "h": 4, "label": "nodule"}]})
    return store, study_id, folder


@pytest.mark.parametrize("breaks, words", [
    (_break_images_csv, "is not in"),
    (_delete_file, "does not exist"),
    (_corrupt_file, None),  # found when read (and by the admin's decoding check)
])
def test_a_case_whose_image_is_gone_costs_that_case_only(answered, tmp_path, breaks, words):
    store, study_id, folder = answered
    key = store.case_key(study_id).set_index("case_id")["image_id"]
    broken = store.cases_for(study_id, "ana")[0]
    breaks(folder, key[broken])

    with pytest.raises(CaseUnavailableError):  # the Reader page's one call: a skip, not a crash
        store.case_image(study_id, "ana", broken)
    for case in store.cases_for(study_id, "ana")[1:]:
        assert store.case_image(study_id, "ana", case).ndim == 2

    problems = store.case_problems(study_id, decode=words is None)  # Study admin's count
    assert list(problems["case_id"]) == [broken] and (words is None or words in problems.at[0, "problem"])
    for fmt in FORMATS:  # every export still writes
        export_study(store, study_id, fmt, tmp_path / f"out.{fmt}", with_key=True)
    if words == "is not in":  # truth needs the image's labels: that case alone drops out of the analyses
        assert broken not in case_truth(store, study_id).index
        assert set(mrmc_table(store, study_id)["case"]) and len(box_accuracy(store, study_id)) == 6
        write_reader_truth(store, study_id, tmp_path / "truth")
        assert key[broken] not in set(load_dataset(tmp_path / "truth", check_files=False).images.index)


def test_a_dataset_that_is_gone_or_no_dataset_says_so(answered, tmp_path):
    store, study_id, folder = answered
    case = store.cases_for(study_id, "ana")[0]
    other = Path(shutil.copytree(folder, tmp_path / "other"))
    for name in ("images.csv", "boxes.csv"):  # another dataset: none of the study's images
        table = pd.read_csv(other / name, dtype=str)
        table.assign(image_id="other_" + table["image_id"]).to_csv(other / name, index=False)
    (folder / "dataset.json").unlink()
    with pytest.raises(DatasetMovedError, match="no longer a valid dataset"):
        store.case_image(study_id, "ana", case)
    assert len(store.case_problems(study_id)) == 4
    with pytest.raises(DatasetMovedError, match="holds none of the study's 4 images"):  # the wrong folder
        store.update_study(study_id, {"dataset": str(other)}, store.study(study_id)["revision"])
