"""The worker of a background job: `python -m medattn.jobs run FOLDER` runs `work(FOLDER)` in its
own process group, holding the job's lock for its life, and turns the work's progress into
`status.json` (see `medattn.jobs.manager` for the folder layout and the states)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from medattn.jobs.interrupt import Interrupted, interrupt
from medattn.jobs.manager import STATUS_EVERY_S, UNITS, JobStatus, _title, _write_status, log
from medattn.store.files import read_or_set_aside


class _Reporter:
    """Turns progress calls (precompute's maps, training's batches) into status.json updates with
    the rate and ETA, and precompute's `stored` calls into `pending`: the finished maps whose
    rows are not in the table yet, told at once when the first of a batch finishes, so that a
    Stop never kills the worker while it holds them (`JobManager.stop`)."""

    def __init__(self, folder: Path, status: JobStatus):
        self.folder, self.status = folder, status
        self.first: tuple[float, int] | None = None  # (time, done) at the first map: loading is not throughput
        self.written = 0.0
        self.kept: int | None = None  # the count when rows last reached the table; None: this work stores no rows

    def __call__(self, done: int, total: int, stage: str | None = None) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (now, done)  # a resumed job starts at what it kept
            self.status.message = f"computing {self.status.unit}" if self.status.unit == "maps" else "training"
        self.status.done, self.status.total = done, total
        held = self.status.pending
        self.status.pending = max(0, done - self.kept) if self.kept is not None else 0
        if stage is not None:
            self.status.stage = stage
        elapsed, counted = now - self.first[0], done - self.first[1]
        if elapsed > 0 and counted > 0:
            self.status.rate = counted / elapsed
            self.status.eta_s = (total - done) / self.status.rate
        if now - self.written >= STATUS_EVERY_S or done == total or (self.status.pending and not held):
            self.write()

    def stored(self, done: int) -> None:
        """The rows of the maps counted up to `done` are in the table (precompute's `stored`)."""
        self.kept = done
        self.status.pending = max(0, self.status.done - done)
        self.write()

    def write(self, state: str | None = None, message: str | None = None) -> None:
        if state is not None:
            self.status.state = state
        if message is not None:
            self.status.message = message
        _write_status(self.folder, self.status)
        self.written = time.monotonic()


def _run_precompute(spec: dict, reporter: _Reporter, stop: Callable[[], bool]) -> str:
    from medattn.data import load_dataset
    from medattn.data.skips import Skips
    from medattn.jobs.precompute import precompute
    from medattn.pipeline import CACHE_DIR
    from medattn.store import HeatmapCache, Run

    dataset = load_dataset(spec["dataset"])
    run = Run(Path(spec["run_root"])) if spec.get("run_root") else Run.for_dataset(dataset, CACHE_DIR / "runs")
    cache = HeatmapCache(spec["cache_root"]) if spec.get("cache_root") else None
    params = None
    if spec.get("app_params"):
        from medattn.ui.methods import precompute_params

        params = precompute_params
    skips = Skips("images")
    faithfulness = None
    if spec.get("faithfulness"):
        from medattn.pipeline import FaithfulnessSettings

        faithfulness = FaithfulnessSettings.from_fields(spec["faithfulness"])
    frame = precompute(dataset, spec["checkpoints"], spec["methods"], spec.get("split"), spec.get("image_ids"), run,
                       cache, spec.get("device", "auto"), params, progress=reporter, skips=skips, stop=stop,
                       faithfulness=faithfulness, stored=reporter.stored)
    if stop():
        raise Stopped("finished rows are stored")
    done = f"{len(frame)} rows in {run.root / 'scores'}"
    return f"{done}; {skips.summary()}" if len(skips) else done


def _run_train(spec: dict, reporter: _Reporter, stop: Callable[[], bool]) -> str:
    """`medattn.train.train` itself, with the job's progress and stop; its log lines (one per
    epoch) go to the job's log."""
    from medattn import train as training

    config = training.TrainConfig(**spec["config"])

    def log_line(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        out = training.train(config, log=log_line, progress=reporter, stop=stop)
    except training.Stopped as exc:
        raise Stopped(f"{exc.epoch}/{exc.epochs} epochs finished and kept; Resume continues from there") from None
    except SystemExit as exc:  # train's own "needs images in both splits" refusal: a failure, not an exit
        raise ValueError(str(exc)) from None
    return f"saved {out.name} in {out.parent}"


class Stopped(Exception):
    """A job's work ended early because it was asked to stop; the message says what was kept."""


KINDS: dict[str, Callable[[dict, _Reporter, Callable[[], bool]], str]] = {
    "precompute": _run_precompute, "train": _run_train}
INTERRUPTIBLE = {"precompute"}  # kinds whose maps SIGTERM may end mid-step (training checks between batches)


def work(folder: Path) -> int:
    """Run the job in `folder` in this process (the worker's body)."""
    from medattn import threads

    threads.background()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    with open(folder / "lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another worker already runs %s", folder.name)
            return 0
        spec = json.loads((folder / "spec.json").read_text())
        previous = read_or_set_aside(folder / "status.json", lambda p: json.loads(p.read_text())) or {}
        loading = "loading the models and predicting" if spec["kind"] == "precompute" else "loading the data and the model"
        status = JobStatus(folder.name, spec["kind"], _title(spec), "running", os.getpid(), message=loading,
                           created=previous.get("created", time.time()), unit=UNITS[spec["kind"]])
        reporter = _Reporter(folder, status)
        reporter.write()
        stopping = threading.Event()

        def on_sigterm(*_: object) -> None:
            stopping.set()
            if spec["kind"] in INTERRUPTIBLE:
                interrupt()  # ends the map (or the loading) in progress, never a write: the finished rows are stored

        signal.signal(signal.SIGTERM, on_sigterm)

        def stop() -> bool:
            return stopping.is_set() or (folder / "cancel").exists()

        try:
            summary = KINDS[spec["kind"]](spec, reporter, stop)
        except (Interrupted, Stopped) as exc:  # Interrupted while loading: what was stored stays
            kept = str(exc) if isinstance(exc, Stopped) else "finished rows are stored"
            reporter.write("stopped", f"stopped at {status.done}/{status.total} {status.unit}; {kept}")
        except Exception as exc:  # noqa: BLE001 - the job's failure is its status, the trace its log
            log.exception("job %s failed", folder.name)
            reporter.write("failed", f"{type(exc).__name__}: {exc}")
            return 1
        else:
            reporter.write("done", summary)
        log.info("%s: %s", status.state, status.message)
        return 0
