"""Studies: creation, re-import, revisions, keys, and readers joining a study (admin side)."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timedelta, timezone
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
from medattn.reader.availability import case_problems, study_images
from medattn.reader.names import check_account_name, check_image_id, check_name, check_text
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
MAX_META_FIELDS = 16  # fields of one case's meta (checkpoint, method, target_class, category, arm)
APP_EPOCH = datetime(2026, 11, 24, tzinfo=timezone.utc)  # medattn's first commit: no time it wrote is earlier
CLOCK_SKEW = timedelta(minutes=5)  # a server clock's drift an imported time may show
SPEC_FIELDS = ("name", "kind", "dataset", "cases", "questions", "case_meta", "panels", "readers", "seed",
               "target_class", "arms", "washout_days", "description", "blinded", "imported_from",
               "rating_question")


def checkpoint_file_hash(checkpoint: str) -> str | None:
    """Content hash of a checkpoint's weights (path with or without .safetensors); None if absent."""
    from medattn.store.heatmaps import file_hash

    for candidate in (Path(checkpoint), Path(f"{checkpoint}.safetensors")):
        if candidate.is_file():
            return file_hash(candidate)
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "study"



def _check_meta(what: str, meta: Mapping) -> dict:
    """A case's meta as the app writes it: at most MAX_META_FIELDS fields, each a short name
    holding a scalar (bounded text, a number, true/false, null); `arm` one of ARMS."""
    if len(meta) > MAX_META_FIELDS:
        raise StudyError(f"{what}: {len(meta)} fields; a case has at most {MAX_META_FIELDS}")
    for key, value in meta.items():
        check_text(f"{what}: a field name", key, MAX_ID)
        if isinstance(value, str):
            check_text(f"{what}.{key}", value, MAX_PATH)
        elif not (value is None or isinstance(value, (bool, int)) or (isinstance(value, float) and np.isfinite(value))):
            raise StudyError(f"{what}.{key}: text, a number, true/false or null expected, got {type(value).__name__}")
    if "arm" in meta and meta["arm"] not in ARMS:
        raise StudyError(f"{what}.arm: {meta['arm']!r:.40} is not one of {', '.join(ARMS)}")
    return dict(meta)


def _check_in_dataset(folder: str, image_ids: Sequence[str], case_label: str):
    """The dataset at `folder` when it loads, with StudyError naming the first case whose image
    id is not in its images.csv; None when it does not load (an import may come before its
    images: its cases then show as unavailable until an admin repoints it, `update_study`)."""
    try:
        images = study_images(folder)
    except DatasetMovedError:
        return None
    missing = [(i, image_id) for i, image_id in enumerate(image_ids) if image_id not in images.images.index]
    if missing:
        i, image_id = missing[0]
        more = f" ({len(missing)} cases in all)" if len(missing) > 1 else ""
        raise StudyError(f"{case_label.format(i=i)}: image id {image_id!r} is not in dataset {folder} "
                         f"(its images.csv){more}")
    return images


