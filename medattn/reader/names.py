"""Names people type (reader, admin and study names) and ids that come in files: the rules every
way in applies (the app's forms, the store, a JSON import, the CLI).

A name shows in tables, exports and logs, so it is normalised (Unicode NFKC: "ﬁona" is
"fiona", a full-width "ａｎａ" is "ana"), bounded, and holds no control characters (a newline,
or U+2028 LINE SEPARATOR, would split a CSV row or a log line) and no invisible format
characters (U+202E RIGHT-TO-LEFT OVERRIDE shows "\u202eevil" as "live"; zero-width characters
make two names that look the same). An account name also may not mix scripts with look-alike
letters (a Cyrillic "а" in "аna": Unicode TS #39 mixed-script confusables, through
confusable-homoglyphs' copy of Unicode's confusables.txt), and `skeleton` says which names
look alike, so a new account cannot pass for an existing one.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from confusable_homoglyphs import confusables

from medattn.reader.errors import StudyError


def check_name(what: str, name: str, longest: int) -> str:
    """`name` in NFKC form, stripped; StudyError naming `what` for a name longer than `longest`
    characters or holding a control, format or line/paragraph separator character (Unicode
    categories Cc, Cf, Zl, Zp)."""
    if not isinstance(name, str):
        raise StudyError(f"{what}: text expected, got {type(name).__name__}")
    if len(name) > longest:  # before normalising: NFKC can grow a string 18-fold
        raise StudyError(f"{what} must have at most {longest} characters, got {len(name)}")
    name = unicodedata.normalize("NFKC", name).strip()
    if len(name) > longest:
        raise StudyError(f"{what} must have at most {longest} characters, got {len(name)}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise StudyError(f"{what} {name[:40]!r} holds a control character")
    return name


def check_account_name(what: str, name: str, longest: int) -> str:
    """`check_name`, and StudyError for a name mixing scripts with look-alike letters."""
    name = check_name(what, name, longest)
    if confusables.is_dangerous(name):
        raise StudyError(f"{what} {name!r} mixes alphabets with letters that look alike (e.g. a Cyrillic 'а' "
                         "among Latin letters): type it in one alphabet")
    return name


def skeleton(name: str) -> str:
    """What `name` looks like: each letter replaced by its Latin look-alike where Unicode lists
    one, case-folded. Two account names with the same skeleton are refused."""
    found = confusables.is_confusable(name, greedy=True, preferred_aliases=["latin"]) or []
    swap = {}
    for entry in found:
        latin = [h["c"] for h in entry["homoglyphs"] if all(unicodedata.name(c, "").startswith("LATIN") for c in h["c"])]
        if latin:
            swap[entry["character"]] = latin[0]
    return unicodedata.normalize("NFKC", "".join(swap.get(c, c) for c in name)).casefold()


def check_text(what: str, value: Any, longest: int) -> str:
    """An id or path from a file or form as text (integers are ids too), at most `longest`
    characters, without control characters; not normalised (it must match the data exactly)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise StudyError(f"{what}: non-empty text expected, got {value!r:.60}")
    if len(value) > longest:
        raise StudyError(f"{what} must have at most {longest} characters, got {len(value)}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise StudyError(f"{what} {value[:40]!r} holds a control character")
    return value


def check_image_id(what: str, value: Any, longest: int) -> str:
    """An image id from a file (`check_text`) that is no path: not absolute (POSIX, or a Windows
    drive), no "." / ".." / empty part, no backslash, no leading "~". An id only indexes a
    dataset's images.csv; one shaped like a path ("/etc/passwd", "../x") is refused before it
    is looked up anywhere."""
    value = check_text(what, value, longest)
    parts = value.split("/")
    if (value.startswith(("/", "~")) or "\\" in value or re.match(r"[A-Za-z]:", value)
            or {"", ".", ".."} & set(parts)):
        raise StudyError(f"{what}: {value[:80]!r} is a file path, not an image id")
    return value
