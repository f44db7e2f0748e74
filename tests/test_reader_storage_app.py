"""A save the database cannot take tells the reader "not saved" and keeps their answers on the
screen; the next press saves them (Streamlit's AppTest, the Reader page)."""

from __future__ import annotations

from medattn.data import load_dataset
from medattn.reader.errors import StorageError
from medattn.reader.presets import default_questions
from medattn.store.annotations import AnnotationStore
from tests.test_reader_app import sign_in, texts, world  # noqa: F401 - fixture


def test_a_failed_save_says_not_saved_and_keeps_the_answers(world, monkeypatch):  # noqa: F811
    data = load_dataset(world.app.dataset)
    test = data.split("test").index  # a detection study reads images with and without a finding
    cases = [next(i for i in test if data.labels(i).any()), next(i for i in test if not data.labels(i).any())]
    study_id = world.store.create_study({"name": "Outage", "kind": "detection", "dataset": str(world.app.dataset),
                                         "cases": cases,
                                         "questions": default_questions("detection"), "seed": 3})
    world.store.add_reader(study_id, "olga", "olga-password")
    at = sign_in("olga", "olga-password")
    next(c for c in at.checkbox if c.key.endswith("_boxes__none")).check().run()
    chosen = {}
    for group in at.button_group:
        chosen[group.key] = list(group.options)[1]
        group.set_value(chosen[group.key])
    save = next(b for b in at.button if b.key and b.key.startswith("FormSubmitter:rd_") and b.key.endswith("Save and next"))
    real = AnnotationStore.submit_case

    def outage(self, *args, **kwargs):
        raise StorageError("not saved: the study database cannot be written (attempt to write a readonly database)")

    monkeypatch.setattr(AnnotationStore, "submit_case", outage)
    save.click().run()
    assert not at.exception and "Not saved" in texts(at.error) and "still here" in texts(at.error)
    assert {g.key: str(g.value) for g in at.button_group if g.key in chosen} == {k: str(v) for k, v in chosen.items()}
    assert world.store.answers(study_id, reader="olga").empty
    monkeypatch.setattr(AnnotationStore, "submit_case", real)
    save = next(b for b in at.button if b.key and b.key.startswith("FormSubmitter:rd_") and b.key.endswith("Save and next"))
    save.click().run()
    assert "saved" in texts(at.success), texts(at.error)
    assert len(world.store.answers(study_id, reader="olga")) == 3
