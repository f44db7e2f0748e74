"""Reader-study database: studies, accounts and append-only answer events in one SQLite file.

SQLite through SQLAlchemy Core, WAL journal, synchronous=FULL (a commit is on disk before it
returns), a 30 s busy timeout, and write transactions opened with BEGIN IMMEDIATE so concurrent
writer processes queue instead of failing. Answers are never updated or deleted: each `submit`
appends an event and the current answer is the latest event per reader × case × question.
Study edits append a revision (a stale revision is refused: two admins editing). Passwords are
stored only as argon2id hashes; failed logins are kept in the database so the rate limit
survives a restart. Cases carry study-local ids ("case-0001"); the image ids stay here.

Every reader-facing method takes the logged-in reader's name and returns that reader's own data
only: the filter is in the SQL, not in the page layout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (JSON, Boolean, Column, Float, ForeignKey, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, create_engine, event, func, insert, select)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from medattn import __version__
from medattn.reader.arms import ARMS, DESIGNS, WITH_AI, WITHOUT_AI, crossed_order, split_arms
from medattn.reader.blinding import panel_codes, panel_order
from medattn.reader.errors import (AccessDeniedError, DatasetMovedError, DuplicateReaderError, InvalidAnswerError,
                                   LoginRateLimitedError, StudyConflictError, StudyError, StudyNotFoundError)
from medattn.reader.order import case_order
from medattn.reader.progress import first_unanswered, missing_answers
from medattn.reader.questions import check_answer, check_questions

KINDS = ("failure_review", "heatmap_rating", "detection")
BUSY_TIMEOUT_MS = 30_000
# Login rate limit: at most MAX_FAILURES failed attempts per name within FAILURE_WINDOW_S.
MAX_FAILURES = 5
MAX_READER_NAME = 64  # characters; names show in tables, exports and logs
MAX_STUDY_NAME = 200
MAX_PASSWORD = 1024  # hashing a megabyte "password" on every try would tie up the server
FAILURE_WINDOW_S = 300.0

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
    Column("at", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
)


def now() -> str:
    """UTC time as ISO 8601 with microseconds: what every stored time uses."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def checkpoint_file_hash(checkpoint: str) -> str | None:
    """Content hash of a checkpoint's weights (path with or without .safetensors); None if absent."""
    from medattn.store.heatmaps import file_hash

    for candidate in (Path(checkpoint), Path(f"{checkpoint}.safetensors")):
        if candidate.is_file():
            return file_hash(candidate)
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "study"


