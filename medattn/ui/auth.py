"""Who is using the app: sign-in, sign-out, the one-tab-per-reader rule, and when to ask.

Everyone signs in first (readers get the Reader page only, admins every page; workbench.py builds the
page list from the role, so a page not offered cannot be opened by its URL) unless the app runs
in the single-user loopback mode: no `MEDATTN_STUDY_DB`, the server listening on loopback only
(the default: .streamlit/config.toml) and the request not relayed by a proxy. There the user is
the local admin and only the Reader page asks a reader to sign in; studies live in
`<MEDATTN_CACHE>/studies.sqlite`. Anything else (`--server.address 0.0.0.0`, a proxy in front)
asks for an admin sign-in before research pages and Study admin.

Passwords go straight to `AnnotationStore.authenticate` (argon2id hashes; limits kept in the
database, per name × client, client, name and server); they are never stored in the session or
logged. A session is bound to the account and to the browser that signed in (its address,
User-Agent and the secret token of its Streamlit XSRF cookie): another client presenting the
session's id (Streamlit resumes a session for whoever presents it) gets the sign-in form, the
session staying signed in for its own browser; it ends when the account is signed out
everywhere or gets a new password. A reader signed in on a second tab or after a reload takes the study over there; the
older tab then says so and waits. The registries of stores and tabs are plain process globals,
not Streamlit caches: Streamlit's "clear cache" message, which any client can send, empties
those caches for everyone and must sign nobody out.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from medattn.reader.errors import LoginRateLimitedError, SignInBusyError
from medattn.store.annotations import AnnotationStore
from medattn.store.annotations.backup import BACKUP_EVERY_S, Backups
from medattn.store.annotations.engine import database_url, is_sqlite
from medattn.ui.entrypoint import ensure_entrypoint
from medattn.ui.plain import plain

STUDY_DB_ENV = "MEDATTN_STUDY_DB"
BACKUP_ENV = "MEDATTN_BACKUP_HOURS"
PROXY_ENV = "MEDATTN_BEHIND_PROXY"  # "1": a local reverse proxy relays clients; their address is in X-Real-IP
USER_KEY = "study_user"
TAB_KEY = "study_tab"
SESSION_KEY = "study_session"  # (signed_in_at, fingerprint) of this tab's sign-in
XSRF_COOKIE = "_streamlit_xsrf"
ADMIN, READER = "admin", "reader"
_LOCK = threading.Lock()
_STORES: dict[str, AnnotationStore] = {}
_HOLDERS: dict[str, str] = {}  # reader name → token of the tab that holds their session (latest sign-in wins)


@dataclass(frozen=True)
class User:
    name: str
    role: str  # ADMIN or READER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


LOCAL_ADMIN = User("local", ADMIN)


def study_mode() -> bool:
    """Whether everyone signs in: `MEDATTN_STUDY_DB` is set, or the app is reachable from other
    machines (see the module docstring)."""
    return bool(os.environ.get(STUDY_DB_ENV, "").strip()) or not single_user_loopback()


def single_user_loopback() -> bool:
    """The documented single-user mode: no study database configured, the server bound to a
    loopback address, and this request straight from this machine (no proxy headers)."""
    address = (st.get_option("server.address") or "").strip("[]")
    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    relayed = any(_header(h) for h in ("X-Forwarded-For", "X-Real-IP", "Forwarded"))
    return loopback and _peer() is None and not relayed and os.environ.get(PROXY_ENV) != "1"


def _peer() -> str | None:
    """The TCP peer's address; None for this machine (and outside a browser session)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def _header(name: str) -> str:
    value = (st.context.headers or {}).get(name)
    return value if isinstance(value, str) else ""


def client() -> str:
    """The address of this session's client as sign-in limits count it: the TCP peer, or behind
    a trusted local proxy (`MEDATTN_BEHIND_PROXY=1`) the X-Real-IP it sets; "local" for this machine."""
    if os.environ.get(PROXY_ENV) == "1" and _peer() is None and _header("X-Real-IP"):
        return _header("X-Real-IP")[:64]
    return _peer() or "local"


def browser_secret(xsrf_cookie: str | None) -> str:
    """A digest of the secret token in a browser's Streamlit XSRF cookie (`_streamlit_xsrf`:
    random per browser, kept across reloads, sent with the WebSocket handshake and each upload);
    "" without one. Streamlit resumes a session for any client that presents its id, so address
    and User-Agent (which a stranger behind the same NAT can copy) are not enough to tell the
    browser apart."""
    from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string

    token, _ = decode_xsrf_token_string(xsrf_cookie or "")
    return hashlib.sha256(token).hexdigest() if token else ""


def this_browser() -> str:
    """`browser_secret` of this session's client."""
    return browser_secret(st.context.cookies.get(XSRF_COOKIE))


def _fingerprint() -> str:
    """What a signed-in session is bound to: the client's address, its browser's secret token
    and its User-Agent."""
    return f"{client()} {this_browser()} {_header('User-Agent')[:200]}"


