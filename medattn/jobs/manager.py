"""Background jobs: long work (precompute, training) in its own process, which outlives the
page, the browser tab and the app server that started it: `python -m medattn.jobs --help`.

Two kinds (`KINDS`): "precompute" (`precompute_spec`: maps and scores over a split; progress in
maps) and "train" (`train_spec`: `medattn.train.train` itself; progress in batches over all
epochs).

A job is a folder `<jobs root>/<id>/` (default `.cache/jobs/`, under MEDATTN_CACHE):
- `spec.json`: what to run (`kind` and its arguments);
- `status.json`: `state` (queued, running, done, failed, stopped, interrupted), `pid`,
  `done`/`total` counted in `unit` (maps, batches), `pending` (of `done`, the finished maps
  whose rows are not stored yet: at most a batch), `rate` (units/s), `eta_s`, `stage` (e.g.
  "epoch 2/5"), `message`, times; rewritten (temporary + rename) at most every
  `STATUS_EVERY_S` while it runs, and at once when a batch is stored or its first map held;
- `log.txt`: the worker's output (warnings name skipped images and set-aside files);
- `lock`: held (`fcntl.flock`) by the worker for its lifetime. The lock, not the pid, says
  whether a job is alive: the OS drops it when the process dies, however it dies.

The id is made from the kind and its identity: dataset × set of checkpoints for precompute,
dataset × output checkpoint for training, so each has one job at a time; starting it again while
it runs raises `JobRunning`. `stop` signals the worker's process group, and only a worker it
can prove (`_worker_pid`: the lock's holder in the kernel's /proc/locks, or before the lock the
process running this very job folder), never a pid that status.json merely claims (SIGTERM: precompute
ends the map in progress at once, stores the finished rows and exits, `medattn.jobs.interrupt`;
training stops before its next batch). It kills the worker after `STOP_GRACE_S` if a long step
is still running, unless the worker holds finished maps not yet stored (`pending`): then it
waits up to `STORE_GRACE_S` for them to be stored (a worker starved of CPU needs that long),
so that a Stop keeps every finished map's row. A job whose process died (server restart, kill, power loss) reads as `interrupted`; `resume` starts it again:
precompute skips the rows already stored, training continues after the last epoch kept in its
`NAME.resume.pt`. The worker runs at a lower priority and under the
thread policy (`medattn.threads`). A plain subprocess and files suffice on one machine; a
cluster uses `precompute --engine ray`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from medattn.processes import pid_alive
from medattn.store.files import read_or_set_aside, write_atomic

log = logging.getLogger("medattn.jobs")
STATES = ("queued", "running", "done", "failed", "stopped", "interrupted")
ACTIVE = ("queued", "running")
STATUS_EVERY_S = 0.5
STOP_GRACE_S = 1.5  # after SIGTERM, how long a map in progress may take before the job is killed
STORE_GRACE_S = 60.0  # ...and how long a worker holding finished maps may take to store them
UNITS = {"precompute": "maps", "train": "batches"}  # what a job's progress counts
START_TIMEOUT_S = 120.0  # a queued job whose worker never took its lock by then is interrupted


def default_root() -> Path:
    from medattn import pipeline

    return pipeline.CACHE_DIR / "jobs"


@dataclass
class JobStatus:
    """What a job is doing; `status.json` holds these fields."""

    id: str
    kind: str
    title: str
    state: str = "queued"
    pid: int | None = None
    done: int = 0
    total: int = 0
    pending: int = 0  # of `done`, finished units whose results are not stored yet (precompute: at most a batch)
    rate: float | None = None  # units per second
    eta_s: float | None = None
    message: str = ""
    unit: str = "maps"
    stage: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def maps_per_s(self) -> float | None:
        """The rate of a precompute job (maps/s); None for other kinds."""
        return self.rate if self.unit == "maps" else None

    @classmethod
    def from_json(cls, text: str) -> "JobStatus":
        """Read status.json, also as written before `rate`/`unit` (a `maps_per_s` field)."""
        values = json.loads(text)
        if "maps_per_s" in values:
            values.setdefault("rate", values.pop("maps_per_s"))
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})


def precompute_spec(dataset: str | os.PathLike, checkpoints: list[str | os.PathLike], methods: list[str],
                    image_ids: list[str] | None = None, split: str | None = "test", run_root: str | os.PathLike | None = None,
                    cache_root: str | os.PathLike | None = None, device: str = "auto", app_params: bool = False,
                    faithfulness: dict | None = None) -> dict:
    """The spec of a precompute job (arguments of `medattn.jobs.precompute.precompute`, as paths).
    `app_params`: the app's explainer settings per model (`medattn.ui.methods.precompute_params`),
    so that the pages find these maps in the cache. `faithfulness`: the fields of a
    `pipeline.FaithfulnessSettings` (every row then carries those metrics); `methods` may name
    reference maps ("reference:blank", …). Raises ValueError for a missing dataset folder or
    checkpoint file, an unknown method or metric: at start, not in the background."""
    from medattn.explain import METHODS
    from medattn.metrics.faithfulness import is_reference, reference_name
    from medattn.models.checkpoint import checkpoint_paths
    from medattn.pipeline import FaithfulnessSettings

    if not Path(dataset).is_dir():
        raise ValueError(f"dataset folder {dataset} does not exist")
    for checkpoint in checkpoints:
        missing = [str(f) for f in checkpoint_paths(checkpoint) if not f.is_file()]
        if missing:
            raise ValueError(f"checkpoint {checkpoint}: missing {', '.join(missing)}")
    unknown = [m for m in methods if m not in METHODS and not is_reference(m)]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    for method in filter(is_reference, methods):
        reference_name(method)  # an unknown reference map fails here
    if faithfulness is not None:
        faithfulness = FaithfulnessSettings.from_fields(faithfulness).fields()
    return {"kind": "precompute", "dataset": str(Path(dataset).resolve()),
            "checkpoints": _checkpoint_names(checkpoints), "methods": list(methods),
            "image_ids": None if image_ids is None else list(image_ids), "split": split,
            "run_root": None if run_root is None else str(Path(run_root).resolve()),
            "cache_root": None if cache_root is None else str(Path(cache_root).resolve()),
            "device": device, "app_params": app_params, **({"faithfulness": faithfulness} if faithfulness else {})}


def _checkpoint_names(checkpoints: list[str | os.PathLike]) -> list[str]:
    """Each checkpoint once, as NAME without suffix: a shell glob `checkpoints/demo_*` gives
    every checkpoint twice (NAME.json, NAME.safetensors), and the job's identity must not
    depend on which file was named."""
    from medattn.models.checkpoint import checkpoint_paths

    return sorted({str(checkpoint_paths(c)[1].with_suffix("").resolve()) for c in checkpoints})


def train_spec(dataset: str | os.PathLike, arch: str, head: str, out: str | os.PathLike, preset: str = "goncalves",
               epochs: int | None = None, input_size: int = 224, device: str = "auto", **options) -> dict:
    """The spec of a training job: the fields of `medattn.train.TrainConfig` (paths resolved;
    `options`: any other field, e.g. batch_size, lr, head_params). Checked here, so that a bad
    value fails at start rather than in the background. A new training never overwrites a
    checkpoint: `out` must be a free name in its folder (`medattn.models.catalog.free_name`)."""
    from medattn.models.catalog import free_name
    from medattn.train import PRESETS, TrainConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose {', '.join(sorted(PRESETS))}")
    out = free_name(Path(out).resolve().parent, Path(out).name)
    config = TrainConfig(dataset=str(Path(dataset).resolve()), arch=arch, head=head, out=str(out), preset=preset,
                         epochs=epochs, input_size=int(input_size), device=device, **options)
    from medattn.models.backbones import ARCHS
    from medattn.models.registry import HEADS

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    config.prep()  # the preprocessing fits the input size
    config.resolved()  # epochs, batch size, learning rate and input size are usable
    from medattn.data import load_dataset

    load_dataset(config.dataset)  # DatasetError naming every problem of the folder
    return {"kind": "train", "dataset": config.dataset, "out": config.out, "config": asdict(config)}


def _identity(spec: dict) -> list:
    """What makes two specs the same job: dataset × checkpoint set (precompute), dataset ×
    output checkpoint (train: one training per output at a time)."""
    if spec["kind"] == "train":
        return [spec["kind"], spec["dataset"], spec["out"]]
    return [spec["kind"], spec["dataset"], sorted(spec["checkpoints"])]


def job_id(spec: dict) -> str:
    """One id per kind × identity: e.g. `precompute-demo-3f2a9c01d4`, `train-demo-mine-08c1e2d3aa`."""
    digest = hashlib.sha1(json.dumps(_identity(spec)).encode()).hexdigest()[:10]
    name = Path(spec["dataset"]).name + (f"-{Path(spec['out']).name}" if spec["kind"] == "train" else "")
    return f"{spec['kind']}-{name}-{digest}"


class JobRunning(RuntimeError):
    """The job of this identity (dataset × checkpoint set, dataset × output) is already running,
    or a stopped training of the same output with other settings waits to be resumed."""


class JobManager:
    """Start, list, stop and resume the jobs under `root` (any number of managers, in any
    processes, may share one root)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    def folder(self, job: str) -> Path:
        """The job's folder; ValueError for an id that is not a plain name (a path would reach
        outside the jobs folder)."""
        if not job or job in (".", "..") or "/" in job or "\\" in job or "\0" in job:
            raise ValueError(f"{job!r} is not a job id (`python -m medattn.jobs list` shows them)")
        return self.root / job

    def start(self, spec: dict) -> JobStatus:
        """Start the job of `spec`; raises JobRunning (with the running job's status) when the
        job of this dataset × checkpoint set is active."""
        job = job_id(spec)
        folder = self.folder(job)
        folder.mkdir(parents=True, exist_ok=True)
        with _flocked(folder / "start.lock"):
            current = self.status(job)
            if current is not None and current.active:
                what = ("a training of this output on this dataset" if spec["kind"] == "train"
                        else "a precompute job for this dataset and these checkpoints")
                raise JobRunning(f"{what} is {current.state} ({current.done}/{current.total} {current.unit}): stop it first")
            if spec["kind"] == "train":
                self._check_output(job, spec)
            write_atomic(folder / "spec.json", lambda tmp: tmp.write_text(json.dumps(spec, indent=1)))
            (folder / "cancel").unlink(missing_ok=True)
            with open(folder / "log.txt", "a") as out:
                out.write(f"--- started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                out.flush()
                process = subprocess.Popen([sys.executable, "-m", "medattn.jobs", "run", str(folder)],
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]))
            threading.Thread(target=process.wait, daemon=True).start()  # reap it: no zombie in a long-lived app
            status = JobStatus(job, spec["kind"], _title(spec), "queued", process.pid, message="starting its process",
                               unit=UNITS[spec["kind"]])
            _write_status(folder, status)
            return status

    def _check_output(self, job: str, spec: dict) -> None:
        """One training per output checkpoint: none into an existing checkpoint (the resume of
        a finished training would train again and replace it), none while another job (another
        dataset) trains into it, and a training stopped halfway resumes from its `NAME.resume.pt` whatever the
        new spec says, so a spec with other settings (or a resume file of a run started
        elsewhere) is refused instead of mixed."""
        out = Path(spec["out"])
        from medattn.models.checkpoint import checkpoint_paths

        if any(p.exists() for p in checkpoint_paths(out)):  # e.g. `resume` of a finished training
            raise JobRunning(f"checkpoint {out.name} exists in {out.parent}: a training never overwrites one "
                             "(rename or delete it on the Models page, or choose another name)")
        for other in self.list():
            if other.kind == "train" and other.id != job and other.active and (self.spec(other.id) or {}).get("out") == spec["out"]:
                raise JobRunning(f"another training into {out.name} is {other.state} ({other.title}): stop it first")
        if out.with_name(out.name + ".resume.pt").exists() and self.spec(job) != spec:
            raise JobRunning(f"{out.name}.resume.pt keeps the finished epochs of another training of {out.name} (other "
                             "settings, or started elsewhere): resume that one, or choose another name")

    def spec(self, job: str) -> dict | None:
        """The job's spec (what it runs), None when unknown or unreadable."""
        return read_or_set_aside(self.folder(job) / "spec.json", lambda p: json.loads(p.read_text()))

    def resume(self, job: str) -> JobStatus:
        """Start a stopped, failed or interrupted job again with its spec: precompute keeps its
        finished rows, training continues after the last epoch in its resume file."""
        spec = self.spec(job)
        if spec is None:
            raise ValueError(f"job {job} has no readable spec.json in {self.folder(job)}")
        return self.start(spec)

    def status(self, job: str) -> JobStatus | None:
        """The job's status; an active job whose process is gone reads as `interrupted`."""
        folder = self.folder(job)
        status = read_or_set_aside(folder / "status.json", lambda p: JobStatus.from_json(p.read_text()))
        if status is None or not status.active or _locked_by_worker(folder):
            return status
        starting = (status.state == "queued" and _worker_pid(folder, status.pid) is not None
                    and time.time() - status.created < START_TIMEOUT_S)
        if not starting:
            status.state, status.message = "interrupted", "its process ended without finishing (resume to continue)"
        return status

    def list(self) -> list[JobStatus]:
        """Every job, newest first."""
        found = [self.status(p.parent.name) for p in self.root.glob("*/status.json")] if self.root.is_dir() else []
        return sorted((s for s in found if s is not None), key=lambda s: s.created, reverse=True)

    def stop(self, job: str, grace: float = STOP_GRACE_S, store_grace: float = STORE_GRACE_S) -> float:
        """Ask the job to stop and wait until its process is gone; seconds that took. The worker
        is killed after `grace`, or after `store_grace` while it holds finished maps whose rows
        are not stored yet (status.json's `pending`)."""
        started = time.perf_counter()
        folder = self.folder(job)
        status = self.status(job)
        if status is None or not status.active:
            return 0.0
        (folder / "cancel").touch()
        pid = _worker_pid(folder, status.pid)
        _signal_group(pid, signal.SIGTERM)
        signalled = time.monotonic()

        def waiting() -> bool:  # within the grace, or within the store grace while the worker holds rows
            elapsed = time.monotonic() - signalled
            return elapsed < grace or (elapsed < store_grace and self._holds_rows(job))

        while _running(folder, pid) and waiting():
            time.sleep(0.05)
        if _running(folder, pid):
            _signal_group(pid, signal.SIGKILL)  # a long step in progress, or a worker that never stored its rows
            killed = time.monotonic()
            while _running(folder, pid) and time.monotonic() < killed + 5:
                time.sleep(0.05)
        final = self.status(job)
        if final is not None and final.state in (*ACTIVE, "interrupted"):
            lost = f"; {final.pending} finished {final.unit} were not stored" if final.pending else ""
            final.done, final.pending = final.done - final.pending, 0  # what a resume starts from
            final.state, final.message = "stopped", f"stopped at {final.done}/{final.total} {final.unit}{lost}"
            _write_status(folder, final)
        return time.perf_counter() - started

    def _holds_rows(self, job: str) -> bool:
        """Whether the job's worker holds finished maps whose rows are not stored yet."""
        status = self.status(job)
        return status is not None and status.pending > 0

    def log_tail(self, job: str, lines: int = 12) -> str:
        path = self.folder(job) / "log.txt"
        if not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 16384))
            return "\n".join(handle.read().decode(errors="replace").splitlines()[-lines:])


