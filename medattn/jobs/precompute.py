"""Batch heatmaps and scores over a dataset split: `python -m medattn.jobs.precompute --help`.

Writes, under the output folder (default `.cache/runs/<dataset>-<hash>`):
- `predictions/<checkpoint>.parquet`: class probabilities per image;
- `scores/part-*.parquet`: one row per image × checkpoint × method × target class with the
  prediction, the label, every localization metric (`pipeline.score`), `degenerate` (a flat
  map, scored at chance) and the timing.
`--protocol` scores under a published protocol (`medattn.metrics.protocols`: medattn,
chexlocalize, arun2021) into its own run folder (`<dataset>-<hash>-<protocol>`); arun2021 maps
the predicted class only and scores it against all the image's boxes.
Finished rows are stored after every batch and skipped on a rerun, so an interrupted run
resumes where it stopped and a kill loses at most the batch in progress. Runs over the same
work share it: each batch's checkpoint × image units are claimed (`store.Claims`, under the
run folder's `claims/`) and another run skips them and comes back for what is left. Targets
per image are its positive classes plus the classes the model predicts by its decision rule
(`medattn.metrics.decision`: argmax for multiclass, the stated thresholds otherwise; so false
positives get maps too); an image with neither is explained for its top-scoring class. Each row's
`predicted` is that rule's decision, the one the metrics use.

The jobs are cut into batches that `score_batch` computes and scores: in this process
(`--engine local`), or on one Ray actor per checkpoint (`--engine ray`, `medattn.jobs.ray_engine`),
with the same cache and rows.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from medattn.data import load_dataset
from medattn.data.dataset import Dataset
from medattn.data.skips import Skips
from medattn.errors import MedattnError
from medattn.explain import unavailable
from medattn.explain.base import PRECISIONS
from medattn.inference import LoadedModel, cached_predictions, load_model
from medattn.jobs.batch import Job, batches, score_batch
from medattn.jobs.interrupt import interruptible
from medattn.jobs.options import add_metric_options
from medattn.metrics.decision import DecisionRule, decision_rule
from medattn.metrics.protocols import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol
from medattn.metrics.faithfulness import REFERENCE_MAPS, is_reference, reference_name
from medattn.pipeline import (
    CACHE_DIR, DEFAULT_FAITHFULNESS, FaithfulnessSettings, current_rows, default_cache,
)
from medattn.store import Claims, HeatmapCache, Run, ScoreTable

log = logging.getLogger("medattn.jobs.precompute")
FAST_METHODS = ("saliency", "integrated_gradients", "gradcam", "wildcat", "attention")
ENGINES = ("local", "ray")
WAIT_S = 0.5  # how often a run waiting on work another run claimed looks again
Params = Mapping[str, dict] | Callable[[LoadedModel], Mapping[str, dict]]  # per method, or per model


def targets_for(labels: np.ndarray, probabilities: np.ndarray, protocol: str = DEFAULT_PROTOCOL,
                rule: DecisionRule | None = None) -> list[int]:
    """Positive classes ∪ predicted classes (by `rule`, the model's decision rule; default
    p >= 0.5 per class); the top class when both are empty. Under a protocol that maps the
    predicted class only (arun2021): the top class."""
    if get_protocol(protocol).targets == "predicted":
        return [int(np.argmax(probabilities))]
    rule = rule or decision_rule("multilabel", [str(c) for c in range(len(probabilities))])
    predicted = rule.decide(np.asarray(probabilities, float)[None])[0]
    chosen = sorted(set(np.flatnonzero(labels > 0)) | set(np.flatnonzero(predicted)))
    return [int(c) for c in chosen] or [int(np.argmax(probabilities))]


def precompute(
    dataset: Dataset,
    checkpoints: Sequence[str | Path],
    methods: Sequence[str],
    split: str | None = "test",
    image_ids: Sequence[str] | None = None,
    run: Run | None = None,
    cache: HeatmapCache | None = None,
    device: str = "auto",
    params: Params | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    skips: Skips | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    stop: Callable[[], bool] | None = None,
    precision: str = "float32",
    faithfulness: FaithfulnessSettings | None = None,
    stored: Callable[[int], None] | None = None,
    share: bool = True,
) -> pd.DataFrame:
    """Compute every missing row and return the full score table of the run.

    `params` are per-method explainer parameters, or a function of the loaded model giving them
    (the app's PDA window follows each model's input size). `progress(done, total)` is called
    after every map, including maps another run computed meanwhile; both count the whole plan,
    so a resumed run starts at the maps stored before (67 of 336, not 0 of 269). `stored(done)`
    is called whenever rows reach the table (once a batch), with progress's count at that
    moment: maps that `progress` counted after it are finished but held in memory until their
    batch is stored (a job's Stop waits for them, `medattn.jobs.manager`). `stop()` is asked
    between maps; when it returns True the finished rows are stored and the table returned
    early. Loading and each map are `interruptible()` (`medattn.jobs.interrupt`: a job's
    SIGTERM ends them at once); storing never is.
    An image that cannot be read is skipped and named in `skips` (a fresh report when None;
    `Skips(strict=True)` fails on the first one instead); the rest of the run goes on.
    `protocol` (`medattn.metrics.protocols`) sets the explainer parameters, the targets and the
    scoring; its rows go to their own run folder unless `run` is given.
    `engine="ray"` runs the same batches on Ray actors (`medattn.jobs.ray_engine`), joining the
    cluster at `ray_address` or starting Ray on this machine. `precision` is the explainers'
    ("float32", or "bfloat16" where `Explainer.used_precision` allows it): bfloat16 rows go to
    their own run folder unless `run` is given, and every row records its map's precision.
    `methods` may name reference maps ("reference:blank", … `metrics.faithfulness.REFERENCE_MAPS`),
    scored like methods. With `faithfulness`, every row carries those metrics, and rows
    computed without them (or under other settings) are computed again from the cached maps.
    `share` (default) explains a batch's images and target classes of one method together where
    the method allows (`score_batch`, `pipeline.compute_maps`: one forward pass per distinct
    image); `share=False` (local engine) explains each map alone, for the A/B of
    `python -m medattn.bench --precompute-ab`: the same maps and rows, slower.
    One model × method × image that fails is skipped and named, never the run: the returned
    table's `attrs` hold `not_applicable` (one line per model × method that does not apply,
    with the method's reason) and `failed` (one line per map that failed), which the command
    line prints after its summary.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "ray":
        from medattn.jobs.ray_engine import require_ray

        require_ray()  # fail before the predictions, not after
    get_protocol(protocol)  # an unknown name fails before any work
    run = run or Run.for_dataset(dataset, CACHE_DIR / "runs", protocol=protocol, precision=precision)
    cache = cache or default_cache()
    ids = list(image_ids) if image_ids is not None else list(dataset.split(split).index if split else dataset.images.index)
    unknown = [i for i in ids if i not in dataset.images.index]
    if unknown:
        raise SystemExit(f"image ids not in {dataset.root}/images.csv: {', '.join(unknown[:10])}")
    table = run.scores
    skips = skips if skips is not None else Skips("images")
    with interruptible():  # a Stop while loading ends it at once; what it stores (predictions) is written atomically
        jobs, already, models, not_applicable = _plan(dataset, checkpoints, methods, ids, run, device, skips, protocol,
                                                      faithfulness)
    hashes = {name: loaded.hash for name, loaded in models.items()}
    model_params = {name: dict(params(loaded) if callable(params) else params or {}) for name, loaded in models.items()}
    failed: list[str] = []
    total = already + len(jobs)
    bar = tqdm(total=total, initial=already, desc="heatmaps", file=sys.stderr, disable=progress is not None)
    finished = already
    if progress is not None and already:
        progress(finished, total)

    def advance(count: int = 1) -> None:
        nonlocal finished
        finished += count
        bar.update(count)
        if progress is not None:
            progress(finished, total)

    def settle() -> None:  # the maps counted so far are in the table (or skipped)
        if stored is not None:
            stored(finished)

    def advance_stored(count: int) -> None:  # maps whose rows are in the table already: Ray's batches, others' work
        advance(count)
        settle()

    settle()

    stopped = stop or (lambda: False)
    shared = _SharedWork(run.claims)
    todo = jobs
    while todo and not stopped():
        if engine == "ray":
            from medattn.jobs.ray_engine import run_batches

            run_batches(models, dataset, batches(todo), cache, model_params, table, advance_stored, address=ray_address,
                        device=device, take=shared.take, release=shared.release, stop=stopped, protocol=protocol,
                        precision=precision, faithfulness=faithfulness)
        else:
            for batch in batches(todo):
                if stopped():
                    break
                mine = shared.take(batch)
                if not mine:
                    continue
                rows, skipped = score_batch(models[batch[0].checkpoint], dataset, mine, cache,
                                            model_params[batch[0].checkpoint], tick=advance, protocol=protocol,
                                            stop=stopped, precision=precision, faithfulness=faithfulness,
                                            share=share)
                for message in skipped:
                    log.warning(message)
                failed += skipped
                table.append(rows)  # every batch, so that a kill loses at most this one
                settle()
                shared.release(mine)
        todo = shared.wait_for_others(table, hashes, advance_stored, stopped, faithfulness)
    bar.close()
    if not stopped():
        table.compact()  # a finished run leaves one part: the table the README describes
    frame = table.read()
    # what this run did not map, and why: one line per model × method that does not apply, one
    # per map that failed (the local engine's; Ray's actors log theirs)
    frame.attrs.update(not_applicable=not_applicable, failed=failed)
    return frame


def _plan(dataset: Dataset, checkpoints: Sequence[str | Path], methods: Sequence[str], ids: list[str], run: Run,
          device: str, skips: Skips, protocol: str, faithfulness: FaithfulnessSettings | None,
          ) -> tuple[list[Job], int, dict[str, LoadedModel], list[str]]:
    """Load the models, predict the images (kept in the run's prediction store) and list the
    maps to compute: (jobs, maps of the plan stored before, models by name, one line per
    model × method that does not apply)."""
    models = {loaded.name: loaded for loaded in (load_model(path, device, dataset) for path in checkpoints)}
    hashes = {name: loaded.hash for name, loaded in models.items()}
    done = run.scores.done_keys(_complete(current_rows(run.scores.read(), hashes), faithfulness))
    for loaded in models.values():
        loaded.check_classes(dataset)
    jobs, already = [], 0  # `already`: maps of this run's plan stored before (a resume counts them done)
    not_applicable: list[str] = []
    for loaded in models.values():
        usable = []
        for method in methods:  # an unknown name fails here, before any work
            reason = None if is_reference(method) and reference_name(method) else unavailable(loaded.model, method)
            if reason is None:
                usable.append(method)
            else:  # e.g. wildcat maps asked of a linear model: said once, not once per image
                log.warning("skipping %s on %s: %s", method, loaded.name, reason)
                not_applicable.append(f"{method} on {loaded.name}: {reason}")
        probabilities = cached_predictions(loaded, dataset, ids, run.prediction_store, skips)
        rule = loaded.decision(dataset.task)
        for image_id in ids:
            labels = dataset.labels(image_id)
            probs = probabilities.loc[image_id].to_numpy(dtype=float)
            if np.isnan(probs).any():  # unreadable: named in skips
                continue
            predicted = rule.decide(probs[None])[0]
            for target in targets_for(labels, probs, protocol=protocol, rule=rule):
                for method in usable:
                    if (image_id, loaded.name, method, str(target)) in done:
                        already += 1
                    else:
                        jobs.append(Job(loaded.name, image_id, target, method, float(probs[target]), int(labels[target]),
                                        int(predicted[target])))
    return jobs, already, models, not_applicable


def _complete(frame: pd.DataFrame, faithfulness: FaithfulnessSettings | None) -> pd.DataFrame:
    """The rows that need no more work: all of them, or with `faithfulness` those that carry
    its metrics under its settings (`faithfulness` column = its key)."""
    if faithfulness is None or frame.empty:
        return frame
    if "faithfulness" not in frame:  # a table scored before any --metrics run
        return frame.iloc[0:0]
    return frame[frame["faithfulness"] == faithfulness.key()]


def _key(job: Job) -> tuple[str, str, str, str]:
    return job.image_id, job.checkpoint, job.method, str(job.target)


class _SharedWork:
    """This run's claims on checkpoint × image units (`store.Claims`), and the jobs it left to
    other runs holding them: waited for, and taken over when their holder dies or releases
    them without storing the rows."""

    def __init__(self, claims: Claims):
        self.claims = claims
        self.deferred: list[Job] = []

    @staticmethod
    def unit(job: Job) -> str:
        return f"{job.checkpoint}|{job.image_id}"

    def take(self, batch: Sequence[Job]) -> list[Job]:
        """The jobs of `batch` whose units this run now holds; the others are deferred."""
        held = {unit: self.claims.acquire(unit) for unit in dict.fromkeys(map(self.unit, batch))}
        self.deferred += [job for job in batch if not held[self.unit(job)]]
        return [job for job in batch if held[self.unit(job)]]

    def release(self, jobs: Sequence[Job]) -> None:
        for unit in dict.fromkeys(map(self.unit, jobs)):
            self.claims.release(unit)

    def wait_for_others(self, table: ScoreTable, hashes: Mapping[str, str], advance: Callable[[int], None],
                        stop: Callable[[], bool], faithfulness: FaithfulnessSettings | None = None) -> list[Job]:
        """Block until some deferred unit is no longer held elsewhere; return the deferred jobs
        whose rows are still missing then (counting the others as done)."""
        if not self.deferred:
            return []
        units = list(dict.fromkeys(map(self.unit, self.deferred)))

        def all_held() -> bool:
            return all(self.claims.held_elsewhere(unit) for unit in units)

        if all_held():
            log.info("waiting for %d maps that another run is computing", len(self.deferred))
        while not stop() and all_held():
            time.sleep(WAIT_S)
        done = table.done_keys(_complete(current_rows(table.read(), hashes), faithfulness))
        left = [job for job in self.deferred if _key(job) not in done]
        if len(left) < len(self.deferred):
            advance(len(self.deferred) - len(left))
        self.deferred = []
        return left


def metric_choices(args: argparse.Namespace) -> tuple[list[str], FaithfulnessSettings | None]:
    """The methods with the reference maps asked for, and the faithfulness settings (None
    without --metrics), from `jobs.options.add_metric_options`' arguments (unset ones take
    `FaithfulnessSettings`' defaults). ValueError names an unknown metric or reference map."""
    faithfulness = None
    if args.metrics is not None:
        given = {"steps": args.metric_steps, "percentages": args.road_percentages and tuple(args.road_percentages),
                 "samples": args.metric_samples}
        faithfulness = FaithfulnessSettings(tuple(args.metrics or DEFAULT_FAITHFULNESS),
                                            **{k: v for k, v in given.items() if v is not None})
    kinds = REFERENCE_MAPS if args.references is None and faithfulness is not None else (args.references or [])
    return [*args.methods, *(reference_name(k) for k in kinds if k != "none")], faithfulness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.jobs.precompute", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint paths (NAME, NAME.json or NAME.safetensors)")
    parser.add_argument("--methods", nargs="+", default=list(FAST_METHODS))
    parser.add_argument("--split", default="test", help="train, val, test or all")
    parser.add_argument("--images", nargs="*", help="only these image ids")
    parser.add_argument("--out", type=Path, help="run folder (default .cache/runs/<dataset>-<hash>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: this process; ray: one Ray actor (GPU when there is one) per checkpoint")
    parser.add_argument("--ray-address", help="Ray cluster to join (default: start Ray on this machine)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the first unreadable image instead of skipping it and naming it in the summary")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=DEFAULT_PROTOCOL,
                        help="scoring protocol: medattn (default), chexlocalize (Saporta et al. 2022) or arun2021 "
                             "(Arun et al. 2021); see medattn/metrics/protocols.py")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="float32",
                        help="float32 (default: the same maps on every CPU) or bfloat16 (faster on CPUs with native "
                             "bfloat16 for integrated gradients, SmoothGrad-IG, occlusion and PDA on ResNet/DenseNet; "
                             "maps differ slightly, stored in their own run folder)")
    parser.add_argument("--app-params", action="store_true",
                        help="the app's explainer settings (PDA with a window of an eighth of the input side), "
                             "as `python -m medattn.jobs start --app-params`")
    add_metric_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        methods, faithfulness = metric_choices(args)
    except ValueError as exc:
        parser.error(str(exc))
    dataset = load_dataset(args.dataset)
    run = Run(args.out) if args.out else Run.for_dataset(dataset, CACHE_DIR / "runs", protocol=args.protocol,
                                                         precision=args.precision)
    split = None if args.split == "all" else args.split
    skips = Skips("images", strict=args.strict)
    try:
        params = None
        if args.app_params:
            from medattn.ui.methods import precompute_params as params
        frame = precompute(dataset, args.checkpoints, methods, split, args.images, run, device=args.device,
                           params=params, engine=args.engine, ray_address=args.ray_address, skips=skips,
                           protocol=args.protocol, precision=args.precision, faithfulness=faithfulness)
    except MedattnError as exc:  # --strict: the first unreadable image, named
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scored = frame[frame["auprc"].notna()] if "auprc" in frame else frame.iloc[0:0]  # no rows: every image skipped
    summary = scored.groupby(["checkpoint", "method"])[["auprc", "hit", "miou", "degenerate"]].mean() if len(scored) else scored
    print(summary.round(3).to_string() if len(summary) else "no rows with ground truth")
    if faithfulness is not None:
        chosen = _complete(frame, faithfulness)
        means = chosen.groupby(["checkpoint", "method"])[list(faithfulness.metrics)].mean()
        print(means.round(3).to_string() if len(means) else "no rows with faithfulness metrics")
    print(f"{len(frame)} rows in {run.root / 'scores'}")
    for line in frame.attrs.get("not_applicable", []):
        print(f"not applicable: {line}")
    failed = frame.attrs.get("failed", [])
    if failed:
        print(f"{len(failed)} map(s) failed; the rest of the run went on:")
        print("\n".join(f"  {line}" for line in failed[:50]) + (f"\n  … and {len(failed) - 50} more" if len(failed) > 50 else ""))
    if len(skips):
        print(skips.summary(limit=50))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
