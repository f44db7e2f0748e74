"""Reader-study database: durability, concurrency, accounts, isolation and faults, each on
SQLite and on PostgreSQL (the `study_db` fixture runs a test once per backend)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from argon2 import PasswordHasher
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import text

from medattn.errors import MedattnError
from medattn.reader.errors import (AccessDeniedError, DatasetMovedError, DuplicateReaderError, InvalidAnswerError,
                                   LoginRateLimitedError, StorageError, StudyConflictError, StudyError)
from medattn.reader.presets import default_questions
from medattn.store.annotations import MAX_FAILURES, AnnotationStore
from medattn.store.annotations.backup import Backups
from medattn.store.annotations.accounts import BACKOFF_S, CLIENT_BUDGET, MAX_CONCURRENT_CHECKS
from medattn.store.annotations.schema import metadata

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # still argon2id, cheap for tests
PANELS = [{"checkpoint": "checkpoints/densenet121_wildcat", "method": "gradcam"},
          {"checkpoint": "checkpoints/resnet50_mldam", "method": "integrated_gradients"},
          {"checkpoint": "checkpoints/resnet18_linear", "method": "saliency"}]


@pytest.fixture
def store(study_db) -> AnnotationStore:
    return AnnotationStore(study_db, password_hasher=FAST)


def sqlite_only(store: AnnotationStore) -> None:
    if store.path is None:
        pytest.skip("an SQLite file's property")


def make_study(store: AnnotationStore, folder: Path, kind: str = "detection", n: int = 6, **extra) -> str:
    spec = {"name": f"{kind} study", "kind": kind, "dataset": str(folder), "cases": [f"img{i}" for i in range(n)],
            "questions": default_questions(kind), "seed": 11, **extra}
    return store.create_study(spec)


def _submit_burst(path: str, study: str, reader: str, count: int | None, write_fd: int) -> None:
    """Child process: submit answers (`count`, or until killed) and write "event_id i" to the
    pipe after each submit returned, i.e. only acknowledged events."""
    store = AnnotationStore(path, password_hasher=FAST)
    cases = store.cases_for(study, reader)
    i = 0
    while count is None or i < count:
        event_id = store.submit(study, reader, cases[i % len(cases)], "confidence", 1 + i % 5)
        os.write(write_fd, f"{event_id} {i}\n".encode())
        i += 1


def start_writer(store: AnnotationStore, study: str, reader: str, count: int | None = None):
    """A forked writer process (starts in milliseconds, unlike a fresh interpreter) and the read
    end of its pipe. The parent's pool is emptied first: no database connection crosses a fork."""
    store.engine.dispose()
    read_fd, write_fd = os.pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_submit_burst, args=(store.target, study, reader, count, write_fd), daemon=True)
    process.start()
    os.close(write_fd)
    return process, os.fdopen(read_fd)


def test_pragmas_wal_and_full_sync(store):
    sqlite_only(store)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_events_are_appended_and_latest_is_current(store, tmp_path):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    case = store.cases_for(study, "ana")[0]
    first = store.submit(study, "ana", case, "confidence", 2)
    second = store.submit(study, "ana", case, "confidence", 4)
    assert second > first
    answers = store.answers(study)
    assert list(answers.columns) == ["reader", "case_id", "question_id", "value", "submitted_at"]
    assert answers["value"].tolist() == [4]
    assert store.events(study)["value"].tolist() == [2, 4]  # the first answer is kept


def test_sigkill_during_submit_burst_loses_no_acknowledged_event(store, tmp_path):
    study = make_study(store, tmp_path, n=3)
    store.add_reader(study, "ana", "correct horse")
    process, pipe = start_writer(store, study, "ana")
    acknowledged = []
    for line in pipe:
        acknowledged.append(tuple(int(x) for x in line.split()))
        if len(acknowledged) == 60:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.join(timeout=30)
    assert len(acknowledged) == 60 and process.exitcode == -signal.SIGKILL
    reopened = AnnotationStore(store.target, password_hasher=FAST)
    if reopened.path is not None:
        with reopened.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    events = reopened.events(study).set_index("id")
    for event_id, i in acknowledged:
        assert events.loc[event_id, "value"] == 1 + i % 5


