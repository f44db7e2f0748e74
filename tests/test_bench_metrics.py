"""The metrics section of the benchmark (medattn.bench.metrics): smoke, one repeat, no timing
assertions; every metric gets a row with Quantus's call beside it."""

from __future__ import annotations

import json

import pytest

from medattn.bench.metrics import main

pytest.importorskip("quantus")


def test_metrics_bench_smoke(tiny_demo, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["--dataset", str(tiny_demo), "--checkpoint", str(tiny_checkpoint), "--repeats", "1",
                 "--metrics", "deletion", "road_morf", "sparseness", "max_sensitivity", "--out", str(out)]) == 0
    rows = {r["metric"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"deletion", "road_morf", "sparseness", "max_sensitivity"}
    assert all(r["seconds"] > 0 and r["quantus_seconds"] > 0 and r["ratio"] > 0 for r in rows.values()), rows
    assert "Quantus#333" in rows["road_morf"]["note"]
    assert "×Quantus" in capsys.readouterr().out
