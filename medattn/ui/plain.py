"""Text from people and files (names, labels, messages that quote them) shown as text.

Streamlit renders markdown in st.markdown, captions, alerts and widget labels: a reader named
"![x](https://elsewhere/pixel.png)" made every admin's browser fetch that image, and
":red[...]" or ":material/...:" directives restyle a page, and a bare "http://…" becomes a live
link. `plain` escapes every character
markdown or Streamlit's directives act on, so the text shows exactly as typed.
"""

from __future__ import annotations

import re

_ACTIVE = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")
# GitHub-flavoured markdown links bare URLs, www. names and e-mail addresses even when their
# punctuation is escaped: a word joiner (U+2060, invisible, no line break) splits what it matches.
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """`text` with each markdown or directive character backslash-escaped (CommonMark escapes
    any ASCII punctuation) and bare URLs, www. names and e-mail addresses split by an invisible
    word joiner so they stay text; newlines become spaces."""
    return _ACTIVE.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, " ".join(str(text).splitlines())))