def test_four_concurrent_writers_lose_and_duplicate_nothing(store, tmp_path):
    study = make_study(store, tmp_path, n=5)
    names = [f"reader{k}" for k in range(4)]
    for name in names:
        store.add_reader(study, name, "correct horse")
    writers = [start_writer(store, study, name, count=40) for name in names]
    acknowledged = {}
    for name, (process, pipe) in zip(names, writers):
        acknowledged[name] = [tuple(map(int, line.split())) for line in pipe]
        process.join(timeout=120)
        assert process.exitcode == 0
    events = store.events(study)
    ids = [event_id for rows in acknowledged.values() for event_id, _ in rows]
    assert len(ids) == 160 and len(set(ids)) == 160
    assert sorted(events["id"]) == sorted(ids)
    for name, rows in acknowledged.items():
        mine = events[events["reader"] == name].set_index("id")
        assert [mine.loc[event_id, "value"] for event_id, _ in rows] == [1 + i % 5 for _, i in rows]


def test_database_is_readable_by_its_owner_only(store):
    sqlite_only(store)
    assert store.path.stat().st_mode & 0o077 == 0


def test_database_holds_no_clear_text_password(store, tmp_path):
    study = make_study(store, tmp_path)
    secrets_used = ["Tr0ub4dor&3-unique", "zebra-umbrella-4471"]
    store.add_admin("admin", secrets_used[0])
    store.add_reader(study, "ana", secrets_used[1])
    assert store.authenticate("ana", secrets_used[1])
    assert not store.authenticate("ana", secrets_used[0])  # a wrong password is not stored either
    with store.engine.connect() as conn:  # every stored row, on either backend
        blob = "".join(str(tuple(row)) for table in metadata.sorted_tables
                       for row in conn.execute(table.select())).encode()
    store.engine.dispose()
    if store.path is not None:
        blob += b"".join(p.read_bytes() for p in store.path.parent.glob("study.db*"))
    for secret in secrets_used:
        assert secret.encode() not in blob
    assert b"$argon2id$" in blob


def test_reader_api_returns_only_own_answers(store, tmp_path):
    study = make_study(store, tmp_path, kind="heatmap_rating", panels=PANELS)
    store.add_reader(study, "ana", "correct horse")
    store.add_reader(study, "ben", "battery staple")
    for reader in ("ana", "ben"):
        case = store.cases_for(study, reader)[0]
        codes = store.panels_for(study, reader, case)
        store.submit(study, reader, case, "rating", {code: 3 for code in codes})
    assert set(store.my_answers(study, "ana")["reader"]) == {"ana"}
    seen = store.study_for_reader(study, "ana")
    assert set(seen) == {"id", "name", "kind", "questions", "description", "target_class"}
    assert "img0" not in json.dumps(seen) and "checkpoints/" not in json.dumps(seen)
    assert set(store.answers(study, reader="ben")["reader"]) == {"ben"}
    outsider = make_study(store, tmp_path, kind="heatmap_rating", panels=PANELS)
    with pytest.raises(AccessDeniedError):
        store.my_answers(outsider, "ana")
    with pytest.raises(AccessDeniedError):
        store.cases_for(outsider, "ana")
    with pytest.raises(AccessDeniedError):
        store.study_for_reader(outsider, "ana")


def test_panels_are_blinded_and_ordered_per_reader(store, tmp_path):
    study = make_study(store, tmp_path, kind="heatmap_rating", n=8, panels=PANELS)
    store.add_reader(study, "ana", "correct horse")
    store.add_reader(study, "ben", "battery staple")
    orders = {}
    for reader in ("ana", "ben"):
        for case in store.cases_for(study, reader):
            codes = store.panels_for(study, reader, case)
            assert codes == store.panels_for(study, reader, case)  # a reload shows the same order
            orders[reader, case] = codes
            shown = json.dumps(codes).lower()
            for word in ("densenet", "resnet", "wildcat", "mldam", "linear", "gradcam", "integrated", "saliency"):
                assert word not in shown
    assert len({tuple(codes) for codes in orders.values()}) > 1
    assert set(store.panel_key(study)["code"]) == set(next(iter(orders.values())))


