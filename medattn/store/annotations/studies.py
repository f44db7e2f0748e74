"""Studies: creation, re-import, revisions, keys, and readers joining a study (admin side)."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from medattn import __version__
from medattn.reader.arms import ARMS, DESIGNS, crossed_order, split_arms
from medattn.reader.blinding import panel_codes
from medattn.reader.errors import (DatasetMovedError, DuplicateReaderError, StudyConflictError, StudyError,
                                   StudyNotFoundError)
from medattn.reader.names import check_account_name, check_name, check_text
from medattn.reader.order import case_order
from medattn.reader.questions import MAX_TEXT, check_answer, check_questions
from medattn.reader.validity import check_balance
from medattn.store.annotations.accounts import MAX_READER_NAME
from medattn.store.annotations.schema import (answer_events, assignments, cases, now, panels, revisions,
                                              studies)

KINDS = ("failure_review", "heatmap_rating", "detection")
MAX_STUDY_NAME = 200
MAX_CASES = 10_000  # images per study: progress is computed over every case on each page view
MAX_READERS = 1_000
MAX_EVENTS = 2_000_000  # answer events in one imported study
MAX_ID = 200  # characters of an image id, case id, panel code or method name
MAX_PATH = 4096
MAX_WASHOUT_DAYS = 365


def checkpoint_file_hash(checkpoint: str) -> str | None:
    """Content hash of a checkpoint's weights (path with or without .safetensors); None if absent."""
    from medattn.store.heatmaps import file_hash

    for candidate in (Path(checkpoint), Path(f"{checkpoint}.safetensors")):
        if candidate.is_file():
            return file_hash(candidate)
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "study"



def check_spec(spec: Mapping[str, Any], dataset_must_exist: bool = True) -> dict:
    """The spec checked and normalised as every way in (the Study admin form, `create_study`, a
    JSON import) needs it: name, kind, cases (at most MAX_CASES, no duplicates), case_meta,
    dataset (an absolute path; a folder unless `dataset_must_exist` is False: an imported
    study's images may be elsewhere until an admin repoints it), questions with defaults,
    panels, arms and seed. StudyError naming the first bad field; DatasetMovedError."""
    if not isinstance(spec, Mapping):
        raise StudyError("a study spec is a JSON object")
    spec = dict(spec)
    for key in ("name", "kind", "dataset", "cases", "questions"):
        if key not in spec:
            raise StudyError(f"study spec lacks field {key!r}")
    if not isinstance(spec["name"], str) or not spec["name"].strip():
        raise StudyError("study spec field 'name': non-empty text expected")
    spec["name"] = check_name("study spec field 'name'", spec["name"], MAX_STUDY_NAME)
    if spec["kind"] not in KINDS:
        raise StudyError(f"study spec field 'kind': {spec['kind']!r} is not one of {', '.join(KINDS)}")
    if not isinstance(spec["cases"], list):
        raise StudyError("study spec field 'cases': a list of image ids expected")
    if len(spec["cases"]) > 2 * MAX_CASES:
        raise StudyError(f"study spec field 'cases': {len(spec['cases'])} cases; a study has at most {MAX_CASES} images")
    image_ids = [check_text(f"study spec field 'cases[{i}]'", c, MAX_ID) for i, c in enumerate(spec["cases"])]
    if not image_ids:
        raise StudyError("study spec field 'cases': no cases")
    case_meta = list(spec.get("case_meta") or [{}] * len(image_ids))
    if len(case_meta) != len(image_ids) or not all(isinstance(m, dict) for m in case_meta):
        raise StudyError("study spec field 'case_meta': one dict per case expected")
    keys = [(i, json.dumps(m, sort_keys=True)) for i, m in zip(image_ids, case_meta)]
    if len(set(keys)) != len(keys):
        raise StudyError("study spec field 'cases': duplicate cases (same image id and case_meta)")
    if len({i for i, _ in keys}) > MAX_CASES:
        raise StudyError(f"study spec field 'cases': a study has at most {MAX_CASES} images")
    dataset = Path(check_text("study spec field 'dataset'", spec["dataset"], MAX_PATH))
    if dataset_must_exist and not dataset.is_dir():
        raise DatasetMovedError(f"study spec field 'dataset': {spec['dataset']} is not a folder")
    if not dataset_must_exist and (not dataset.is_absolute() or ".." in dataset.parts):
        raise StudyError(f"study spec field 'dataset': {str(dataset)[:80]!r} is not an absolute path")
    spec["dataset"] = str(dataset.resolve()) if dataset_must_exist else str(dataset)
    spec["questions"] = check_questions(spec["questions"])
    try:
        spec["seed"] = int(spec.get("seed", secrets.randbelow(2**31)))
    except (TypeError, ValueError) as error:
        raise StudyError(f"study spec field 'seed': an integer expected, got {spec.get('seed')!r}") from error
    spec["cases"], spec["case_meta"] = image_ids, case_meta
    panel_specs = list(spec.get("panels") or [])
    for i, panel in enumerate(panel_specs):
        if not isinstance(panel, dict) or not panel.get("checkpoint") or not panel.get("method"):
            raise StudyError(f"study spec field 'panels[{i}]': needs 'checkpoint' and 'method'")
        check_text(f"study spec field 'panels[{i}].checkpoint'", panel["checkpoint"], MAX_PATH)
        check_text(f"study spec field 'panels[{i}].method'", panel["method"], MAX_ID)
    spec["panels"] = [{"checkpoint": str(p["checkpoint"]), "method": str(p["method"])} for p in panel_specs]
    for meta in case_meta:  # a case's own map (failure review) is one more panel
        if meta.get("checkpoint") and meta.get("method"):
            pair = {"checkpoint": str(meta["checkpoint"]), "method": str(meta["method"])}
            if pair not in spec["panels"]:
                spec["panels"].append(pair)
    spec.setdefault("blinded", True)
    arms = spec.get("arms", spec["kind"] == "detection" and bool(spec["panels"]))
    spec["arms"] = "crossed" if arms is True else (arms or False)
    if spec["arms"] and (spec["arms"] not in DESIGNS or spec["kind"] != "detection" or not spec["panels"]):
        raise StudyError(f"study spec field 'arms': {arms!r}; with-/without-AI arms are a detection study's, "
                         f"need panels, and are one of {', '.join(DESIGNS)}")
    washout = spec.get("washout_days", 0)
    if isinstance(washout, bool) or not isinstance(washout, (int, float)) or not 0 <= washout <= MAX_WASHOUT_DAYS:
        raise StudyError(f"study spec field 'washout_days': a number of days from 0 to {MAX_WASHOUT_DAYS} expected, "
                         f"got {washout!r}")
    if washout and spec["arms"] != "crossed":
        raise StudyError("study spec field 'washout_days': a washout separates the two sessions of the crossed "
                         "with-/without-AI design; this study has none")
    if washout:
        spec["washout_days"] = float(washout)
    if not isinstance(spec.get("description", ""), str) or len(spec.get("description", "")) > MAX_TEXT:
        raise StudyError(f"study spec field 'description': text of at most {MAX_TEXT} characters expected")
    check_balance(spec)
    return spec


