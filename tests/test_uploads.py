"""The upload bounds of medattn.ui.uploads without a server: what `admit` lets through (offer,
browser, size, count), the message of an over-limit file, and the names files are kept under.
The gate in front of a real server: tests/test_upload_gate.py."""

from __future__ import annotations

import pytest

from medattn import pipeline
from medattn.ui import uploads
from medattn.ui.uploads import MiB, STUDY_JSON, WEIGHTS, Upload, UploadRefused


@pytest.fixture
def spool(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "CACHE_DIR", tmp_path)
    yield uploads.spool()
    for session in ("s1", "s2"):
        uploads.withdraw(session)


@pytest.mark.parametrize("session, browser, declared, status", [
    ("s2", "b1", 10, 403),  # no uploader drawn for this session
    ("s1", "b2", 10, 403),  # another browser presenting the session's id
    ("s1", "b1", 300 * MiB, 413),  # larger than the largest uploader offered
    ("s1", "b1", None, None),  # size not declared: bounded as it streams
    ("s1", "b1", 200 * MiB, None),
])
def test_admit_takes_only_what_was_offered(spool, session, browser, declared, status):
    uploads.offer("s1", "b1", STUDY_JSON)
    if status is None:
        assert uploads.admit(session, browser, declared) == STUDY_JSON.max_bytes
        uploads.arrived(session, STUDY_JSON.max_bytes)
    else:
        with pytest.raises(UploadRefused) as refused:
            uploads.admit(session, browser, declared)
        assert refused.value.status == status


def test_the_largest_offer_bounds_a_session_and_four_files_at_most(spool):
    uploads.offer("s1", "b1", STUDY_JSON)
    uploads.offer("s1", "b1", WEIGHTS)
    assert uploads.admit("s1", "b1", 900 * MiB) == WEIGHTS.max_bytes
    for file_id in ("f1", "f2", "f3", "f4"):
        received = spool / f"{file_id}.part"
        received.write_bytes(b"{}")
        uploads.hold("s1", file_id, f"{file_id}.json", received)
    uploads.arrived("s1", WEIGHTS.max_bytes)
    with pytest.raises(UploadRefused, match="At most 4 files at once") as refused:
        uploads.admit("s1", "b1", 10)
    assert refused.value.status == 429
    uploads.drop("s1", "f1")
    assert uploads.admit("s1", "b1", 10) == WEIGHTS.max_bytes
    uploads.arrived("s1", WEIGHTS.max_bytes)
    uploads.withdraw("s1")
    assert not any(p.is_file() for p in spool.rglob("*"))


def test_uploads_in_flight_at_once_count_each(spool):
    uploads.offer("s1", "b1", STUDY_JSON)
    for _ in range(uploads.MAX_FILES_PER_SESSION):
        uploads.admit("s1", "b1", None)
    with pytest.raises(UploadRefused, match="At most 4 files at once"):
        uploads.admit("s1", "b1", None)
    uploads.arrived("s1", STUDY_JSON.max_bytes)
    assert uploads.admit("s1", "b1", None) == STUDY_JSON.max_bytes
    for _ in range(uploads.MAX_FILES_PER_SESSION):
        uploads.arrived("s1", STUDY_JSON.max_bytes)


def test_an_over_limit_file_is_refused_with_its_name_size_and_the_limit(tmp_path):
    big = Upload("study.json", tmp_path / "study.json", 300 * MiB, "t")
    with pytest.raises(UploadRefused, match=r"^Study JSON: study.json is 300 MB; this upload takes at most 256 MB\.$"):
        uploads.check(STUDY_JSON, big)
    with pytest.raises(UploadRefused, match="not a json file"):
        uploads.check(STUDY_JSON, Upload("study.csv", tmp_path / "study.csv", 10, "t"))
    uploads.check(WEIGHTS, Upload("model.pth.tar", tmp_path / "m", 1024 * MiB, "t"))  # exactly 1 GB: taken


@pytest.mark.parametrize("name, kept", [
    ("model.pth.tar", "model.pth.tar"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\weights.safetensors", "weights.safetensors"),
    ('a"b\r\n.json', "a_b__.json"),
    ("..", "upload"),
    ("x" * 300 + ".pt", "x" * 100 + "x" * 97 + ".pt"),
])
def test_a_file_is_kept_under_its_base_name_only(name, kept):
    assert uploads.safe_name(name) == kept