def test_resume_at_first_unanswered_case_after_restart(store, tmp_path):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    order = store.cases_for(study, "ana")
    assert store.next_case(study, "ana") == order[0]
    store.submit_case(study, "ana", order[0], {"present": True, "confidence": 4,
                                               "boxes": [{"x": 1, "y": 2, "w": 3, "h": 4}]})
    store.submit(study, "ana", order[1], "present", False)  # incomplete: confidence, boxes missing
    reopened = AnnotationStore(store.target, password_hasher=FAST)
    assert reopened.cases_for(study, "ana") == order
    assert reopened.next_case(study, "ana") == order[1]
    assert reopened.progress_of(study, "ana") == {"n_cases": 6, "n_done": 1, "next_case": order[1], "position": 1}


def test_time_on_case_is_recorded(store, tmp_path):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    case = store.next_case(study, "ana")
    store.mark_shown(study, "ana", case)
    store.submit(study, "ana", case, "present", True)
    seconds = store.events(study)["seconds"].iloc[0]
    assert 0 <= seconds < 60


def test_login_rate_limit_survives_restart(store, tmp_path):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    for _ in range(MAX_FAILURES):
        assert not store.authenticate("ana", "wrong guess")
    restarted = AnnotationStore(store.target, password_hasher=FAST)
    with pytest.raises(LoginRateLimitedError) as error:
        restarted.authenticate("ana", "correct horse")
    assert error.value.retry_after > 0
    assert store.authenticate("ben", "anything at all") is False  # unknown name: False, not an error


def test_two_admins_editing_a_study(store, tmp_path):
    study = make_study(store, tmp_path)
    seen = store.study(study)["revision"]
    assert store.update_study(study, {"name": "first admin's name"}, expected_revision=seen) == seen + 1
    with pytest.raises(StudyConflictError, match="another admin"):
        store.update_study(study, {"name": "second admin's name"}, expected_revision=seen)
    assert store.study(study)["name"] == "first admin's name"


