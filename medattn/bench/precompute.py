"""Precompute with shared work against one map at a time, in one run: `python -m medattn.bench
--precompute-ab` (issue 22, item 2).

The same precompute (`medattn.jobs.precompute.precompute`: the checkpoints, the methods, the
images) runs with `share=True` (a batch's images and target classes of one method explained
together, one forward pass per distinct image; `pipeline.compute_maps`) and with `share=False`
(each map alone, as before), each into a fresh run folder and cache, alternately over chunks of
the images (the order switched every chunk), so that load from other work falls on both sides.
Each side's time is that of whole precompute calls: loading the checkpoints, predicting the
images, every map, scoring and storing the rows. The two score tables must agree: the same rows
(image, checkpoint, method, target) with the same predictions, labels, parameters and scores
(AUPRC within 1e-3, IoU within 1e-2, the pointing game and degenerate flags exactly); a mismatch
fails the bench. Prints maps per second of each side, the ratio, each method's seconds (from the
rows' `seconds`), the load average and the CPU line; writes JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medattn.data.dataset import Dataset
from medattn.device import cpu_line

KEYS = ["image_id", "checkpoint", "method", "target"]
SAME = ["checkpoint_hash", "target_class", "label", "probability", "predicted", "correct", "n_boxes", "split", "params",
        "scoring", "protocol", "precision", "hit", "degenerate"]
# absolute, on scores in [0, 1]; see same_rows. IoU thresholds the map at one of 256 Otsu levels,
# so a rounding change that moves the level moves a band of pixels: 1.4e-3 seen on a demo row
CLOSE = {"auprc": 1e-3, "miou": 1e-2}
SIDES = {"shared": True, "one by one": False}


def same_rows(shared: pd.DataFrame, alone: pd.DataFrame) -> dict[str, dict[str, float]]:
    """AssertionError unless the two score tables hold the same rows (KEYS) with the same SAME
    columns, and CLOSE scores within their tolerances: IoU thresholds the map (Otsu on 8 bits)
    and AUPRC ranks it, so a map that differs by float32 rounding may move a pixel across a
    threshold. Returns, per CLOSE column, the rows that differ at all and the largest difference."""
    a = shared.sort_values(KEYS).reset_index(drop=True)
    b = alone.sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[KEYS + SAME], b[KEYS + SAME], check_dtype=False)
    out = {}
    for column, tolerance in CLOSE.items():
        x, y = a[column].to_numpy(float), b[column].to_numpy(float)
        np.testing.assert_allclose(x, y, rtol=0, atol=tolerance, equal_nan=True, err_msg=column)
        diff = np.abs(x - y)[~(np.isnan(x) & np.isnan(y))]
        out[column] = {"rows_differing": int((diff > 0).sum()), "max_difference": float(diff.max()) if len(diff) else 0.0}
    return out


def run(dataset: Dataset, checkpoints: Sequence[Path], methods: Sequence[str], image_ids: Sequence[str],
        chunks: int = 2, device: str = "cpu", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time both sides over `image_ids` in `chunks` alternating chunks; the result as JSON fields."""
    from medattn.jobs.precompute import precompute
    from medattn.store import HeatmapCache, Run

    parts = [list(p) for p in np.array_split(list(image_ids), max(1, min(chunks, len(image_ids)))) if len(p)]
    seconds = {side: 0.0 for side in SIDES}
    frames: dict[str, list[pd.DataFrame]] = {side: [] for side in SIDES}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="medattn-precompute-ab-") as tmp:
        for i, ids in enumerate(parts):
            order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
            for side in order:
                folder = Path(tmp) / f"{i}-{side.replace(' ', '-')}"
                started = time.perf_counter()
                frame = precompute(dataset, checkpoints, methods, image_ids=ids, run=Run(folder / "run"),
                                   cache=HeatmapCache(folder / "cache"), device=device, progress=lambda *_: None,
                                   share=SIDES[side])
                took = time.perf_counter() - started
                seconds[side] += took
                frames[side].append(frame)
                log(f"chunk {i + 1}/{len(parts)} ({len(ids)} images) {side}: {len(frame)} maps in {took:.1f} s")
    tables = {side: pd.concat(f, ignore_index=True) for side, f in frames.items()}
    differences = same_rows(tables["shared"], tables["one by one"])
    maps = len(tables["shared"])
    per_method = {side: t.groupby("method")["seconds"].sum().round(2).to_dict() for side, t in tables.items()}
    rate = {side: maps / s if s else None for side, s in seconds.items()}
    return {"cpu": cpu_line(), "load_start": load_start, "load_end": os.getloadavg(),
            "checkpoints": [Path(c).name for c in checkpoints], "methods": list(methods), "images": len(image_ids),
            "maps": maps, "seconds": seconds, "maps_per_second": rate,
            "ratio": rate["shared"] / rate["one by one"] if rate["one by one"] else None,
            "method_seconds": per_method, "score_differences": differences}


def format_result(r: dict[str, Any]) -> str:
    lines = [f"CPU: {r['cpu']}",
             f"load average at start {' '.join(f'{v:.2f}' for v in r['load_start'])}, "
             f"at end {' '.join(f'{v:.2f}' for v in r['load_end'])}",
             f"{r['maps']} maps ({len(r['checkpoints'])} checkpoints × {r['images']} images × "
             f"{', '.join(r['methods'])}), the same rows both sides; scores that differ by float32 rounding: "
             + ", ".join(f"{c} {d['rows_differing']} rows (max {d['max_difference']:.1e})"
                         for c, d in r["score_differences"].items())]
    for side in SIDES:
        lines.append(f"{side:>10}: {r['seconds'][side]:8.1f} s  {r['maps_per_second'][side]:.3f} maps/s")
    lines.append(f"     ratio: {r['ratio']:.2f}x maps/s, shared / one by one")
    methods = sorted(set().union(*r["method_seconds"].values()))
    lines.append("seconds per method (rows' compute time), shared / one by one:")
    for m in methods:
        a, b = (r["method_seconds"][side].get(m, 0.0) for side in SIDES)
        lines.append(f"  {m:<22} {a:8.1f} / {b:8.1f}" + (f"  ({b / a:.2f}x)" if a else ""))
    return "\n".join(lines)


def main(dataset: Dataset, checkpoints: Sequence[Path], methods: Sequence[str], images: int | None, chunks: int,
         device: str, out: Path) -> int:
    ids = list(dataset.split("test").index)
    ids = ids[:images] if images else ids
    result = run(dataset, checkpoints, methods, ids, chunks, device, log=lambda line: print(line, flush=True))
    print(format_result(result), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0