def check_restore(spec: Mapping[str, Any], case_rows: Sequence[Mapping], panel_rows: Sequence[Mapping],
                  assignment_rows: Sequence[Mapping], event_rows: Sequence[Mapping]) -> tuple:
    """The rows of a study to re-create, checked as the app checks what it writes itself:
    `check_spec` (questions get their defaults), case ids, panel codes and paths as bounded
    text, reader names as account names, each reader's order over known cases, at most
    MAX_READERS readers and MAX_EVENTS events, and every answer against its question
    (`check_answer`: a 999 on a 1–5 scale is refused), the reader's cases and ISO times.
    Returns the rows as they will be written; StudyError naming the row and field."""
    spec = check_spec({k: v for k, v in spec.items() if k not in ("id", "revision")}, dataset_must_exist=False)
    questions = {q["id"]: q for q in spec["questions"]}
    cases_out = []
    for i, c in enumerate(case_rows):
        if not isinstance(c.get("meta") or {}, dict):
            raise StudyError(f"cases[{i}].meta: an object expected")
        cases_out.append({"case_id": check_text(f"cases[{i}].case_id", c.get("case_id"), MAX_ID),
                          "image_id": check_text(f"cases[{i}].image_id", c.get("image_id"), MAX_ID),
                          "meta": c.get("meta") or {}})
    known_cases = {c["case_id"] for c in cases_out}
    if len(known_cases) != len(cases_out):
        raise StudyError("cases: a case id is listed twice")
    panels_out = []
    for i, p in enumerate(panel_rows):
        digest = p.get("checkpoint_hash")
        panels_out.append({"code": check_text(f"panels[{i}].code", p.get("code"), MAX_ID),
                           "checkpoint": check_text(f"panels[{i}].checkpoint", p.get("checkpoint"), MAX_PATH),
                           "method": check_text(f"panels[{i}].method", p.get("method"), MAX_ID),
                           "checkpoint_hash": None if digest is None else check_text(
                               f"panels[{i}].checkpoint_hash", digest, MAX_ID)})
    codes = {p["code"] for p in panels_out}
    if len(assignment_rows) > MAX_READERS:
        raise StudyError(f"readers: {len(assignment_rows)} readers; a study has at most {MAX_READERS}")
    readers_out, orders = [], {}
    for i, a in enumerate(assignment_rows):
        name = check_account_name(f"readers[{i}].reader", a.get("reader"), MAX_READER_NAME)
        order = a.get("case_order")
        if not isinstance(order, list) or len(set(map(str, order))) != len(order) or not set(order) <= known_cases:
            raise StudyError(f"readers[{i}].case_order: each of the study's case ids at most once expected")
        arms = a.get("arms")
        if arms is not None and (not isinstance(arms, dict) or not set(arms) <= known_cases
                                 or not set(arms.values()) <= set(ARMS)):
            raise StudyError(f"readers[{i}].arms: case id → one of {', '.join(ARMS)} expected")
        if name in orders:
            raise StudyError(f"readers[{i}].reader: {name!r} is listed twice")
        orders[name] = set(order)
        readers_out.append({"reader": name, "case_order": list(order), "arms": arms})
    if len(event_rows) > MAX_EVENTS:
        raise StudyError(f"events: {len(event_rows)} events; an import holds at most {MAX_EVENTS}")
    events_out = []
    for i, e in enumerate(event_rows):
        where = f"events[{i}]"
        reader = check_name(f"{where}.reader", e.get("reader"), MAX_READER_NAME)
        if e.get("case_id") not in orders.get(reader, ()):
            raise StudyError(f"{where}.case_id: {e.get('case_id')!r} is not one of {reader!r}'s cases")
        question = questions.get(e.get("question_id"))
        if question is None:
            raise StudyError(f"{where}.question_id: {e.get('question_id')!r} is not a question of the study")
        value = e.get("value")
        shown = list(value) if isinstance(value, (dict, list)) and question["type"] != "boxes" else []
        if not set(map(str, shown)) <= codes and (question.get("per_panel") or question["type"] == "rank"):
            raise StudyError(f"{where}.value: panel code(s) {sorted(set(map(str, shown)) - codes)[:3]} are not the study's")
        try:
            value = check_answer(question, value, shown)
        except StudyError as error:
            raise StudyError(f"{where}: {error}") from error
        times = {}
        for field in ("shown_at", "submitted_at"):
            stamp = e.get(field)
            if stamp is None and field == "shown_at":
                times[field] = None
                continue
            try:
                times[field] = datetime.fromisoformat(check_text(f"{where}.{field}", stamp, 64)).isoformat()
            except ValueError as error:
                raise StudyError(f"{where}.{field}: not an ISO 8601 time: {stamp!r:.40}") from error
        hashes = e.get("checkpoint_hashes") or {}
        if not isinstance(hashes, dict) or not all(isinstance(v, (str, type(None))) and len(str(v)) <= MAX_ID
                                                    for v in hashes.values()) or not set(hashes) <= codes:
            raise StudyError(f"{where}.checkpoint_hashes: panel code → hash expected")
        events_out.append({"reader": reader, "case_id": e["case_id"], "question_id": question["id"],
                           "value": json.dumps(value, sort_keys=True), **times,
                           "app_version": check_text(f"{where}.app_version", e.get("app_version") or __version__, 64),
                           "checkpoint_hashes": json.dumps(hashes, sort_keys=True)})
    return spec, cases_out, panels_out, readers_out, events_out


