"""End to end in headless Chromium: start `streamlit run app.py` on a free port, pick an image and
see the grid with its scores, download the numbers CSV, open a failure case in Compare, and
visit every page. Needs Debian's chromium (`apt-get install -y chromium chromium-driver`).

Set MEDATTN_SCREENSHOTS=DIR to keep a screenshot of each page there."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from medattn.data import load_dataset
from tests.app_env import app_env

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium: apt-get install -y chromium chromium-driver"
)
REPO = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
SLOW = 180_000  # ms: a cold grid computes PDA and integrated gradients on a shared CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return app_env(tmp_path_factory.getbasetemp() / "app_env")


# Pinned here too, so a change of .streamlit/config.toml cannot make the browser tests reach out.
TEST_FLAGS = ("--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
              "--browser.gatherUsageStats", "false")


@contextmanager
def streamlit_server(env: dict[str, str], log_dir: Path, flags: tuple[str, ...] = TEST_FLAGS,
                     port: int | None = None) -> Iterator[str]:
    """`streamlit run app.py` with `env` and `flags` on `port` (default a free one); yields its
    URL once healthy, stops it after. Fails the test with the server's log when it does not
    start within a minute."""
    port = port or free_port()
    log = open(log_dir / "streamlit.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port), *flags],
        cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"streamlit did not start:\n{log.read()[-3000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    # tiny models: one thread is fastest; no maps of neighbouring images computed ahead (AppTest covers that),
    # so the server stops without waiting for one and the pages' timings hold on a shared CPU
    env = {**world.environ(), "OMP_NUM_THREADS": "1", "MEDATTN_PREFETCH": "0"}
    with streamlit_server(env, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1800}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("MEDATTN_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def image_chooser(page):
    return page.get_by_role("combobox", name=re.compile(r"Image \(\d+ match\)"))


def wait_idle(page, quiet_ms: int = 1500) -> None:
    """Until no script run has been going for `quiet_ms` (Streamlit's running icon is gone)."""
    running = page.get_by_test_id("stStatusWidgetRunningIcon").or_(page.get_by_test_id("stStatusWidgetRunningManIcon"))
    deadline = time.monotonic() + SLOW / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        if running.count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
            return
        page.wait_for_timeout(100)
    raise AssertionError("the app kept running")


def no_exceptions(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


def test_pick_an_image_see_scores_and_download_csv(server, page, world, tmp_path):
    dataset = load_dataset(world.dataset)
    positives = [i for i in dataset.split("test").index if dataset.labels(i).any()]
    page.goto(server)
    page.get_by_role("button", name="Download numbers CSV").wait_for(timeout=SLOW)

    chosen = positives[1]
    image_chooser(page).click()
    page.get_by_role("option", name=chosen, exact=True).click()
    page.wait_for_url(re.compile(f"image={chosen}"), timeout=SLOW)  # bound to the URL: a view can be shared
    page.get_by_text(f"{chosen} · split test").wait_for(timeout=SLOW)
    wait_idle(page)
    page.locator(".js-plotly-plot").first.get_by_text(re.compile(r"AUPRC=\d\.\d\d")).first.wait_for(timeout=SLOW)
    no_exceptions(page)
    screenshot(page, "compare")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download numbers CSV").click()
    numbers = pd.read_csv(download.value.path())
    assert set(numbers["image_id"]) == {chosen}
    assert len(numbers) == 7  # 2 models × 4 default methods, less WILDCAT maps of the linear head
    assert numbers["auprc"].between(0, 1).all() and set(numbers["hit"]) <= {0, 1}
    assert set(numbers["method"]) == {"saliency", "integrated_gradients", "pda", "wildcat"}


def test_failure_case_opens_in_compare(server, page):
    page.goto(f"{server}/failures")
    open_buttons = page.get_by_role("button", name="Open in Compare")
    open_buttons.first.wait_for(timeout=SLOW)
    wait_idle(page)  # the case read and the button clicked must come from one settled list
    no_exceptions(page)
    screenshot(page, "failures")
    first_case = page.get_by_test_id("stCaptionContainer").filter(has_text=re.compile(r"(false|true) \w+")).first
    image_id = re.match(r"\s*(\S+) ·", first_case.inner_text()).group(1)
    open_buttons.first.click()
    page.get_by_role("heading", name="Compare").wait_for(timeout=SLOW)
    page.get_by_text(f"{image_id} · split").wait_for(timeout=SLOW)
    wait_idle(page)
    assert image_chooser(page).input_value() == image_id
    page.locator(".js-plotly-plot").first.wait_for(timeout=SLOW)
    no_exceptions(page)


@pytest.mark.parametrize("path, heading, marker", [
    ("leaderboard", "Leaderboard", "Download localization CSV"),
    ("data", "Data", "Positives per class and split"),
    ("models", "Models", "Your models in"),
])
def test_pages_render(server, page, path, heading, marker):
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=heading).first.wait_for(timeout=SLOW)
    page.get_by_text(marker).first.wait_for(timeout=SLOW)
    wait_idle(page)
    no_exceptions(page)
    screenshot(page, path)


def test_a_reload_and_a_new_tab_keep_the_models_and_image(server, page, world):
    """The sidebar's choice and the image live in the URL: a reload or the link in a new tab
    opens the same view (it fell back to the defaults)."""
    dataset = load_dataset(world.dataset)
    chosen = dataset.split("val").index[0]
    page.goto(f"{server}/?models=tiny_linear&image={chosen}")
    for view in (page, None):
        if view is None:
            page.reload()
        page.get_by_text(f"{chosen} · split val").wait_for(timeout=SLOW)
        wait_idle(page)
        assert "models=tiny_linear" in page.url and f"image={chosen}" in page.url
        titles = page.locator(".js-plotly-plot").first.inner_text()
        assert "tiny_linear" in titles and "tiny_wildcat" not in titles
    tab = page.context.new_page()
    tab.goto(page.url)
    tab.get_by_text(f"{chosen} · split val").wait_for(timeout=SLOW)
    wait_idle(tab)
    assert "tiny_wildcat" not in tab.locator(".js-plotly-plot").first.inner_text()
    no_exceptions(tab)
    screenshot(tab, "reloaded_link")
