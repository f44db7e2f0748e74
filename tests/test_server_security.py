"""The reader server against a hostile visitor, at the socket, HTTP and WebSocket level: a
default start listens on loopback only and its pages contact no outside server; Streamlit's
"clear cache" message from a second client signs no reader out; the shipped nginx example
(deploy/nginx-medattn.conf) serves the app over TLS with frame-ancestors and X-Frame-Options
and relays the WebSocket. Needs Debian's chromium (and nginx for the proxy test)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from medattn.store.annotations import AnnotationStore
from medattn.ui.plain import WORD_JOINER
from tests.test_e2e import CHROMIUM, REPO, SLOW, browser, free_port, screenshot, streamlit_server, wait_idle  # noqa: F401 - fixture
from tests.test_reader_e2e import ADMIN, READER, server, sign_in, study  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium: apt-get install -y chromium chromium-driver"
)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                found.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, raw))
    return found


def test_a_default_start_listens_on_loopback_only_and_contacts_no_outside_server(browser, study, tmp_path):
    """`streamlit run app.py` with the repository's config and no flags (the README's command)."""
    world = study[0]
    port = free_port()
    with streamlit_server({**world.environ(), "OMP_NUM_THREADS": "1"}, tmp_path, flags=(), port=port) as url:
        assert listening_addresses(port) == {"127.0.0.1"}
        context = browser.new_context()
        requests: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        page = context.new_page()
        page.set_default_timeout(SLOW)
        page.goto(url)
        page.get_by_role("link", name="Reader").wait_for()  # the single-user mode: research pages open
        wait_idle(page)
        context.close()
    outside = [u for u in requests if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))]
    assert requests and outside == []


def outside_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


WORKBENCH_PAGES = ("Compare", "Failure cases", "Leaderboard", "Data", "Models", "Reader", "Study admin")


def test_a_server_reachable_from_elsewhere_without_a_study_database_asks_strangers_to_sign_in(browser, study, tmp_path):
    """`streamlit run app.py --server.address 0.0.0.0` with no MEDATTN_STUDY_DB (studies in the
    cache folder): a stranger, from this machine's network address or from loopback, asking for
    any page by its URL (the first request after the start names one: Streamlit's legacy pages/
    mode runs that page on its own) gets the sign-in and nothing of any page; an admin of the
    cache folder's database gets every page."""
    world = study[0]
    cache = tmp_path / "cache"
    cache.mkdir()
    AnnotationStore(cache / "studies.sqlite").add_admin(*ADMIN)
    port = free_port()
    hosts = ["127.0.0.1", *filter(None, [outside_address()])]
    env = {**world.environ(), "MEDATTN_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MEDATTN_PREFETCH": "0"}
    with streamlit_server(env, tmp_path, flags=("--server.address", "0.0.0.0"), port=port):
        assert listening_addresses(port) == {"0.0.0.0"}
        for host in reversed(hosts):  # the network address first: its first request is the start's first
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(SLOW)
            for path in ("models", "study_admin", "compare", "failures", "leaderboard", "data", "reader", ""):
                page.goto(f"http://{host}:{port}/{path}")
                page.get_by_role("button", name="Sign in").wait_for()
                wait_idle(page)
                for title in WORKBENCH_PAGES:
                    assert page.get_by_role("heading", name=title, exact=True).count() == 0, (host, path, title)
                    assert page.get_by_role("link", name=title, exact=True).count() == 0, (host, path, title)
                assert page.locator("input[type=file]").count() == 0
            context.close()
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(SLOW)
        page.goto(f"http://{hosts[-1]}:{port}/")
        page.get_by_role("textbox", name="Name").fill(ADMIN[0])
        page.get_by_role("textbox", name="Password").fill(ADMIN[1])
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        for title in WORKBENCH_PAGES:
            page.get_by_role("link", name=title, exact=True).wait_for()
        page.get_by_role("link", name="Study admin", exact=True).click()
        page.get_by_role("heading", name="Study admin", exact=True).wait_for()
        wait_idle(page)
        screenshot(page, "reachable_admin_study_admin")
        context.close()


def test_clear_cache_from_a_second_client_leaves_readers_signed_in(server, browser, study):  # noqa: F811
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from websockets.sync.client import connect

    page = sign_in(browser, server, *READER)
    page.get_by_role("heading", name="Reader").wait_for(timeout=SLOW)
    wait_idle(page)
    clear = BackMsg()
    clear.clear_cache = True
    with connect(server.replace("http://", "ws://") + "/_stcore/stream", subprotocols=["streamlit"]) as stranger:
        stranger.send(clear.SerializeToString())  # what the toolbar's "Clear cache" sends, from anyone
        time.sleep(2)
    page.get_by_role("button", name="Next ▶").click()
    wait_idle(page)
    assert "signed in on another tab" not in page.content()
    assert page.get_by_role("button", name="Sign out").count() == 1
    page.context.close()


