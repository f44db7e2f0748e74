"""One policy for bad input: a bad file or case is skipped, counted and named, never silently
dropped and never fatal to the rest; `strict=True` fails on the first one instead.

Builders, precompute and the app each keep a `Skips` report and show it where their user looks:
the builder in its log and in dataset.json (`skipped`), precompute in its summary, the app as a
note on the page.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from medattn.errors import DatasetError, MedattnError

log = logging.getLogger("medattn.skips")
T = TypeVar("T")


@dataclass(frozen=True)
class Skip:
    """One skipped item: `item` is what was left out (an image id, a case), `reason` says why and
    names the file, `path` is the file at fault when there is one."""

    item: str
    reason: str
    path: str = ""


class Skips:
    """The report of what was skipped. `what` names the kind of item in messages ("images")."""

    def __init__(self, what: str = "images", *, strict: bool = False):
        self.what = what
        self.strict = strict
        self.items: list[Skip] = []

    def add(self, item: object, reason: str, path: object = "", error: BaseException | None = None) -> None:
        """Record a skip (an item once, with its first reason), or raise in strict mode (`error` as
        it is, else a DatasetError naming `path`)."""
        if self.strict:
            if error is not None:
                raise error
            raise DatasetError(path or item, [reason])
        if str(item) in self:  # counted once, with the first reason; the item is already out
            log.info("also skipping %s: %s", item, reason)
            return
        self.items.append(Skip(str(item), reason, str(path or "")))
        log.warning("skipped %s: %s", item, reason)

    def call(self, item: object, function: Callable[..., T], *args: object, path: object = "") -> T | None:
        """`function(*args)`, or None with the item skipped when it raises a medattn error."""
        try:
            return function(*args)
        except MedattnError as exc:
            self.add(item, str(exc), getattr(exc, "path", path), exc)
            return None

    def extend(self, other: "Skips") -> None:
        for entry in other:
            self.add(entry.item, entry.reason, entry.path)

    @property
    def names(self) -> list[str]:
        """The skipped items, in the order they were met."""
        return [entry.item for entry in self.items]

    def records(self) -> list[dict[str, str]]:
        """Plain dicts (item, reason, path), for dataset.json and exports."""
        return [asdict(entry) for entry in self.items]

    def summary(self, limit: int = 10) -> str:
        """'2 images skipped: a (reason); b (reason)', or '' when nothing was skipped."""
        if not self.items:
            return ""
        what = self.what[:-1] if len(self.items) == 1 and self.what.endswith("s") else self.what
        shown = "; ".join(f"{entry.item} ({entry.reason})" for entry in self.items[:limit])
        more = f"; … and {len(self.items) - limit} more" if len(self.items) > limit else ""
        return f"{len(self.items)} {what} skipped: {shown}{more}"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Skip]:
        return iter(self.items)

    def __contains__(self, item: object) -> bool:
        return str(item) in self.names


def recorded(folder: str | os.PathLike) -> Skips:
    """The report a builder wrote into `folder`/dataset.json (`skipped`); empty when none."""
    skips = Skips("images")
    path = Path(folder) / "dataset.json"
    entries = json.loads(path.read_text()).get("skipped", []) if path.is_file() else []
    skips.items = [Skip(str(e.get("item", "")), str(e.get("reason", "")), str(e.get("path", ""))) for e in entries]
    return skips
