"""Background jobs: a precompute job runs in its own process, stops within seconds keeping its
finished rows, reads as interrupted after its process is killed (a server restart) and resumes
to the same rows a foreground run gives; two runs over the same work share it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medattn.data import load_dataset
from medattn.jobs import JobManager, JobRunning, JobStatus, job_id, precompute_spec
from medattn.jobs.manager import _write_status
from medattn.jobs.batch import BATCH_SIZE
from medattn.jobs.precompute import precompute
from medattn.inference import cached_predictions
from medattn.store import Run
from medattn.store import HeatmapCache

METHODS = ["saliency", "gradcam", "integrated_gradients"]  # IG keeps the job running long enough to stop and kill it


def wait_for(manager: JobManager, job: str, condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = manager.status(job)
        if status is not None and condition(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job} never reached the condition; last status {manager.status(job)}\n{manager.log_tail(job)}")


def test_job_stops_fast_reads_interrupted_after_a_kill_and_resumes(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    dataset = load_dataset(tiny_demo)
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "cache")
    spec = precompute_spec(tiny_demo, [tiny_checkpoint], METHODS, split="test", run_root=run.root, cache_root=cache.root,
                           device="cpu")
    manager = JobManager(tmp_path / "jobs")
    job = manager.start(spec).id
    with pytest.raises(JobRunning):  # one job per dataset × checkpoint set
        manager.start(spec)
    running = wait_for(manager, job, lambda s: s.state == "running" and s.done >= 2)
    assert running.maps_per_s and running.eta_s is not None and running.total > running.done

    seconds = manager.stop(job)
    stopped = manager.status(job)
    assert seconds < 5 and stopped.state == "stopped"
    assert len(run.scores.read()) >= stopped.done  # Stop stores every finished map's row

    manager.resume(job)
    before = len(run.scores.read())
    assert wait_for(manager, job, lambda s: s.total > 0).done >= before  # counts from the stored maps on
    # kill as soon as its worker runs: the 10 maps left take under a second on a fast machine,
    # so waiting for a count could see the job already done
    wait_for(manager, job, lambda s: s.state == "running")
    os.killpg(manager.status(job).pid, signal.SIGKILL)  # the server and its jobs die
    restarted = JobManager(tmp_path / "jobs")  # a new server over the same folder
    interrupted = wait_for(restarted, job, lambda s: s.state != "running", timeout=10)
    assert interrupted.state == "interrupted" and [s.id for s in restarted.list()] == [job]
    lost = interrupted.done - len(run.scores.read())  # both count the whole plan, stored maps included
    assert 0 <= lost <= BATCH_SIZE  # a kill loses at most the batch in progress
    print(f"stop took {seconds:.2f} s at {running.maps_per_s:.2f} maps/s; kill after {interrupted.done} maps: {lost} rows lost")

    restarted.resume(job)
    finished = wait_for(restarted, job, lambda s: s.state in ("done", "failed"))
    assert finished.state == "done", restarted.log_tail(job)

    def fail(*args, **kwargs):
        raise AssertionError("the resumed job left a row to compute")

    monkeypatch.setattr("medattn.jobs.batch.compute_maps", fail)
    frame = precompute(dataset, [tiny_checkpoint], METHODS, split="test", run=run, cache=cache, device="cpu")
    assert set(frame["method"]) == set(METHODS) and len(frame) == len(frame.drop_duplicates(["image_id", "method", "target"]))


REPO = Path(__file__).resolve().parents[1]
# A job's worker whose Stop signal arrives while it writes a batch's rows: what happens when Stop's
# "cancel" file is seen between two maps (or the batch ends) just before its SIGTERM is delivered
SIGNAL_WHILE_STORING = """
import os, signal, sys
from pathlib import Path
from medattn.jobs import worker
from medattn.store import ScoreTable

real = ScoreTable.append

def append(self, rows):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(self, rows)

ScoreTable.append = append
sys.exit(worker.work(Path(sys.argv[1])))
"""


def test_a_stop_that_lands_while_a_batch_is_stored_keeps_its_rows(tiny_demo, tiny_checkpoint, tmp_path):
    """The SIGTERM ends a map in progress, never the writing of the finished rows: the batch is
    stored, the job stops, and its status counts exactly the rows stored. (It raised inside the
    write: 0 rows stored under "stopped at 4/33 maps; finished rows are stored".)"""
    run = Run(tmp_path / "run")
    spec = precompute_spec(tiny_demo, [tiny_checkpoint], ["saliency", "gradcam"], split="test", run_root=run.root,
                           cache_root=tmp_path / "cache", device="cpu")
    folder = JobManager(tmp_path / "jobs").folder(job_id(spec))
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps(spec))
    worker = subprocess.run([sys.executable, "-c", SIGNAL_WHILE_STORING, str(folder)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-3000:]
    status = JobManager(tmp_path / "jobs").status(job_id(spec))
    assert status.state == "stopped" and status.pending == 0, status
    assert 0 < len(run.scores.read()) == status.done < status.total  # the whole first batch, counted as stored


# A worker that holds `pending` finished maps when Stop's SIGTERM comes and takes STORE_S to store
# them (starved of CPU, or finishing a long step), then says so in status.json like a real one
HOLDING_WORKER = """
import fcntl, json, os, signal, sys, time
from pathlib import Path