class Studies:
    """Admin side of `AnnotationStore`: studies and their readers."""

    def create_study(self, spec: Mapping[str, Any], author: str | None = None) -> str:
        """Create a study from `spec` (see DESIGN.md "Reader studies"); returns its id.

        Cases get study-local ids in a seeded shuffled order, panels get random blinded codes.
        Raises StudyError naming the first bad field, DatasetMovedError if `dataset` is not a folder.
        """
        spec = check_spec(spec)
        image_ids, case_meta, panel_specs = spec["cases"], spec["case_meta"], spec["panels"]
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
        Everything goes through the checks the app applies before anything is written
        (`check_restore`). Readers without an account get a locked one (an admin sets its
        password: `set_password`)."""
        spec, case_rows, panel_rows, assignment_rows, event_rows = check_restore(
            spec, case_rows, panel_rows, assignment_rows, event_rows)
        study_id = f"{_slug(spec['name'])}-{secrets.token_hex(3)}"
        stamp = now()
        with self._write() as conn:
            conn.execute(insert(studies).values(id=study_id, created_at=stamp, app_version=__version__))
            conn.execute(insert(revisions).values(study_id=study_id, revision=1, spec=spec, author="import",
                                                  created_at=stamp))
            conn.execute(insert(cases), [{"study_id": study_id, "case_id": c["case_id"], "image_id": c["image_id"],
                                          "position": i, "meta": c["meta"] or None} for i, c in enumerate(case_rows)])
            if panel_rows:
                conn.execute(insert(panels), [{"study_id": study_id, "position": i, **p} for i, p in enumerate(panel_rows)])
            for i, a in enumerate(assignment_rows):
                if self._account(conn, a["reader"]) is None:  # locked until an admin sets a password
                    self._refuse_lookalike(conn, a["reader"])
                    self._create_account(conn, a["reader"], "locked: " + secrets.token_hex(16), admin=False)
                conn.execute(insert(assignments).values(study_id=study_id, reader=a["reader"], reader_index=i,
                                                        case_order=a["case_order"], arms=a["arms"], created_at=stamp))
            if event_rows:
                conn.execute(insert(answer_events), [{"study_id": study_id, **e} for e in event_rows])
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
            raise StudyNotFoundError(f"no study {study_id!r} in {self.where}")
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
                self._refuse_lookalike(conn, name)
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

