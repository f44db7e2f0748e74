"""Names people type (reader, admin and study names): the rules every way in applies.

A name shows in tables, exports and logs, so it is bounded and holds no control characters
(a newline, or U+2028 LINE SEPARATOR, would split a CSV row or a log line) and no invisible
format characters (U+202E RIGHT-TO-LEFT OVERRIDE shows "\u202eevil" as "live"; zero-width
characters make two names that look the same).
"""

from __future__ import annotations

import unicodedata

from medattn.reader.errors import StudyError


def check_name(what: str, name: str, longest: int) -> None:
    """StudyError naming `what` for a name longer than `longest` characters or holding a
    control, format or line/paragraph separator character (Unicode categories Cc, Cf, Zl, Zp)."""
    if len(name) > longest:
        raise StudyError(f"{what} must have at most {longest} characters, got {len(name)}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise StudyError(f"{what} {name[:40]!r} holds a control character")