@pytest.fixture
def proxied(study, tmp_path):
    """The app in study mode behind deploy/nginx-medattn.conf on a free TLS port; yields its URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: .ci/run installs it")
        pytest.skip("the proxy example needs Debian's nginx: apt-get install -y nginx")
    world, db = study[0], study[1]
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    app_port, tls_port, plain_port = free_port(), free_port(), free_port()
    example = (REPO / "deploy" / "nginx-medattn.conf").read_text()
    site = (example.replace("listen 443 ssl", f"listen 127.0.0.1:{tls_port} ssl")
            .replace("listen 80", f"listen 127.0.0.1:{plain_port}")
            .replace("127.0.0.1:8501", f"127.0.0.1:{app_port}")
            .replace("/etc/ssl/certs/medattn.pem", str(cert)).replace("/etc/ssl/private/medattn.key", str(key)))
    assert not any(original in site for original in ("listen 443", "listen 80;", ":8501", "/etc/ssl/"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};\n"
        f"include {tmp_path}/site.conf; }}\n")
    env = {**world.environ(), "MEDATTN_STUDY_DB": str(db), "MEDATTN_BEHIND_PROXY": "1", "OMP_NUM_THREADS": "1"}
    with streamlit_server(env, tmp_path, flags=(), port=app_port):
        proxy = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            for _ in range(50):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", tls_port)) == 0:
                        break
                time.sleep(0.1)
            yield f"https://127.0.0.1:{tls_port}", f"http://127.0.0.1:{plain_port}"
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)


def test_the_nginx_example_serves_tls_with_frame_protection(proxied, browser):
    url, plain = proxied
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(url + "/", context=insecure, timeout=30) as response:
        headers = response.headers
    assert headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert headers["X-Frame-Options"] == "DENY"
    assert "max-age" in headers["Strict-Transport-Security"]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(NoRedirect).open(plain + "/", timeout=30)
    assert redirect.value.code == 301 and redirect.value.headers["Location"].startswith("https://")

    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(SLOW)
    page.goto(url)
    page.get_by_role("textbox", name="Name").fill(READER[0])  # a sign-in over the relayed WebSocket
    page.get_by_role("textbox", name="Password").fill(READER[1])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Reader").wait_for()
    context.close()


def test_a_markdown_name_shows_as_text_and_fetches_nothing(server, browser, study):  # noqa: F811
    """A reader named like a markdown image: the page shows the name as typed, with no image
    fetched from the address in it (markdown in names made browsers load it)."""
    store, study_id = study[2], study[3]
    name = "![x](http://127.0.0.1:9/pixel.png) **b**"
    store.add_reader(study_id, name, "markdown-password")
    page = sign_in(browser, server, name, "markdown-password")
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.get_by_role("heading", name="Reader").wait_for(timeout=SLOW)
    wait_idle(page)
    # the caption "Signed in as …" holds it as typed: only an invisible word joiner inside the address
    # (medattn.ui.plain, so the browser makes no link of it)
    assert name in page.inner_text("body").replace(WORD_JOINER, "")
    assert page.locator("img[src*='pixel.png']").count() == 0 and not [u for u in fetched if "pixel" in u]
    page.context.close()


def watch_session_ids(page) -> list[str]:
    """The Streamlit session ids the server gives `page` (from its WebSocket's new_session
    messages), newest last, as they come."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    session_ids: list[str] = []

    def watch(socket) -> None:
        def received(payload) -> None:
            if isinstance(payload, bytes):
                message = ForwardMsg.FromString(payload)
                if message.WhichOneof("type") == "new_session":
                    session_ids.append(message.new_session.initialize.session_id)
        socket.on("framereceived", received)

    page.on("websocket", watch)
    return session_ids


def own_xsrf_cookie(url: str) -> str:
    """The `_streamlit_xsrf` cookie the server gives a fresh visitor (the page asks /_stcore/health)."""
    with urllib.request.urlopen(url + "/_stcore/health", timeout=30) as response:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name.strip() == "_streamlit_xsrf":
                return rest.split(";")[0]
    raise AssertionError("the server set no XSRF cookie")


def rerun_as(url: str, session_id: str, user_agent: str, seconds: float = 20) -> bytes:
    """A script run in the session `session_id` asked for by a second client (its own XSRF cookie,
    the given User-Agent, this machine's address: what a stranger behind the same NAT or proxy as
    the victim presents): every frame the server sends back, concatenated."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    cookie = own_xsrf_cookie(url)
    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    received = b""
    with connect(url.replace("http://", "ws://") + "/_stcore/stream", proxy=None, origin=url,
                 subprotocols=["streamlit", cookie, session_id], user_agent_header=user_agent,
                 additional_headers={"Cookie": f"_streamlit_xsrf={cookie}"}) as stranger:
        stranger.send(rerun.SerializeToString())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = stranger.recv(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            received += frame
            message = ForwardMsg.FromString(frame)
            if message.WhichOneof("type") == "script_finished":
                break
    return received


def test_a_session_id_presented_by_another_client_does_not_get_the_signed_in_session(server, browser, study):  # noqa: F811
    """Streamlit resumes a session for any client that presents its id on the WebSocket (the id
    travels in upload URLs and the page's messages). A second browser that knows the id, comes
    from the same address and copies the User-Agent gets the sign-in form, never the reader's
    study; the reader stays signed in."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(SLOW)
    session_ids = watch_session_ids(page)
    page.goto(server)
    page.get_by_role("textbox", name="Name").fill(READER[0])
    page.get_by_role("textbox", name="Password").fill(READER[1])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Reader").wait_for()
    wait_idle(page)
    assert session_ids, "no session id seen on the WebSocket"
    user_agent = page.evaluate("navigator.userAgent")

    seen = rerun_as(server, session_ids[-1], user_agent)
    assert b"Password" in seen  # the sign-in form
    assert b"Signed in as" not in seen and READER[0].encode() not in seen and b"Nodule detection" not in seen

    page.wait_for_timeout(3000)  # the reader's browser reconnects to its session and goes on
    page.get_by_role("button", name="Next ▶").click()
    wait_idle(page)
    assert page.get_by_role("button", name="Sign out").count() == 1
    context.close()
