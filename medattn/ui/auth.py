"""Who is using the app: study mode, sign-in, sign-out and the one-tab-per-reader rule.

Study mode is on when `MEDATTN_STUDY_DB` names a reader-study database: everyone signs in
first, readers get the Reader page only and admins every page (app.py builds the page list from
the role, so a page not offered cannot be opened by its URL). Without it the app is a
single-user workbench: the user is the local admin (research pages and Study admin without a
sign-in) and the Reader page asks a reader to sign in; studies then live in
`<MEDATTN_CACHE>/studies.sqlite`.

Passwords go straight to `AnnotationStore.authenticate` (argon2id hashes, a rate limit kept in
the database); they are never stored in the session or logged. A reader signed in on a second
tab or after a reload takes the study over there; the older tab then says so and waits.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from medattn.reader.errors import LoginRateLimitedError
from medattn.store.annotations import AnnotationStore
from medattn.store.annotations.engine import database_url, is_sqlite

STUDY_DB_ENV = "MEDATTN_STUDY_DB"
USER_KEY = "study_user"
TAB_KEY = "study_tab"
ADMIN, READER = "admin", "reader"


@dataclass(frozen=True)
class User:
    name: str
    role: str  # ADMIN or READER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


LOCAL_ADMIN = User("local", ADMIN)


def study_mode() -> bool:
    """Whether the server runs with reader studies on (`MEDATTN_STUDY_DB` set)."""
    return bool(os.environ.get(STUDY_DB_ENV, "").strip())


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


@st.cache_resource(show_spinner=False)
def _store(path: str) -> AnnotationStore:
    return AnnotationStore(path)


def store() -> AnnotationStore:
    """The process's AnnotationStore for `db_target()` (opened once)."""
    return _store(db_target())


@st.cache_resource(show_spinner=False)
def _tabs() -> tuple[dict[str, str], threading.Lock]:
    """Reader name → token of the tab that holds their session (latest sign-in wins)."""
    return {}, threading.Lock()


def _claim(name: str) -> None:
    token = secrets.token_hex(8)
    holders, lock = _tabs()
    with lock:
        holders[name] = token
    st.session_state[TAB_KEY] = token


def current_user() -> User | None:
    """Who the app serves on this tab: in study mode the signed-in user (None before sign-in),
    otherwise the local admin (a reader signed in on the Reader page only answers there)."""
    return st.session_state.get(USER_KEY) if study_mode() else LOCAL_ADMIN


def signed_in_reader() -> User | None:
    """The reader (or study-mode admin) signed in on this tab; None for the local admin."""
    return st.session_state.get(USER_KEY)


def sign_in(name: str, password: str) -> User | None:
    """Check the password and remember the user in this session; None when wrong.
    LoginRateLimitedError passes through (after too many failures)."""
    db = store()
    name = name.strip()
    if not name or not password or not db.authenticate(name, password):
        return None
    user = User(name, ADMIN if db.is_admin(name) else READER)
    st.session_state[USER_KEY] = user
    _claim(name)
    return user


def sign_out() -> None:
    st.session_state.pop(USER_KEY, None)
    st.session_state.pop(TAB_KEY, None)


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
        st.error(f"Too many failed sign-ins for this name: try again in {int(error.retry_after) + 1} seconds.")
        return None
    if user is None:
        st.error("Wrong name or password.")
        return None
    st.rerun()


def logout_button(container=st.sidebar) -> None:
    user = signed_in_reader()
    if user is not None:
        container.caption(f"Signed in as **{user.name}** ({user.role})")
        if container.button("Sign out", key="auth_sign_out"):
            sign_out()
            st.rerun()


def holds_tab(user: User) -> bool:
    """Whether this tab is the one the user signed in on last (else another tab or window took
    the session over)."""
    holders, _ = _tabs()
    return holders.get(user.name) == st.session_state.get(TAB_KEY)


def take_over_tab(user: User) -> None:
    _claim(user.name)


def require_admin() -> User:
    """The admin using this page (the local admin outside study mode); anyone else gets a
    message and the page stops."""
    user = current_user()
    if user is None or not user.is_admin:
        st.error("This page is for study admins only.")
        st.stop()
    return user
