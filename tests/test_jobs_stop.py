"""Stop signals only the job's own worker: a status.json is a file anyone with write access to the
cache can forge, so its pid is believed only when the kernel says that process holds the job's
lock (or runs this very job folder)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from medattn.jobs.manager import JobManager, _lock_holder, _worker_pid


def _forge(folder, pid: int, state: str = "running") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status.json").write_text(json.dumps({
        "id": folder.name, "kind": "precompute", "title": "forged", "state": state, "pid": pid, "done": 0,
        "total": 10, "unit": "maps", "created": time.time(), "updated": time.time()}))


def test_a_forged_status_file_makes_stop_signal_nothing(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        manager = JobManager(tmp_path / "jobs")
        for state in ("running", "queued"):
            _forge(manager.folder("precompute-forged"), bystander.pid, state)
            manager.stop("precompute-forged", grace=0.2)
            assert bystander.poll() is None  # the unrelated process lives on
        assert not manager.status("precompute-forged").active  # and the job no longer reads as running
    finally:
        bystander.kill()
        bystander.wait()


def test_the_lock_holder_is_read_from_the_kernel(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    assert _lock_holder(folder) is None
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(folder / "lock")], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert _lock_holder(folder) == holder.pid
        assert _worker_pid(folder, claimed=1) == holder.pid  # the claim is ignored; the lock decides
    finally:
        holder.kill()
        holder.wait()
    assert _lock_holder(folder) is None