def db_target() -> str:
    """The study database: `MEDATTN_STUDY_DB` (an SQLite file's path, or an SQLAlchemy URL such as
    postgresql://user@host/db: a URL only when it has a scheme), else studies.sqlite in the cache
    folder."""
    configured = os.environ.get(STUDY_DB_ENV, "").strip()
    if not configured:
        from medattn.pipeline import CACHE_DIR  # imports torch: only once a database is needed

        configured = str(CACHE_DIR / "studies.sqlite")
    url = database_url(configured)
    return str(Path(url.database).resolve()) if is_sqlite(url) else configured


def store() -> AnnotationStore:
    """The process's AnnotationStore for `db_target()` (opened once, outside Streamlit's caches;
    an SQLite file is checked, then backed up at once and every MEDATTN_BACKUP_HOURS, default 6).
    StorageError when the database is damaged or cannot be opened."""
    target = db_target()
    with _LOCK:
        if target not in _STORES:
            opened = AnnotationStore(target)
            if opened.path is not None:
                hours = float(os.environ.get(BACKUP_ENV, "") or BACKUP_EVERY_S / 3600)
                Backups(opened.path, interval_s=hours * 3600).start()
            _STORES[target] = opened
        return _STORES[target]


def _claim(name: str) -> None:
    token = secrets.token_hex(8)
    with _LOCK:
        _HOLDERS[name] = token
    st.session_state[TAB_KEY] = token


def current_user() -> User | None:
    """Who the app serves on this tab: the signed-in user (None before sign-in), or the local
    admin in the single-user loopback mode (a reader signed in on the Reader page only answers
    there)."""
    return signed_in_reader() if study_mode() else LOCAL_ADMIN


def signed_in_reader() -> User | None:
    """The reader (or admin) signed in on this tab, None for none. A session presented by
    another client (address, browser or User-Agent differ from the sign-in's) is not theirs:
    that client gets None and the session stays signed in for its own browser. A session whose
    account was signed out everywhere since is signed out here."""
    user = st.session_state.get(USER_KEY)
    if user is None:
        return None
    signed_in_at, fingerprint = st.session_state.get(SESSION_KEY, (0.0, None))
    if not hmac.compare_digest(str(fingerprint).encode(), _fingerprint().encode()):
        return None
    if not store().session_valid(user.name, signed_in_at):
        sign_out()
        return None
    return user


def sign_in(name: str, password: str) -> User | None:
    """Check the password and remember the user in this session; None when wrong.
    LoginRateLimitedError passes through (after too many failures)."""
    db = store()
    name = name.strip()
    stamp = time.time()
    if not name or not password or not db.authenticate(name, password, client=client()):
        return None
    user = User(name, ADMIN if db.is_admin(name) else READER)
    st.session_state[USER_KEY] = user
    st.session_state[SESSION_KEY] = (stamp, _fingerprint())
    _claim(name)
    return user


def sign_out() -> None:
    """Forget this tab's user, and withdraw the uploads this session was offered."""
    from medattn.ui import uploads  # uploads asks auth who may upload

    for key in (USER_KEY, TAB_KEY, SESSION_KEY):
        st.session_state.pop(key, None)
    uploads.withdraw()


def sign_out_everywhere() -> None:
    """End every session of this tab's user, on every tab and machine."""
    user = st.session_state.get(USER_KEY)
    if user is not None:
        store().sign_out_everywhere(user.name)
    sign_out()


def login_form(key: str = "login", title: str = "Sign in") -> User | None:
    """The sign-in form; the user once signed in (the page reruns), else None with a message
    for a wrong password or a rate limit."""
    with st.columns([1, 1.6])[0], st.form(key):
        st.subheader(title)
        name = st.text_input("Name", key=f"{key}_name", autocomplete="username")
        password = st.text_input("Password", type="password", key=f"{key}_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return None
    try:
        user = sign_in(name, password)
    except LoginRateLimitedError as error:
        st.error(f"Too many failed sign-ins: try again in {int(error.retry_after) + 1} seconds.")
        return None
    except SignInBusyError:
        st.error("The server is checking many sign-ins at once: try again in a few seconds.")
        return None
    if user is None:
        st.error("Wrong name or password.")
        return None
    st.rerun()


def logout_button(container=st.sidebar) -> None:
    user = signed_in_reader()
    if user is not None:
        container.caption(f"Signed in as **{plain(user.name)}** ({user.role})")
        if container.button("Sign out", key="auth_sign_out"):
            sign_out()
            st.rerun()
        if container.button("End all my sessions", key="auth_sign_out_all",
                            help="Signs you out on every tab and machine, this one included"):
            sign_out_everywhere()
            st.rerun()


def holds_tab(user: User) -> bool:
    """Whether this tab is the one the user signed in on last (else another tab or window took
    the session over)."""
    with _LOCK:
        return _HOLDERS.get(user.name) == st.session_state.get(TAB_KEY)


def take_over_tab(user: User) -> None:
    _claim(user.name)


def require_admin() -> User:
    """The admin using this page (the local admin in the single-user loopback mode): the first
    call of every page but the Reader's. A page run on its own goes through the workbench script
    (medattn.ui.entrypoint); nobody signed in gets the sign-in form, a reader a message; either
    way the page stops there."""
    ensure_entrypoint()
    user = current_user()
    if user is None:
        st.title("medattn reader studies")
        login_form()
        st.stop()
    if not user.is_admin:
        st.error("This page is for study admins only.")
        st.stop()
    return user
