"""`python -m medattn.bench.compare` on the cheapest settings: the tiny app world, one model,
saliency and WILDCAT maps, one ▶ after a one-second look, then a new target class. The sidebar's
first choice differs (four methods), so this also drives its widgets. Skipped without
/usr/bin/chromium, as the other browser tests."""

from __future__ import annotations

import json

from medattn.bench import compare as bench_compare
from tests.test_e2e import pytestmark, world  # noqa: F401 - the browser tests' skip and their app world


def test_bench_compare_times_cold_next_and_new_target(world, tmp_path):  # noqa: F811
    out, shots = tmp_path / "bench.json", tmp_path / "shots"
    code = bench_compare.main(["--dataset", str(world.dataset), "--checkpoints", str(world.checkpoints),
                               "--models", "tiny_wildcat", "--methods", "saliency", "wildcat", "--next", "1",
                               "--dwell", "1", "--threads", "1", "--timeout", "120", "--out", str(out),
                               "--screenshots", str(shots)])
    figures = json.loads(out.read_text())
    assert code == 0 and figures["errors"] == []
    assert [v["step"] for v in figures["views"]] == ["cold", "next 1", "new target"]
    assert all(v["maps"] == 2 and v["failed"] == 0 and v["seconds"] > 0 for v in figures["views"])
    assert all(0 < v["first_s"] <= v["all_shown_s"] <= v["seconds"] for v in figures["views"])  # the three clocks
    assert figures["cold_first_s"] == figures["views"][0]["first_s"]
    cold, following, target = figures["views"]
    assert following["image_id"] != cold["image_id"]
    assert target["image_id"] == following["image_id"] and target["target"] != following["target"]
    assert figures["cold_grid_s"] == cold["seconds"] and figures["next_s"] == [following["seconds"]]
    assert figures["next_median_s"] == following["seconds"] and figures["new_target_s"] == target["seconds"]
    assert "Models page" in figures["cold_from"]
    assert len(figures["load_average_start"]) == len(figures["load_average_end"]) == 3
    assert (shots / "cold.png").is_file() and (shots / "final.png").is_file()
