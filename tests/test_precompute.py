"""precompute: one row per image × model × method × target, resumable, equal to direct metrics."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.data import load_dataset
from medattn.inference import load_model
from medattn.pipeline import compute_map, score_map
from medattn.precompute import Run, main, precompute, targets_for
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
    probabilities = run.predictions(loaded, dataset, ids)
    for image_id in ids:
        expected_rows += len(targets_for(dataset.labels(image_id), probabilities.loc[image_id].to_numpy())) * len(METHODS)
    assert len(frame) == expected_rows
    assert set(frame["method"]) == set(METHODS)
    assert {"auprc", "hit", "miou", "probability", "label", "seconds", "n_boxes"} <= set(frame.columns)

    # Every row equals calling the pipeline and the metrics directly.
    for row in frame.itertuples():
        result = compute_map(loaded, dataset, row.image_id, row.method, int(row.target), cache=cache)
        direct = score_map(result.display, dataset.boxes_for(row.image_id, row.target_class))
        np.testing.assert_allclose([row.auprc, row.hit, row.miou], [direct["auprc"], direct["hit"], direct["miou"]], equal_nan=True)
        assert row.probability == pytest.approx(probabilities.at[row.image_id, row.target_class])

    # A rerun computes nothing: the explainers are never called.
    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished row")

    monkeypatch.setattr("medattn.precompute.compute_map", fail)
    again = precompute(dataset, [tiny_checkpoint], METHODS, image_ids=ids, run=run, cache=cache, device="cpu")
    assert len(again) == len(frame)


def test_cli_refuses_unknown_images(tiny_demo, tiny_checkpoint, tmp_path):
    with pytest.raises(SystemExit, match="not-an-image"):
        main(["--dataset", str(tiny_demo), "--checkpoints", str(tiny_checkpoint), "--images", "not-an-image",
              "--out", str(tmp_path / "run")])


def test_methods_a_model_lacks_are_skipped(tiny_demo, tmp_path):
    """WILDCAT maps asked of a linear model: a warning and no rows, never a crash."""
    from medattn.train import TrainConfig, train

    linear = train(TrainConfig(dataset=str(tiny_demo), arch="resnet18", head="linear", out=str(tmp_path / "lin"),
                               epochs=1, batch_size=16, input_size=64, augment="none"), log=lambda message: None)
    dataset = load_dataset(tiny_demo)
    frame = precompute(dataset, [linear], ["saliency", "wildcat"], image_ids=list(dataset.split("test").index[:2]),
                       run=Run(tmp_path / "run"), cache=HeatmapCache(tmp_path / "cache"), device="cpu")
    assert set(frame["method"]) == {"saliency"}
