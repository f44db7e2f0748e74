"""Where the reader-study database lives and how transactions open, on SQLite or PostgreSQL.

`MEDATTN_STUDY_DB` (and every `--db`) is a path unless it has a URL scheme: "studies?.db" and
"50%.db" are files, "sqlite:///studies.db" and "postgresql://host/medattn" are URLs
(SQLAlchemy's form; "postgresql://" uses psycopg 3).

Both backends give the same guarantees, which the tests check on each:
- a write transaction is serialised with every other writer of the database (SQLite: BEGIN
  IMMEDIATE with a 30 s busy timeout; PostgreSQL: a transaction-scoped advisory lock), so two
  processes never interleave a read-check-write;
- a commit is durable when it returns (SQLite: WAL with synchronous=FULL; PostgreSQL: its
  default synchronous_commit=on);
- a read sees one snapshot (SQLite's transaction; PostgreSQL: REPEATABLE READ, READ ONLY).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError

from medattn.reader.errors import StorageError

BUSY_TIMEOUT_MS = 30_000
# PostgreSQL advisory lock key that every write transaction takes ("medattn" in the key's bits).
WRITE_LOCK_KEY = 0x6D65646174746E
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def database_url(target: str | os.PathLike) -> URL:
    """The SQLAlchemy URL of `target`: a path (any characters, "?" and "%" included) is an SQLite
    file; text is a URL only when it starts with a scheme ("postgresql://...", "sqlite:///...").
    A PostgreSQL URL without a driver gets psycopg (3)."""
    text = os.fspath(target)
    if isinstance(target, str) and _SCHEME.match(text):
        url = make_url(text)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url
    return URL.create("sqlite", database=str(Path(text).expanduser().absolute()))


def describe(url: URL) -> str:
    """The database for messages and logs: a file's path, or the URL without its password."""
    return url.database if is_sqlite(url) else url.render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def open_engine(url: URL) -> Engine:
    """An engine whose transactions follow the module's rules (`_write`/`_read` of the store)."""
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "begin", _on_begin)
    return engine


def check_integrity(engine: Engine) -> None:
    """StorageError unless an SQLite file passes `PRAGMA quick_check` (every page and record
    well-formed; the index cross-check of integrity_check is skipped to keep starts fast). A
    server checks its own storage."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        problems = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StorageError(f"the study database {engine.url.database} is damaged ({'; '.join(problems[:3])}): "
                           "restore its latest backup (python -m medattn.reader backup)")


def storage_failure(error: DBAPIError) -> bool:
    """Whether a database error is the storage's (read-only, locked, full, damaged, gone) rather
    than the statement's (a constraint or a bug, which the caller handles)."""
    return not isinstance(error, (IntegrityError, ProgrammingError, DataError))


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event open transactions itself (pysqlite would defer BEGIN).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _on_begin(conn: Connection) -> None:
    readonly = conn.get_execution_options().get("readonly")
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
    elif readonly:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
