"""Studies: creation, re-import, revisions, keys, and readers joining a study (admin side)."""

from __future__ import annotations

import json
import re
import secrets
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
from medattn.reader.names import check_name
from medattn.reader.order import case_order
from medattn.reader.questions import check_questions
from medattn.store.annotations.schema import (answer_events, assignments, cases, now, panels, revisions,
                                              studies)

KINDS = ("failure_review", "heatmap_rating", "detection")
MAX_STUDY_NAME = 200


def checkpoint_file_hash(checkpoint: str) -> str | None:
    """Content hash of a checkpoint's weights (path with or without .safetensors); None if absent."""
    from medattn.store.heatmaps import file_hash

    for candidate in (Path(checkpoint), Path(f"{checkpoint}.safetensors")):
        if candidate.is_file():
            return file_hash(candidate)
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "study"



class Studies:
    """Admin side of `AnnotationStore`: studies and their readers."""

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
        check_name("study spec field 'name'", spec["name"], MAX_STUDY_NAME)
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

