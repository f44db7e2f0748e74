"""Errors that name the file, row or field at fault, so users can fix their input."""

from __future__ import annotations


class MedattnError(Exception):
    """Base class for every error medattn raises on bad input."""


class ImageReadError(MedattnError):
    """An image file could not be read; the message names the file and the reason."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class DatasetError(MedattnError):
    """A dataset folder failed validation; `problems` lists every problem found."""

    def __init__(self, path: object, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        shown = "\n  - ".join(self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(
            f"dataset {self.path} has {len(self.problems)} problem(s):\n  - {shown}{more}"
        )


class CheckpointError(MedattnError):
    """A checkpoint is missing, malformed or does not match its metadata."""
