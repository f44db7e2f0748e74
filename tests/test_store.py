"""Heatmap cache keys are stable and sensitive; entries survive round trips; scores append."""

from __future__ import annotations

import numpy as np
import torch

from medattn.store import HeatmapCache, ScoreTable, canonical_params, file_hash


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


def test_damaged_entry_is_dropped(tmp_path):
    cache = HeatmapCache(tmp_path)
    key = cache.key("c", "i", "m")
    cache.put(key, np.ones((2, 2)))
    cache.path(key).write_bytes(b"not numpy")
    assert cache.get(key) is None and key not in cache


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
