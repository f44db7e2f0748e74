"""Uploads against a hostile visitor, in a real server (`streamlit run app.py` in study mode) with
headless Chromium and raw HTTP: Streamlit's upload endpoint takes a file only from an admin's
session with an uploader on screen, from the browser it was drawn for; an over-limit upload is
refused with its reason, before the body where the size is declared; at most four files per
session; a model's weights go to disk, not into the server's memory, and leave with the file.
Needs Debian's chromium."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.parse
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from medattn.reader.export import export_study
from medattn.ui import uploads
from tests.test_e2e import CHROMIUM, SLOW, browser, screenshot, wait_idle  # noqa: F401 - fixture
from tests.test_reader_e2e import ADMIN, READER, server, study  # noqa: F401 - fixtures
from tests.test_server_security import own_xsrf_cookie, proxied, watch_session_ids  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium: apt-get install -y chromium chromium-driver"
)
MiB = 2**20
BOUNDARY = "medattn-test-boundary"


def put(url: str, session_id: str, cookie: str | None, parts: Iterable[bytes] | bytes, declared: int | None = None,
        xsrf: bool = True, name: str = "upload.json") -> tuple[int, str]:
    """PUT one file to Streamlit's upload endpoint for `session_id` as a browser holding the XSRF
    `cookie` would (None: no cookie); `parts` the file's bytes, sent chunked when an iterable;
    `declared` a Content-Length to announce instead of sending the body. (status, text); status
    0 when the server cut the connection while the body was still coming."""
    where = urllib.parse.urlsplit(url)
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    connection = (http.client.HTTPSConnection(where.hostname, where.port, timeout=120,
                                              context=ssl._create_unverified_context())  # the test's own certificate
                  if where.scheme == "https" else http.client.HTTPConnection(where.hostname, where.port, timeout=120))
    connection.putrequest("PUT", f"/_stcore/upload_file/{session_id}/{uuid.uuid4()}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    connection.putheader("Origin", url)
    if cookie is not None:
        connection.putheader("Cookie", f"_streamlit_xsrf={cookie}")
        if xsrf:
            connection.putheader("X-Xsrftoken", cookie)
    try:
        if declared is not None:
            connection.putheader("Content-Length", str(declared))
            connection.endheaders()
        elif isinstance(parts, bytes):
            body = head + parts + tail
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
        else:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for chunk in (head, *parts, tail):
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return response.status, response.read().decode()
    except (BrokenPipeError, ConnectionResetError):
        try:
            response = connection.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException):
            return 0, ""
    finally:
        connection.close()


def blocks(total: int, size: int = MiB) -> Iterator[bytes]:
    block = b"x" * size
    for _ in range(total // size):
        yield block


def browser_page(browser, url: str, path: str = ""):  # noqa: F811
    """A new browser context on `url/path`; (page, its session ids as they come)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600}, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(SLOW)
    session_ids = watch_session_ids(page)
    page.goto(f"{url}/{path}")
    return page, session_ids


def signed_in(browser, url: str, name: str, password: str):  # noqa: F811
    """A browser signed in as `name`; (page, session id, its XSRF cookie)."""
    page, session_ids = browser_page(browser, url)
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page, session_ids[-1], cookie_of(page)


def cookie_of(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "_streamlit_xsrf")


def study_admin(browser, url: str):  # noqa: F811
    page, session_id, cookie = signed_in(browser, url, *ADMIN)
    page.get_by_role("link", name="Study admin", exact=True).click()
    page.get_by_role("heading", name="Study admin", exact=True).wait_for()
    page.get_by_text("Import a study (JSON backup)").click()
    page.locator(".st-key-sa_import_file input[type=file]").wait_for(state="attached")
    return page, session_id, cookie


def server_pid(url: str) -> int:
    """The process listening on `url`'s port (from /proc: its socket's inode among its fds)."""
    port = urllib.parse.urlsplit(url).port
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes}
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process listens on port {port}")


def rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def spooled(world, pid: int) -> list[Path]:
    folder = world.cache / "uploads" / str(pid)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_only_an_admins_uploader_takes_a_file(server, browser, study):  # noqa: F811
    """Streamlit takes a file for any session that asks; the gate, for an admin's session with
    an uploader on screen, from the admin's browser, with the XSRF header, only."""
    anonymous, anonymous_ids = browser_page(browser, server)
    anonymous.get_by_role("button", name="Sign in").wait_for()
    wait_idle(anonymous)
    reader, reader_id, reader_cookie = signed_in(browser, server, *READER)
    wait_idle(reader)
    assert reader.locator("input[type=file]").count() == 0
    admin, admin_id, admin_cookie = study_admin(browser, server)
    small = json.dumps({"format": "x"}).encode()
    refused = {
        "anonymous visitor": (anonymous_ids[-1], cookie_of(anonymous), True),
        "signed-in reader": (reader_id, reader_cookie, True),
        "stranger with the admin's session id": (admin_id, own_xsrf_cookie(server), True),
        "no cookie": (admin_id, None, True),
        "no XSRF header": (admin_id, admin_cookie, False),
    }
    for who, (session_id, cookie, xsrf) in refused.items():
        status, text = put(server, session_id, cookie, small, xsrf=xsrf)
        assert status == 403, (who, status, text)
        assert "No upload is open to this session" in text or "XSRF" in text, (who, text)
    status, text = put(server, admin_id, admin_cookie, small)
    assert status == 204, text
    for page in (anonymous, reader, admin):
        page.context.close()


