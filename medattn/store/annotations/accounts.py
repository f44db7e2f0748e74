"""Accounts: admins and readers, argon2id password hashes and sign-in."""

from __future__ import annotations

import secrets
import threading
import time
import unicodedata

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from medattn.reader.errors import (AccessDeniedError, DuplicateReaderError, LoginRateLimitedError, SignInBusyError,
                                   StudyError)
from medattn.reader.names import check_account_name, skeleton
from medattn.store.annotations.schema import accounts, logins, now

MAX_READER_NAME = 64  # characters; names show in tables, exports and logs
MAX_PASSWORD = 1024  # at sign-in too: hashing a megabyte "password" on every try would tie up the server

# Sign-in limits (failures counted over FAILURE_WINDOW_S; a pending check counts as a failure).
FAILURE_WINDOW_S = 900.0
# Per name × client: MAX_FAILURES free failures, then each try waits BACKOFF_S, doubling per
# further failure up to MAX_BACKOFF_S. A backoff, not a lockout: a stranger slows only himself.
MAX_FAILURES = 5
BACKOFF_S = 2.0
MAX_BACKOFF_S = 300.0
# For a client that has never signed in as the name (a reader's own machine is exempt, so a
# stranger cannot keep them out): per name (guesses from many machines), per client (one
# machine spraying names) and over the whole server.
NAME_BUDGET = 20
CLIENT_BUDGET = 30
GLOBAL_BUDGET = 300
# Concurrent password checks per process: argon2id (argon2-cffi's defaults, RFC 9106's second
# recommended option: t=3, m=64 MiB, p=4) holds 64 MiB per check.
MAX_CONCURRENT_CHECKS = 4
CHECK_QUEUE_S = 10.0
_CHECKS = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)


def sign_in_wait(conn: Connection, name: str, client: str, stamp: float) -> float:
    """Seconds before `client` may try `name` again (0: now), by the limits above."""
    since = stamp - FAILURE_WINDOW_S
    failed = ~logins.c.ok & (logins.c.at > since)
    mine = (logins.c.name == name) & (logins.c.client == client)
    last_ok = conn.execute(select(func.max(logins.c.at)).where(mine & logins.c.ok)).scalar()
    pair = conn.execute(select(logins.c.at).where(mine & failed & (logins.c.at > (last_ok or 0.0)))
                        .order_by(logins.c.at)).scalars().all()
    waits = [0.0]
    if len(pair) >= MAX_FAILURES:
        waits.append(pair[-1] + min(BACKOFF_S * 2 ** (len(pair) - MAX_FAILURES), MAX_BACKOFF_S) - stamp)
    if last_ok is None:  # a machine the name never signed in from
        for scope, budget in ((logins.c.name == name, NAME_BUDGET), (logins.c.client == client, CLIENT_BUDGET),
                              (true(), GLOBAL_BUDGET)):
            times = conn.execute(select(logins.c.at).where(failed & scope).order_by(logins.c.at.desc())
                                 .limit(budget)).scalars().all()
            if len(times) >= budget:
                waits.append(times[-1] + FAILURE_WINDOW_S - stamp)
    return max(waits)


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

    def _lookalike(self, conn: Connection, name: str) -> str | None:
        """An existing account name other than `name` that looks like it (`skeleton`)."""
        mine = skeleton(name)
        return next((other for other in conn.execute(select(accounts.c.name)).scalars()
                     if other != name and skeleton(other) == mine), None)

    def _refuse_lookalike(self, conn: Connection, name: str) -> None:
        other = self._lookalike(conn, name)
        if other is not None:
            raise DuplicateReaderError(f"account name {name!r} looks like the existing account {other!r}; "
                                       "choose a name that reads differently")

    @staticmethod
    def _check_credentials(name: str, password: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise StudyError("reader name must be non-empty text")
        name = check_account_name("reader name", name, MAX_READER_NAME)
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
                self._refuse_lookalike(conn, name)
                self._create_account(conn, name, password_hash, admin=True)
        except IntegrityError as error:
            raise DuplicateReaderError(f"account name {name!r} is taken") from error


    def authenticate(self, name: str, password: str, client: str | None = None) -> bool:
        """Whether `password` is `name`'s, signing in from `client` (the address the app saw;
        None: this machine). The attempt is recorded as a failure, in the same serialised
        transaction that checks the limits (`sign_in_wait`), before the password is checked; a
        match then marks it a success. So simultaneous attempts cannot all pass a check that
        none has yet counted. LoginRateLimitedError (with `retry_after`) instead of a check
        over a limit; SignInBusyError when MAX_CONCURRENT_CHECKS checks are running (each holds
        the hash's 64 MiB). A password longer than MAX_PASSWORD is wrong without hashing.
        Unknown names cost one hash check too (no timing oracle)."""
        client = (client or "local")[:100]
        if not isinstance(name, str) or len(name) > MAX_READER_NAME * 4:
            return False  # no account has such a name: nothing to check or store
        name = unicodedata.normalize("NFKC", name).strip()
        stamp = time.time()
        if not _CHECKS.acquire(timeout=CHECK_QUEUE_S):
            raise SignInBusyError("the server is checking many sign-ins at once: try again in a few seconds")
        try:
            with self._write() as conn:
                wait = sign_in_wait(conn, name, client, stamp)
                if wait > 0:
                    raise LoginRateLimitedError(name, wait)
                attempt = conn.execute(insert(logins).values(name=name, client=client, at=stamp, ok=False))
                account = self._account(conn, name)
            if not isinstance(password, str) or len(password) > MAX_PASSWORD:
                return False
            if account is None and self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_hex(8))
            ok = self._verify(account.password_hash if account else self._dummy_hash, password) and account is not None
        finally:
            _CHECKS.release()
        if ok:
            with self._write() as conn:
                conn.execute(update(logins).where(logins.c.id == attempt.inserted_primary_key[0]).values(ok=True))
        return ok

    def sign_out_everywhere(self, name: str) -> None:
        """End every session of `name` signed in until now (`session_valid` turns false)."""
        with self._write() as conn:
            conn.execute(update(accounts).where(accounts.c.name == name).values(signed_out_at=time.time()))

    def session_valid(self, name: str, signed_in_at: float) -> bool:
        """Whether a session of `name` that signed in at `signed_in_at` (epoch s) still holds:
        the account exists and was not signed out everywhere (or given a new password) since."""
        with self._read() as conn:
            account = self._account(conn, name)
        return account is not None and (account.signed_out_at or 0.0) < signed_in_at

    def set_password(self, admin: str, name: str, password: str) -> None:
        """An admin sets `name`'s password (e.g. for readers of an imported study, whose accounts
        come locked); `name`'s sessions end. AccessDeniedError unless `admin` is an admin;
        StudyError for an unknown name."""
        self.require_admin(admin)
        name = self._check_credentials(name, password)
        password_hash = self.hasher.hash(password)
        with self._write() as conn:
            if self._account(conn, name) is None:
                raise StudyError(f"no account named {name!r}")
            conn.execute(accounts.update().where(accounts.c.name == name).values(password_hash=password_hash,
                                                                                 signed_out_at=time.time()))

    def is_admin(self, name: str) -> bool:
        with self._read() as conn:
            account = self._account(conn, name)
        return bool(account and account.is_admin)

    def require_admin(self, name: str) -> None:
        """AccessDeniedError unless `name` is an admin account."""
        if not self.is_admin(name):
            raise AccessDeniedError(f"{name!r} is not an admin")