def _title(spec: dict) -> str:
    if spec["kind"] == "train":
        c = spec["config"]
        epochs = f"{c['epochs']} epochs" if c.get("epochs") else "preset epochs"
        return (f"train {Path(spec['out']).name} on {Path(spec['dataset']).name}: {c['arch']} + {c['head']}, "
                f"{c['preset']}, {epochs}, {c['input_size']} px")
    names = ", ".join(Path(c).name for c in spec["checkpoints"])
    return f"{Path(spec['dataset']).name} × {names}: {', '.join(spec['methods'])}"


def _write_status(folder: Path, status: JobStatus) -> None:
    status.updated = time.time()
    text = json.dumps(asdict(status))
    write_atomic(folder / "status.json", lambda tmp: tmp.write_text(text))


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked_by_worker(folder: Path) -> bool:
    """Whether a live worker holds the job's lock."""
    try:
        handle = open(folder / "lock", "a")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _running(folder: Path, pid: int | None) -> bool:
    return _locked_by_worker(folder) or pid_alive(pid)


def _lock_holder(folder: Path) -> int | None:
    """The pid holding the job's lock by the kernel's own record (/proc/locks: "FLOCK ... pid
    major:minor:inode"), which no file in the job folder can forge; None when nobody holds it."""
    try:
        stat = os.stat(folder / "lock")
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    key = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:  # waiters ("->") shift the fields
            return int(fields[4])
    return None


def _worker_pid(folder: Path, claimed: int | None) -> int | None:
    """This job's worker, proved: the holder of its lock, or (before the worker takes the lock)
    the `claimed` process if its command line runs this very job folder. None otherwise: a
    forged or stale status.json names no process to signal."""
    holder = _lock_holder(folder)
    if holder is not None:
        return holder
    try:
        command = Path(f"/proc/{claimed}/cmdline").read_bytes().split(b"\0") if claimed else []
    except OSError:
        return None
    return claimed if command[1:5] == [b"-m", b"medattn.jobs", b"run", str(folder).encode()] else None


def _signal_group(pid: int | None, sig: signal.Signals) -> None:
    """Signal `pid`'s process group if `pid` leads it (the worker starts its own session), so
    its children get it too; nothing otherwise."""
    if not pid:
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