def test_an_over_limit_upload_is_refused_with_a_clear_message(server, browser, study, tmp_path):  # noqa: F811
    world = study[0]
    page, session_id, cookie = study_admin(browser, server)
    pid = server_pid(server)
    status, text = put(server, session_id, cookie, b"", declared=300 * MiB)  # refused before the body
    assert (status, text) == (413, "The file is larger than the 256 MB this upload takes.")
    status, text = put(server, session_id, cookie, blocks(260 * MiB))  # no size declared: cut as it comes
    assert status in (0, 413) and (status == 0 or "larger than the 256 MB" in text)
    assert spooled(world, pid) == []  # the part received is gone
    for _ in range(uploads.MAX_FILES_PER_SESSION):
        assert put(server, session_id, cookie, b"{}")[0] == 204
    assert put(server, session_id, cookie, b"{}") == (429, "At most 4 files at once: remove one first.")
    too_large = tmp_path / "study.json"
    with open(too_large, "wb") as sparse:
        sparse.truncate(257 * MiB)
    page.locator(".st-key-sa_import_file input[type=file]").set_input_files(str(too_large))
    page.get_by_text("File must be 256.0MB or smaller").wait_for()  # the browser's own check, from the same bound
    screenshot(page, "upload_over_limit")
    page.context.close()


def test_uploads_arrive_on_disk_not_in_memory_and_leave_with_the_file(server, browser, study, tmp_path):  # noqa: F811
    """A study's JSON export and its case key are imported through the two uploaders of Study
    admin; 300 MB of weights uploaded on the Models page sit on disk (the server's memory grows
    by far less) and are deleted when the admin removes the file."""
    world, _, store, study_id = study
    pid = server_pid(server)
    page, _, _ = study_admin(browser, server)
    exported = export_study(store, study_id, "json", tmp_path / "nodules.json")  # image ids in the key alone
    key = export_study(store, study_id, "key", tmp_path / "nodules_key.csv")
    page.locator(".st-key-sa_import_file input[type=file]").set_input_files(str(exported))
    page.locator(".st-key-sa_import_key input[type=file]").set_input_files(str(key))
    page.get_by_text("nodules_key.csv").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Imported nodules.json as study").wait_for()

    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("tab", name="Import a model").click()
    page.get_by_text("Upload", exact=True).click()
    uploader = page.locator(".st-key-models_upload input[type=file]")
    uploader.wait_for(state="attached")
    wait_idle(page)
    weights = tmp_path / "large_model.pth"
    with open(weights, "wb") as out:
        for block in blocks(300 * MiB, 4 * MiB):
            out.write(os.urandom(16) + block[16:])
    before = rss_mb(pid)
    uploader.set_input_files(str(weights))
    page.get_by_text("large_model.pth").wait_for()
    for _ in range(SLOW // 500):  # the browser sends it as the page goes on
        held = [p for p in spooled(world, pid) if p.name == "large_model.pth"]
        if held:
            break
        page.wait_for_timeout(500)
    wait_idle(page)
    grown = rss_mb(pid) - before
    print(f"server RSS {before:.0f} MB before, +{grown:.0f} MB after a 300 MB upload")
    assert grown < 100, f"the server's memory grew by {grown:.0f} MB for a 300 MB upload"
    assert [p.stat().st_size for p in held] == [300 * MiB]
    screenshot(page, "upload_weights_held")
    page.get_by_test_id("stFileChipDeleteBtn").first.click()
    wait_idle(page)
    assert not [p for p in spooled(world, pid) if p.name == "large_model.pth"]
    page.context.close()


def test_behind_the_nginx_example_a_strangers_upload_is_refused_before_its_body(proxied, browser):  # noqa: F811
    """deploy/nginx-medattn.conf passes an upload's body on as it comes, so the gate answers an
    anonymous visitor at once: nginx would otherwise store the whole body on its disk first."""
    url = proxied[0]
    page, session_ids = browser_page(browser, url)
    page.get_by_role("button", name="Sign in").wait_for()
    wait_idle(page)
    status, text = put(url, session_ids[-1], cookie_of(page), b"", declared=1000 * MiB)  # headers only, no body
    assert (status, text) == (403, "No upload is open to this session: an admin's page offers uploads.")
    page.context.close()


def test_a_deeply_nested_import_is_refused_in_words(server, browser, tmp_path):  # noqa: F811
    """JSON nested 200,000 deep (a RecursionError traceback type on this page once) is refused
    as "not a valid study export", and the page goes on."""
    page, _, _ = study_admin(browser, server)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    page.locator(".st-key-sa_import_file input[type=file]").set_input_files(str(deep))
    page.get_by_text("deep.json", exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Import: deep.json: not a valid study export: its JSON nests too deep to read").wait_for()
    assert "RecursionError" not in page.content()
    screenshot(page, "import_deep_json")
    page.context.close()
