"""Reader-facing methods: every one takes the signed-in reader's name and returns that
reader's own data only (the filter is in the SQL), plus the answer tables for admins."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from medattn import __version__
from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.blinding import panel_order
from medattn.errors import ImageReadError
from medattn.reader.errors import (AccessDeniedError, CaseUnavailableError, DatasetMovedError,
                                   InvalidAnswerError)
from medattn.reader.progress import first_unanswered, missing_answers
from medattn.reader.questions import check_answer
from medattn.store.annotations.schema import answer_events, assignments, cases, now, panels, views


MAX_SAVES_PER_CASE = 500  # answer events of one reader on one case: every save appends, so bound them


class Answers:
    """Reader side of `AnnotationStore`."""

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
        """The reader's studies: study_id, name, kind, n_cases, n_done, last_active (their latest
        case shown or answer saved there, UTC Timestamp; NaT before the first)."""
        rows = []
        with self._read() as conn:
            ids = conn.execute(select(assignments.c.study_id).where(assignments.c.reader == reader)).scalars().all()
            active = {}
            for table, column in ((views, views.c.shown_at), (answer_events, answer_events.c.submitted_at)):
                for study_id, stamp in conn.execute(select(table.c.study_id, func.max(column))
                                                    .where(table.c.reader == reader).group_by(table.c.study_id)):
                    active[study_id] = max(filter(None, (active.get(study_id), stamp)), default=None)
        for study_id in ids:
            spec = self.study(study_id)
            done = self.progress_of(study_id, reader)
            rows.append({"study_id": study_id, "name": spec["name"], "kind": spec["kind"],
                         "n_cases": done["n_cases"], "n_done": done["n_done"], "last_active": active.get(study_id)})
        frame = pd.DataFrame(rows, columns=["study_id", "name", "kind", "n_cases", "n_done", "last_active"])
        frame["last_active"] = pd.to_datetime(frame["last_active"], utc=True, format="ISO8601")
        return frame

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
        """The case's image, float32 (H, W) in [0, 1]. DatasetMovedError when the study's dataset
        folder is gone or no longer a dataset (every case); CaseUnavailableError when this case's
        image is not in the dataset, its file is gone or it does not decode (this case only).
        Messages name files: log them, show the reader a plain sentence."""
        from medattn.reader.availability import image_problem, study_images

        folder, image_id = self.case_source(study_id, reader, case_id)
        try:
            dataset = study_images(folder)
        except DatasetMovedError as error:
            raise DatasetMovedError(f"study {study_id}: {error}") from error
        problem = image_problem(dataset, image_id)
        if problem is not None:
            raise CaseUnavailableError(f"study {study_id}, {case_id}: {problem}")
        try:
            return dataset.read_image(image_id)
        except (ImageReadError, OSError) as error:
            raise CaseUnavailableError(f"study {study_id}, {case_id}: {error}") from error

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
            saves = conn.execute(select(func.count()).select_from(answer_events).where(
                (answer_events.c.study_id == study_id) & (answer_events.c.reader == reader)
                & (answer_events.c.case_id == case_id))).scalar_one()
            if saves + len(clean) > MAX_SAVES_PER_CASE:
                raise InvalidAnswerError(f"case {case_id}: {saves} answers saved already, at most {MAX_SAVES_PER_CASE} "
                                         "per case; ask the study coordinator")
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
        second has been shown (an unaided answer must not be revised after the map). With the
        spec's `washout_days`, the second session opens that many days after the reader's last
        save in the first (so the earlier reading of each image is forgotten: MRMC studies
        commonly wait four weeks)."""
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
        washout = float(spec.get("washout_days") or 0)
        if washout > 0:
            first_session = [c for c in order if assignment.arms[c] == first]
            with self._read() as conn:
                last = conn.execute(select(func.max(answer_events.c.submitted_at)).where(
                    (answer_events.c.study_id == study_id) & (answer_events.c.reader == reader)
                    & answer_events.c.case_id.in_(first_session))).scalar()
            opens = datetime.fromisoformat(last) + timedelta(days=washout) if last else None
            if opens is not None and datetime.fromisoformat(now()) < opens:
                return (f"the second session ({names[assignment.arms[case_id]]}) opens once the {washout:g}-day washout "
                        f"after your first session has passed: on {opens:%Y-%m-%d at %H:%M} UTC")
        return None


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


