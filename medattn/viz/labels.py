"""Text from data (image ids, class, checkpoint and reader names) in Plotly labels.

Plotly draws titles, legend names, tick labels and hover text as a subset of HTML: a name
written as `<a href="http://elsewhere">x</a>` would be a live link and `<b>` would restyle the
label. `as_label` escapes the characters that subset acts on; Plotly shows the entities as the
characters typed."""

from __future__ import annotations

import html
from typing import Iterable


def as_label(text: object) -> str:
    """`text` for a Plotly title, name, tick or hover: <, > and & as HTML entities."""
    return html.escape(str(text), quote=False)


def as_labels(values: Iterable[object]) -> list[str]:
    """`as_label` of each value (category axes, trace names)."""
    return [as_label(v) for v in values]
