"""Reader studies through Streamlit's AppTest in study mode (MEDATTN_STUDY_DB set): an admin
creates each kind of study on the Study admin page (from a split, a failure-case selection and
an image list) with two readers; each reader signs in, answers two cases, reloads and resumes
at the right case; the admin sees progress, agreement and the charts and downloads every
export. Security: readers get the Reader page only, see only their own answers, and the
page of a heatmap-rating case names no model, method or checkpoint."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from medattn import inference, pipeline
from medattn.data import load_dataset
from medattn.reader.export import import_study, read_study_json
from medattn.reader.presets import default_questions
from medattn.store.annotations import AnnotationStore
from medattn.reader.mrmc_study import study_mrmc
from medattn.reader.simulate import simulate_study
from medattn.reader.validity import image_truth
from tests.app_env import AppEnv, app_env

APP = str(Path(__file__).resolve().parents[1] / "workbench.py")
TIMEOUT = 300
ADMIN = ("coordinator", "admin-password")
READERS = (("alice", "alice-password"), ("bob", "bob-password-2"))
SIGN_IN = "FormSubmitter:login-Sign in"


@dataclass
class World:
    app: AppEnv
    db: Path
    store: AnnotationStore


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    env = app_env(tmp_path_factory.getbasetemp() / "app_env")
    db = tmp_path_factory.mktemp("reader_app") / "studies.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "CHECKPOINT_DIR", env.checkpoints)
        patch.setattr(pipeline, "CACHE_DIR", env.cache)
        patch.setenv("MEDATTN_DATASET", str(env.dataset))
        patch.setenv("MEDATTN_STUDY_DB", str(db))
        store = AnnotationStore(db)
        store.add_admin(*ADMIN)
        yield World(env, db, store)
    torch.set_num_threads(threads)


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """file name → bytes of every download button rendered (AppTest keeps no media files)."""
    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            seen[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return seen


def sign_in(name: str, password: str, page: str | None = None) -> AppTest:
    """A fresh session (a new tab or a reload) signed in as `name`."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_methods"] = ["saliency"]  # an admin lands on Compare: keep its grid quick
    at.run()
    assert [t.value for t in at.title] == ["medattn reader studies"]  # nothing but the sign-in
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    at.button(key=SIGN_IN).click().run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def page_source(at: AppTest) -> str:
    """Every element's protobuf as text: what the browser receives."""
    out, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        if getattr(node, "proto", None) is not None:
            out.append(str(node.proto))
        children = getattr(node, "children", {})
        stack.extend(children.values() if isinstance(children, dict) else children)
    return "\n".join(out)


def create_study(at: AppTest, kind: str, source: str, name: str, world: World) -> str:
    at.text_input(key="sa_new_name").input(name)
    at.selectbox(key="sa_new_kind").set_value(kind).run()
    at.radio(key="sa_new_source").set_value(source).run()
    if source == "split":
        at.number_input(key="sa_new_count").set_value(3)
    elif source == "failure cases":
        at.selectbox(key="sa_new_fail_model").set_value("tiny_linear")
        at.selectbox(key="sa_new_fail_method").set_value("saliency")
        at.number_input(key="sa_new_fail_count").set_value(3)
    else:
        data = load_dataset(world.app.dataset)
        ids = [i for i in data.split("test").index if data.labels(i).any()][:3]
        if kind == "detection":  # a detection study reads images without the finding too
            ids = ids[:2] + [i for i in data.split("test").index if not data.labels(i).any()][:1]
        at.text_area(key="sa_new_ids").input("\n".join(ids))
    at.run()
    if not (kind == "failure_review" and source == "failure cases"):
        options = at.multiselect(key="sa_new_panels").options
        at.multiselect(key="sa_new_panels").set_value(options[:2] if kind == "heatmap_rating" else options[:1])
    at.button(key="sa_new_create").click().run()
    assert not at.exception and "Created study" in texts(at.success), texts(at.error)
    study_id = at.session_state["sa_study"]
    form = next(b.key for b in at.button if b.key and b.key.startswith(f"FormSubmitter:sa_reader_form_{study_id}"))
    for reader, password in READERS:
        at.text_input(key="sa_reader_name").input(reader)
        at.text_input(key="sa_reader_password").input(password)
        at.button(key=form).click().run()
        assert f"Added {reader}" in texts(at.success)
    at.text_input(key="sa_reader_name").input(READERS[0][0])
    at.text_input(key="sa_reader_password").input("a different password")
    at.button(key=form).click().run()
    assert "is taken by another account" in texts(at.error)  # a duplicate name is refused, clearly
    assert list(world.store.readers(study_id)) == [r for r, _ in READERS]
    return study_id


