"""Precompute under Ray (`python -m medattn.jobs.precompute --engine ray`): one actor per checkpoint.

Each actor loads its checkpoint and the dataset once, from the same paths as the driver (a
shared file system on a cluster), and runs `precompute.score_batch` over batches of jobs, writing
heatmaps into the same on-disk cache. The driver keeps at most two batches in flight per actor
and is the only writer of the score table: it appends every batch as it finishes, so an
interrupt loses only the batches in flight and a rerun resumes. The driver claims each batch's
work before sending it (`precompute._SharedWork`), like the local engine. Workers run under
the thread policy (`medattn.threads.worker_env`, one thread per CPU they were given). An actor is released as soon as
its checkpoint is done, so more checkpoints than GPUs run one after another.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

from medattn.data import load_dataset
from medattn.data.dataset import Dataset
from medattn.errors import CheckpointError, DatasetError
from medattn.inference import LoadedModel, load_model
from medattn.jobs.batch import Job, score_batch
from medattn.pipeline import FaithfulnessSettings
from medattn.store import HeatmapCache, ScoreTable
from medattn.threads import worker_env

log = logging.getLogger(__name__)
RAY_VERSION = "2.60.0"  # as pinned in requirements.txt
IN_FLIGHT = 2  # batches queued per actor: one running, one ready, so a GPU never waits on the driver
OBJECT_STORE_BYTES = 100 * 1024**2  # only jobs and score rows go through it, never maps
WORKER_ENV = worker_env(1)  # a CPU actor is given num_cpus=1


def require_ray() -> ModuleType:
    """The ray module, or an ImportError that says what to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"precompute --engine ray needs Ray: pip install ray=={RAY_VERSION}") from exc
    return ray


class Scorer:
    """Actor body: one checkpoint and the dataset, loaded once; scores batches of its jobs."""

    def __init__(self, checkpoint: str, checkpoint_hash: str, dataset_root: str, dataset_hash: str,
                 cache_root: str, device: str, params: dict[str, dict] | None, protocol: str = "medattn",
                 precision: str = "float32", faithfulness: FaithfulnessSettings | None = None):
        self.dataset = load_dataset(dataset_root)
        if self.dataset.hash != dataset_hash:
            raise DatasetError(dataset_root, [f"manifests on this node hash to {self.dataset.hash}, the driver's to {dataset_hash}"])
        self.loaded = load_model(checkpoint, device, self.dataset)
        if self.loaded.hash != checkpoint_hash:
            raise CheckpointError(f"checkpoint {checkpoint} on this node has hash {self.loaded.hash}, the driver's {checkpoint_hash}")
        self.cache = HeatmapCache(cache_root)
        self.params = params
        self.protocol = protocol
        self.precision = precision
        self.faithfulness = faithfulness

    def score(self, jobs: list[Job]) -> tuple[list[dict], list[str]]:
        return score_batch(self.loaded, self.dataset, jobs, self.cache, self.params, protocol=self.protocol,
                           precision=self.precision, faithfulness=self.faithfulness)


def start(ray: ModuleType, address: str | None) -> bool:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a quiet local Ray; whether
    Ray was started here (and so is to be shut down here)."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **quiet)
    return True


def run_batches(
    models: Mapping[str, LoadedModel],
    dataset: Dataset,
    batches: Sequence[list[Job]],
    cache: HeatmapCache,
    params: Mapping[str, dict[str, dict]],
    table: ScoreTable,
    advance: Callable[[int], None],
    address: str | None = None,
    device: str = "auto",
    protocol: str = "medattn",
    precision: str = "float32",
    take: Callable[[list[Job]], list[Job]] = list,
    release: Callable[[list[Job]], None] = lambda jobs: None,
    stop: Callable[[], bool] = lambda: False,
    faithfulness: FaithfulnessSettings | None = None,
) -> None:
    """Score `batches` (each of one checkpoint, named by `Job.checkpoint`) on Ray actors, appending
    each finished batch's rows to `table` and calling `advance(jobs in it)`. `params` maps each
    checkpoint name to its per-method parameters. `take(batch)` returns the jobs this run may
    compute (the rest belong to other runs), `release(jobs)` follows their storing, and when
    `stop()` returns True no more batches are sent and the driver returns after the next result."""
    ray = require_ray()
    started = start(ray, address)
    actors: dict[str, Any] = {}
    try:
        gpus = device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        actor_class = ray.remote(Scorer).options(**resources, runtime_env={"env_vars": WORKER_ENV})
        queues: dict[str, deque[list[Job]]] = {}
        for batch in batches:
            queues.setdefault(batch[0].checkpoint, deque()).append(batch)
        for name in queues:
            loaded = models[name]
            actors[name] = actor_class.remote(str(loaded.path.resolve()), loaded.hash, str(dataset.root.resolve()),
                                              dataset.hash, str(cache.root.resolve()), device, params[name], protocol,
                                              precision, faithfulness)
        running: dict[Any, tuple[str, list[Job]]] = {}  # result ref → (checkpoint, its batch)

        def feed(name: str) -> None:
            while queues[name] and not stop() and sum(n == name for n, _ in running.values()) < IN_FLIGHT:
                batch = take(queues[name].popleft())
                if batch:
                    running[actors[name].score.remote(batch)] = (name, batch)

        for name in queues:
            feed(name)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            name, batch = running.pop(ref)
            rows, skipped = ray.get(ref)
            for message in skipped:
                log.warning(message)
            table.append(rows)
            release(batch)
            advance(len(batch))
            if stop():
                break
            feed(name)
            if not any(n == name for n, _ in running.values()) and name in actors:
                ray.kill(actors.pop(name))  # its checkpoint is done: free the GPU for the next one
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started:
            ray.shutdown()
