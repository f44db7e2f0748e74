"""Heatmap cache keys are stable and sensitive; entries survive round trips; scores append; every
store survives concurrent writers and sets unreadable files aside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from medattn.store import HeatmapCache, PredictionStore, ScoreTable, canonical_params, file_hash

REPO = Path(__file__).resolve().parents[1]


def test_canonical_params_order_and_tensors():
    a = canonical_params({"steps": 50, "baseline": torch.zeros(2), "window": np.int64(16)})
    b = canonical_params({"window": 16, "baseline": np.zeros(2, np.float32), "steps": 50})
    assert a == b
    assert canonical_params({"baseline": torch.ones(2)}) != canonical_params({"baseline": torch.zeros(2)})


def test_cache_roundtrip_and_key_sensitivity(tmp_path):
    cache = HeatmapCache(tmp_path)
    key = cache.key("ck1", "im1", "integrated_gradients", {"steps": 50}, target=0)
    assert cache.get(key) is None and key not in cache
    heatmap = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    cache.put(key, heatmap)
    np.testing.assert_array_equal(cache.get(key), heatmap)
    others = {
        cache.key("ck2", "im1", "integrated_gradients", {"steps": 50}, target=0),
        cache.key("ck1", "im2", "integrated_gradients", {"steps": 50}, target=0),
        cache.key("ck1", "im1", "saliency", {"steps": 50}, target=0),
        cache.key("ck1", "im1", "integrated_gradients", {"steps": 20}, target=0),
        cache.key("ck1", "im1", "integrated_gradients", {"steps": 50}, target=1),
    }
    assert key not in others and len(others) == 5


def _cache_entry(root: Path) -> tuple[Path, Callable[[], object]]:
    cache = HeatmapCache(root)
    key = cache.key("c", "i", "m")
    cache.put(key, np.ones((2, 2)))
    return cache.path(key), lambda: cache.get(key)


def _predictions(root: Path) -> tuple[Path, Callable[[], object]]:
    store = PredictionStore(root)
    store.add("ck", "h1", pd.DataFrame({"a": [0.5]}, index=pd.Index(["img"], name="image_id")))
    return store.path("ck"), lambda: store.read("ck", "h1")


def _score_part(root: Path) -> tuple[Path, Callable[[], object]]:
    table = ScoreTable(root)
    path = table.append([{"image_id": "a", "checkpoint": "m", "method": "saliency", "target": "0"}])
    return path, lambda: None if table.read().empty else table.read()


@pytest.mark.parametrize("make", [_cache_entry, _predictions, _score_part], ids=["heatmap", "predictions", "score part"])
@pytest.mark.parametrize("damage", [b"not a file of this kind", b""], ids=["garbage", "empty"])
def test_unreadable_stored_file_is_set_aside_logged_and_read_as_absent(make, damage, tmp_path, caplog):
    """Every store: a file that fails to read is renamed *.corrupt-<time>, named in the log,
    and read as absent, so that its contents are recomputed instead of failing the caller."""
    path, read = make(tmp_path / "store")
    assert read() is not None
    path.write_bytes(damage)
    with caplog.at_level("WARNING", logger="medattn.store"):
        assert read() is None
    assert not path.exists() and len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1
    assert any(str(path) in m and "set aside" in m for m in caplog.messages)


WRITER = """
import sys
import numpy as np, pandas as pd
from medattn.store import HeatmapCache, PredictionStore, ScoreTable
root, name = sys.argv[1], sys.argv[2]
store, table, cache = PredictionStore(root + "/predictions"), ScoreTable(root + "/scores"), HeatmapCache(root + "/heatmaps")
key = cache.key("c", "i", "m")
for n in range(40):
    ids = pd.Index([f"{name}-{n}"], name="image_id")
    store.add("ck", "h", pd.DataFrame({"a": np.random.rand(1), "b": np.random.rand(1)}, index=ids))
    table.append([{"image_id": f"{name}-{n}", "checkpoint": "ck", "method": "saliency", "target": "0", "auprc": 0.5}])
    cache.put(key, np.full((64, 64), n, np.float32))
"""


def test_two_processes_writing_predictions_scores_and_maps_at_once_leave_every_file_readable(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], cwd=REPO) for name in ("a", "b")]
    assert [w.wait(120) for w in writers] == [0, 0]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert not [p for p in files if ".tmp" in p.name or ".corrupt-" in p.name]  # no temporary left, nothing set aside
    for path in files:
        (np.load if path.suffix == ".npy" else pd.read_parquet)(path)  # every file reads
    stored = PredictionStore(tmp_path / "predictions").read("ck", "h")
    assert len(stored) == 80  # neither writer dropped the other's rows
    assert len(ScoreTable(tmp_path / "scores").read()) == 80


def test_compact_merges_parts_and_keeps_the_newest_rows(tmp_path):
    table = ScoreTable(tmp_path / "scores")
    for value in range(4):
        table.append([{"image_id": "a", "checkpoint": "m", "method": "saliency", "target": "0", "auprc": value}])
    table.compact(at_least=2)
    assert len(table.parts()) == 1
    table.append([{"image_id": "a", "checkpoint": "m", "method": "saliency", "target": "0", "auprc": 9}])
    assert table.read()["auprc"].tolist() == [9]


def test_file_hash_tracks_content(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    first = file_hash(path)
    assert file_hash(path) == first
    path.write_bytes(b"abcd")
    assert file_hash(path) != first


def test_score_table_keeps_latest_row(tmp_path):
    table = ScoreTable(tmp_path / "scores")
    assert table.read().empty
    table.append([{"image_id": "a", "checkpoint": "m", "method": "saliency", "target": 0, "auprc": 0.1}])
    table.append([{"image_id": "a", "checkpoint": "m", "method": "saliency", "target": 0, "auprc": 0.2},
                  {"image_id": "b", "checkpoint": "m", "method": "saliency", "target": 0, "auprc": 0.3}])
    frame = table.read()
    assert len(frame) == 2
    assert frame.set_index("image_id").loc["a", "auprc"] == 0.2
    assert ("a", "m", "saliency", "0") in table.done_keys()
