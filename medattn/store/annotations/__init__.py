"""Reader-study database: studies, accounts and append-only answer events.

One SQLite file or a PostgreSQL database (`engine`: a path is a file, a URL with a scheme is a
server), the same tables (`schema`) and guarantees on both: serialised write transactions, a
commit on disk before it returns. Answers are never updated or deleted: each `submit` appends an
event and the current answer is the latest event per reader × case × question. Study edits
append a revision (a stale revision is refused: two admins editing). Passwords are stored only
as argon2id hashes; failed sign-ins are kept in the database so the rate limit survives a
restart. Cases carry study-local ids ("case-0001"); the image ids stay here.

Every reader-facing method (`answers`) takes the signed-in reader's name and returns that
reader's own data only: the filter is in the SQL, not in the page layout.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from argon2 import PasswordHasher
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from medattn.reader.errors import StorageError

from medattn.store.annotations.accounts import (FAILURE_WINDOW_S, MAX_FAILURES, MAX_PASSWORD, MAX_READER_NAME,
                                                Accounts)
from medattn.store.annotations.answers import Answers
from medattn.store.annotations.engine import (check_integrity, database_url, describe, is_sqlite, open_engine,
                                              storage_failure)
from medattn.store.annotations.schema import create_or_upgrade, now
from medattn.store.annotations.studies import KINDS, MAX_STUDY_NAME, Studies, checkpoint_file_hash

__all__ = ["AnnotationStore", "FAILURE_WINDOW_S", "KINDS", "MAX_FAILURES", "MAX_PASSWORD", "MAX_READER_NAME",
           "MAX_STUDY_NAME", "checkpoint_file_hash", "now"]


class AnnotationStore(Accounts, Studies, Answers):
    """One reader-study database (tables created on first use).

    `target`: an SQLite file's path, or an SQLAlchemy URL ("postgresql://user@host/db").
    `password_hasher` defaults to argon2-cffi's `PasswordHasher()` (argon2id, RFC 9106 defaults);
    tests may pass a cheaper one.
    """

    def __init__(self, target: str | os.PathLike, password_hasher: PasswordHasher | None = None):
        self.url = database_url(target)
        self.where = describe(self.url)  # for messages: never the password
        self.path: Path | None = None  # the SQLite file; None on a server
        if is_sqlite(self.url):
            self.path = Path(self.url.database)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only: the file holds password hashes and every reader's answers. SQLite gives
            # its -wal and -shm files the database file's permissions.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.hasher = password_hasher or PasswordHasher()
        self._dummy_hash: str | None = None  # verified against for unknown names (made on first need)
        self.engine: Engine = open_engine(self.url)
        try:
            check_integrity(self.engine)
            with self.engine.begin() as conn:  # a write transaction: concurrent first opens queue
                create_or_upgrade(conn)
        except DBAPIError as error:
            raise StorageError(f"the study database {self.where} cannot be opened ({error.orig}): if it is "
                               "damaged, restore its latest backup (python -m medattn.reader backup)") from error

    @property
    def target(self) -> str:
        """What reopens this database in another process (a path, or the URL with its password)."""
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=False)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A serialised write transaction; StorageError when the database cannot take it."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as error:
            if not storage_failure(error):
                raise
            raise StorageError(f"not saved: the study database {self.where} cannot be written "
                               f"({error.orig}); try again in a moment, and tell the study coordinator "
                               "if it keeps failing") from error

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(readonly=True) as conn:
                with conn.begin():
                    yield conn
        except DBAPIError as error:
            if not storage_failure(error):
                raise
            raise StorageError(f"the study database {self.where} cannot be read ({error.orig}); try again "
                               "in a moment") from error
