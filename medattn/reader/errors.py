"""Errors of reader studies: each names the study, reader, case, question or field at fault."""

from __future__ import annotations

from medattn.errors import MedattnError


class StudyError(MedattnError):
    """Base class of reader-study errors."""


class StudyNotFoundError(StudyError):
    """No study with that id in the database."""


class DuplicateReaderError(StudyError):
    """The reader name is taken by another account, or already a reader of the study."""


class AccessDeniedError(StudyError):
    """The account may not do this: not a reader of the study, or not an admin."""


class LoginRateLimitedError(StudyError):
    """Too many failed logins for one name; `retry_after` is in seconds."""

    def __init__(self, name: str, retry_after: float):
        self.name, self.retry_after = name, float(retry_after)
        super().__init__(f"too many failed logins for {name!r}: try again in {int(retry_after) + 1} s")


class StorageError(StudyError):
    """The study database cannot be read or written (damaged, read-only, disk full, server
    unreachable): nothing was saved; the message says so and what to do."""


class SignInBusyError(StudyError):
    """Too many password checks are running at once on the server: try again in seconds."""


class StudyConflictError(StudyError):
    """The study changed since the editor read it (two admins editing): reload and redo the edit."""


class DatasetMovedError(StudyError):
    """The study's dataset folder is gone; an admin can point the study at its new place."""


class CaseUnavailableError(StudyError):
    """One case's image cannot be read now (not in the study's dataset, file gone or unreadable);
    the reader skips the case, the admin sees it counted. The message names the image: server side."""


class InvalidAnswerError(StudyError):
    """A submitted value does not fit its question (the message names the question and field)."""


class ImportFormatError(StudyError):
    """A study JSON file to import is malformed (the message names the file and field)."""


class AnalysisNotReadyError(StudyError):
    """The answers so far cannot support an analysis (one arm read, one reader, too few images of
    a kind): the message says, for the study's coordinator, what is missing and what to do."""