def test_study_whose_dataset_moved(store, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    study = make_study(store, folder)
    store.add_reader(study, "ana", "correct horse")
    case = store.cases_for(study, "ana")[0]
    store.submit(study, "ana", case, "present", True)
    folder.rename(tmp_path / "moved")
    with pytest.raises(DatasetMovedError, match="is gone"):
        store.case_source(study, "ana", case)
    store.update_study(study, {"dataset": str(tmp_path / "moved")}, expected_revision=1)
    assert store.case_source(study, "ana", case) == (str((tmp_path / "moved").resolve()), store.case_key(study)
                                                    .set_index("case_id").at[case, "image_id"])
    assert store.answers(study)["value"].tolist() == [True]  # nothing lost


@pytest.mark.parametrize("action, error, message", [
    (lambda s, st: s.add_reader(st, "ana", "correct horse"), DuplicateReaderError, "already a reader"),
    (lambda s, st: s.add_reader(st, "ana", "other password"), DuplicateReaderError, "taken"),
    (lambda s, st: s.add_admin("ana", "other password"), DuplicateReaderError, "taken"),
    (lambda s, st: s.add_reader(st, "ben", "short"), StudyError, "at least 8"),
    (lambda s, st: s.submit(st, "ana", "case-9999", "present", True), AccessDeniedError, "not assigned"),
    (lambda s, st: s.submit(st, "ben", "case-0001", "present", True), AccessDeniedError, "not a reader"),
    (lambda s, st: s.submit(st, "ana", "case-0001", "nope", True), InvalidAnswerError, "no question 'nope'"),
    (lambda s, st: s.submit(st, "ana", "case-0001", "present", "yes"), InvalidAnswerError, "'present', value"),
    (lambda s, st: s.submit(st, "ana", "case-0001", "confidence", 6), InvalidAnswerError, "outside 1..5"),
    (lambda s, st: s.submit(st, "ana", "case-0001", "boxes", [{"x": 1, "y": 2, "w": 0, "h": 3}]),
     InvalidAnswerError, r"value\[0\]"),
    (lambda s, st: s.submit(st, "ana", "case-0001", "boxes", [{"x": 1, "y": 2, "w": 3}]), InvalidAnswerError,
     r"value\[0\]\.h"),
    (lambda s, st: s.submit_case(st, "ana", "case-0001", {"present": True}), InvalidAnswerError,
     "unanswered: confidence, boxes"),
    (lambda s, st: s.update_study(st, {"cases": ["x"]}, 1), StudyError, "cannot change"),
    (lambda s, st: s.study("no-such-study"), StudyError, "no study"),
    (lambda s, st: s.set_password("ana", "ana", "new password"), AccessDeniedError, "not an admin"),
])
def test_faults_get_clear_errors_and_lose_nothing(store, tmp_path, action, error, message):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    kept = store.submit(study, "ana", "case-0002", "present", False)
    with pytest.raises(error, match=message) as raised:
        action(store, study)
    assert isinstance(raised.value, MedattnError)
    assert store.events(study)["id"].tolist() == [kept]


@pytest.mark.parametrize("spec, message", [
    ({"kind": "survey"}, "'kind'"),
    ({"cases": []}, "no cases"),
    ({"cases": ["a", "a"]}, "duplicate"),
    ({"questions": [{"id": "q", "type": "slider"}]}, r"questions\[0\]"),
    ({"questions": [{"id": "q", "type": "choice"}]}, "needs 'options'"),
    ({"panels": [{"checkpoint": "m"}]}, r"panels\[0\]"),
    ({"dataset": "/no/such/folder"}, "not a folder"),
    ({"arms": "latin square", "panels": [{"checkpoint": "m", "method": "gradcam"}]}, "'arms'"),
    ({"arms": "crossed"}, "need panels"),
    ({"readers": [{"name": "ana"}]}, r"readers\[0\]"),
    ({"readers": [{"name": "ana", "password": "long enough"}] * 2}, "listed twice"),
])
def test_bad_study_specs_name_the_field(store, tmp_path, spec, message):
    base = {"name": "s", "kind": "detection", "dataset": str(tmp_path), "cases": ["a", "b"],
            "questions": default_questions("detection")}
    with pytest.raises(StudyError, match=message):
        store.create_study({**base, **spec})
    assert store.list_studies().empty  # nothing half-created


def test_spec_readers_taken_by_another_account_are_refused_before_creation(store, tmp_path):
    store.add_admin("ana", "the admin's password")
    spec = {"name": "s", "kind": "detection", "dataset": str(tmp_path), "cases": ["a"],
            "questions": default_questions("detection"), "readers": [{"name": "ana", "password": "another one"}]}
    with pytest.raises(DuplicateReaderError, match="taken"):
        store.create_study(spec)
    assert store.list_studies().empty


def test_crossed_sessions_are_sequential_so_no_unaided_reading_follows_its_map(store, tmp_path):
    study = make_study(store, tmp_path, n=2, panels=PANELS[:1])
    store.add_reader(study, "ana", "correct horse")
    order = store.cases_for(study, "ana")  # 4 cases: two images × two arms, one session per arm
    first, second = order[:2], order[2:]
    assert {store.arm_for(study, "ana", c) for c in second} != {store.arm_for(study, "ana", c) for c in first}
    answer = {"present": True, "confidence": 4, "boxes": []}
    assert "opens once" in store.session_lock(study, "ana", second[0])
    with pytest.raises(AccessDeniedError, match="opens once"):
        store.mark_shown(study, "ana", second[0])  # jumping ahead to a case of the other arm
    with pytest.raises(AccessDeniedError, match="opens once"):
        store.submit_case(study, "ana", second[0], answer)
    for case in first:
        store.submit_case(study, "ana", case, answer)
    assert store.session_lock(study, "ana", first[0]) is None  # may still be revised
    store.mark_shown(study, "ana", second[0])
    assert store.session_lock(study, "ana", second[0]) is None
    with pytest.raises(AccessDeniedError, match="final"):
        store.submit_case(study, "ana", first[0], {**answer, "present": False})
    assert set(store.answers(study, "ana")["case_id"]) == set(first)


def test_the_washout_holds_between_a_cases_two_readings(store, tmp_path, monkeypatch):
    """With a 28-day washout the second session (the other arm of the same images) stays closed
    for 28 days after the reader's last save in the first, then opens."""
    from datetime import datetime, timedelta, timezone

    from medattn.store.annotations import answers as answers_module

    study = make_study(store, tmp_path, n=2, panels=PANELS[:1], washout_days=28)
    store.add_reader(study, "ana", "correct horse")
    order = store.cases_for(study, "ana")
    first, second = order[:2], order[2:]
    answer = {"present": True, "confidence": 4, "boxes": []}
    for case in first:
        store.submit_case(study, "ana", case, answer)
    finished = datetime.fromisoformat(store.answers(study, "ana")["submitted_at"].max().isoformat())
    lock = store.session_lock(study, "ana", second[0])
    assert "28-day washout" in lock and f"{finished + timedelta(days=28):%Y-%m-%d}" in lock
    with pytest.raises(AccessDeniedError, match="washout"):
        store.submit_case(study, "ana", second[0], answer)
    with pytest.raises(AccessDeniedError, match="washout"):
        store.mark_shown(study, "ana", second[0])
    assert store.progress_of(study, "ana")["n_done"] == 2
    for days, opened in ((27.9, False), (28.01, True)):
        later = (finished + timedelta(days=days)).astimezone(timezone.utc).isoformat(timespec="microseconds")
        monkeypatch.setattr(answers_module, "now", lambda later=later: later)
        assert (store.session_lock(study, "ana", second[0]) is None) is opened
    store.mark_shown(study, "ana", second[0])
    store.submit_case(study, "ana", second[0], answer)
    with pytest.raises(StudyError, match="washout_days"):
        make_study(store, tmp_path, n=2, washout_days=28)  # no arms: nothing to wash out between
    with pytest.raises(StudyError, match="washout_days"):
        make_study(store, tmp_path, n=2, panels=PANELS[:1], washout_days=-1)


@pytest.mark.parametrize("name,password,message", [
    ("r" * 65, "long enough", "at most 64 characters"),
    ("two\nlines", "long enough", "control character"),
    ("\u202eevil", "long enough", "control character"),  # shown as "live"
    ("ana\u200b", "long enough", "control character"),  # looks like "ana"
    ("two\u2028lines", "long enough", "control character"),
    ("reader", "p" * 1025, "at most 1024 characters"),
])
def test_reader_names_and_passwords_have_limits(store, name, password, message):
    with pytest.raises(StudyError, match=message):
        store.add_admin(name, password)


def test_study_names_have_limits(store, tmp_path):
    for name, message in (("s" * 201, "at most 200 characters"), ("a\tb", "control character"),
                          ("study\u202e", "control character"), ("  ", "non-empty")):
        with pytest.raises(StudyError, match=message):
            make_study(store, tmp_path, name=name)


@pytest.mark.parametrize("name", ["studies?mode=ro.db", "50%20done.db", "a#b.db"])
def test_a_database_path_is_a_path(tmp_path, monkeypatch, name):
    """"?", "%" and "#" are characters of a file name: answers go to exactly that file (a URL
    parser took "?mode=ro" as a query and "%20" as a space, and wrote another file)."""
    monkeypatch.chdir(tmp_path)
    store = AnnotationStore(name, password_hasher=FAST)
    store.add_admin("admin", "long enough")
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))] == [name]
    assert AnnotationStore(str(tmp_path / name), password_hasher=FAST).is_admin("admin")
    with sqlite3.connect(tmp_path / name) as conn:  # the file itself holds the account
        assert conn.execute("SELECT name FROM accounts").fetchall() == [("admin",)]