def check_spec(spec: Mapping[str, Any], dataset_must_exist: bool = True,
               case_label: str = "study spec field cases[{i}]", meta_label: str = "study spec field case_meta[{i}]") -> dict:
    """The spec checked and normalised as every way in (the Study admin form, `create_study`, a
    JSON import) needs it: only the fields the app knows (SPEC_FIELDS), name, kind, cases (image
    ids, never paths; at most MAX_CASES, no duplicates; each in the dataset's images.csv whenever
    the folder loads as a dataset), case_meta (flat, bounded), dataset (an absolute path; a folder unless
    `dataset_must_exist` is False: an imported study's images may be elsewhere until an admin
    repoints it), target_class (a class of the dataset), questions with defaults, panels, arms
    and seed. StudyError naming the first bad field (`case_label`, `meta_label` name a case's
    image id and meta: "{i}" is its index); DatasetMovedError."""
    if not isinstance(spec, Mapping):
        raise StudyError("a study spec is a JSON object")
    spec = dict(spec)
    unknown = sorted(map(str, set(spec) - set(SPEC_FIELDS)))
    if unknown:
        raise StudyError(f"study spec field {unknown[0][:40]!r} is not a field of a study "
                         f"(known: {', '.join(SPEC_FIELDS)})")
    for key in ("name", "kind", "dataset", "cases", "questions"):
        if key not in spec:
            raise StudyError(f"study spec lacks field {key!r}")
    if not isinstance(spec["name"], str) or not spec["name"].strip():
        raise StudyError("study spec field 'name': non-empty text expected")
    spec["name"] = check_name("study spec field 'name'", spec["name"], MAX_STUDY_NAME)
    if not isinstance(spec["kind"], str) or spec["kind"] not in KINDS:
        raise StudyError(f"study spec field 'kind': {spec['kind']!r:.60} is not one of {', '.join(KINDS)}")
    if not isinstance(spec["cases"], list):
        raise StudyError("study spec field 'cases': a list of image ids expected")
    if len(spec["cases"]) > 2 * MAX_CASES:
        raise StudyError(f"study spec field 'cases': {len(spec['cases'])} cases; a study has at most {MAX_CASES} images")
    image_ids = [check_image_id(case_label.format(i=i), c, MAX_ID) for i, c in enumerate(spec["cases"])]
    if not image_ids:
        raise StudyError("study spec field 'cases': no cases")
    case_meta = list(spec.get("case_meta") or [{}] * len(image_ids))
    if len(case_meta) != len(image_ids) or not all(isinstance(m, dict) for m in case_meta):
        raise StudyError("study spec field 'case_meta': one dict per case expected")
    case_meta = [_check_meta(meta_label.format(i=i), m) for i, m in enumerate(case_meta)]
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
    images = _check_in_dataset(spec["dataset"], image_ids, case_label)
    target = spec.get("target_class")
    if target is not None:
        target = check_name("study spec field 'target_class'", target, MAX_ID)
        if images is not None and target not in images.classes:
            raise StudyError(f"study spec field 'target_class': {target!r} is not a class of dataset {spec['dataset']} "
                             f"({', '.join(images.classes)})")
        spec["target_class"] = target
    if not isinstance(spec.get("blinded", True), bool):
        raise StudyError(f"study spec field 'blinded': true or false expected, got {spec['blinded']!r:.40}")
    for field in ("imported_from", "rating_question"):
        if spec.get(field) is not None:
            check_text(f"study spec field {field!r}", spec[field], MAX_ID)
    spec["questions"] = check_questions(spec["questions"])
    if spec.get("rating_question") is not None and spec["rating_question"] not in {q["id"] for q in spec["questions"]}:
        raise StudyError(f"study spec field 'rating_question': {spec['rating_question']!r} is not a question of the study")
    seed = spec.get("seed", secrets.randbelow(2**31))
    if isinstance(seed, str) and seed.strip().isdigit() and len(seed) < 20:
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise StudyError(f"study spec field 'seed': an integer from 0 to 2^63 - 1 expected, got {seed!r:.40}")
    spec["seed"] = seed
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
                  assignment_rows: Sequence[Mapping], event_rows: Sequence[Mapping],
                  created_at: str | None = None, exported_at: str | None = None) -> tuple:
    """The rows of a study to re-create, checked as the app checks what it writes itself:
    `check_spec` (questions get their defaults; image ids are no paths and, when the dataset is
    here, are in it), case ids, panel codes (distinct) and paths as bounded text, case meta as
    the app writes it (an arm per case in a crossed study), reader names as account names, each
    reader's order over every case once and their arms over every case (as the spec's design
    says), at most MAX_READERS readers, MAX_EVENTS events and MAX_SAVES_PER_CASE answers per
    reader and case, every answer against its question (`check_answer`: a 999 on a 1–5 scale is
    refused), the reader's cases, and times the app writes (`check_times`; `created_at` and
    `exported_at`: the original study's creation and the file's export, when the file says).
    Returns the rows as they will be written; StudyError naming the row and field."""
    from medattn.store.annotations.answers import MAX_SAVES_PER_CASE

    spec = check_spec({k: v for k, v in spec.items() if k not in ("id", "revision")}, dataset_must_exist=False,
                      case_label="cases[{i}].image_id", meta_label="cases[{i}].meta")
    if len(case_rows) != len(spec["cases"]) or any(c.get("image_id") != image_id
                                                   for c, image_id in zip(case_rows, spec["cases"])):
        raise StudyError("cases: the case rows and the spec's cases differ")
    questions = {q["id"]: q for q in spec["questions"]}
    cases_out = []
    for i, (c, meta) in enumerate(zip(case_rows, spec["case_meta"])):
        cases_out.append({"case_id": check_text(f"cases[{i}].case_id", c.get("case_id"), MAX_ID),
                          "image_id": spec["cases"][i], "meta": meta})
        if spec["arms"] == "crossed" and meta.get("arm") not in ARMS:
            raise StudyError(f"cases[{i}].meta.arm: a case of a crossed with-/without-AI study names its arm "
                             f"({', '.join(ARMS)})")
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
    if len(codes) != len(panels_out):
        raise StudyError("panels: a panel code is listed twice")
    if len(assignment_rows) > MAX_READERS:
        raise StudyError(f"readers: {len(assignment_rows)} readers; a study has at most {MAX_READERS}")
    case_arms = {c["case_id"]: c["meta"].get("arm") for c in cases_out}
    readers_out, orders = [], {}
    for i, a in enumerate(assignment_rows):
        name = check_account_name(f"readers[{i}].reader", a.get("reader"), MAX_READER_NAME)
        order = a.get("case_order")
        if (not isinstance(order, list) or not all(isinstance(c, str) for c in order) or len(set(order)) != len(order)
                or set(order) != known_cases):
            raise StudyError(f"readers[{i}].case_order: each of the study's case ids exactly once expected")
        _check_arms(f"readers[{i}].arms", a.get("arms"), spec["arms"], case_arms)
        if name in orders:
            raise StudyError(f"readers[{i}].reader: {name!r} is listed twice")
        orders[name] = set(order)
        readers_out.append({"reader": name, "case_order": list(order), "arms": a.get("arms")})
    if len(event_rows) > MAX_EVENTS:
        raise StudyError(f"events: {len(event_rows)} events; an import holds at most {MAX_EVENTS}")
    events_out, saves = [], {}
    clock = check_times("the file", created_at, exported_at)
    for i, e in enumerate(event_rows):
        where = f"events[{i}]"
        reader = check_name(f"{where}.reader", e.get("reader"), MAX_READER_NAME)
        if e.get("case_id") not in orders.get(reader, ()):
            raise StudyError(f"{where}.case_id: {e.get('case_id')!r:.80} is not one of {reader!r}'s cases")
        saves[reader, e["case_id"]] = saves.get((reader, e["case_id"]), 0) + 1
        if saves[reader, e["case_id"]] > MAX_SAVES_PER_CASE:
            raise StudyError(f"{where}: more than {MAX_SAVES_PER_CASE} answers of {reader!r} on {e['case_id']}; the app "
                             "keeps at most that many per case")
        question = questions.get(e.get("question_id")) if isinstance(e.get("question_id"), str) else None
        if question is None:
            raise StudyError(f"{where}.question_id: {e.get('question_id')!r:.80} is not a question of the study")
        value = e.get("value")
        shown = list(value) if isinstance(value, (dict, list)) and question["type"] != "boxes" else []
        if not set(map(str, shown)) <= codes and (question.get("per_panel") or question["type"] == "rank"):
            raise StudyError(f"{where}.value: panel code(s) {sorted(set(map(str, shown)) - codes)[:3]} are not the study's")
        try:
            value = check_answer(question, value, shown)
        except StudyError as error:
            raise StudyError(f"{where}: {error}") from error
        times = clock(where, e.get("shown_at"), e.get("submitted_at"))
        hashes = e.get("checkpoint_hashes") or {}
        if not isinstance(hashes, dict) or not all(isinstance(v, (str, type(None))) and len(str(v)) <= MAX_ID
                                                    for v in hashes.values()) or not set(hashes) <= codes:
            raise StudyError(f"{where}.checkpoint_hashes: panel code → hash expected")
        events_out.append({"reader": reader, "case_id": e["case_id"], "question_id": question["id"],
                           "value": json.dumps(value, sort_keys=True), **times,
                           "app_version": check_text(f"{where}.app_version", e.get("app_version") or __version__, 64),
                           "checkpoint_hashes": json.dumps(hashes, sort_keys=True)})
    return spec, cases_out, panels_out, readers_out, events_out


