"""Text from people and files (names, labels, messages that quote them) shown as text.

Streamlit renders markdown in st.markdown, captions, alerts and widget labels: a reader named
"![x](https://elsewhere/pixel.png)" made every admin's browser fetch that image, and
":red[...]" or ":material/...:" directives restyle a page. `plain` escapes every character
markdown or Streamlit's directives act on, so the text shows exactly as typed.
"""

from __future__ import annotations

import re

_ACTIVE = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


def plain(text: object) -> str:
    """`text` with each markdown or directive character backslash-escaped (CommonMark escapes
    any ASCII punctuation); newlines become spaces."""
    return _ACTIVE.sub(r"\\\1", " ".join(str(text).splitlines()))