def choose_study(at: AppTest, study_id: str) -> None:
    if at.selectbox(key="rd_study").value != study_id:
        at.selectbox(key="rd_study").set_value(study_id).run()


def answer_case(at: AppTest, reader_index: int, case_number: int) -> None:
    """Answer every question on screen (values differ between readers) and save. Boxes first:
    their buttons rerun the page, and a form's widgets keep only what is submitted."""
    add = [b for b in at.button if b.key and b.key.endswith("_boxes__add")]
    if add:
        if case_number == 0:
            add[0].click().run()  # one box, then edit it by its numbers
            x = next(n for n in at.number_input if n.key.endswith("__x1_v1"))
            x.set_value(10.0).run()
        else:
            next(c for c in at.checkbox if c.key.endswith("_boxes__none")).check().run()
    for group in at.button_group:
        options = list(group.options)
        group.set_value(options[(reader_index + case_number) % len(options)] if reader_index else options[-2])
    for select in at.multiselect:
        if select.key.endswith("_regions"):
            select.set_value(["hilum", "ribs"][: 1 + reader_index])
    save = next(b for b in at.button if b.key and b.key.startswith("FormSubmitter:rd_") and b.key.endswith("Save and next"))
    save.click().run()
    assert not at.exception and "saved" in texts(at.success), texts(at.error)


KINDS = [("heatmap_rating", "split"), ("failure_review", "failure cases"), ("detection", "image list")]


