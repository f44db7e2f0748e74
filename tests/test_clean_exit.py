"""Clean exit: the app's background map worker (`medattn-maps`) stops and is joined before the
interpreter finalises, whichever thread started it and whatever it is computing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from medattn.ui.background import Preempted, Worker
from tests.app_env import app_env

REPO = Path(__file__).resolve().parents[1]


def test_a_worker_started_from_a_daemon_thread_is_joined_and_stops_its_job_at_the_next_tick():
    """Streamlit's script threads are daemons and a thread inherits that: the worker was a
    daemon, killed inside torch at exit."""
    started, made = threading.Event(), []

    def work(tick):
        started.set()
        while True:  # a long map: only the stop can end it, at a tick
            tick(0, 0)
            time.sleep(0.01)

    def script_thread():
        made.append(Worker())

    starter = threading.Thread(target=script_thread, daemon=True)
    starter.start()
    starter.join()
    worker = made[0]
    assert not worker._thread.daemon
    job = worker.submit("key", work, prefetch=True)
    queued = worker.submit("other", lambda tick: "never run", prefetch=True)
    assert started.wait(10)
    assert worker.stop(timeout=10) and not worker._thread.is_alive()
    assert isinstance(job.future.exception(timeout=1), Preempted) and queued.future.cancelled()


def test_a_script_that_renders_compare_through_apptest_exits_0(tmp_path_factory, tmp_path):
    """With neighbours' maps still computing on the worker when the script returns, the
    interpreter exited with SIGABRT ("terminate called without an active exception") or hung in
    pyarrow's exit handlers."""
    world = app_env(tmp_path_factory.getbasetemp() / "app_env")
    script = tmp_path / "render_compare.py"
    script.write_text(textwrap.dedent(f"""
        from streamlit.testing.v1 import AppTest
        from medattn.ui.background import worker

        at = AppTest.from_file({str(REPO / "workbench.py")!r}, default_timeout=300)
        at.session_state["sb_methods"] = ["gradcam", "occlusion"]
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert worker().pending(), "nothing left computing: the exit would not be tested"
        print("rendered", flush=True)
    """))
    env = {**os.environ, **world.environ(), "MEDATTN_CACHE": str(tmp_path / "cache"), "MEDATTN_PREFETCH": "1",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert "rendered" in done.stdout, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
