"""The model-zoo conformance matrix at full size: `python -m medattn.bench --zoo [GLOB …]
[--zoo-tiny]`.

Every zoo model (`medattn.models.zoo`, or those matching the globs) built at its published
size with random weights, saved in its published weights form, imported through the importer's
command line, and every method checked against its reference recipe
(`medattn.explain.conformance`); prints the Markdown table (model × method: max relative
difference to the reference, or n/a with the reason below) and writes the outcomes as JSON.
The test suite runs the same matrix on the tiny configurations (`tests/test_models_zoo.py`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from medattn.explain.conformance import Outcome, check_entry, table
from medattn.models import zoo


def run_zoo(patterns: Sequence[str], tiny: bool = False, log: Callable[[str], None] = print) -> list[Outcome]:
    """Outcomes of every matching zoo model × method (all models when `patterns` is empty)."""
    outcomes: list[Outcome] = []
    names = zoo.list_models(list(patterns) or None)
    for i, name in enumerate(names, 1):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="medattn-zoo-") as folder:
            rows = check_entry(zoo.get_entry(name), Path(folder), tiny=tiny)
        outcomes += rows
        bad = [o for o in rows if not o.ok]
        log(f"[{i}/{len(names)}] {name}: {time.perf_counter() - started:.0f} s"
            + (f"; {len(bad)} cell(s) not equal: " + ", ".join(f"{o.method} {o.status}" for o in bad) if bad else ""))
    return outcomes


def main(patterns: Sequence[str], tiny: bool, out: Path) -> int:
    """Run, print the table, write `out` (JSON); exit status 1 when a cell is not equal or
    unavailable."""
    outcomes = run_zoo(patterns, tiny, log=lambda line: print(line, flush=True))
    print(table(outcomes))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tiny": tiny, "outcomes": [dataclasses.asdict(o) for o in outcomes]}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(o.ok for o in outcomes) else 1