@pytest.mark.parametrize("kind, source", KINDS)
def test_study_from_creation_to_exports(world, downloads, kind, source):
    admin = sign_in(*ADMIN, page="study_admin")
    assert admin.title[0].value == "Study admin"
    study_id = create_study(admin, kind, source, f"{kind} round 1", world)

    for index, (reader, password) in enumerate(READERS):
        at = sign_in(reader, password)
        assert at.title[0].value == "Reader"
        choose_study(at, study_id)
        order = world.store.cases_for(study_id, reader)
        assert at.selectbox(key="rd_case_select").value == order[0]
        labels = at.selectbox(key="rd_study").options
        for number in range(2):
            answer_case(at, index, number)
        # the browser sends back the label it was shown: a label that changed with progress made the next save
        # land on another study, dropped
        assert at.selectbox(key="rd_study").options == labels
        assert at.selectbox(key="rd_case_select").value == order[2]
        reloaded = sign_in(reader, password)  # a reload is a new session
        choose_study(reloaded, study_id)
        assert reloaded.selectbox(key="rd_case_select").value == order[2] == world.store.next_case(study_id, reader)
        assert "You resume at case 3" in texts(reloaded.success)
        at.run()  # the first tab is told that another one holds the study, and can take it back
        assert "signed in on another tab" in texts(at.warning)
        at.button(key="rd_take_over").click().run()
        assert at.selectbox(key="rd_case_select").value == order[2]

    events = world.store.events(study_id)
    assert (events["seconds"] >= 0).all() and events["shown_at"].notna().all()  # time on case recorded
    admin.selectbox(key="sa_study").set_value(study_id).run()
    assert not admin.exception
    progress = next(d.value for d in admin.dataframe if "n_done" in d.value.columns)
    assert progress.set_index("reader")["n_done"].to_dict() == {"alice": 2, "bob": 2}
    agreement = next(d.value for d in admin.dataframe if "measure" in d.value.columns)
    assert set(agreement["question"]) >= {"rating"} if kind == "heatmap_rating" else len(agreement) >= 1
    assert "Fleiss' kappa" in set(agreement["measure"]) and agreement["level"].str.len().gt(0).all()
    # never a raw None: a value, or "—" that the caption under the tables explains
    assert all(isinstance(v, str) and re.fullmatch(r"—|-?\d\.\d{3}", v) for v in agreement["value"]), agreement
    if "—" in set(agreement["value"]):
        assert "—: not defined yet" in texts(admin.caption)
    charts = [c.proto.spec for c in admin.get("plotly_chart")]
    assert any("Cases done per reader" in c for c in charts)
    if kind == "heatmap_rating":
        assert any("Mean map rating" in c for c in charts)
        means = next(d.value for d in admin.dataframe if "mean" in d.value.columns)
        assert set(means["checkpoint"]) <= {"tiny_linear", "tiny_wildcat"} and means["mean"].between(1, 5).all()
    if kind == "failure_review":
        assert any("region tags per model" in c for c in charts)
        tags = next(d.value for d in admin.dataframe if "tag" in d.value.columns)
        assert tags["count"].sum() == 2 * 1 + 2 * 2  # alice one tag per case, bob two

    expected = {"heatmap_rating": ["csv", "json", "key.csv", "mrmc.csv", "imrmc"],
                "failure_review": ["csv", "json", "key.csv"],
                "detection": ["csv", "json", "key.csv", "coco.json", "boxes.csv", "mrmc.csv", "imrmc"]}[kind]
    files = {suffix: downloads[f"{study_id}.{suffix}"] for suffix in expected}
    assert all(files.values())
    long = pd.read_csv(BytesIO(files["csv"]), comment="#")
    assert set(long["reader"]) == {"alice", "bob"} and long["case_id"].str.startswith("case-").all()
    path = world.db.parent / f"{study_id}.json"
    path.write_bytes(files["json"])
    read_study_json(path)
    copy = import_study(world.store, path)
    mine = world.store.answers(study_id).drop(columns="submitted_at").sort_values(["reader", "case_id", "question_id"])
    back = world.store.answers(copy).drop(columns="submitted_at").sort_values(["reader", "case_id", "question_id"])
    assert mine.reset_index(drop=True).to_json() == back.reset_index(drop=True).to_json()  # the JSON round-trips
    assert world.store.case_key(copy)["image_id"].tolist() == world.store.case_key(study_id)["image_id"].tolist()
    if kind == "detection":
        from pycocotools.coco import COCO

        coco_path = world.db.parent / f"{study_id}.coco.json"
        coco_path.write_bytes(files["coco.json"])
        coco = COCO(str(coco_path))
        assert len(coco.getAnnIds()) == 2  # one box per reader; the other cases say "no finding"
        box = coco.loadAnns(coco.getAnnIds())[0]["bbox"]
        assert box[0] == 10.0  # the edited x
        mrmc = pd.read_csv(BytesIO(files["mrmc.csv"]), comment="#")
        assert list(mrmc.columns) == ["reader", "modality", "case", "truth", "rating"] and len(mrmc) == 4


