"""CSV that spreadsheets open as data: every export whose cells may hold text from a dataset,
checkpoint, study or user goes through `neutral_csv` (one path for the reader's and the
research pages' downloads)."""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: text starting with = + - @, tab or carriage return
    (a formula to Excel, LibreOffice and Google Sheets: OWASP "CSV injection") gets a leading
    apostrophe; numbers, and text that reads as a number ("-2"), stay as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def neutral_csv(frame: pd.DataFrame) -> str:
    """`frame` as CSV with every text cell, and every column name, through `text_cell`."""
    return frame.rename(columns=text_cell).map(text_cell).to_csv(index=False)
