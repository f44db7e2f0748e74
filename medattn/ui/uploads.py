"""Uploads: who may send a file, how large, how many, and where it is kept.

Streamlit takes a file for any session that asks (an anonymous visitor's included, whether or not
an uploader is on its screen), up to `server.maxUploadSize` each with no count, and keeps every
one in memory until the session ends. medattn bounds that in two places:

- `uploader()` (the pages' only uploader) is drawn for admins only, with its `Limit` (size,
  file types, one file), and *offers* the upload to this session and this browser;
- the server's gate (medattn.ui.upload_gate, installed by app.py) `admit`s a file only for a
  session holding an offer, sent by the browser it was offered to, within the offer's size, at
  most MAX_FILES_PER_SESSION at once and SPOOL_BYTES in all; it streams the file to disk under
  the cache folder (`hold`) and hands Streamlit a placeholder of a few bytes. `uploader()` then
  returns the file on disk, so a 1 GB model never sits in the server's memory.

Without the gate (AppTest; `streamlit run workbench.py`) Streamlit keeps the file and
`server.maxUploadSize` (1 MB in .streamlit/config.toml) bounds it.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from medattn.processes import pid_alive
from medattn.reader.export import MAX_IMPORT_BYTES
from medattn.ui.plain import plain

MiB = 2**20
# Held or arriving at once: each uploader takes one file, a page shows two at most (a study's
# JSON and its case key), and a file stays until it is removed or its session ends.
MAX_FILES_PER_SESSION = 4
SPOOL_BYTES = 4 * 1024 * MiB  # held or arriving on disk, all sessions together
FREE_DISK_BYTES = 1024 * MiB  # left free on the cache folder's disk after an upload
PLACEHOLDER = b"medattn-upload "  # + token: what Streamlit holds in place of a gated file


@dataclass(frozen=True)
class Limit:
    """One uploader's bounds: `max_bytes` per file, `types` the file name endings it takes
    (lower case, no dot; None: any)."""

    label: str
    max_bytes: int
    types: tuple[str, ...] | None = None

    @property
    def max_mb(self) -> int:
        return math.ceil(self.max_bytes / MiB)


# Model weights: a DenseNet-121 is 30 MB, a ViT-L 1.2 GB (larger ones: "Path on this server").
WEIGHTS = Limit("Weights file (.pt, .pth, .pth.tar, .bin, .ckpt, .safetensors)", 1024 * MiB)
# A study's JSON export: ~300 bytes an answer, so a million answers; json.loads holds ~8x in memory.
STUDY_JSON = Limit("Study JSON", MAX_IMPORT_BYTES, ("json",))
# The case key of a JSON exported without it: a line (~100 bytes) per case, at most 10,000 cases.
CASE_KEY = Limit("Its case key CSV (only for a JSON exported without it)", 16 * MiB, ("csv",))


@dataclass(frozen=True)
class Upload:
    """A file received: `name` as the browser gave it (base name only), `path` on disk."""

    name: str
    path: Path
    size: int
    token: str


class UploadRefused(ValueError):
    """An upload not taken; the message says why, `status` is the HTTP status the gate answers."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Offer:
    browser: str  # auth.browser_secret of the browser the uploader was drawn for
    max_bytes: int  # the largest Limit drawn in this session


_LOCK = threading.Lock()
_OFFERS: dict[str, _Offer] = {}  # session id → what it may send
_HELD: dict[str, dict[str, Upload]] = {}  # session id → file id → file on disk
_ARRIVING: dict[str, list[int]] = {}  # session id → bytes reserved by each of its uploads in flight
_SPOOL: list[Path] = []  # this process's upload folder, once an uploader was drawn
_GATED = threading.Event()  # set when the gate is in front of Streamlit (app.py)


def megabytes(size: int) -> str:
    """A size as people read it: 800 kB, 256 MB, 1 GB (binary units, as Streamlit's uploader)."""
    if size >= 1024 * MiB:
        return f"{size / (1024 * MiB):.3g} GB"
    return f"{size / MiB:,.0f} MB" if size >= MiB else f"{size / 1024:,.0f} kB"


def spool() -> Path:
    """This process's upload folder, `<cache>/uploads/<pid>` (removed at exit); folders left by
    processes that are gone are removed when it is made."""
    with _LOCK:
        if not _SPOOL:
            from medattn.pipeline import CACHE_DIR  # imports torch: the page drawing an uploader has

            root = CACHE_DIR / "uploads"
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.iterdir():
                if stale.name.isdigit() and not pid_alive(int(stale.name)):
                    shutil.rmtree(stale, ignore_errors=True)
            folder = root / str(os.getpid())
            folder.mkdir(exist_ok=True)
            atexit.register(shutil.rmtree, folder, True)
            _SPOOL.append(folder)
        return _SPOOL[0]


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def offer(session_id: str, browser: str, limit: Limit) -> None:
    """Let `session_id`, from the browser whose secret is `browser`, send a file of up to the
    largest limit offered to it."""
    spool()
    _sweep()
    with _LOCK:
        current = _OFFERS.get(session_id)
        largest = max(limit.max_bytes, current.max_bytes if current and current.browser == browser else 0)
        _OFFERS[session_id] = _Offer(browser, largest)


def withdraw(session_id: str | None = None) -> None:
    """End the offer of `session_id` (default: this script's session) and delete its files."""
    session_id = session_id or _session_id()
    with _LOCK:
        _OFFERS.pop(session_id, None)
        held = _HELD.pop(session_id, {})
    for upload in held.values():
        shutil.rmtree(upload.path.parent, ignore_errors=True)


