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
    test = data.split("test")
    ids = [test.index[test["nodule"] == 1][0], test.index[test["nodule"] == 0][0]]  # with and without the finding
    study_id = store.create_study({"name": "Nodule detection", "kind": "detection", "dataset": str(world.dataset),
                                   "cases": ids, "questions": default_questions("detection", "nodule"), "seed": 2,
                                   "target_class": "nodule",
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


def viewer(page):
    """The case viewer's root (inside the component's shadow root; Playwright's CSS pierces it)."""
    root = page.locator(".mv").first
    page.locator('.mv[data-ready="1"]').first.wait_for(timeout=SLOW)
    return root


def state(root) -> dict:
    return root.evaluate("r => ({...r.dataset})")


def image_point(root, fx: float, fy: float) -> tuple[float, float]:
    """Page coordinates of the point at fractions (fx, fy) of the image in the first viewport."""
    canvas = root.locator("canvas").first.bounding_box()
    x, y, w, h = json.loads(state(root)["imageRect"])
    return canvas["x"] + x + w * fx, canvas["y"] + y + h * fy


def drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 10) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    for step in range(1, steps + 1):
        page.mouse.move(start[0] + (end[0] - start[0]) * step / steps, start[1] + (end[1] - start[1]) * step / steps)
    page.mouse.up()


def test_viewer_keys_and_a_box_drawn_reach_the_coco_export(server, browser, study, tmp_path):
    world, _, store, study_id = study
    page = sign_in(browser, server, *READER)
    outside = []  # the viewer is self-contained: every request goes to the app's own server
    own = (server, f"blob:{server}", "data:")  # the component's code is loaded from a blob of the page
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(own) else None)
    page.get_by_role("heading", name="Reader").wait_for(timeout=SLOW)
    root = viewer(page)
    wait_idle(page)
    first = state(root)
    width = json.loads(first["imageRect"])[2]
    assert int(first["panelWidth"]) >= 600 and width >= 600  # read at a size, not a thumbnail
    assert first["tool"] == "box" and first["zoom"] == "1.000"
    page.mouse.move(*image_point(root, 0.5, 0.5))  # the keys act while the pointer is over the viewer

    def after(key: str) -> dict:
        page.keyboard.press(key)
        page.wait_for_timeout(150)
        return state(root)

    zoomed = after("+")
    assert float(zoomed["zoom"]) == pytest.approx(1.25)
    assert json.loads(zoomed["imageRect"])[2] == pytest.approx(1.25 * width, rel=0.01)  # zoom enlarges
    assert float(after("-")["zoom"]) == pytest.approx(1.0)
    assert after("z")["tool"] == "zoom"
    drag(page, image_point(root, 0.5, 0.6), image_point(root, 0.5, 0.3))  # drag up: enlarge
    assert float(state(root)["zoom"]) > 1.5
    assert after("i")["invert"] == "true"
    lung = after("3")
    assert (lung["preset"], lung["window"], lung["level"]) == ("2", "0.600", "0.300")
    assert after("w")["tool"] == "wl"
    drag(page, image_point(root, 0.4, 0.5), image_point(root, 0.6, 0.5))  # drag right: a wider window
    widened = state(root)
    assert float(widened["window"]) > 0.6 and widened["preset"] == "-1"
    reset = after(" ")
    assert (reset["zoom"], reset["invert"], reset["preset"], reset["window"]) == ("1.000", "false", "0", "1.000")

    assert after("b")["tool"] == "box"
    drag(page, image_point(root, 0.3, 0.3), image_point(root, 0.6, 0.55))
    delete = page.get_by_role("button", name="Delete")
    delete.first.wait_for(timeout=SLOW)  # the box is in the page's list below the viewer
    wait_idle(page)
    assert delete.count() == 1 and state(root)["boxes"] == "1"
    page.mouse.move(*image_point(root, 0.8, 0.8))
    after("Control+z")  # undo: the box goes, in the viewer and in the list
    delete.first.wait_for(state="detached", timeout=SLOW)
    wait_idle(page)
    assert state(root)["boxes"] == "0"
    page.mouse.move(*image_point(root, 0.8, 0.8))
    after("Control+y")  # redo
    delete.first.wait_for(timeout=SLOW)
    wait_idle(page)
    page.get_by_role("radio", name="yes", exact=True).click()
    page.get_by_role("radio", name="4", exact=True).click()
    screenshot(page, "reader_detection")
    page.get_by_role("button", name="Save and next").click()
    page.get_by_text("Case 1 saved.").wait_for(timeout=SLOW)
    wait_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    assert not outside, outside

    case = store.cases_for(study_id, READER[0])[0]
    boxes = store.case_answers(study_id, READER[0], case)["boxes"]
    assert len(boxes) == 1 and boxes[0]["label"] == "nodule"  # the box names the finding
    out = export_study(store, study_id, "coco", tmp_path / "boxes.coco.json")
    from pycocotools.coco import COCO

    coco = COCO(str(out))
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len(annotations) == 1
    x, y, w, h = annotations[0]["bbox"]
    assert [x, y, w, h] == [boxes[0][k] for k in ("x", "y", "w", "h")]
    assert coco.loadCats(annotations[0]["category_id"])[0]["name"] == "nodule"
    side = load_dataset(world.dataset).images.iloc[0]["width"]
    assert x == pytest.approx(0.3 * side, abs=2) and w == pytest.approx(0.3 * side, abs=2)  # where the mouse drew it
    assert y == pytest.approx(0.3 * side, abs=2) and h == pytest.approx(0.25 * side, abs=2)
    assert json.loads(out.read_text())["images"][0]["file_name"].startswith("case-")  # no image ids


def test_admin_page_renders(server, browser):
    page = sign_in(browser, server, *ADMIN)
    page.get_by_role("link", name="Study admin").click()
    page.get_by_role("heading", name="Exports").wait_for(timeout=SLOW)
    wait_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "study_admin")
