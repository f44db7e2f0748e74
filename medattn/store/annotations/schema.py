"""Tables of the reader-study database (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Answers are append-only events: the current answer is the latest event per reader × case ×
question. Study edits append a revision. Times are ISO 8601 UTC text (`now`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, Column, Float, ForeignKey, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, inspect)
from sqlalchemy.engine import Connection

metadata = MetaData()
studies = Table(
    "studies", metadata,
    Column("id", String, primary_key=True),
    Column("created_at", String, nullable=False),
    Column("app_version", String, nullable=False),
)
revisions = Table(
    "study_revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", String, ForeignKey("studies.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("author", String),
    Column("created_at", String, nullable=False),
    UniqueConstraint("study_id", "revision"),
)
cases = Table(
    "cases", metadata,
    Column("study_id", String, ForeignKey("studies.id"), primary_key=True),
    Column("case_id", String, primary_key=True),
    Column("image_id", String, nullable=False),
    Column("position", Integer, nullable=False),
    Column("meta", JSON),
)
panels = Table(
    "panels", metadata,
    Column("study_id", String, ForeignKey("studies.id"), primary_key=True),
    Column("code", String, primary_key=True),
    Column("checkpoint", String, nullable=False),
    Column("method", String, nullable=False),
    Column("checkpoint_hash", String),
    Column("position", Integer, nullable=False),
)
accounts = Table(
    "accounts", metadata,
    Column("name", String, primary_key=True),
    Column("password_hash", String, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", String, nullable=False),
    # Sessions signed in before this time (epoch seconds) are over: "sign out everywhere", or a new password.
    Column("signed_out_at", Float),
)
assignments = Table(
    "assignments", metadata,
    Column("study_id", String, ForeignKey("studies.id"), primary_key=True),
    Column("reader", String, ForeignKey("accounts.name"), primary_key=True),
    Column("reader_index", Integer, nullable=False),
    Column("case_order", JSON, nullable=False),
    Column("arms", JSON),
    Column("created_at", String, nullable=False),
    UniqueConstraint("study_id", "reader_index"),
)
answer_events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", String, ForeignKey("studies.id"), nullable=False, index=True),
    Column("reader", String, nullable=False),
    Column("case_id", String, nullable=False),
    Column("question_id", String, nullable=False),
    Column("value", Text, nullable=False),
    Column("shown_at", String),
    Column("submitted_at", String, nullable=False),
    Column("app_version", String, nullable=False),
    Column("checkpoint_hashes", Text, nullable=False),
)
views = Table(
    "views", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", String, nullable=False),
    Column("reader", String, nullable=False),
    Column("case_id", String, nullable=False),
    Column("shown_at", String, nullable=False),
)
logins = Table(
    "login_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),
    # Recorded as a failure before the password is checked; set true once it matched.
    Column("ok", Boolean, nullable=False),
    Column("client", String, index=True),  # the client's address, as the app saw it
)



def now() -> str:
    """UTC time as ISO 8601 with microseconds: what every stored time uses."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")



def create_or_upgrade(conn: Connection) -> None:
    """Create missing tables, and add the nullable columns a database made by an older version
    lacks (`signed_out_at`, `client`): an existing study file keeps working."""
    metadata.create_all(conn)
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