def test_readers_see_only_the_reader_page_and_their_own_work(world):
    store = world.store
    data = load_dataset(world.app.dataset)
    ids = [i for i in data.split("test").index if data.labels(i).any()][:3]
    checkpoint = str(world.app.checkpoints / "tiny_wildcat")
    study_id = store.create_study({"name": "Map quality", "kind": "heatmap_rating", "dataset": str(world.app.dataset),
                                   "cases": ids, "questions": default_questions("heatmap_rating"), "seed": 5,
                                   "panels": [{"checkpoint": checkpoint, "method": "saliency"},
                                              {"checkpoint": str(world.app.checkpoints / "tiny_linear"),
                                               "method": "gradcam"}]})
    store.add_reader(study_id, "carol", "carol-password")
    store.add_reader(study_id, "dave", "dave-password")
    first = store.cases_for(study_id, "carol")[0]
    store.submit_case(study_id, "carol", first, {"rating": {c: 5 for c in store.panels_for(study_id, "carol", first)}})

    at = sign_in("dave", "dave-password")
    choose_study(at, study_id)
    assert "0 of 3 cases done" in page_source(at)  # carol's answer is not dave's
    for page in ("study_admin", "compare", "failures", "leaderboard", "data"):
        with pytest.raises(ValueError, match=r"Known pages: \['[^']*pages/reader.py'\]"):
            at.switch_page(f"pages/{page}.py")  # the server registered the Reader page alone for this session
    assert not at.sidebar.text_input  # no dataset or checkpoint path to type

    carol = sign_in("carol", "carol-password")
    choose_study(carol, study_id)
    carol.selectbox(key="rd_case_select").set_value(first).run()
    ratings = [g.value for g in carol.button_group]
    assert ratings == [5, 5]  # her own stored answers prefill her form
    source = page_source(carol)
    assert "Map " in source and len(carol.get("bidi_component")) == 1  # the case viewer
    for secret in ("tiny_wildcat", "tiny_linear", "saliency", "gradcam", "resnet", "wildcat", "linear head",
                   str(world.app.checkpoints), *ids):
        assert secret not in source, secret


def test_a_detection_study_built_in_the_pages_natural_order_has_negatives_or_is_refused(world):
    """Name, Kind → detection, cases from the test split, a map, Create: the "only images with the
    finding" switch a rating study starts with no longer carries over to detection (every case
    positive, N0 = 0 in the MRMC exports); switched on, creation is refused with the reason."""
    admin = sign_in(*ADMIN, page="study_admin")
    before = set(world.store.list_studies()["id"])
    admin.text_input(key="sa_new_name").input("Nodules with AI")
    admin.run()  # the form as first shown (kind: failure review, switch on)
    admin.selectbox(key="sa_new_kind").set_value("detection").run()
    admin.radio(key="sa_new_source").set_value("split").run()
    admin.number_input(key="sa_new_count").set_value(12).run()
    admin.multiselect(key="sa_new_panels").set_value(admin.multiselect(key="sa_new_panels").options[:1]).run()
    assert "without" in texts(admin.caption)
    admin.button(key="sa_new_create").click().run()
    assert not admin.exception and "Created study" in texts(admin.success), texts(admin.error)
    (study_id,) = set(world.store.list_studies()["id"]) - before
    spec = world.store.study(study_id)
    truth = image_truth(load_dataset(world.app.dataset), spec["cases"], spec.get("target_class"))
    assert 0 < truth.sum() < len(truth)  # positives and negatives
    assert spec["washout_days"] == 28 and spec["arms"] == "crossed"

    admin.text_input(key="sa_new_name").input("Positives only")
    admin.toggle(key="sa_new_positives_detection").set_value(True).run()
    assert "needs images with and without" in texts(admin.error)
    admin.button(key="sa_new_create").click().run()
    assert "needs images with and without the finding" in texts(admin.error)
    assert set(world.store.list_studies()["id"]) - before == {study_id}  # refused: nothing created


