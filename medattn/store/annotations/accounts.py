"""Accounts: admins and readers, argon2id password hashes and sign-in."""

from __future__ import annotations

import secrets
import time

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from medattn.reader.errors import AccessDeniedError, DuplicateReaderError, LoginRateLimitedError, StudyError
from medattn.reader.names import check_name
from medattn.store.annotations.schema import accounts, logins, now

# Login rate limit: at most MAX_FAILURES failed attempts per name within FAILURE_WINDOW_S.
MAX_FAILURES = 5
MAX_READER_NAME = 64  # characters; names show in tables, exports and logs
MAX_PASSWORD = 1024  # hashing a megabyte "password" on every try would tie up the server
FAILURE_WINDOW_S = 300.0


class Accounts:
    """Account side of `AnnotationStore`."""

    def _create_account(self, conn: Connection, name: str, password_hash: str, admin: bool) -> None:
        conn.execute(insert(accounts).values(name=name, password_hash=password_hash, is_admin=admin, created_at=now()))

    def _account(self, conn: Connection, name: str):
        return conn.execute(select(accounts).where(accounts.c.name == name)).first()

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _check_credentials(name: str, password: str) -> str:
        name = name.strip() if isinstance(name, str) else name
        if not isinstance(name, str) or not name:
            raise StudyError("reader name must be non-empty text")
        check_name("reader name", name, MAX_READER_NAME)
        if not isinstance(password, str) or len(password) < 8:
            raise StudyError(f"password for {name!r} must have at least 8 characters")
        if len(password) > MAX_PASSWORD:
            raise StudyError(f"password for {name!r} must have at most {MAX_PASSWORD} characters")
        return name

    def add_admin(self, name: str, password: str) -> None:
        """Create an admin account (DuplicateReaderError if the name is taken)."""
        name = self._check_credentials(name, password)
        password_hash = self.hasher.hash(password)  # outside the write lock: argon2 takes ~0.1 s
        try:
            with self._write() as conn:
                self._create_account(conn, name, password_hash, admin=True)
        except IntegrityError as error:
            raise DuplicateReaderError(f"account name {name!r} is taken") from error


    def authenticate(self, name: str, password: str) -> bool:
        """Whether `password` is `name`'s. Every attempt is recorded; after MAX_FAILURES failures
        within FAILURE_WINDOW_S (since the last success) LoginRateLimitedError is raised without
        checking the password. Unknown names cost one hash check too (no timing oracle)."""
        stamp = time.time()
        with self._read() as conn:
            last_ok = conn.execute(select(func.max(logins.c.at)).where((logins.c.name == name) & logins.c.ok)).scalar()
            since = max(stamp - FAILURE_WINDOW_S, last_ok or 0.0)
            failures = conn.execute(select(logins.c.at).where((logins.c.name == name) & ~logins.c.ok
                                                              & (logins.c.at > since)).order_by(logins.c.at)).scalars().all()
            account = self._account(conn, name)
        if len(failures) >= MAX_FAILURES:
            raise LoginRateLimitedError(name, failures[-MAX_FAILURES] + FAILURE_WINDOW_S - stamp)
        if account is None and self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(8))
        ok = self._verify(account.password_hash if account else self._dummy_hash, password) and account is not None
        with self._write() as conn:
            conn.execute(insert(logins).values(name=name, at=stamp, ok=ok))
        return ok

    def set_password(self, admin: str, name: str, password: str) -> None:
        """An admin sets `name`'s password (e.g. for readers of an imported study, whose accounts
        come locked). AccessDeniedError unless `admin` is an admin; StudyError for an unknown name."""
        self.require_admin(admin)
        name = self._check_credentials(name, password)
        password_hash = self.hasher.hash(password)
        with self._write() as conn:
            if self._account(conn, name) is None:
                raise StudyError(f"no account named {name!r}")
            conn.execute(accounts.update().where(accounts.c.name == name).values(password_hash=password_hash))

    def is_admin(self, name: str) -> bool:
        with self._read() as conn:
            account = self._account(conn, name)
        return bool(account and account.is_admin)

    def require_admin(self, name: str) -> None:
        """AccessDeniedError unless `name` is an admin account."""
        if not self.is_admin(name):
            raise AccessDeniedError(f"{name!r} is not an admin")

