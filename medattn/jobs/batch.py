"""The unit of work of precompute, whichever engine runs it: a `Job` is one map to compute and
score; `batches` cuts a run's jobs into batches of one checkpoint; `score_batch` computes (or
reads from the cache) and scores one batch. Locally precompute calls it in a loop; under Ray
each checkpoint's actor calls it (`medattn.jobs.ray_engine`), so both write the same rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from medattn.data.dataset import Dataset
from medattn.errors import MedattnError
from medattn.inference import LoadedModel
from medattn.jobs.interrupt import Interrupted, interruptible
from medattn.metrics.protocols import DEFAULT_PROTOCOL, get_protocol
from medattn.metrics.faithfulness import is_reference
from medattn.pipeline import (
    PDA_METHODS, SCORING, FaithfulnessSettings, MapResult, box_prior, compute_map, faithfulness_scores, ground_truth,
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
) -> tuple[list[dict], list[str]]:
    """Maps (from the cache when present) and score rows for a batch of one checkpoint's jobs.

    The unit of work of both engines: run in a loop locally, and inside one actor per checkpoint
    under Ray. Returns the rows and one warning per job that failed (an unreadable image, a
    parameter the image does not allow, any exception of one model × method), so that one bad
    input or map never stops a long run; `tick` is
    called after every job, and `stop` before each: when it returns True, or `Interrupted` is
    raised during a map (`medattn.jobs.interrupt`: a job's SIGTERM), the rows so far are
    returned (a Stop in the app). Each image is read once per batch, and the PDA reference
    images once. Reference maps ("reference:…") are made, not explained. With `faithfulness`,
    each row also carries those metrics (`pipeline.faithfulness_scores`). `precision` is the
    explainers' (each row records the one its map was computed in).
    """
    rows: list[dict] = []
    skipped: list[str] = []
    image_id, image, reference = None, None, None
    try:
        for job in jobs:
            with interruptible():  # a Stop from here on ends this map at once, never the storing that follows
                if stop is not None and stop():  # asked once armed: a Stop that came just before is seen here
                    break
                reference_map = is_reference(job.method)
                method_args = {} if reference_map else get_protocol(protocol).params(job.method, (params or {}).get(job.method))
                try:
                    if job.image_id != image_id:
                        image_id, image = job.image_id, dataset.read_image(job.image_id)
                    if job.method in PDA_METHODS and method_args.get("reference") is None:
                        reference = reference_images(loaded, dataset) if reference is None else reference
                        method_args = {**method_args, "reference": reference}
                    if reference_map:
                        result = reference_result(loaded, dataset, job.image_id, job.method, job.target, image)
                    else:
                        result = compute_map(loaded, dataset, job.image_id, job.method, job.target, method_args, cache,
                                             image=image, precision=precision)
                    row = _row(loaded, dataset, job, method_args, result, image.shape, protocol)
                    if faithfulness is not None:
                        row.update(faithfulness_scores(loaded, image, result.raw, job.method, job.target, faithfulness,
                                                       method_args, lambda c: box_prior(dataset, dataset.classes[c], loaded)))
                except Exception as exc:  # noqa: BLE001 - one model × method × image fails alone, named; the run goes on
                    text = str(exc).strip().splitlines()
                    kind = "" if isinstance(exc, (ValueError, MedattnError)) else f"{type(exc).__name__}: "
                    skipped.append(f"{job.method} on {loaded.name}, image {job.image_id}: {kind}{text[0] if text else ''}")
                    row = None
            if row is not None:
                rows.append(row)
            if tick is not None:
                tick()
    except Interrupted:  # Stop during a map: that map is dropped, the finished ones returned
        pass
    return rows, skipped


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
