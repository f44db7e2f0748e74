"""Copy studies between two reader-study databases (SQLite file ↔ PostgreSQL server), as they are:
the same study ids, revisions, cases, panel codes, reader orders, views and answer events (with
their times), and the accounts they name with their password hashes, so readers sign in on the
new database with the passwords they have. Failed sign-ins are not copied.

All or nothing: everything is read from the source in one snapshot and written to the target in
one transaction, after every check has passed."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import insert, select

from medattn.reader.errors import DuplicateReaderError, StudyError
from medattn.store.annotations.schema import (accounts, answer_events, assignments, cases, panels, revisions, studies,
                                              views)

# Parent tables first (foreign keys); events and views by their id, so "latest answer" holds.
STUDY_TABLES = (studies, revisions, cases, panels, assignments, answer_events, views)


def copy_studies(source, target, study_ids: Iterable[str] | None = None) -> list[str]:
    """Copy `study_ids` (default: every study, and every account) from `source` to `target`
    (`AnnotationStore`s); returns the ids copied. StudyError when a study id is already in the
    target; DuplicateReaderError when an account name there has another password hash (another
    person): nothing is written then. Event and view ids are renumbered by the target; their
    order is kept."""
    with source._read() as conn:
        known = list(conn.execute(select(studies.c.id).order_by(studies.c.created_at)).scalars())
        wanted = known if study_ids is None else list(dict.fromkeys(study_ids))
        for study_id in wanted:
            if study_id not in known:
                raise StudyError(f"no study {study_id!r} in {source.where}")
        rows = {table.name: [dict(r._mapping) for r in conn.execute(
            select(table).where(table.c.study_id.in_(wanted) if table is not studies else table.c.id.in_(wanted))
            .order_by(*table.primary_key.columns))] for table in STUDY_TABLES}
        names = {r["reader"] for r in rows[assignments.name]} | {r["reader"] for r in rows[answer_events.name]}
        query = select(accounts) if study_ids is None else select(accounts).where(accounts.c.name.in_(names))
        people = [dict(r._mapping) for r in conn.execute(query.order_by(accounts.c.name))]
    with target._write() as conn:
        taken = set(conn.execute(select(studies.c.id).where(studies.c.id.in_(wanted))).scalars())
        if taken:
            raise StudyError(f"study {sorted(taken)[0]!r} is already in {target.where}: nothing was copied")
        have = {r.name: r for r in conn.execute(select(accounts).where(accounts.c.name.in_([p["name"] for p in people])))}
        new = []
        for person in people:
            there = have.get(person["name"])
            if there is None:
                new.append(person)
            elif there.password_hash != person["password_hash"]:
                raise DuplicateReaderError(f"account {person['name']!r} in {target.where} is another person's (another "
                                           "password): rename one of them; nothing was copied")
        if new:
            conn.execute(insert(accounts), new)
        for table in STUDY_TABLES:
            batch = rows[table.name]
            if table in (revisions, answer_events, views):  # the target numbers them; order is kept
                batch = [{k: v for k, v in r.items() if k != "id"} for r in batch]
            if batch:
                conn.execute(insert(table), batch)
    return wanted
