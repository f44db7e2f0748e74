"""The thread policy holds in every entry point: `python -m medattn.…` gets it from the package
before torch loads, explicit settings win, and Ray workers get it in their environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medattn import threads
from medattn.jobs.ray_engine import WORKER_ENV

REPO = Path(__file__).resolve().parents[1]
# What `python -m medattn.<anything>` does first: import the package, then (through the module) torch.
PROBE = "import os, medattn, torch; print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], torch.get_num_threads())"


def run_probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "MEDATTN_THREADS"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, cwd=REPO, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_policy_is_set_before_torch_loads_and_explicit_settings_win(monkeypatch):
    assert run_probe() == ["PASSIVE", str(threads.cpu_count()), str(threads.cpu_count())]
    assert run_probe(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1") == ["ACTIVE", "1", "1"]
    monkeypatch.setenv("MEDATTN_THREADS", "3")
    assert threads.policy() == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}


def test_ray_workers_get_the_policy():
    assert WORKER_ENV == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
