"""precompute: one row per image × model × method × target, resumable, equal to direct metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medattn.data import load_dataset
from medattn.inference import load_model
from medattn.metrics.localization import box_auprc, hit_at, miou
from medattn.pipeline import SCORING, compute_map
from medattn.pipeline import current_rows
from medattn.jobs.precompute import main, precompute, targets_for
from medattn.jobs.ray_engine import WORKER_ENV
from medattn.inference import cached_predictions
from medattn.store import Run
from medattn.store import HeatmapCache

METHODS = ["saliency", "gradcam", "wildcat"]


def test_targets_are_positives_and_predictions():
    assert targets_for(np.array([1, 0, 0]), np.array([0.2, 0.7, 0.1])) == [0, 1]
    assert targets_for(np.array([0, 0, 0]), np.array([0.2, 0.3, 0.1])) == [1]


def test_precompute_rows_resume_and_agree_with_direct_metrics(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:4])
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "cache")
    frame = precompute(dataset, [tiny_checkpoint], METHODS, image_ids=ids, run=run, cache=cache, device="cpu")
    expected_rows = 0
    loaded = load_model(tiny_checkpoint, "cpu")
    probabilities = cached_predictions(loaded, dataset, ids, run.prediction_store)
    for image_id in ids:
        expected_rows += len(targets_for(dataset.labels(image_id), probabilities.loc[image_id].to_numpy())) * len(METHODS)
    assert len(frame) == expected_rows
    assert set(frame["method"]) == set(METHODS)
    assert {"auprc", "hit", "miou", "probability", "label", "seconds", "n_boxes"} <= set(frame.columns)

    # Every row equals calling the pipeline and the metrics directly.
    for row in frame.itertuples():
        result = compute_map(loaded, dataset, row.image_id, row.method, int(row.target), cache=cache)
        boxes = dataset.boxes_for(row.image_id, row.target_class)
        if len(boxes):
            pointed = hit_at(result.peak, boxes, result.display.shape)
            direct = [box_auprc(result.display, boxes), np.nan if pointed is None else float(pointed), miou(result.display, boxes)]
        else:
            direct = [np.nan] * 3
        np.testing.assert_allclose([row.auprc, row.hit, row.miou], direct, equal_nan=True)
        assert row.probability == pytest.approx(probabilities.at[row.image_id, row.target_class])
        assert row.scoring == SCORING

    # A rerun computes nothing: the explainers are never called.
    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished row")

    monkeypatch.setattr("medattn.jobs.batch.compute_maps", fail)
    again = precompute(dataset, [tiny_checkpoint], METHODS, image_ids=ids, run=run, cache=cache, device="cpu")
    assert len(again) == len(frame)


def test_a_resumed_run_counts_the_whole_plan_and_a_finished_one_leaves_one_part(tiny_demo, tiny_checkpoint, tmp_path):
    """Progress after a resume read 2/271 instead of 67/336, and part files stayed beside the
    merged table the README promises."""
    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:4])
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "cache")
    first: list[tuple[int, int]] = []
    precompute(dataset, [tiny_checkpoint], ["saliency", "gradcam"], image_ids=ids, run=run, cache=cache, device="cpu",
               progress=lambda done, total: first.append((done, total)), stop=lambda: len(first) >= 3)
    stored, planned = len(run.scores.read()), first[-1][1]
    assert 3 <= stored < planned and len(run.scores.parts()) >= 1
    second: list[tuple[int, int]] = []
    precompute(dataset, [tiny_checkpoint], ["saliency", "gradcam"], image_ids=ids, run=run, cache=cache, device="cpu",
               progress=lambda done, total: second.append((done, total)))
    assert second[0] == (stored, planned) and second[-1] == (planned, planned)
    assert len(run.scores.parts()) == 1 and len(run.scores.read()) == planned


def test_rows_of_older_scoring_or_other_weights_are_redone(tiny_demo, tiny_checkpoint, tmp_path):
    """A row scored under older definitions (no `scoring`, or another version) or for other
    weights under the same checkpoint name is redone, from the cached map; the rest are kept."""
    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:3])
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "cache")
    first = precompute(dataset, [tiny_checkpoint], ["saliency"], image_ids=ids, run=run, cache=cache, device="cpu")
    stale = first.iloc[:2].copy()
    stale["hit"] = -1.0
    stale.loc[stale.index[0], "scoring"] = SCORING - 1
    stale.loc[stale.index[1], "checkpoint_hash"] = "older-weights"
    run.scores.append(stale)
    assert (current_rows(run.scores.read(), {first.checkpoint[0]: first.checkpoint_hash[0]}).shape[0]
            == len(first) - 2)
    again = precompute(dataset, [tiny_checkpoint], ["saliency"], image_ids=ids, run=run, cache=cache, device="cpu")
    assert len(again) == len(first) and not (again["hit"] == -1).any() and (again["scoring"] == SCORING).all()
    assert again["cached"].sum() == 2  # the redone rows: their maps came from the cache
    legacy = first.drop(columns=["scoring"])
    assert current_rows(legacy, {first.checkpoint[0]: first.checkpoint_hash[0]}).empty


def test_cli_refuses_unknown_images(tiny_demo, tiny_checkpoint, tmp_path):
    with pytest.raises(SystemExit, match="not-an-image"):
        main(["--dataset", str(tiny_demo), "--checkpoints", str(tiny_checkpoint), "--images", "not-an-image",
              "--out", str(tmp_path / "run")])


@pytest.fixture(scope="module")
def linear_checkpoint(tiny_demo, tmp_path_factory):
    """A ResNet-18 with a linear head: it has no WILDCAT maps."""
    from medattn.train import TrainConfig, train

    return train(TrainConfig(dataset=str(tiny_demo), arch="resnet18", head="linear", out=str(tmp_path_factory.mktemp("lin") / "lin"),
                             epochs=1, batch_size=16, input_size=64, augment="none"), log=lambda message: None)


def test_methods_a_model_lacks_are_skipped(tiny_demo, linear_checkpoint, tmp_path, caplog):
    """WILDCAT maps asked of a linear model: one warning for the run and no rows, never a crash;
    an unknown method name fails before any work."""
    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:3])
    with caplog.at_level("WARNING", logger="medattn.jobs"):
        frame = precompute(dataset, [linear_checkpoint], ["saliency", "wildcat"], image_ids=ids,
                           run=Run(tmp_path / "run"), cache=HeatmapCache(tmp_path / "cache"), device="cpu")
    assert set(frame["method"]) == {"saliency"}
    assert len(caplog.messages) == 1 and "skipping wildcat on lin: 'wildcat' needs a model with class maps" in caplog.messages[0]
    with pytest.raises(ValueError, match="unknown explanation method 'gradcm'"):
        precompute(dataset, [linear_checkpoint], ["gradcm"], image_ids=ids, run=Run(tmp_path / "bad"),
                   cache=HeatmapCache(tmp_path / "cache"), device="cpu")
    assert not (tmp_path / "bad" / "scores").exists() or not any((tmp_path / "bad" / "scores").iterdir())


def test_ray_engine_matches_local_writes_the_same_cache_and_resumes(tiny_demo, tiny_checkpoint, linear_checkpoint, tmp_path,
                                                                    monkeypatch, caplog):
    """One actor per checkpoint; same rows, warnings and cache entries as the local engine; a
    rerun of either engine computes nothing.

    The local engine runs on one thread here, as each Ray CPU actor does: float32 sums split
    over another number of threads round differently, and on a CPU with AVX512 that moved a
    WILDCAT saliency map by 0.9% of its maximum (its top-k pooling nearly tied) and the AUPRC
    by 2e-5."""
    ray = pytest.importorskip("ray")  # pinned in requirements.txt; CI has it
    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:4])
    checkpoints, methods = [tiny_checkpoint, linear_checkpoint], ["saliency", "wildcat"]
    local_cache, ray_cache = HeatmapCache(tmp_path / "local_cache"), HeatmapCache(tmp_path / "ray_cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(int(WORKER_ENV["OMP_NUM_THREADS"]))
    try:
        with caplog.at_level("WARNING", logger="medattn.jobs"):
            local = precompute(dataset, checkpoints, methods, image_ids=ids, run=Run(tmp_path / "local"),
                               cache=local_cache, device="cpu")
    finally:
        torch.set_num_threads(threads)
    local_warnings, ticks = sorted(caplog.messages), []
    caplog.clear()
    with caplog.at_level("WARNING", logger="medattn.jobs"):
        remote = precompute(dataset, checkpoints, methods, image_ids=ids, run=Run(tmp_path / "ray"), cache=ray_cache,
                            device="cpu", engine="ray", progress=lambda done, total: ticks.append((done, total)))
    assert not ray.is_initialized()  # started here, so shut down here
    assert sorted(caplog.messages) == local_warnings and len(local_warnings) == 1  # wildcat of the linear model
    assert ticks[-1][0] == ticks[-1][1] == len(local)
    assert set(remote["checkpoint"]) == {"tiny_resnet18_wildcat", "lin"}

    key = ["image_id", "checkpoint", "method", "target"]
    local, remote = (f.sort_values(key).reset_index(drop=True) for f in (local, remote))
    assert list(remote.columns) == list(local.columns)
    pd.testing.assert_frame_equal(remote.drop(columns=["seconds", "auprc", "hit", "miou"]),
                                  local.drop(columns=["seconds", "auprc", "hit", "miou"]))
    np.testing.assert_allclose(remote[["auprc", "hit", "miou"]], local[["auprc", "hit", "miou"]], rtol=1e-5, equal_nan=True)

    def entries(cache: HeatmapCache) -> set[str]:
        return {p.name for p in cache.root.rglob("*.npy")}

    assert entries(ray_cache) == entries(local_cache) and len(entries(ray_cache)) == len(local)

    import medattn.pipeline

    real_explain, called = medattn.pipeline.explain, []

    def spy(model, image, target, method, **kwargs):
        called.append(method)
        return real_explain(model, image, target, method, **kwargs)

    monkeypatch.setattr("medattn.pipeline.explain", spy)
    rerun = precompute(dataset, checkpoints, methods, image_ids=ids, run=Run(tmp_path / "fresh"), cache=ray_cache, device="cpu")
    assert len(rerun) == len(local) and rerun["cached"].all()
    assert called == []
    parts = Run(tmp_path / "ray").scores.parts()
    again = precompute(dataset, checkpoints, methods, image_ids=ids, run=Run(tmp_path / "ray"), cache=ray_cache,
                       device="cpu", engine="ray")
    assert len(again) == len(local) and Run(tmp_path / "ray").scores.parts() == parts


def test_ray_engine_without_ray_says_what_to_install(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    from medattn.jobs.ray_engine import RAY_VERSION

    pins = (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
    assert any(line.split("#")[0].strip() == f"ray=={RAY_VERSION}" for line in pins)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=f"pip install ray=={RAY_VERSION}"):
        precompute(load_dataset(tiny_demo), [tiny_checkpoint], ["saliency"], run=Run(tmp_path / "run"),
                   cache=HeatmapCache(tmp_path / "cache"), engine="ray")


def test_precompute_with_faithfulness_metrics_and_reference_maps(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    """--metrics: every row carries the metrics (equal to calling the pipeline directly), the
    reference maps get rows of their own, a rerun computes nothing, and other settings redo the
    metrics from the cached maps."""
    from medattn import pipeline
    from medattn.metrics.faithfulness import METRICS, REFERENCE_MAPS

    dataset = load_dataset(tiny_demo)
    ids = list(dataset.split("test").index[:2])
    run, cache = Run(tmp_path / "run"), HeatmapCache(tmp_path / "cache")
    settings = pipeline.FaithfulnessSettings(tuple(METRICS), steps=4, percentages=(50,), samples=3, regions=4)
    methods = ["saliency", *(f"reference:{k}" for k in REFERENCE_MAPS)]
    frame = precompute(dataset, [tiny_checkpoint], methods, image_ids=ids, run=run, cache=cache, device="cpu",
                       faithfulness=settings)
    assert set(frame["method"]) == set(methods)
    assert (frame["faithfulness"] == settings.key()).all()
    finite = frame[list(METRICS)].drop(columns=["faithfulness_correlation", "complexity"])  # NaN for flat maps
    assert np.isfinite(finite.to_numpy(float)).all()
    blank = frame[frame["method"] == "reference:blank"]
    assert blank["degenerate"].all() and (blank["sparseness"] == 0).all() and blank["complexity"].isna().all()
    assert (frame[frame["method"] == "reference:center"]["max_sensitivity"] == 0).all()

    loaded = load_model(tiny_checkpoint, "cpu")
    row = frame[frame["method"] == "saliency"].iloc[0]
    result = compute_map(loaded, dataset, row.image_id, "saliency", int(row.target), cache=cache)
    direct = pipeline.faithfulness_scores(loaded, dataset.read_image(row.image_id), result.raw, "saliency",
                                          int(row.target), settings)
    for name in METRICS:
        assert row[name] == pytest.approx(direct[name], nan_ok=True), name

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished row")

    monkeypatch.setattr(pipeline, "faithfulness_scores", fail)
    monkeypatch.setattr("medattn.jobs.batch.faithfulness_scores", fail)
    assert len(precompute(dataset, [tiny_checkpoint], methods, image_ids=ids, run=run, cache=cache, device="cpu",
                          faithfulness=settings)) == len(frame)
    monkeypatch.undo()
    fewer = pipeline.FaithfulnessSettings(("deletion",), steps=2)
    again = precompute(dataset, [tiny_checkpoint], ["saliency"], image_ids=ids, run=run, cache=cache, device="cpu",
                       faithfulness=fewer)
    redone = again[again["method"] == "saliency"]
    assert (redone["faithfulness"] == fewer.key()).all() and not redone["cached"].eq(False).any()


def test_cli_metrics_and_references(tiny_demo, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--dataset", str(tiny_demo), "--checkpoints", str(tiny_checkpoint), "--methods", "gradcam",
                 "--images", *load_dataset(tiny_demo).split("test").index[:1], "--out", str(out), "--device", "cpu",
                 "--metrics", "deletion", "sparseness", "--metric-steps", "4", "--references", "center"])
    assert code == 0
    frame = Run(out).scores.read()
    assert set(frame["method"]) == {"gradcam", "reference:center"}
    assert frame[["deletion", "sparseness"]].notna().all().all()
    assert "deletion" in capsys.readouterr().out
