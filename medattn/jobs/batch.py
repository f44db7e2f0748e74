"""The unit of work of precompute, whichever engine runs it: a `Job` is one map to compute and
score; `batches` cuts a run's jobs into batches of one checkpoint; `score_batch` computes (or
reads from the cache) and scores one batch. Locally precompute calls it in a loop; under Ray
each checkpoint's actor calls it (`medattn.jobs.ray_engine`), so both write the same rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from medattn.data.dataset import Dataset
from medattn.errors import MedattnError
from medattn.explain import get_explainer
from medattn.inference import LoadedModel
from medattn.jobs.interrupt import Interrupted, interruptible
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.metrics.faithfulness import is_reference
from medattn.pipeline import (
    PDA_METHODS, SCORING, FaithfulnessSettings, MapResult, box_prior, compute_maps, faithfulness_scores, ground_truth,
    reference_images, reference_result, resolved_params, score,
)
from medattn.store import HeatmapCache, canonical_params

BATCH_SIZE = 16  # jobs per batch, the unit stored at once: a kill loses at most one batch


@dataclass(frozen=True)
class Job:
    """One map to compute and score; plain values, so batches travel to Ray actors as they are."""

    checkpoint: str
    image_id: str
    target: int
    method: str
    probability: float
    label: int
    predicted: int  # the model's decision for the target class (`medattn.metrics.decision`)


def batches(jobs: Sequence[Job], size: int = BATCH_SIZE) -> list[list[Job]]:
    """Consecutive jobs in batches of about `size`: one checkpoint per batch (it goes to that
    model), and one checkpoint × image never split (its maps share the read image)."""
    out: list[list[Job]] = []
    for job in jobs:
        last = out[-1] if out else None
        same_image = last is not None and (last[-1].checkpoint, last[-1].image_id) == (job.checkpoint, job.image_id)
        if last is not None and last[-1].checkpoint == job.checkpoint and (same_image or len(last) < size):
            last.append(job)
        else:
            out.append([job])
    return out


def score_batch(
    loaded: LoadedModel,
    dataset: Dataset,
    jobs: Sequence[Job],
    cache: HeatmapCache,
    params: dict[str, dict] | None = None,
    tick: Callable[[], None] | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    stop: Callable[[], bool] | None = None,
    precision: str = "float32",
    faithfulness: FaithfulnessSettings | None = None,
    share: bool = True,
) -> tuple[list[dict], list[str]]:
    """Maps (from the cache when present) and score rows for a batch of one checkpoint's jobs.

    The unit of work of both engines: run in a loop locally, and inside one actor per checkpoint
    under Ray. Returns the rows and one warning per job that failed (an unreadable image, a
    parameter the image does not allow, any exception of one model × method), so that one bad
    input or map never stops a long run. With `share` (the default) the jobs of one method
    whose maps do not depend on their batch (`Explainer.batch_invariant`: saliency, integrated
    gradients, guided backprop, Grad-CAM, guided Grad-CAM, WILDCAT, attention) are explained
    together (`pipeline.compute_maps`: the batch's images and target classes in one call, the
    model run once per distinct image); `share=False` explains each job alone (the A/B of
    `python -m medattn.bench --precompute-ab`). Same maps, cache keys and rows either way.
    `tick` is called after every job, and `stop` before each group of jobs explained together:
    when it returns True, or `Interrupted` is raised during a group (`medattn.jobs.interrupt`: a
    job's SIGTERM), the rows so far are returned (a Stop in the app). Each image is read once per
    batch, and the PDA reference images once. Reference maps ("reference:…") are made, not
    explained. With `faithfulness`, each row also carries those metrics
    (`pipeline.faithfulness_scores`). `precision` is the explainers' (each row records the one
    its map was computed in).
    """
    rows: list[dict] = []
    skipped: list[str] = []
    work = _Work(loaded, dataset, cache, params, protocol, precision, faithfulness, jobs)
    try:
        for group in _groups(jobs, share):
            with interruptible():  # a Stop from here on ends this group at once, never the storing that follows
                if stop is not None and stop():  # asked once armed: a Stop that came just before is seen here
                    break
                done = work.score(group)
            for job, row, failure in done:
                if row is not None:
                    rows.append(row)
                if failure is not None:
                    skipped.append(failure)
                work.finished(job)
                if tick is not None:
                    tick()
    except Interrupted:  # Stop during a group: its maps are dropped, the finished ones returned
        pass
    return rows, skipped


def _groups(jobs: Sequence[Job], share: bool) -> list[list[Job]]:
    """The jobs in groups explained together: with `share`, one per batch-invariant method (in
    order of first appearance), every other job alone; without, every job alone."""
    out: list[list[Job]] = []
    by_method: dict[str, list[Job]] = {}
    for job in jobs:
        if share and not is_reference(job.method) and get_explainer(job.method).batch_invariant:
            if job.method not in by_method:
                by_method[job.method] = []
                out.append(by_method[job.method])
            by_method[job.method].append(job)
        else:
            out.append([job])
    return out


class _Work:
    """What the jobs of one batch share: the images read (dropped after their last job), the
    PDA reference images, and the settings; `score` computes and scores a group of jobs."""

    def __init__(self, loaded: LoadedModel, dataset: Dataset, cache: HeatmapCache, params: dict[str, dict] | None,
                 protocol: str, precision: str, faithfulness: FaithfulnessSettings | None, jobs: Sequence[Job]):
        self.loaded, self.dataset, self.cache, self.params = loaded, dataset, cache, params or {}
        self.protocol, self.precision, self.faithfulness = protocol, precision, faithfulness
        self.images: dict[str, np.ndarray] = {}
        self.left = Counter(job.image_id for job in jobs)  # jobs still to come per image
        self.reference = None

    def finished(self, job: Job) -> None:
        self.left[job.image_id] -= 1
        if self.left[job.image_id] <= 0:
            self.images.pop(job.image_id, None)

    def score(self, group: Sequence[Job]) -> list[tuple[Job, dict | None, str | None]]:
        """(job, row or None, failure or None) for each job of a group of one method, in order.
        A failure of the group's shared call is retried job by job, so it costs the failing job only."""
        method = group[0].method
        out: dict[int, tuple[Job, dict | None, str | None]] = {}
        try:
            args = self.method_args(method)
        except Exception as exc:  # noqa: BLE001 - e.g. a parameter this method does not take
            return [(job, None, self.failure(job, exc)) for job in group]
        ready = []
        for i, job in enumerate(group):
            try:
                if job.image_id not in self.images:
                    self.images[job.image_id] = self.dataset.read_image(job.image_id)
                ready.append(i)
            except Exception as exc:  # noqa: BLE001 - one unreadable image costs its jobs only
                out[i] = (job, None, self.failure(job, exc))
        results: dict[int, MapResult] = {}
        try:
            results = dict(zip(ready, self.maps([group[i] for i in ready], method, args))) if ready else {}
        except Exception as exc:  # noqa: BLE001 - a group is retried job by job below, each failure named
            if len(ready) == 1:
                out[ready[0]], ready = (group[ready[0]], None, self.failure(group[ready[0]], exc)), []
        for i in ready:
            job = group[i]
            try:
                result = results[i] if i in results else self.maps([job], method, args)[0]
                out[i] = (job, self.row(job, args, result), None)
            except Exception as exc:  # noqa: BLE001 - one model × method × image fails alone, named; the run goes on
                out[i] = (job, None, self.failure(job, exc))
        return [out[i] for i in range(len(group))]

    def method_args(self, method: str) -> dict:
        if is_reference(method):
            return {}
        args = get_protocol(self.protocol).params(method, self.params.get(method))
        if method in PDA_METHODS and args.get("reference") is None:
            if self.reference is None:
                self.reference = reference_images(self.loaded, self.dataset)
            args = {**args, "reference": self.reference}
        return args

    def maps(self, jobs: Sequence[Job], method: str, args: dict) -> list[MapResult]:
        if is_reference(method):
            return [reference_result(self.loaded, self.dataset, job.image_id, method, job.target,
                                     self.images[job.image_id]) for job in jobs]
        return compute_maps(self.loaded, self.dataset, [(job.image_id, job.target) for job in jobs], method, args,
                            self.cache, images={job.image_id: self.images[job.image_id] for job in jobs},
                            precision=self.precision)

    def row(self, job: Job, args: dict, result: MapResult) -> dict:
        image = self.images[job.image_id]
        row = _row(self.loaded, self.dataset, job, args, result, image.shape, self.protocol)
        if self.faithfulness is not None:
            row.update(faithfulness_scores(self.loaded, image, result.raw, job.method, job.target, self.faithfulness,
                                           args, lambda c: box_prior(self.dataset, self.dataset.classes[c], self.loaded)))
        return row

    def failure(self, job: Job, exc: Exception) -> str:
        text = str(exc).strip().splitlines()
        kind = "" if isinstance(exc, (ValueError, MedattnError)) else f"{type(exc).__name__}: "
        return f"{job.method} on {self.loaded.name}, image {job.image_id}: {kind}{text[0] if text else ''}"


def _row(loaded: LoadedModel, dataset: Dataset, job: Job, method_args: dict, result: MapResult,
         shape: tuple[int, ...], protocol: str) -> dict:
    label = None if get_protocol(protocol).targets == "predicted" else dataset.classes[job.target]
    truth = ground_truth(dataset, job.image_id, label)
    boxes = dataset.boxes_for(job.image_id, label)
    predicted = bool(job.predicted)
    return {
        "image_id": job.image_id, "checkpoint": loaded.name, "checkpoint_hash": loaded.hash,
        "model": loaded.label, "method": job.method, "target": str(job.target),
        "target_class": dataset.classes[job.target], "label": job.label,
        "probability": job.probability, "predicted": int(predicted),
        "correct": int(predicted == bool(job.label)), "n_boxes": len(boxes),
        "split": str(dataset.images.at[job.image_id, "split"]), "seconds": result.seconds,
        "cached": result.cached,
        "params": "{}" if is_reference(job.method) else canonical_params(
            {k: v for k, v in resolved_params(job.method, method_args).items() if k != "reference"}),
        "scoring": SCORING, "protocol": protocol, "precision": result.precision, **score(result.raw, job.method, truth, shape, loaded.preprocessing, protocol),
    }