class AnnotationStore:
    """One reader-study database file (created on first use).

    `password_hasher` defaults to argon2-cffi's `PasswordHasher()` (argon2id, RFC 9106 defaults);
    tests may pass a cheaper one.
    """

    def __init__(self, path: str | os.PathLike, password_hasher: PasswordHasher | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only: the file holds password hashes and every reader's answers. SQLite gives its
        # -wal and -shm files the database file's permissions.
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.hasher = password_hasher or PasswordHasher()
        self._dummy_hash: str | None = None  # verified against for unknown names (made on first need)
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        event.listen(self.engine, "connect", _on_connect)
        event.listen(self.engine, "begin", _on_begin)
        with self.engine.begin() as conn:  # BEGIN IMMEDIATE: concurrent first opens queue
            metadata.create_all(conn)

    # ---- transactions -------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(readonly=True) as conn:
            with conn.begin():
                yield conn

    # ---- studies (admin) ----------------------------------------------------------------
    def create_study(self, spec: Mapping[str, Any], author: str | None = None) -> str:
        """Create a study from `spec` (see DESIGN.md "Reader studies"); returns its id.

        Cases get study-local ids in a seeded shuffled order, panels get random blinded codes.
        Raises StudyError naming the first bad field, DatasetMovedError if `dataset` is not a folder.
        """
        spec = dict(spec)
        for key in ("name", "kind", "dataset", "cases", "questions"):
            if key not in spec:
                raise StudyError(f"study spec lacks field {key!r}")
        if not isinstance(spec["name"], str) or not spec["name"].strip():
            raise StudyError("study spec field 'name': non-empty text expected")
        _check_name("study spec field 'name'", spec["name"], MAX_STUDY_NAME)
        if spec["kind"] not in KINDS:
            raise StudyError(f"study spec field 'kind': {spec['kind']!r} is not one of {', '.join(KINDS)}")
        image_ids = [str(i) for i in spec["cases"]]
        if not image_ids:
            raise StudyError("study spec field 'cases': no cases")
        case_meta = list(spec.get("case_meta") or [{}] * len(image_ids))
        if len(case_meta) != len(image_ids) or not all(isinstance(m, dict) for m in case_meta):
            raise StudyError("study spec field 'case_meta': one dict per case expected")
        keys = [(i, json.dumps(m, sort_keys=True)) for i, m in zip(image_ids, case_meta)]
        if len(set(keys)) != len(keys):
            raise StudyError("study spec field 'cases': duplicate cases (same image id and case_meta)")
        if not Path(spec["dataset"]).is_dir():
            raise DatasetMovedError(f"study spec field 'dataset': {spec['dataset']} is not a folder")
        spec["dataset"] = str(Path(spec["dataset"]).resolve())
        spec["questions"] = check_questions(spec["questions"])
        spec["seed"] = int(spec.get("seed", secrets.randbelow(2**31)))
        spec["cases"] = image_ids
        panel_specs = list(spec.get("panels") or [])
        for i, panel in enumerate(panel_specs):
            if not isinstance(panel, dict) or not panel.get("checkpoint") or not panel.get("method"):
                raise StudyError(f"study spec field 'panels[{i}]': needs 'checkpoint' and 'method'")
        spec["panels"] = [{"checkpoint": str(p["checkpoint"]), "method": str(p["method"])} for p in panel_specs]
        for meta in case_meta:  # a case's own map (failure review) is one more panel
            if meta.get("checkpoint") and meta.get("method"):
                pair = {"checkpoint": str(meta["checkpoint"]), "method": str(meta["method"])}
                if pair not in spec["panels"]:
                    spec["panels"].append(pair)
        panel_specs = spec["panels"]
        spec.setdefault("blinded", True)
        arms = spec.get("arms", spec["kind"] == "detection" and bool(panel_specs))
        spec["arms"] = "crossed" if arms is True else (arms or False)
        if spec["arms"] and (spec["arms"] not in DESIGNS or spec["kind"] != "detection" or not panel_specs):
            raise StudyError(f"study spec field 'arms': {arms!r}; with-/without-AI arms are a detection study's, "
                             f"need panels, and are one of {', '.join(DESIGNS)}")
        spec["case_meta"] = case_meta
        if spec["arms"] == "crossed":  # every image is one case per arm
            case_meta = [{**meta, "arm": arm} for meta in case_meta for arm in ARMS]
            image_ids = [image for image in image_ids for _ in ARMS]
        readers = spec.pop("readers", None) or []
        self._check_new_readers(readers)
        study_id = f"{_slug(spec['name'])}-{secrets.token_hex(3)}"
        rng = np.random.default_rng([spec["seed"], 1])
        shuffled = [(image_ids[i], case_meta[i]) for i in rng.permutation(len(image_ids))]
        codes = panel_codes(len(panel_specs))
        stamp = now()
        with self._write() as conn:
            conn.execute(insert(studies).values(id=study_id, created_at=stamp, app_version=__version__))
            conn.execute(insert(revisions).values(study_id=study_id, revision=1, spec=spec, author=author,
                                                  created_at=stamp))
            conn.execute(insert(cases), [
                {"study_id": study_id, "case_id": f"case-{i + 1:04d}", "image_id": image_id, "position": i,
                 "meta": meta or None}
                for i, (image_id, meta) in enumerate(shuffled)])
            if panel_specs:
                conn.execute(insert(panels), [
                    {"study_id": study_id, "code": code, "checkpoint": p["checkpoint"], "method": p["method"],
                     "checkpoint_hash": checkpoint_file_hash(p["checkpoint"]), "position": i}
                    for i, (code, p) in enumerate(zip(codes, spec["panels"]))])
        for reader in readers:
            self.add_reader(study_id, reader["name"], reader["password"])
        return study_id

    def _check_new_readers(self, readers: Sequence[Mapping]) -> None:
        """Refuse a spec's `readers` before anything is written: bad entries, repeated names,
        names taken by an account with another password."""
        seen = set()
        for i, reader in enumerate(readers):
            if not isinstance(reader, Mapping) or "name" not in reader or "password" not in reader:
                raise StudyError(f"study spec field 'readers[{i}]': needs 'name' and 'password'")
            name = self._check_credentials(reader["name"], reader["password"])
            if name in seen:
                raise DuplicateReaderError(f"study spec field 'readers[{i}]': {name!r} is listed twice")
            seen.add(name)
            with self._read() as conn:
                account = self._account(conn, name)
            if account is not None and not self._verify(account.password_hash, reader["password"]):
                raise DuplicateReaderError(f"study spec field 'readers[{i}]': reader name {name!r} is taken by "
                                           "another account; choose another name")

    def restore_study(self, spec: Mapping[str, Any], case_rows: Sequence[Mapping], panel_rows: Sequence[Mapping],
                      assignment_rows: Sequence[Mapping], event_rows: Sequence[Mapping]) -> str:
        """Re-create an exported study under a new id in one transaction (all or nothing):
        the same case ids, panel codes, reader orders and answer events (with their times).
        Readers without an account get a locked one (an admin sets its password: `set_password`).
        The input is checked by `medattn.reader.export.read_study_json`."""
        spec = {k: v for k, v in spec.items() if k not in ("id", "revision")}
        study_id = f"{_slug(spec['name'])}-{secrets.token_hex(3)}"
        stamp = now()
        with self._write() as conn:
            conn.execute(insert(studies).values(id=study_id, created_at=stamp, app_version=__version__))
            conn.execute(insert(revisions).values(study_id=study_id, revision=1, spec=spec, author="import",
                                                  created_at=stamp))
            conn.execute(insert(cases), [{"study_id": study_id, "case_id": c["case_id"], "image_id": c["image_id"],
                                          "position": i, "meta": c.get("meta") or None}
                                         for i, c in enumerate(case_rows)])
            if panel_rows:
                conn.execute(insert(panels), [{"study_id": study_id, "code": p["code"], "checkpoint": p["checkpoint"],
                                               "method": p["method"], "checkpoint_hash": p.get("checkpoint_hash"),
                                               "position": i} for i, p in enumerate(panel_rows)])
            for i, a in enumerate(assignment_rows):
                if self._account(conn, a["reader"]) is None:  # locked until an admin sets a password
                    self._create_account(conn, a["reader"], "locked: " + secrets.token_hex(16), admin=False)
                conn.execute(insert(assignments).values(study_id=study_id, reader=a["reader"], reader_index=i,
                                                        case_order=list(a["case_order"]), arms=a.get("arms"),
                                                        created_at=stamp))
            if event_rows:
                conn.execute(insert(answer_events), [
                    {"study_id": study_id, "reader": e["reader"], "case_id": e["case_id"],
                     "question_id": e["question_id"], "value": json.dumps(e["value"], sort_keys=True),
                     "shown_at": e.get("shown_at"), "submitted_at": e["submitted_at"],
                     "app_version": e.get("app_version") or __version__,
                     "checkpoint_hashes": json.dumps(e.get("checkpoint_hashes") or {}, sort_keys=True)}
                    for e in event_rows])
        return study_id

    def reader_assignments(self, study_id: str) -> pd.DataFrame:
        """Per reader in joining order: reader, reader_index, case_order, arms (admin view)."""
        with self._read() as conn:
            self._spec(conn, study_id)
            rows = conn.execute(select(assignments.c.reader, assignments.c.reader_index, assignments.c.case_order,
                                       assignments.c.arms).where(assignments.c.study_id == study_id)
                                .order_by(assignments.c.reader_index)).all()
        return pd.DataFrame(rows, columns=["reader", "reader_index", "case_order", "arms"])

    def study(self, study_id: str) -> dict:
        """The current spec of a study, with `id` and `revision` (admin view: holds image ids)."""
        with self._read() as conn:
            return self._spec(conn, study_id)

    def _spec(self, conn: Connection, study_id: str) -> dict:
        row = conn.execute(select(revisions.c.revision, revisions.c.spec).where(revisions.c.study_id == study_id)
                           .order_by(revisions.c.revision.desc()).limit(1)).first()
        if row is None:
            raise StudyNotFoundError(f"no study {study_id!r} in {self.path}")
        return {**row.spec, "id": study_id, "revision": row.revision}

    def list_studies(self) -> pd.DataFrame:
        """One row per study: id, name, kind, n_cases, n_readers, created_at (admin view)."""
        with self._read() as conn:
            ids = conn.execute(select(studies.c.id, studies.c.created_at).order_by(studies.c.created_at)).all()
            rows = []
            for study_id, created in ids:
                spec = self._spec(conn, study_id)
                n_readers = conn.execute(select(func.count()).select_from(assignments)
                                         .where(assignments.c.study_id == study_id)).scalar_one()
                rows.append({"id": study_id, "name": spec["name"], "kind": spec["kind"],
                             "n_cases": len(self._case_ids(conn, study_id)), "n_readers": n_readers,
                             "created_at": created})
        return pd.DataFrame(rows, columns=["id", "name", "kind", "n_cases", "n_readers", "created_at"])

    def update_study(self, study_id: str, changes: Mapping[str, Any], expected_revision: int,
                     author: str | None = None) -> int:
        """Append a revision with `changes` (name, questions, dataset, description) on top of
        `expected_revision`; returns the new revision. StudyConflictError if another admin saved
        in between (nothing is overwritten). Cases and panels are fixed once readers may answer."""
        allowed = {"name", "questions", "dataset", "description"}
        bad = sorted(set(changes) - allowed)
        if bad:
            raise StudyError(f"study {study_id}: field(s) {', '.join(bad)} cannot change after creation")
        changes = dict(changes)
        if "questions" in changes:
            changes["questions"] = check_questions(changes["questions"])
        if "dataset" in changes:
            if not Path(changes["dataset"]).is_dir():
                raise DatasetMovedError(f"study {study_id}: new dataset {changes['dataset']} is not a folder")
            changes["dataset"] = str(Path(changes["dataset"]).resolve())
        try:
            with self._write() as conn:
                spec = self._spec(conn, study_id)
                if spec["revision"] != expected_revision:
                    raise StudyConflictError(
                        f"study {study_id} changed since revision {expected_revision} (now {spec['revision']}, "
                        "saved by another admin): reload it and redo your edit")
                revision = spec.pop("revision") + 1
                spec.pop("id")
                spec.update(changes)
                conn.execute(insert(revisions).values(study_id=study_id, revision=revision, spec=spec, author=author,
                                                      created_at=now()))
        except IntegrityError as error:
            raise StudyConflictError(f"study {study_id}: another admin saved at the same moment; reload") from error
        return revision

    def case_key(self, study_id: str) -> pd.DataFrame:
        """Study-local case id → image id and `meta` (the case's checkpoint, method,
        target_class, category for failure review); admin view, never exported."""
        with self._read() as conn:
            self._spec(conn, study_id)
            rows = conn.execute(select(cases.c.case_id, cases.c.image_id, cases.c.meta)
                                .where(cases.c.study_id == study_id).order_by(cases.c.position)).all()
        frame = pd.DataFrame(rows, columns=["case_id", "image_id", "meta"])
        frame["meta"] = [m or {} for m in frame["meta"]]
        return frame

    def panel_key(self, study_id: str) -> pd.DataFrame:
        """Blinded code → checkpoint, method, checkpoint_hash (admin and analysis only)."""
        with self._read() as conn:
            self._spec(conn, study_id)
            rows = conn.execute(select(panels.c.code, panels.c.checkpoint, panels.c.method, panels.c.checkpoint_hash)
                                .where(panels.c.study_id == study_id).order_by(panels.c.position)).all()
        return pd.DataFrame(rows, columns=["code", "checkpoint", "method", "checkpoint_hash"])

    # ---- accounts ---------------------------------------------------------------------------
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
        _check_name("reader name", name, MAX_READER_NAME)
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

    def add_reader(self, study_id: str, name: str, password: str) -> None:
        """Create reader `name` (or reuse the account when `password` is its password) and assign
        the study: the case order and arms are drawn now and stored. DuplicateReaderError if the
        name belongs to another account or already reads this study."""
        name = self._check_credentials(name, password)
        with self._read() as conn:
            account = self._account(conn, name)
        # argon2 work outside the write lock; the insert below still refuses a name taken meanwhile
        password_hash = self.hasher.hash(password) if account is None else None
        if account is not None and not self._verify(account.password_hash, password):
            raise DuplicateReaderError(f"reader name {name!r} is taken by another account; choose another name")
        with self._write() as conn:
            spec = self._spec(conn, study_id)
            account = self._account(conn, name)
            if account is None:
                self._create_account(conn, name, password_hash, admin=False)  # set: names are never deleted
            elif password_hash is not None:
                raise DuplicateReaderError(f"reader name {name!r} is taken by another account; choose another name")
            taken = conn.execute(select(assignments.c.reader_index).where(assignments.c.study_id == study_id)).scalars().all()
            if conn.execute(select(assignments.c.reader).where((assignments.c.study_id == study_id)
                                                               & (assignments.c.reader == name))).first():
                raise DuplicateReaderError(f"{name!r} is already a reader of study {study_id}")
            index = len(taken)
            local = self._case_ids(conn, study_id)
            order, arms = case_order(local, spec["seed"], name), None
            if spec.get("arms") == "crossed":
                arms = {case: meta["arm"] for case, meta in self._panel_context(conn, study_id)[1].items()}
                order = crossed_order(arms, spec["seed"], name, index)
            elif spec.get("arms"):
                arms = split_arms(local, spec["seed"], index)
            conn.execute(insert(assignments).values(study_id=study_id, reader=name, reader_index=index,
                                                    case_order=order, arms=arms, created_at=now()))

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

    # ---- reader-facing (always filtered by the logged-in reader) -------------------------------
    def _assignment(self, conn: Connection, study_id: str, reader: str):
        row = conn.execute(select(assignments).where((assignments.c.study_id == study_id)
                                                     & (assignments.c.reader == reader))).first()
        if row is None:
            self._spec(conn, study_id)
            raise AccessDeniedError(f"{reader!r} is not a reader of study {study_id}")
        return row

    def _case_ids(self, conn: Connection, study_id: str) -> list[str]:
        return list(conn.execute(select(cases.c.case_id).where(cases.c.study_id == study_id)
                                 .order_by(cases.c.position)).scalars())

    def _codes(self, conn: Connection, study_id: str) -> list[tuple[str, str | None]]:
        return [tuple(r) for r in conn.execute(select(panels.c.code, panels.c.checkpoint_hash)
                                               .where(panels.c.study_id == study_id).order_by(panels.c.position))]

    def _check_case(self, assignment, case_id: str) -> None:
        if case_id not in assignment.case_order:
            raise AccessDeniedError(f"case {case_id!r} is not assigned to {assignment.reader!r} in study "
                                    f"{assignment.study_id}")

    def _shown_codes(self, conn: Connection, spec: dict, assignment, case_id: str,
                     context: tuple[list, dict] | None = None) -> list[str]:
        """Codes shown on a case, in the reader's order; `context` (from `_panel_context`)
        saves the queries when called for many cases."""
        if assignment.arms is not None and assignment.arms.get(case_id) == WITHOUT_AI:
            return []
        rows, metas = context or self._panel_context(conn, spec["id"], case_id)
        meta = metas.get(case_id) or {}
        if meta.get("checkpoint") and meta.get("method"):
            return [r.code for r in rows if (r.checkpoint, r.method) == (str(meta["checkpoint"]), str(meta["method"]))]
        return panel_order([r.code for r in rows], spec["seed"], assignment.reader, case_id)

    def _panel_context(self, conn: Connection, study_id: str, case_id: str | None = None) -> tuple[list, dict]:
        rows = conn.execute(select(panels.c.code, panels.c.checkpoint, panels.c.method)
                            .where(panels.c.study_id == study_id).order_by(panels.c.position)).all()
        query = select(cases.c.case_id, cases.c.meta).where(cases.c.study_id == study_id)
        if case_id is not None:
            query = query.where(cases.c.case_id == case_id)
        return rows, {c: m for c, m in conn.execute(query)}

    def _meta(self, conn: Connection, study_id: str, case_id: str) -> dict:
        return self._panel_context(conn, study_id, case_id)[1].get(case_id) or {}

    def studies_for(self, reader: str) -> pd.DataFrame:
        """The reader's studies: study_id, name, kind, n_cases, n_done."""
        rows = []
        with self._read() as conn:
            ids = conn.execute(select(assignments.c.study_id).where(assignments.c.reader == reader)).scalars().all()
        for study_id in ids:
            spec = self.study(study_id)
            done = self.progress_of(study_id, reader)
            rows.append({"study_id": study_id, "name": spec["name"], "kind": spec["kind"],
                         "n_cases": done["n_cases"], "n_done": done["n_done"]})
        return pd.DataFrame(rows, columns=["study_id", "name", "kind", "n_cases", "n_done"])

    def study_for_reader(self, study_id: str, reader: str) -> dict:
        """What a reader may know of a study: id, name, kind, questions, description, target_class
        (the finding readers look for; None: any) — no cases, images, panels or dataset.
        AccessDeniedError if `reader` is not one of its readers."""
        with self._read() as conn:
            spec = self._spec(conn, study_id)
            self._assignment(conn, study_id, reader)
        return {"id": study_id, "name": spec["name"], "kind": spec["kind"], "questions": spec["questions"],
                "description": spec.get("description", ""), "target_class": spec.get("target_class")}

    def cases_for(self, study_id: str, reader: str) -> list[str]:
        """The reader's case ids in their stored order."""
        with self._read() as conn:
            return list(self._assignment(conn, study_id, reader).case_order)

    def arm_for(self, study_id: str, reader: str, case_id: str) -> str | None:
        """"with_ai" / "without_ai" for a detection study with arms; None otherwise."""
        with self._read() as conn:
            assignment = self._assignment(conn, study_id, reader)
            self._check_case(assignment, case_id)
            return assignment.arms.get(case_id) if assignment.arms is not None else None

    def panels_for(self, study_id: str, reader: str, case_id: str) -> list[str]:
        """Blinded panel codes this reader sees on this case, in their order ([] without AI)."""
        with self._read() as conn:
            spec = self._spec(conn, study_id)
            assignment = self._assignment(conn, study_id, reader)
            self._check_case(assignment, case_id)
            return self._shown_codes(conn, spec, assignment, case_id)

    def panel_target(self, study_id: str, reader: str, case_id: str, code: str) -> dict:
        """{"checkpoint", "method", "dataset", "image_id", "target_class"} behind a panel the
        reader is shown, for the server to compute the map (`target_class` from the case's
        `case_meta` or the spec, else None). Never render or send any of it to the browser."""
        with self._read() as conn:
            spec = self._spec(conn, study_id)
            assignment = self._assignment(conn, study_id, reader)
            self._check_case(assignment, case_id)
            if code not in self._shown_codes(conn, spec, assignment, case_id):
                raise AccessDeniedError(f"panel {code!r} is not shown on case {case_id} to {reader!r}")
            row = conn.execute(select(panels.c.checkpoint, panels.c.method).where(
                (panels.c.study_id == study_id) & (panels.c.code == code))).one()
            image_id = self._image_id(conn, study_id, case_id)
            target = self._meta(conn, study_id, case_id).get("target_class", spec.get("target_class"))
        return {"checkpoint": row.checkpoint, "method": row.method, "dataset": spec["dataset"], "image_id": image_id,
                "target_class": target}

    def _image_id(self, conn: Connection, study_id: str, case_id: str) -> str:
        return conn.execute(select(cases.c.image_id).where((cases.c.study_id == study_id)
                                                           & (cases.c.case_id == case_id))).scalar_one()

    def case_source(self, study_id: str, reader: str, case_id: str) -> tuple[str, str]:
        """(dataset folder, image id) of one of the reader's cases, for the server to read the
        image; DatasetMovedError when the folder is gone. Not for display."""
        with self._read() as conn:
            spec = self._spec(conn, study_id)
            self._check_case(self._assignment(conn, study_id, reader), case_id)
            image_id = self._image_id(conn, study_id, case_id)
        if not Path(spec["dataset"]).is_dir():
            raise DatasetMovedError(f"study {study_id}: dataset folder {spec['dataset']} is gone; an admin can point "
                                    "the study at its new place (Study admin → edit dataset)")
        return spec["dataset"], image_id

    def case_image(self, study_id: str, reader: str, case_id: str) -> np.ndarray:
        """The case's image, float32 (H, W) in [0, 1]; ImageReadError if it became unreadable."""
        from medattn.data import load_dataset

        dataset, image_id = self.case_source(study_id, reader, case_id)
        return load_dataset(dataset, check_files=False).read_image(image_id)

    def mark_shown(self, study_id: str, reader: str, case_id: str) -> None:
        """Record that the case is on the reader's screen now (time on case = submit − shown).
        AccessDeniedError for a case of a session not open yet (`session_lock`)."""
        lock = self.session_lock(study_id, reader, case_id)
        if lock is not None and "opens once" in lock:
            raise AccessDeniedError(f"case {case_id}: {lock}")
        with self._write() as conn:
            conn.execute(insert(views).values(study_id=study_id, reader=reader, case_id=case_id, shown_at=now()))

    def submit(self, study_id: str, reader: str, case_id: str, question_id: str, value: Any) -> int:
        """Append one answer; returns its event id only after the commit is on disk.
        InvalidAnswerError if the value does not fit the question; AccessDeniedError if the
        case is not the reader's."""
        return self.submit_case(study_id, reader, case_id, {question_id: value}, require_complete=False)[0]

    def submit_case(self, study_id: str, reader: str, case_id: str, values: Mapping[str, Any],
                    require_complete: bool = True) -> list[int]:
        """Append several answers of one case in one transaction; returns their event ids.
        With `require_complete`, InvalidAnswerError names the required questions still missing
        (counting answers already stored) and nothing is written; AccessDeniedError for a case
        `session_lock` closes."""
        lock = self.session_lock(study_id, reader, case_id)
        if lock is not None:
            raise AccessDeniedError(f"case {case_id}: {lock}")
        with self._write() as conn:
            spec = self._spec(conn, study_id)
            assignment = self._assignment(conn, study_id, reader)
            self._check_case(assignment, case_id)
            shown = self._shown_codes(conn, spec, assignment, case_id)
            questions = {q["id"]: q for q in spec["questions"]}
            clean = {}
            for question_id, value in values.items():
                if question_id not in questions:
                    raise InvalidAnswerError(f"study {study_id} has no question {question_id!r}")
                clean[question_id] = check_answer(questions[question_id], value, shown)
            if require_complete:
                have = set(self._current(conn, study_id, reader, case_id)) | set(clean)
                missing = missing_answers(spec["questions"], shown, have)
                if missing:
                    raise InvalidAnswerError(f"case {case_id}: required question(s) unanswered: {', '.join(missing)}")
            shown_at = conn.execute(select(func.max(views.c.shown_at)).where(
                (views.c.study_id == study_id) & (views.c.reader == reader) & (views.c.case_id == case_id))).scalar()
            hashes = dict(self._codes(conn, study_id))
            provenance = json.dumps({code: hashes[code] for code in sorted(shown)}, sort_keys=True)
            stamp = now()
            ids = []
            for question_id, value in clean.items():
                result = conn.execute(insert(answer_events).values(
                    study_id=study_id, reader=reader, case_id=case_id, question_id=question_id,
                    value=json.dumps(value, sort_keys=True), shown_at=shown_at, submitted_at=stamp,
                    app_version=__version__, checkpoint_hashes=provenance))
                ids.append(int(result.inserted_primary_key[0]))
        return ids

    def _current(self, conn: Connection, study_id: str, reader: str | None, case_id: str | None = None) -> dict:
        latest = select(func.max(answer_events.c.id)).where(answer_events.c.study_id == study_id)
        if reader is not None:
            latest = latest.where(answer_events.c.reader == reader)
        if case_id is not None:
            latest = latest.where(answer_events.c.case_id == case_id)
        latest = latest.group_by(answer_events.c.reader, answer_events.c.case_id, answer_events.c.question_id)
        rows = conn.execute(select(answer_events.c.question_id, answer_events.c.value).where(answer_events.c.id.in_(latest))).all()
        return {row.question_id: json.loads(row.value) for row in rows}

    def case_answers(self, study_id: str, reader: str, case_id: str) -> dict[str, Any]:
        """The reader's current answers on one case, {question_id: value} (to prefill a form)."""
        with self._read() as conn:
            self._check_case(self._assignment(conn, study_id, reader), case_id)
            return self._current(conn, study_id, reader, case_id)

    def my_answers(self, study_id: str, reader: str) -> pd.DataFrame:
        """The logged-in reader's own current answers (the `answers` columns)."""
        with self._read() as conn:
            self._assignment(conn, study_id, reader)
        return self.answers(study_id, reader=reader)

    def progress_of(self, study_id: str, reader: str) -> dict:
        """{"n_cases", "n_done", "next_case", "position"} for one reader: `next_case` is the
        first case in their order with a required answer missing (None when done), `position`
        its 0-based index."""
        with self._read() as conn:
            spec = self._spec(conn, study_id)
            assignment = self._assignment(conn, study_id, reader)
            answered: dict[str, set] = {}
            for case_id, question_id in conn.execute(
                    select(answer_events.c.case_id, answer_events.c.question_id).distinct()
                    .where((answer_events.c.study_id == study_id) & (answer_events.c.reader == reader))):
                answered.setdefault(case_id, set()).add(question_id)
            context = self._panel_context(conn, study_id)
            complete = {case: not missing_answers(spec["questions"], self._shown_codes(conn, spec, assignment, case, context),
                                                  answered.get(case, ()))
                        for case in assignment.case_order}
        order = list(assignment.case_order)
        nxt = first_unanswered(order, complete)
        return {"n_cases": len(order), "n_done": sum(complete.values()), "next_case": nxt,
                "position": order.index(nxt) if nxt is not None else None}

    def next_case(self, study_id: str, reader: str) -> str | None:
        """Where the reader resumes: the first case in their order not yet complete."""
        return self.progress_of(study_id, reader)["next_case"]

    def session_lock(self, study_id: str, reader: str, case_id: str) -> str | None:
        """Why this case cannot be read now, or None. In the crossed with-/without-AI design the
        reader's two sessions are sequential, as an MRMC reading requires: a case of the second
        session opens once every case of the first is saved (the unaided reading of an image
        must not follow its map), and the first session's answers are final once a case of the
        second has been shown (an unaided answer must not be revised after the map)."""
        with self._read() as conn:
            spec = self._spec(conn, study_id)
            assignment = self._assignment(conn, study_id, reader)
            self._check_case(assignment, case_id)
            if spec.get("arms") != "crossed" or not assignment.arms:
                return None
            order = list(assignment.case_order)
            first = assignment.arms[order[0]]
            second_session = [c for c in order if assignment.arms[c] != first]
            names = {WITHOUT_AI: "without AI", WITH_AI: "with AI"}
            if assignment.arms[case_id] == first:
                seen = conn.execute(select(func.count()).select_from(views).where(
                    (views.c.study_id == study_id) & (views.c.reader == reader)
                    & views.c.case_id.in_(second_session))).scalar()
                return (f"your answers of the first session ({names[first]}) are final: the second session has "
                        "started") if seen else None
        progress = self.progress_of(study_id, reader)
        if progress["next_case"] is not None and progress["position"] < len(order) - len(second_session):
            return (f"the second session ({names[assignment.arms[case_id]]}) opens once every case of the first "
                    f"({names[first]}) is saved")
        return None

    # ---- admin and analysis --------------------------------------------------------------------
    def readers(self, study_id: str) -> list[str]:
        with self._read() as conn:
            self._spec(conn, study_id)
            return list(conn.execute(select(assignments.c.reader).where(assignments.c.study_id == study_id)
                                     .order_by(assignments.c.reader_index)).scalars())

    def progress(self, study_id: str) -> pd.DataFrame:
        """Per reader: reader, n_done, n_cases, fraction, next_case (admin view)."""
        rows = []
        for reader in self.readers(study_id):
            p = self.progress_of(study_id, reader)
            rows.append({"reader": reader, "n_done": p["n_done"], "n_cases": p["n_cases"],
                         "fraction": p["n_done"] / p["n_cases"] if p["n_cases"] else 0.0, "next_case": p["next_case"]})
        return pd.DataFrame(rows, columns=["reader", "n_done", "n_cases", "fraction", "next_case"])

    def answers(self, study_id: str, reader: str | None = None) -> pd.DataFrame:
        """Current answers (latest event per reader × case × question): reader, case_id,
        question_id, value (parsed JSON), submitted_at (UTC Timestamp); only `reader`'s when given."""
        frame = self.events(study_id, reader=reader, current_only=True)
        return frame[["reader", "case_id", "question_id", "value", "submitted_at"]]

    def events(self, study_id: str, reader: str | None = None, current_only: bool = False) -> pd.DataFrame:
        """Answer events with every stored column plus `seconds` on case (admin and exports)."""
        columns = ["id", "reader", "case_id", "question_id", "value", "shown_at", "submitted_at", "app_version",
                   "checkpoint_hashes"]
        with self._read() as conn:
            self._spec(conn, study_id)
            query = select(*[answer_events.c[c] for c in columns]).where(answer_events.c.study_id == study_id)
            if reader is not None:
                query = query.where(answer_events.c.reader == reader)
            if current_only:
                latest = select(func.max(answer_events.c.id)).where(answer_events.c.study_id == study_id)
                if reader is not None:
                    latest = latest.where(answer_events.c.reader == reader)
                query = query.where(answer_events.c.id.in_(latest.group_by(answer_events.c.reader, answer_events.c.case_id,
                                                                     answer_events.c.question_id)))
            rows = conn.execute(query.order_by(answer_events.c.id)).all()
        frame = pd.DataFrame(rows, columns=columns)
        frame["value"] = [json.loads(v) for v in frame["value"]]
        frame["checkpoint_hashes"] = [json.loads(v) for v in frame["checkpoint_hashes"]]
        frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True, format="ISO8601")
        frame["shown_at"] = pd.to_datetime(frame["shown_at"], utc=True, format="ISO8601")
        frame["seconds"] = (frame["submitted_at"] - frame["shown_at"]).dt.total_seconds()
        return frame.sort_values(["reader", "case_id", "question_id", "id"]).reset_index(drop=True)


def _on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event open transactions itself (pysqlite would defer BEGIN).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")


def _check_name(what: str, name: str, longest: int) -> None:
    """StudyError for a name too long for tables and exports or holding control characters
    (a newline, or U+2028 LINE SEPARATOR, would split a CSV row or a log line) or invisible
    format characters (U+202E RIGHT-TO-LEFT OVERRIDE shows "\u202eevil" as "live"; zero-width
    characters make two names that look the same)."""
    if len(name) > longest:
        raise StudyError(f"{what} must have at most {longest} characters, got {len(name)}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise StudyError(f"{what} {name[:40]!r} holds a control character")