def test_a_database_url_needs_a_scheme(tmp_path):
    assert AnnotationStore(f"sqlite:///{tmp_path}/by-url.db", password_hasher=FAST).path == tmp_path / "by-url.db"


def test_migrate_copies_a_study_between_sqlite_and_postgresql(tmp_path, postgres):
    """`python -m medattn.reader migrate` there and back: the same study id, answers (latest
    still current), reader order and password; a second copy is refused and writes nothing."""
    from medattn.reader.__main__ import main

    source = AnnotationStore(tmp_path / "site.db", password_hasher=FAST)
    study = make_study(source, tmp_path, panels=PANELS[:1])
    source.add_reader(study, "ana", "correct horse")
    source.add_admin("admin", "admin password")
    first = source.cases_for(study, "ana")[0]
    source.mark_shown(study, "ana", first)
    source.submit(study, "ana", first, "confidence", 2)
    source.submit(study, "ana", first, "confidence", 5)
    server = postgres.url()
    assert main(["migrate", "--from", str(source.path), "--to", server]) == 0
    copied = AnnotationStore(server, password_hasher=FAST)
    assert copied.authenticate("ana", "correct horse") and copied.is_admin("admin")
    assert copied.cases_for(study, "ana") == source.cases_for(study, "ana")
    pd.testing.assert_frame_equal(copied.answers(study), source.answers(study))
    assert copied.events(study)["seconds"].notna().all()
    assert main(["migrate", "--from", server, "--to", str(source.path)]) == 2  # already there
    back = AnnotationStore(tmp_path / "back.db", password_hasher=FAST)
    back.add_admin("ana", "someone else's")
    assert main(["migrate", "--from", server, "--to", str(back.path), "--study", study]) == 2  # another ana
    assert back.list_studies().empty