def test_admin_sees_the_mrmc_analysis_and_roc_curves_of_an_ai_study(world):
    study_id = simulate_study(world.store, world.app.dataset, str(world.app.checkpoints / "tiny_wildcat"),
                              readers=3, images=16)
    expected = study_mrmc(world.store, study_id)
    admin = sign_in(*ADMIN, page="study_admin")
    admin.selectbox(key="sa_study").set_value(study_id).run()
    assert not admin.exception, [e.value for e in admin.exception]
    metrics = {m.label: m.value for m in admin.metric}
    assert metrics["AUC with AI"] == f"{expected['auc']['with_ai']:.3f}"
    assert metrics["AUC without AI"] == f"{expected['auc']['without_ai']:.3f}"
    assert metrics["AUC change with AI"] == f"{expected['difference']:+.3f}"
    assert metrics["p (AUC)"] == f"{expected['p']:.4f}"
    deltas = {m.label: m.proto.delta for m in admin.metric}  # the CIs under the numbers
    low, high = expected["ci"]
    assert deltas["AUC change with AI"] == f"95% CI {low:+.3f} to {high:+.3f}"
    sentence = texts(admin.markdown).replace("\\", "")
    assert f"With AI, the readers' mean AUC was {abs(expected['difference']):.3f}" in sentence
    assert f"p = {expected['p']:.3g}" in sentence and "generalising to other readers and images like these" in sentence
    charts = [c.proto.spec for c in admin.get("plotly_chart")]
    roc = next(c for c in charts if "ROC curves per arm" in c)
    assert "with AI: average of 3 readers, AUC" in roc and "without AI: each reader" in roc
    assert "false positive rate (1 \\u2212 specificity)" in roc  # JSON escapes the minus sign
    admin.selectbox(key=f"sa_mrmc_q_{study_id}").set_value("present").run()  # yes/no: sensitivity, specificity
    labels = {m.label for m in admin.metric}
    assert {"sensitivity with AI", "specificity without AI"} <= labels


def test_admin_reads_what_an_incomplete_ai_study_lacks_in_plain_words(world):
    """One reader through the without-AI session only: the MRMC part says what is missing and
    what to do (never a repr such as "the table has only ['without_ai']"), and the study is
    labelled as simulated."""
    study_id = simulate_study(world.store, world.app.dataset, str(world.app.checkpoints / "tiny_wildcat"),
                              readers=1, images=8, done=0.5)
    admin = sign_in(*ADMIN, page="study_admin")
    admin.selectbox(key="sa_study").set_value(study_id).run()
    assert not admin.exception, [e.value for e in admin.exception]
    shown = texts(admin.info).replace("\\", "")  # shown as plain text: markdown characters escaped
    assert "Only the without-AI arm has answers so far (1 reader started)" in shown, shown
    assert "[" not in shown and "_ai" not in shown and not admin.metric
    assert "SIMULATED readers" in texts(admin.caption).replace("\\", "")


def test_studies_of_the_same_name_can_each_be_opened_and_a_reload_resumes_the_one_in_progress(world):
    data = load_dataset(world.app.dataset)
    test = data.split("test").index
    ids = [next(i for i in test if data.labels(i).any()), next(i for i in test if not data.labels(i).any())]
    made = [world.store.create_study({"name": "Round 1", "kind": "detection", "dataset": str(world.app.dataset),
                                      "cases": ids, "questions": default_questions("detection"), "seed": 1})
            for _ in range(2)]
    for study_id in made:
        world.store.add_reader(study_id, "gina", "gina-password")
    world.store.submit_case(made[1], "gina", world.store.cases_for(made[1], "gina")[0],
                            {"present": False, "confidence": 1, "boxes": []})
    at = sign_in("gina", "gina-password")
    assert at.selectbox(key="rd_study").value == made[1]  # a new session resumes the study in progress
    labels = at.selectbox(key="rd_study").options
    assert len(set(labels)) == len(labels)  # the browser sends a label back; Streamlit maps it to the LAST option with it
    choose_study(at, made[0])
    assert "0 of 2 cases done" in page_source(at)
    choose_study(at, made[1])
    assert at.selectbox(key="rd_study").value == made[1]
    assert "1 of 2 cases done" in page_source(at)  # the second study's progress, not the first's


def two_case_study(world: World, folder: Path, name: str, seed: int) -> tuple[Path, str]:
    """A copy of the app's dataset in `folder` (free to damage) and a detection study on it of one
    test image with a finding and one without: (the copy, the study id)."""
    copy = Path(shutil.copytree(world.app.dataset, folder))
    data = load_dataset(copy)
    test = data.split("test").index
    ids = [next(i for i in test if data.labels(i).any()), next(i for i in test if not data.labels(i).any())]
    return copy, world.store.create_study({"name": name, "kind": "detection", "dataset": str(copy), "cases": ids,
                                           "questions": default_questions("detection"), "seed": seed})


