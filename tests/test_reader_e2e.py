"""Reader study end to end in headless Chromium: `streamlit run app.py` in study mode, a reader
signs in, draws a box on a detection case with the mouse, saves, and the box is in the study's
COCO export (read back with pycocotools). Needs Debian's chromium.

Set MEDATTN_SCREENSHOTS=DIR to keep screenshots of the Reader and Study admin pages there."""

from __future__ import annotations

import json

import pytest

from medattn.data import load_dataset
from medattn.reader.export import export_study
from medattn.reader.presets import default_questions
from medattn.store.annotations import AnnotationStore
from tests.app_env import app_env
from tests.test_e2e import CHROMIUM, SLOW, browser, screenshot, streamlit_server, wait_idle  # noqa: F401, F811 - browser is a fixture

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium: apt-get install -y chromium chromium-driver"
)
READER = ("alice", "alice-password")
ADMIN = ("coordinator", "admin-password")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    world = app_env(tmp_path_factory.getbasetemp() / "app_env")
    db = tmp_path_factory.mktemp("reader_e2e") / "studies.sqlite"
    store = AnnotationStore(db)
    store.add_admin(*ADMIN)
    data = load_dataset(world.dataset)
    ids = [i for i in data.split("test").index if data.labels(i).any()][:2]
    study_id = store.create_study({"name": "Nodule detection", "kind": "detection", "dataset": str(world.dataset),
                                   "cases": ids, "questions": default_questions("detection"), "seed": 2,
                                   "panels": [{"checkpoint": str(world.checkpoints / "tiny_wildcat"),
                                               "method": "saliency"}]})
    store.add_reader(study_id, *READER)
    return world, db, store, study_id


@pytest.fixture(scope="module")
def server(study, tmp_path_factory):
    world, db, _, _ = study
    env = {**world.environ(), "MEDATTN_STUDY_DB": str(db), "OMP_NUM_THREADS": "1"}
    with streamlit_server(env, tmp_path_factory.mktemp("reader_server")) as url:
        yield url


def sign_in(browser, url: str, name: str, password: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(SLOW)  # a cold server on a shared CPU
    page.goto(url)
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for(timeout=SLOW)
    return page


def drag(page, plot, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag from `start` to `end`, as fractions of the plot area."""
    area = plot.locator(".nsewdrag").first.bounding_box()
    x0, y0 = area["x"] + area["width"] * start[0], area["y"] + area["height"] * start[1]
    x1, y1 = area["x"] + area["width"] * end[0], area["y"] + area["height"] * end[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
    page.mouse.up()


def test_draw_a_box_and_find_it_in_the_coco_export(server, browser, study, tmp_path):
    world, _, store, study_id = study
    page = sign_in(browser, server, *READER)
    page.get_by_role("heading", name="Reader").wait_for(timeout=SLOW)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=SLOW)
    wait_idle(page)
    drag(page, plot, (0.3, 0.3), (0.6, 0.55))
    page.get_by_text("1", exact=True).first.wait_for(timeout=SLOW)  # the box's number in the list below
    wait_idle(page)
    assert page.get_by_role("button", name="Delete").count() == 1
    page.get_by_role("radio", name="yes", exact=True).click()
    page.get_by_role("radio", name="4", exact=True).click()
    screenshot(page, "reader_detection")
    page.get_by_role("button", name="Save and next").click()
    page.get_by_text("Case 1 saved.").wait_for(timeout=SLOW)
    wait_idle(page)
    assert page.get_by_test_id("stException").count() == 0

    case = store.cases_for(study_id, READER[0])[0]
    boxes = store.case_answers(study_id, READER[0], case)["boxes"]
    assert len(boxes) == 1
    out = export_study(store, study_id, "coco", tmp_path / "boxes.coco.json")
    from pycocotools.coco import COCO

    coco = COCO(str(out))
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len(annotations) == 1
    x, y, w, h = annotations[0]["bbox"]
    assert [x, y, w, h] == [boxes[0][k] for k in ("x", "y", "w", "h")]
    side = load_dataset(world.dataset).images.iloc[0]["width"]
    assert 0.15 * side < x < 0.45 * side and 0.1 * side < w < 0.5 * side  # where the mouse drew it
    assert json.loads(out.read_text())["images"][0]["file_name"].startswith("case-")  # no image ids


def test_admin_page_renders(server, browser):
    page = sign_in(browser, server, *ADMIN)
    page.get_by_role("link", name="Study admin").click()
    page.get_by_role("heading", name="Exports").wait_for(timeout=SLOW)
    wait_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "study_admin")
