"""Modules moved by the layout change keep their old names (DESIGN.md's layout lists them)."""

import importlib
import subprocess
import sys

import pytest

MOVED = {
    "medattn.precompute": "medattn.jobs.precompute",
    "medattn.ray_engine": "medattn.jobs.ray_engine",
    "medattn.bench_compare": "medattn.bench.compare",
    "medattn.bench_reader": "medattn.bench.reader",
    "medattn.thread_bench": "medattn.bench.threads",
}


@pytest.mark.parametrize("old, new", MOVED.items())
def test_old_name_imports_the_moved_module_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


@pytest.mark.parametrize("old, new", [("medattn.precompute", "medattn.jobs.precompute"),
                                      ("medattn.bench_reader", "medattn.bench.reader")])
def test_old_command_runs_the_moved_one(old, new):
    done = subprocess.run([sys.executable, "-m", old, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"python -m {new}" in done.stdout
    assert f"{old} moved to {new}" in done.stderr
