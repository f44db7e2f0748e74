"""Hostile data in reader studies: tampered JSON imports write nothing, formula names export as
text, names are normalised and look-alikes refused, answers and saves are bounded. (Names
render as text: tests/test_server_security.py, in the browser.)"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from medattn.reader.errors import DuplicateReaderError, InvalidAnswerError, StudyError
from medattn.reader.export import export_study, import_study
from medattn.reader.presets import default_questions
from medattn.spreadsheet import text_cell
from medattn.store.annotations import AnnotationStore
from medattn.store.annotations import answers as answers_module
from medattn.store.annotations import studies as studies_module
from tests.test_reader_export import FAST, study  # noqa: F401 - fixture


def _tamper(document: dict, change) -> dict:
    change(document)
    return document


def _rename(document: dict, old: str, new: str) -> None:
    for row in document["readers"] + document["events"]:
        if row["reader"] == old:
            row["reader"] = new


def _first_event(document: dict, question: str) -> dict:
    return next(e for e in document["events"] if e["question_id"] == question)


@pytest.mark.parametrize("change, message", [
    (lambda d: _first_event(d, "confidence").update(value=999), "outside 1..5"),
    (lambda d: _first_event(d, "present").update(value="yes"), "expected true or false"),
    (lambda d: _first_event(d, "boxes").update(value=[{"x": 0, "y": 0, "w": 1, "h": 1}] * 101), "at most 100"),
    (lambda d: _rename(d, "ana", "ana\u0007"), "control character"),
    (lambda d: _rename(d, "ana", "\u0430na"), "alphabets"),  # a Cyrillic а
    (lambda d: d["study"].update(dataset="../../etc"), "absolute path"),
    (lambda d: d["study"].update(name="x" * 201), "at most 200"),
    (lambda d: d["panels"][0].update(checkpoint="ckpt\nrm -rf"), "control character"),
    (lambda d: d["study"]["questions"][1].update(max=10**9), "points apart"),
    (lambda d: d["study"]["questions"].append({"id": "q" * 600, "type": "text"}), "at most 500"),
    (lambda d: _first_event(d, "confidence").update(case_id=d["readers"][1]["case_order"][0],
                                                    reader="nobody"), "'nobody' is not in 'readers'"),
    (lambda d: d["cases"].extend({"case_id": f"extra-{i}", "image_id": f"x{i}"} for i in range(5)), "at most 12"),
])
def test_a_tampered_import_writes_nothing(study, tmp_path, monkeypatch, change, message):  # noqa: F811
    store, study_id, _ = study
    # 8 images (16 cases: 2 arms): the cap just above them
    monkeypatch.setattr(studies_module, "MAX_CASES", 8 + 4)
    document = json.loads(export_study(store, study_id, "json", tmp_path / "good.json", with_key=True).read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_tamper(document, change)))
    accounts_before = _accounts(store)
    with pytest.raises(StudyError, match=message):
        import_study(store, bad, name="upload.json")
    assert list(store.list_studies()["id"]) == [study_id]
    assert _accounts(store) == accounts_before


def _accounts(store: AnnotationStore) -> list[str]:
    from sqlalchemy import select

    from medattn.store.annotations.schema import accounts

    with store.engine.connect() as conn:
        return sorted(conn.execute(select(accounts.c.name)).scalars())


def test_an_import_fills_question_defaults(study, tmp_path):  # noqa: F811
    """A question without `required` (which crashed the Reader page) gets the app's default."""
    store, study_id, _ = study
    document = json.loads(export_study(store, study_id, "json", tmp_path / "good.json", with_key=True).read_text())
    for question in document["study"]["questions"]:
        question.pop("required", None)
        question.pop("label", None)
    (tmp_path / "lean.json").write_text(json.dumps(document))
    copy = import_study(AnnotationStore(tmp_path / "other.db", password_hasher=FAST), tmp_path / "lean.json")
    questions = AnnotationStore(tmp_path / "other.db", password_hasher=FAST).study(copy)["questions"]
    assert all(isinstance(q["required"], bool) and q["label"] for q in questions)


def test_a_formula_name_exports_as_text(tiny_demo, tmp_path):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    study_id = store.create_study({"name": "=HYPERLINK(\"http://x\",\"y\")", "kind": "detection",
                                   "dataset": str(tiny_demo), "cases": ["demo_00000", "demo_00003"],
                                   "questions": default_questions("detection"), "seed": 1})
    names = ["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]
    for name in names:
        store.add_reader(study_id, name, "correct horse")
        for case in store.cases_for(study_id, name):
            store.submit_case(study_id, name, case, {"present": False, "confidence": 2, "boxes": []})
    for fmt in ("csv", "mrmc"):
        text = export_study(store, study_id, fmt, tmp_path / f"out.{fmt}").read_text()
        table = pd.read_csv(io.StringIO(text), comment="#")
        assert sorted(set(table["reader"])) == sorted("'" + n for n in names)
        cells = [c for line in text.splitlines() if not line.startswith("#") for c in line.split(",")]
        assert not [c for c in cells if c.startswith(("=", "+", "@")) or (c.startswith("-") and not _number(c))]
    imrmc = export_study(store, study_id, "imrmc", tmp_path / "out.imrmc").read_text()
    assert sorted(line.split(": ", 1)[1] for line in imrmc.splitlines() if line.startswith("# reader ")) == sorted(
        "'" + n for n in names)
    assert text_cell("-2.5") == "-2.5" and text_cell(-3) == -3 and text_cell("=A1") == "'=A1"


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("first, second", [
    ("ana", "\u0430\u0435\u043e"[:0] + "ANA"),  # case only
    ("aeo", "\u0430\u0435\u043e"),  # the same letters in Cyrillic
    ("ana", "\uff41\uff4e\uff41"),  # full-width: NFKC makes it "ana", the same account name
])
def test_look_alike_account_names_are_refused(tmp_path, first, second):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    store.add_admin(first, "long enough")
    with pytest.raises(DuplicateReaderError):
        store.add_admin(second, "another password")


def test_names_are_stored_in_nfkc_and_sign_in_normalises_too(tmp_path):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    store.add_admin("\ufb01ona", "long enough")  # the "fi" ligature
    assert store.is_admin("fiona") and store.authenticate("\ufb01ona", "long enough")


def test_answers_and_saves_are_bounded(tiny_demo, tmp_path, monkeypatch):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    study_id = store.create_study({"name": "review", "kind": "failure_review", "dataset": str(tiny_demo),
                                   "cases": ["demo_00000"], "questions": default_questions("failure_review"),
                                   "seed": 1})
    store.add_reader(study_id, "ana", "correct horse")
    case = store.cases_for(study_id, "ana")[0]
    text_question = next(q["id"] for q in store.study(study_id)["questions"] if q["type"] == "text")
    with pytest.raises(InvalidAnswerError, match="at most 10000"):
        store.submit(study_id, "ana", case, text_question, "x" * 20_000_000)
    monkeypatch.setattr(answers_module, "MAX_SAVES_PER_CASE", 3)
    for _ in range(3):
        store.submit(study_id, "ana", case, text_question, "fine")
    with pytest.raises(InvalidAnswerError, match="at most 3 per case"):
        store.submit(study_id, "ana", case, text_question, "one more")
    assert len(store.events(study_id)) == 3
