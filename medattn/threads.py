"""The thread policy of every medattn process: app, precompute, jobs, bench, train, Ray workers.

PyTorch's CPU kernels run on an OpenMP pool (libgomp in the Linux wheels). By default an idle
OpenMP thread spins for a while before it sleeps; on a CPU shared with other work (a second
process, a background job, other users) the spinning threads take the cores the working ones
need, and a DenseNet-121 forward that takes 0.1 s took 0.8 s under load (issue 13;
`python -m medattn.bench.threads` prints the figures on this machine). The policy:

- `OMP_WAIT_POLICY=PASSIVE`: idle threads sleep at once (OpenMP 4.5 §4.8);
- `OMP_NUM_THREADS` and `MKL_NUM_THREADS`: the CPUs this process may run on (its affinity mask,
  capped by a cgroup CPU quota), or `MEDATTN_THREADS` when set;
- background jobs (`medattn.jobs`) also run at a lower priority (nice 10), so that the app a
  reader is looking at keeps the CPU first.

libgomp reads these variables once, when torch is first imported, so they must be set before
that: `medattn/__init__.py` calls `apply()` before anything else, which covers every
`python -m medattn.…` command and every `import medattn…`; app.py and workbench.py import medattn
before Streamlit (which may import torch). Values already in the environment win, so a user's own
`OMP_NUM_THREADS=1` holds. Ray workers get `worker_env()` through their runtime environment.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("medattn.threads")
WAIT_POLICY = "PASSIVE"
BACKGROUND_NICE = 10


def cpu_count() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def policy(threads: int | None = None) -> dict[str, str]:
    """The environment variables of the policy: `threads` (default `MEDATTN_THREADS`, else an
    OMP_NUM_THREADS already set, else `cpu_count()`) intra-op threads for OpenMP and MKL alike
    (given OMP_NUM_THREADS=1 and MKL_NUM_THREADS=2, torch ran 2 threads), idle threads passive."""
    given = os.environ.get("MEDATTN_THREADS") or os.environ.get("OMP_NUM_THREADS") or ""
    count = threads or (int(given) if given.isdigit() and int(given) > 0 else 0) or cpu_count()
    return {"OMP_WAIT_POLICY": WAIT_POLICY, "OMP_NUM_THREADS": str(count), "MKL_NUM_THREADS": str(count)}


def apply() -> bool:
    """Put the policy into this process's environment (values already set win). False, with a
    warning, when torch was imported first without it: its OpenMP pool keeps what it read."""
    missing = "OMP_WAIT_POLICY" not in os.environ
    for name, value in policy().items():
        os.environ.setdefault(name, value)
    if missing and "torch" in sys.modules:
        log.warning("torch was imported before medattn: OMP_WAIT_POLICY=%s does not hold in this process; "
                    "import medattn first", WAIT_POLICY)
        return False
    return True


def worker_env(threads: int = 1) -> dict[str, str]:
    """Environment for a Ray worker given `threads` CPUs."""
    return policy(threads)


def background() -> None:
    """Lower this process's priority (a background job), where the OS allows."""
    try:
        os.nice(BACKGROUND_NICE)
    except (AttributeError, OSError):
        pass