def _check_arms(what: str, arms: Any, design: str | bool, case_arms: Mapping[str, str | None]) -> None:
    """A reader's arms as `add_reader` draws them: none without a with-/without-AI design; else
    an arm for every case, in the crossed design the case's own (its meta's `arm`)."""
    if not design:
        if arms is not None:
            raise StudyError(f"{what}: this study has no with-/without-AI arms; null expected")
        return
    if not isinstance(arms, dict) or set(arms) != set(case_arms) or not set(arms.values()) <= set(ARMS):
        raise StudyError(f"{what}: every case id → one of {', '.join(ARMS)} expected")
    if design == "crossed":
        wrong = sorted(c for c, arm in arms.items() if arm != case_arms[c])
        if wrong:
            raise StudyError(f"{what}: case {wrong[0]!r} is read in its own arm ({case_arms[wrong[0]]}), not {arms[wrong[0]]}")


def _stamp(what: str, value: Any) -> datetime:
    """An ISO 8601 time with its UTC offset, as `now()` writes it; StudyError naming `what`."""
    text = check_text(what, value, 64)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as error:
        raise StudyError(f"{what}: not an ISO 8601 time: {text!r:.40}") from error
    if stamp.utcoffset() is None:
        raise StudyError(f"{what}: {text!r:.40} has no time zone; the app writes UTC times (+00:00)")
    return stamp


