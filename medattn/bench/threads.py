"""Forward-pass time idle and under load, with and without the thread policy: `python -m medattn.bench.threads`.

For each wait policy (libgomp's default, with none set; `medattn.threads.WAIT_POLICY`) a fresh
Python process times `--repeats` forward passes of a torchvision model (random weights, batch 1,
`--size` pixels; median after one warm-up), first alone, then while a second process runs the
same model in a loop under the same policy (another user, or a background job). The child
processes import only torch and torchvision, so that nothing sets the policy for them. Thread
counts are the same in both arms (`medattn.threads.cpu_count()`), so only the wait policy differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from medattn.threads import WAIT_POLICY, cpu_count

CHILD = """
import json, statistics, sys, time
import torch, torchvision
arch, size, repeats, loop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "loop"
model = getattr(torchvision.models, arch)(weights=None).eval()
x = torch.rand(1, 3, size, size)
times = []
with torch.inference_mode():
    model(x)
    print("ready", flush=True)
    while loop or len(times) < repeats:
        started = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - started)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times)}))
"""


def _env(wait_policy: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cpu_count())
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    return env


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, stdout=subprocess.PIPE, text=True)


def time_forward(arch: str, size: int, repeats: int, wait_policy: str | None, loaded: bool) -> dict[str, float]:
    """Median and fastest forward seconds in a fresh process, alone or beside a looping twin."""
    env = _env(wait_policy)
    load = None
    if loaded:
        load = _child([arch, str(size), "0", "loop"], env)
        assert load.stdout is not None
        load.stdout.readline()  # the twin is warm and running
    try:
        timed = _child([arch, str(size), str(repeats), "once"], env)
        out, _ = timed.communicate()
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if load is not None:
            load.kill()
            load.wait()


def measure(arch: str = "densenet121", size: int = 224, repeats: int = 10) -> list[dict]:
    """One row per wait policy × condition, printed as they finish."""
    rows = []
    print(f"{arch} forward, batch 1, {size} px, {cpu_count()} threads, median of {repeats} (load average "
          f"{os.getloadavg()[0]:.1f} at start)")
    for wait_policy in (None, WAIT_POLICY):
        for loaded in (False, True):
            started = time.perf_counter()
            result = time_forward(arch, size, repeats, wait_policy, loaded)
            row = {"OMP_WAIT_POLICY": wait_policy or "(unset)", "condition": "under load" if loaded else "idle",
                   **{k: round(v, 4) for k, v in result.items()}, "wall_s": round(time.perf_counter() - started, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.bench.threads", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="densenet121", help="torchvision model name (random weights)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    measure(args.arch, args.size, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