def admit(session_id: str, browser: str, declared: int | None) -> int:
    """Reserve room for one file from `session_id` sent by `browser` (its declared size, when
    the request gives one): the most bytes it may have. UploadRefused (403: nothing offered to
    this session and browser; 413: larger than offered; 429: too many files; 507: no room)."""
    _sweep()
    with _LOCK:
        offered = _OFFERS.get(session_id)
        if offered is None or not secrets.compare_digest(offered.browser, browser):
            raise UploadRefused("No upload is open to this session: an admin's page offers uploads.", 403)
        if declared is not None and declared > offered.max_bytes + 64 * 1024:  # + multipart framing
            raise UploadRefused(f"The file is larger than the {megabytes(offered.max_bytes)} this upload takes.", 413)
        count = len(_HELD.get(session_id, {})) + len(_ARRIVING.get(session_id, []))
        if count >= MAX_FILES_PER_SESSION:
            raise UploadRefused(f"At most {MAX_FILES_PER_SESSION} files at once: remove one first.", 429)
        taken = (sum(u.size for files in _HELD.values() for u in files.values())
                 + sum(sum(reserved) for reserved in _ARRIVING.values()))
        free = shutil.disk_usage(_SPOOL[0]).free
        if taken + offered.max_bytes > SPOOL_BYTES or free - offered.max_bytes < FREE_DISK_BYTES:
            raise UploadRefused("The server has no room for this upload now: try again later.", 507)
        _ARRIVING.setdefault(session_id, []).append(offered.max_bytes)
        return offered.max_bytes


def arrived(session_id: str, reserved: int) -> None:
    """An upload `admit` reserved `reserved` bytes for is over (held or failed)."""
    with _LOCK:
        in_flight = _ARRIVING.get(session_id, [])
        if reserved in in_flight:
            in_flight.remove(reserved)
        if not in_flight:
            _ARRIVING.pop(session_id, None)


def hold(session_id: str, file_id: str, name: str, received: Path) -> Upload:
    """Keep `received` (a file in `spool()`) as the session's `file_id`, under its base name;
    returns it with the token its placeholder carries."""
    token = secrets.token_hex(16)
    folder = spool() / token
    folder.mkdir()
    path = folder / safe_name(name)
    os.replace(received, path)
    upload = Upload(safe_name(name), path, path.stat().st_size, token)
    with _LOCK:
        replaced = _HELD.setdefault(session_id, {}).pop(file_id, None)
        _HELD[session_id][file_id] = upload
    if replaced is not None:
        shutil.rmtree(replaced.path.parent, ignore_errors=True)
    return upload


def drop(session_id: str, file_id: str) -> None:
    """Delete the session's `file_id` (the browser removed it from the uploader)."""
    with _LOCK:
        upload = _HELD.get(session_id, {}).pop(file_id, None)
    if upload is not None:
        shutil.rmtree(upload.path.parent, ignore_errors=True)


def safe_name(name: str) -> str:
    """The base name of a browser's file name, without path parts or control characters; at
    most 200 characters, keeping its ending."""
    base = re.sub(r"[\x00-\x1f\x7f/\\\"]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .") or "upload"
    return base if len(base) <= 200 else base[:100] + base[-100:]


def _sweep() -> None:
    """Forget offers and delete files of sessions the server no longer has."""
    from streamlit import runtime

    if not runtime.exists():
        return
    alive = runtime.get_instance().is_active_session
    with _LOCK:
        sessions = {*_OFFERS, *_HELD}
    for session_id in [s for s in sessions if not alive(s)]:
        withdraw(session_id)


def check(limit: Limit, upload: Upload) -> None:
    """UploadRefused (413) when `upload` is beyond what `limit` takes."""
    if upload.size > limit.max_bytes:
        raise UploadRefused(f"{limit.label}: {upload.name} is {megabytes(upload.size)}; this upload takes at most "
                            f"{megabytes(limit.max_bytes)}.", 413)
    if limit.types and not upload.name.lower().endswith(tuple(f".{t}" for t in limit.types)):
        raise UploadRefused(f"{limit.label}: {upload.name} is not a {' or '.join(limit.types)} file.", 415)


def uploader(limit: Limit, key: str) -> Upload | None:
    """A file uploader bounded by `limit`, drawn for admins only (None for anyone else: no
    widget, no offer); the file received, on disk, or None. A file beyond the limit, or one
    that never reached the server, is an error message on the page and None."""
    from medattn.ui import auth

    user = auth.current_user()
    session_id = _session_id()
    if user is None or not user.is_admin or session_id is None:
        return None
    offer(session_id, auth.this_browser(), limit)
    file = st.file_uploader(f"{limit.label}, at most {megabytes(limit.max_bytes)}", type=list(limit.types or []) or None,
                            key=key, max_upload_size=limit.max_mb)
    if file is None:
        return None
    try:
        upload = _received(session_id, file)
        check(limit, upload)
    except UploadRefused as refused:
        st.error(plain(refused))
        return None
    return upload


def _received(session_id: str, file) -> Upload:
    """The Upload behind a Streamlit UploadedFile: behind the gate, the file on disk its
    placeholder names; without the gate, its bytes, written to the spool on first sight."""
    with _LOCK:
        held = _HELD.get(session_id, {}).get(file.file_id)
    if _GATED.is_set():
        if held is None or file.size > 100 or file.getvalue() != PLACEHOLDER + held.token.encode():
            raise UploadRefused(f"{safe_name(file.name)} did not reach the server whole: remove it and upload it "
                                "again.", 400)
        return held
    if held is not None:
        return held
    received = spool() / f"{secrets.token_hex(8)}.part"
    received.write_bytes(file.getvalue())
    return hold(session_id, file.file_id, file.name, received)


def mark_gated() -> None:
    """Called by the gate as the server starts: from now on every file arrives through it."""
    _GATED.set()