class CountingHasher(PasswordHasher):
    """FAST, counting password checks and the most running at once (`delay` s each)."""

    def __init__(self, delay: float = 0.0):
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.delay, self.checks, self.running, self.most = delay, 0, 0, 0
        self.lock = threading.Lock()

    def verify(self, hash, password):
        with self.lock:
            self.checks += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


def _attempt(store, name, password, client):
    try:
        return store.authenticate(name, password, client=client)
    except LoginRateLimitedError:
        return "limited"


def test_simultaneous_wrong_sign_ins_check_at_most_the_limit(study_db, tmp_path):
    """16 sign-ins at once on one name: each is counted before any password is checked, so at
    most MAX_FAILURES are checked (all 16 were, and the right password among them got in)."""
    hasher = CountingHasher(delay=0.2)
    store = AnnotationStore(study_db, password_hasher=hasher)
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    hasher.checks = 0
    passwords = [f"guess {i}" for i in range(15)] + ["correct horse"]
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda p: _attempt(store, "ana", p, "203.0.113.9"), passwords))
    assert hasher.checks <= MAX_FAILURES
    assert outcomes.count("limited") >= 16 - MAX_FAILURES
    assert hasher.most <= MAX_CONCURRENT_CHECKS


def test_a_strangers_wrong_guesses_do_not_keep_a_reader_out(store, tmp_path):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    assert store.authenticate("ana", "correct horse", client="10.0.0.7")  # ana's workstation
    for i in range(40):  # a stranger on another machine, as fast as he can
        _attempt(store, "ana", f"guess {i}", "198.51.100.66")
    with pytest.raises(LoginRateLimitedError):
        store.authenticate("ana", "correct horse", client="198.51.100.66")
    assert store.authenticate("ana", "correct horse", client="10.0.0.7")
    assert store.authenticate("ana", "correct horse", client="10.0.0.7")


def test_failures_back_off_instead_of_locking_out(store, tmp_path, monkeypatch):
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    for _ in range(MAX_FAILURES):
        assert store.authenticate("ana", "wrong guess", client="10.0.0.7") is False
    with pytest.raises(LoginRateLimitedError) as error:
        store.authenticate("ana", "correct horse", client="10.0.0.7")
    assert 0 < error.value.retry_after <= BACKOFF_S
    clock[0] += BACKOFF_S + 0.01  # seconds, not the five minutes a stranger could impose
    assert store.authenticate("ana", "correct horse", client="10.0.0.7")


