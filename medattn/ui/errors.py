"""Errors reach the page as short messages, never as a stack trace, and the rest of the page
keeps running: wrap each independent part of a page in `guard`. Messages quote names and
files, so they are shown as plain text (`medattn.ui.plain`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import streamlit as st

from medattn.errors import DatasetError, MedattnError
from medattn.ui.plain import plain

log = logging.getLogger("medattn.ui")


def message(exc: BaseException) -> str:
    """What to tell the user: our own errors as they are, others with their type."""
    if isinstance(exc, (MedattnError, FileNotFoundError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def show_error(exc: BaseException, what: str, container=st) -> None:
    """An error box for `exc`; a dataset's problems are listed one per line."""
    if isinstance(exc, DatasetError):
        shown = "\n".join(f"- {plain(p)}" for p in exc.problems[:30])
        more = f"\n- … and {len(exc.problems) - 30} more" if len(exc.problems) > 30 else ""
        container.error(f"{plain(what)}: dataset {plain(exc.path)} has {len(exc.problems)} problem(s)\n\n{shown}{more}")
    else:
        # each line as text, the lines kept (a re-save recipe reads as the lines to run)
        container.error(f"{plain(what)}: " + "  \n".join(plain(line) for line in message(exc).splitlines()))


@contextlib.contextmanager
def guard(what: str, container=st) -> Iterator[None]:
    """Run a block; an exception becomes an error box (the traceback goes to the server log).
    Streamlit's own control flow (st.stop, st.rerun, st.switch_page) passes through: it is not
    an Exception."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any failure of one part must not break the page
        if not isinstance(exc, MedattnError):
            log.exception("%s failed", what)
        show_error(exc, what, container)
