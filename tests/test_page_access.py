"""Who may open which page, page by page, through Streamlit's AppTest: a server reachable from
other machines (`--server.address 0.0.0.0`) without MEDATTN_STUDY_DB gives an anonymous visitor
the sign-in and nothing else, whether the page is asked for through the app's menu or run on its
own (Streamlit's legacy pages/ mode runs a page script without workbench.py on the first request after
a start that names its URL, and AppTest always does). The single-user loopback mode (the default) is checked in a real server by
tests/test_server_security.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit import config
from streamlit.testing.v1 import AppTest

from medattn import inference, pipeline
from tests.app_env import app_env

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "workbench.py")
TIMEOUT = 300
# page file → its title: every page of the workbench
PAGES = {"compare": "Compare", "failures": "Failure cases", "leaderboard": "Leaderboard", "data": "Data",
         "models": "Models", "study_admin": "Study admin", "reader": "Reader"}
ADMIN_PAGES = [p for p in PAGES if p != "reader"]


@pytest.fixture(scope="module")
def reachable(tmp_path_factory):
    """The app as `streamlit run app.py --server.address 0.0.0.0` runs it, with no study database
    configured (studies in the cache folder)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    env = app_env(tmp_path_factory.getbasetemp() / "app_env")
    cache = tmp_path_factory.mktemp("reachable_cache")
    address = config.get_option("server.address")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "CHECKPOINT_DIR", env.checkpoints)
        patch.setattr(pipeline, "CACHE_DIR", cache)
        patch.setenv("MEDATTN_DATASET", str(env.dataset))
        patch.delenv("MEDATTN_STUDY_DB", raising=False)
        config.set_option("server.address", "0.0.0.0")
        try:
            yield
        finally:
            config.set_option("server.address", address)
    torch.set_num_threads(threads)


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


@pytest.mark.parametrize("page", list(PAGES))
def test_an_anonymous_visitor_gets_the_sign_in_for_a_page_run_on_its_own(reachable, page):
    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert PAGES[page] not in titles(at) or page == "reader"
    assert at.text_input(key="login_name" if page != "reader" else "reader_login_name")  # the sign-in form
    assert not at.get("file_uploader") and not at.sidebar.text_input and not at.dataframe


@pytest.mark.parametrize("page", list(PAGES))
def test_an_anonymous_visitor_cannot_switch_to_a_page(reachable, page):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert titles(at) == ["medattn reader studies"] and at.text_input(key="login_name")
    with pytest.raises(ValueError, match=r"Known pages: \[[^,]*\]"):  # the sign-in alone was registered
        at.switch_page(f"pages/{page}.py")