def test_wrong_password_rate_limit_and_unreadable_case(world, tmp_path):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key="login_name").input("erin")
    at.text_input(key="login_password").input("not the password")
    at.button(key=SIGN_IN).click().run()
    assert "Wrong name or password" in texts(at.error)
    for _ in range(5):
        at.button(key=SIGN_IN).click().run()
    assert "Too many failed sign-ins" in texts(at.error)

    copy, study_id = two_case_study(world, tmp_path / "copy", "Readability", seed=1)
    data = load_dataset(copy)
    world.store.add_reader(study_id, "frank", "frank-password")
    broken = world.store.cases_for(study_id, "frank")[0]
    image_id = world.store.case_key(study_id).set_index("case_id").at[broken, "image_id"]
    (copy / "images" / data.images.at[image_id, "path"]).write_bytes(b"not an image")
    reader = sign_in("frank", "frank-password")
    choose_study(reader, study_id)
    assert "Case 1 is unavailable" in texts(reader.warning)
    assert str(copy) not in page_source(reader)  # no server path reaches a reader
    reader.button(key="rd_next").click().run()
    assert not reader.warning and reader.get("bidi_component")  # the other case works

    shutil.rmtree(copy)
    reader.run()
    assert "not where they were" in texts(reader.error)
    admin = sign_in(*ADMIN, page="study_admin")
    admin.selectbox(key="sa_study").set_value(study_id).run()
    assert "is gone" in texts(admin.warning)

    # Two admins: another one renames the study while this one is typing the new folder. The label this
    # session showed stays (the browser sends it back); the save on top of the revision shown is refused.
    labels = admin.selectbox(key="sa_study").options
    world.store.update_study(study_id, {"name": "Readability, renamed"}, world.store.study(study_id)["revision"])
    admin.text_input(key="sa_moved").input(str(tmp_path / "new place"))
    (tmp_path / "new place").mkdir()
    admin.button(key="sa_moved_save").click().run()
    assert admin.selectbox(key="sa_study").options == labels
    assert "changed since revision" in texts(admin.error)
    assert world.store.study(study_id)["dataset"] == str(copy)  # the other admin's save stands
    admin.button(key="sa_moved_save").click().run()  # seen now: a deliberate save goes through
    assert world.store.study(study_id)["dataset"] == str(tmp_path / "new place")
    assert world.store.study(study_id)["name"] == "Readability, renamed"


def test_a_case_whose_image_left_the_dataset_is_skipped_and_counted(world, tmp_path):
    """The dataset was rebuilt without one case's image (the tester's KeyError, and a traceback
    for the reader): the reader sees that case as unavailable, skips to the next and reads it;
    Study admin counts the case and names its image."""
    copy, study_id = two_case_study(world, tmp_path / "rebuilt", "Rebuilt", seed=2)
    world.store.add_reader(study_id, "gina", "gina-password")
    first, second = world.store.cases_for(study_id, "gina")
    gone = world.store.case_key(study_id).set_index("case_id").at[first, "image_id"]
    for name in ("images.csv", "boxes.csv"):
        table = pd.read_csv(copy / name, dtype=str)
        table[table["image_id"] != gone].to_csv(copy / name, index=False)

    reader = sign_in("gina", "gina-password")
    choose_study(reader, study_id)
    assert not reader.exception and "Case 1 is unavailable" in texts(reader.warning)
    assert gone not in page_source(reader) and str(copy) not in page_source(reader)
    reader.button(key="rd_skip").click().run()
    assert not reader.exception and not reader.warning
    assert reader.selectbox(key="rd_case_select").value == second and reader.get("bidi_component")

    admin = sign_in(*ADMIN, page="study_admin")
    admin.selectbox(key="sa_study").set_value(study_id).run()
    assert not admin.exception and "1 of 2 cases are unavailable" in texts(admin.warning)
    assert gone in page_source(admin)