folder, pending, store_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
lock = open(folder / "lock", "a")
fcntl.flock(lock, fcntl.LOCK_EX)
status = json.loads((folder / "status.json").read_text())

def write(**fields):
    status.update(fields)
    (folder / "status.json.tmp").write_text(json.dumps(status))
    os.replace(folder / "status.json.tmp", folder / "status.json")

def on_sigterm(*_):
    time.sleep(store_s)
    (folder / "stored").touch()
    write(state="stopped", pending=0, message="stopped at 5/20 maps; finished rows are stored")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_sigterm)
write(state="running", pid=os.getpid(), done=5, total=20, pending=pending)
(folder / "ready").touch()
while True:
    time.sleep(0.1)
"""


@pytest.mark.parametrize("pending, store_s, store_grace, stored, done, said", [
    (3, 3.0, 60.0, True, 5, "finished rows are stored"),  # holds rows: waited for, beyond the grace
    (0, 3.0, 60.0, False, 5, "stopped at 5/20 maps"),  # a long step and nothing held: killed after the grace
    (3, 600.0, 1.0, False, 2, "3 finished maps were not stored"),  # never stores: killed, and the count says so
])
def test_stop_kills_after_the_grace_only_a_worker_that_holds_no_finished_maps(tmp_path, pending, store_s, store_grace,
                                                                            stored, done, said):
    manager = JobManager(tmp_path)
    folder = manager.folder("precompute-held")
    folder.mkdir()
    _write_status(folder, JobStatus("precompute-held", "precompute", "held", "queued"))
    worker = subprocess.Popen([sys.executable, "-c", HOLDING_WORKER, str(folder), str(pending), str(store_s)],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        manager.stop("precompute-held", grace=0.2, store_grace=store_grace)
        assert worker.wait(timeout=10) is not None
    finally:
        worker.kill()
    final = manager.status("precompute-held")
    assert (folder / "stored").exists() == stored
    assert final.state == "stopped" and final.done == done and final.pending == 0 and said in final.message, final


def test_two_runs_over_the_same_work_share_it(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    """Started together, two runs compute each map once between them (claims), and both
    return the whole table."""
    from medattn.inference import load_model

    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:8])
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "cache")
    cached_predictions(load_model(tiny_checkpoint, "cpu"), dataset, ids, run.prediction_store)
    real, computed, lock = HeatmapCache.put, [], threading.Lock()

    def counting(self, key, heatmap):  # every freshly computed map is put into the cache once
        with lock:
            computed.append(key)
        return real(self, key, heatmap)

    monkeypatch.setattr(HeatmapCache, "put", counting)
    results: list = [None, None]

    def one(slot: int) -> None:
        results[slot] = precompute(dataset, [tiny_checkpoint], ["saliency", "gradcam"], image_ids=ids, run=run,
                                   cache=cache, device="cpu", progress=lambda *_: None)

    threads = [threading.Thread(target=one, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results[0]) == len(results[1]) > 0
    assert len(computed) == len(set(computed)) == len(results[0])  # every map computed once, not once per run
    assert not list((run.root / "claims").glob("*.claim"))  # all released


def test_a_checkpoint_named_by_either_file_is_one_checkpoint_of_one_job(tiny_demo, tiny_checkpoint):
    """`--checkpoints checkpoints/demo_*` names each checkpoint twice (.json, .safetensors)."""
    files = [tiny_checkpoint.with_name(tiny_checkpoint.name + suffix) for suffix in (".json", ".safetensors")]
    spec = precompute_spec(tiny_demo, [*files, tiny_checkpoint], METHODS)
    assert spec["checkpoints"] == [str(tiny_checkpoint.resolve())]
    assert job_id(spec) == job_id(precompute_spec(tiny_demo, [tiny_checkpoint], METHODS))


def test_train_job_counts_batches_stops_fast_resumes_after_its_finished_epochs_and_loads(tiny_demo, tmp_path):
    """A training job is medattn.train.train in the background: progress in batches with an
    ETA, Stop ends it within seconds keeping the finished epochs (NAME.resume.pt, as a kill
    does), Resume continues after them, and the finished checkpoint loads."""
    from medattn.inference import load_model
    from medattn.jobs import train_spec

    out = tmp_path / "checkpoints" / "trained"
    kept = out.with_name("trained.resume.pt")
    spec = train_spec(tiny_demo, "resnet18", "linear", out, "wang", epochs=3, input_size=64, device="cpu", batch_size=8)
    manager = JobManager(tmp_path / "jobs")
    job = manager.start(spec).id
    assert job.startswith("train-") and "trained" in job
    with pytest.raises(JobRunning, match="training of this output"):  # one training per output at a time
        manager.start(spec)
    elsewhere = shutil.copytree(tiny_demo, tmp_path / "same_demo_elsewhere")
    with pytest.raises(JobRunning, match="another training into trained"):  # from another dataset too
        manager.start(train_spec(elsewhere, "resnet18", "linear", out, "wang", epochs=3, input_size=64, device="cpu"))
    deadline = time.monotonic() + 120
    while not kept.exists() and time.monotonic() < deadline:  # the file, not the status (written every 0.5 s):
        time.sleep(0.02)  # two epochs are left to stop in, on a fast machine too
    assert kept.exists(), manager.log_tail(job)

    seconds = manager.stop(job)
    stopped = manager.status(job)
    assert seconds < 5 and stopped.state == "stopped", (seconds, stopped)
    finished_epochs = int(re.search(r"(\d)/3 epochs finished and kept", stopped.message).group(1))
    per_epoch = stopped.total // 3
    assert stopped.unit == "batches" and stopped.rate and stopped.eta_s is not None and stopped.maps_per_s is None
    assert finished_epochs >= 1 and finished_epochs * per_epoch <= stopped.done < stopped.total
    assert stopped.stage.startswith("epoch ") and kept.exists() and not out.with_name("trained.json").exists()
    with pytest.raises(JobRunning, match="other settings"):  # its resume file is not mixed with another run's
        manager.start({**spec, "config": {**spec["config"], "lr": 0.5}})

    manager.resume(job)
    finished = wait_for(manager, job, lambda s: s.state in ("done", "failed"))
    assert finished.state == "done" and finished.done == finished.total, manager.log_tail(job, 40)
    assert f"resuming trained after epoch {finished_epochs}" in manager.log_tail(job, 40)
    loaded = load_model(out, "cpu")
    assert [row["epoch"] for row in loaded.meta["metrics"]["history"]] == [1, 2, 3]
    assert not kept.exists()
    print(f"train job: {per_epoch} batches/epoch at {stopped.rate:.2f} batches/s; stop took {seconds:.2f} s "
          f"({stopped.message})")


def test_a_training_that_cannot_run_is_refused_at_start_not_in_the_background(tiny_demo, tmp_path):
    """0 or negative epochs, a batch under 1, a NaN learning rate, a 7 px input or a missing
    dataset used to start a job that "finished" saying "saved NAME" without writing it (or
    failed in the background); and `jobs resume` of a finished training trained again into
    its checkpoint, to replace it at the end."""
    from medattn.errors import DatasetError
    from medattn.jobs.cli import main, train_spec

    out = tmp_path / "checkpoints" / "new"
    for options, message in (({"epochs": 0}, "epochs must be 1 or more"), ({"epochs": -3}, "epochs must be 1 or more"),
                             ({"batch_size": 0}, "batch_size must be 1 or more"), ({"lr": float("nan")}, "lr must be"),
                             ({"input_size": 7}, "input_size must be 32 px")):
        with pytest.raises(ValueError, match=message):
            train_spec(tiny_demo, "resnet18", "linear", out, "wang", **{"epochs": 1, **options})
    with pytest.raises(DatasetError, match="not a folder"):
        train_spec(tmp_path / "nowhere", "resnet18", "linear", out, "wang", epochs=1)
    manager = JobManager(tmp_path / "jobs")
    spec = train_spec(tiny_demo, "resnet18", "linear", out, "wang", epochs=1, input_size=64, device="cpu")
    out.parent.mkdir()
    for suffix in (".json", ".safetensors"):  # the training finished meanwhile
        out.with_name(out.name + suffix).write_text("{}")
    with pytest.raises(JobRunning, match="never overwrites"):
        manager.start(spec)
    assert not manager.list()
    root = ["--root", str(tmp_path / "jobs")]
    for command in ("stop", "resume", "log"):  # an unknown or path-like id: one line, exit 1, nothing read outside
        assert main([*root, command, "nosuchjob"]) == 1
        assert main([*root, command, "../../etc"]) == 1
    assert main([*root, "start-train", "--dataset", str(tmp_path / "nowhere"), "--arch", "resnet18",
                 "--out", str(tmp_path / "x")]) == 1


@pytest.mark.parametrize("fault,message", [("dataset", "dataset folder .* does not exist"),
                                           ("checkpoint", "missing .*nothing_here.json"),
                                           ("method", "unknown method.*gradcamm")])
def test_a_precompute_job_that_cannot_run_is_refused_at_start(tiny_demo, tiny_checkpoint, tmp_path, capsys, fault, message):
    from medattn.jobs.cli import main

    args = {"dataset": str(tiny_demo), "checkpoint": str(tiny_checkpoint), "method": "saliency"}
    args[fault] = {"dataset": str(tmp_path / "nowhere"), "checkpoint": str(tmp_path / "nothing_here"),
                   "method": "gradcamm"}[fault]
    code = main(["--root", str(tmp_path / "jobs"), "start", "--dataset", args["dataset"],
                 "--checkpoints", args["checkpoint"], "--methods", args["method"]])
    assert code == 1 and re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())  # nothing started