def check_times(where: str, created_at: Any = None, exported_at: Any = None):
    """A checker of an event's (shown_at, submitted_at) against what the app writes: ISO 8601
    with an offset; shown (when given) not after submitted; neither before the study was
    created (`created_at`, else APP_EPOCH: no medattn wrote a time before it), nor after the
    file was exported (`exported_at`) or now, beyond CLOCK_SKEW. Returns
    `check(what, shown, submitted) -> {"shown_at", "submitted_at"}` (ISO text, shown_at may be
    None); StudyError naming the field."""
    earliest = _stamp(f"{where}: provenance.created_at", created_at) if created_at is not None else APP_EPOCH
    latest = datetime.now(timezone.utc) + CLOCK_SKEW
    if exported_at is not None:
        latest = min(latest, _stamp(f"{where}: provenance.exported_at", exported_at) + CLOCK_SKEW)

    def check(what: str, shown: Any, submitted: Any) -> dict:
        times = {"shown_at": None if shown is None else _stamp(f"{what}.shown_at", shown),
                 "submitted_at": _stamp(f"{what}.submitted_at", submitted)}
        for field, stamp in times.items():
            if stamp is not None and not earliest - CLOCK_SKEW <= stamp <= latest:
                raise StudyError(f"{what}.{field}: {stamp.isoformat()} is outside the study's life "
                                 f"({earliest.isoformat(timespec='seconds')} to {latest.isoformat(timespec='seconds')})")
        if times["shown_at"] is not None and times["shown_at"] > times["submitted_at"]:
            raise StudyError(f"{what}.submitted_at: {times['submitted_at'].isoformat()} is before the case was shown "
                             f"({times['shown_at'].isoformat()})")
        return {field: None if stamp is None else stamp.isoformat() for field, stamp in times.items()}

    return check


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
                      assignment_rows: Sequence[Mapping], event_rows: Sequence[Mapping],
                      created_at: str | None = None, exported_at: str | None = None) -> str:
        """Re-create an exported study under a new id in one transaction (all or nothing):
        the same case ids, panel codes, reader orders and answer events (with their times).
        Everything goes through the checks the app applies before anything is written
        (`check_restore`; `created_at`, `exported_at`: the file's provenance, bounding its
        times). The copy keeps the original's creation time when the file gives it. Readers
        without an account get a locked one (an admin sets its password: `set_password`)."""
        spec, case_rows, panel_rows, assignment_rows, event_rows = check_restore(
            spec, case_rows, panel_rows, assignment_rows, event_rows, created_at, exported_at)
        study_id = f"{_slug(spec['name'])}-{secrets.token_hex(3)}"
        stamp = now()
        created = stamp if created_at is None else datetime.fromisoformat(created_at).astimezone(timezone.utc).isoformat(
            timespec="microseconds")
        with self._write() as conn:
            conn.execute(insert(studies).values(id=study_id, created_at=created, app_version=__version__))
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

    def created_at(self, study_id: str) -> str:
        """When the study was created (ISO 8601, UTC; an imported copy keeps its original's)."""
        with self._read() as conn:
            self._spec(conn, study_id)
            return conn.execute(select(studies.c.created_at).where(studies.c.id == study_id)).scalar_one()

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
            if not isinstance(changes["dataset"], str) or not Path(changes["dataset"]).is_dir():
                raise DatasetMovedError(f"study {study_id}: new dataset {changes['dataset']} is not a folder")
            changes["dataset"] = str(Path(changes["dataset"]).resolve())
            try:
                images = set(study_images(changes["dataset"]).images.index)
            except DatasetMovedError:
                images = None  # not a dataset (yet): its cases show as unavailable, as before the move
            ids = set(self.case_key(study_id)["image_id"])
            if images is not None and not ids & images:  # some may be gone (counted as unavailable); none: wrong folder
                raise DatasetMovedError(f"study {study_id}: new dataset {changes['dataset']} holds none of the study's "
                                        f"{len(ids)} images (e.g. {sorted(ids)[0]!r})")
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

    def case_problems(self, study_id: str, decode: bool = False) -> pd.DataFrame:
        """The cases whose image cannot be read now: case_id, image_id, problem (the dataset
        folder gone or invalid, the id not in its images.csv, the file missing or unreadable;
        with `decode`, a file that does not decode: `medattn.reader.availability`); empty when
        every case's image is there. Admin view (names files)."""
        folder = self.study(study_id)["dataset"]
        key = self.case_key(study_id)[["case_id", "image_id"]]
        key["problem"] = case_problems(folder, list(key["image_id"]), decode)
        return key[key["problem"].notna()].reset_index(drop=True)

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