def test_one_client_spraying_names_is_throttled(store, tmp_path):
    outcomes = [_attempt(store, f"reader{i}", "spring2026", "198.51.100.66") for i in range(CLIENT_BUDGET + 5)]
    assert outcomes[:CLIENT_BUDGET] == [False] * CLIENT_BUDGET
    assert set(outcomes[CLIENT_BUDGET:]) == {"limited"}
    assert _attempt(store, "reader99", "spring2026", "192.0.2.1") is False  # another client still may


def test_a_too_long_password_at_sign_in_is_wrong_without_hashing(study_db, tmp_path):
    hasher = CountingHasher()
    store = AnnotationStore(study_db, password_hasher=hasher)
    store.add_admin("admin", "long enough")
    hasher.checks = 0
    assert store.authenticate("admin", "x" * 10_000_000) is False
    assert hasher.checks == 0


def test_sign_out_everywhere_ends_older_sessions(store):
    store.add_admin("admin", "long enough")
    before = time.time()
    assert store.session_valid("admin", before)
    time.sleep(0.01)
    store.sign_out_everywhere("admin")
    assert not store.session_valid("admin", before)
    assert store.session_valid("admin", time.time() + 0.001)
    assert not store.session_valid("nobody", time.time())


def test_a_damaged_database_is_refused_at_start_with_a_clear_error(tmp_path):
    store = AnnotationStore(tmp_path / "study.db", password_hasher=FAST)
    store.add_admin("admin", "long enough")
    store.engine.dispose()
    (tmp_path / "study.db-wal").unlink(missing_ok=True)
    raw = bytearray((tmp_path / "study.db").read_bytes())
    raw[4096:8192] = b"\xa5" * 4096  # a page of garbage where a table's page was
    (tmp_path / "study.db").write_bytes(bytes(raw))
    with pytest.raises(StorageError, match=r"study\.db.*(damaged|malformed)"):
        AnnotationStore(tmp_path / "study.db", password_hasher=FAST)
    (tmp_path / "notes.db").write_text("these are not a database")
    with pytest.raises(StorageError, match="notes.db cannot be opened"):
        AnnotationStore(tmp_path / "notes.db", password_hasher=FAST)


def test_a_database_that_cannot_be_written_says_not_saved_and_keeps_what_was_saved(store, tmp_path):
    sqlite_only(store)
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    case = store.cases_for(study, "ana")[0]
    kept = store.submit(study, "ana", case, "present", True)
    store.engine.dispose()
    sqlalchemy_event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA query_only = ON"))
    with pytest.raises(StorageError, match="not saved.*readonly"):  # as a read-only file or full disk reads
        store.submit(study, "ana", case, "present", False)
    assert store.events(study)["id"].tolist() == [kept]


def test_online_backup_while_writing_and_on_a_schedule(store, tmp_path):
    sqlite_only(store)
    study = make_study(store, tmp_path)
    store.add_reader(study, "ana", "correct horse")
    for case in store.cases_for(study, "ana"):
        store.submit(study, "ana", case, "confidence", 3)
    from medattn.reader.__main__ import main

    assert main(["backup", "--db", str(store.path), "--out", str(tmp_path / "copy.db")]) == 0
    copy = AnnotationStore(tmp_path / "copy.db", password_hasher=FAST)
    pd.testing.assert_frame_equal(copy.answers(study), store.answers(study))
    schedule = Backups(store.path, interval_s=0.05, keep=3).start()
    time.sleep(1.5)
    schedule.stop()
    kept = sorted(schedule.folder.iterdir())
    assert 1 <= len(kept) <= 3 and kept[-1].stat().st_mode & 0o077 == 0
    assert AnnotationStore(kept[-1], password_hasher=FAST).answers(study)["value"].tolist() == [3] * 6
