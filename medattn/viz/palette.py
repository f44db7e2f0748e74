"""One colour per model across every chart (bars, PR and ROC curves, sanity lines): charts that
drew their traces in Plotly's default colour cycle coloured the same model differently as soon
as one chart had an extra trace (the ROC chance line) or another order."""

from __future__ import annotations

from typing import Iterable

from plotly.colors import qualitative

PALETTE = qualitative.Plotly + qualitative.D3  # 20 distinguishable colours, Plotly's own first


def model_colors(names: Iterable[str]) -> dict[str, str]:
    """name → colour, by the names' sorted order (so any chart of the same models agrees);
    the palette repeats past 20 models."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(map(str, names))))}
