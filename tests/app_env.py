"""A small world for the app tests (AppTest and the browser): a 60-image demo at 128 px, two
ResNet-18 checkpoints (WILDCAT and linear heads) trained one epoch at 64 px, an empty cache
folder, and scores of two fast methods over the test split. Built once per test session under
pytest's base temporary folder and shared by test_app.py and test_e2e.py."""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

SCORED_METHODS = ("saliency", "wildcat")


@dataclass(frozen=True)
class AppEnv:
    dataset: Path
    checkpoints: Path
    cache: Path

    def environ(self) -> dict[str, str]:
        """Environment variables that point a fresh app process at this world."""
        return {"MEDATTN_DATASET": str(self.dataset), "MEDATTN_CHECKPOINTS": str(self.checkpoints),
                "MEDATTN_CACHE": str(self.cache)}


def app_env(base: Path) -> AppEnv:
    """Build the world under `base` unless a finished one is there."""
    base.mkdir(parents=True, exist_ok=True)
    env = AppEnv(base / "demo", base / "checkpoints", base / "cache")
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / "ready").exists():
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # tiny models: one thread is fastest, above all on a shared CPU
            try:
                _build(env)
            finally:
                torch.set_num_threads(threads)
            (base / "ready").write_text("ok\n")
    return env


def _build(env: AppEnv) -> None:
    from medattn.data import load_dataset
    from medattn.data.demo import build_demo
    from medattn.jobs.precompute import precompute
    from medattn.store import Run
    from medattn.store import HeatmapCache
    from medattn.train import TrainConfig, train

    build_demo(env.dataset, n=60, size=128, seed=3, workers=1)
    paths = []
    for head in ("wildcat", "linear"):
        config = TrainConfig(dataset=str(env.dataset), arch="resnet18", head=head, out=str(env.checkpoints / f"tiny_{head}"),
                             epochs=1, batch_size=32, input_size=64, lr=1e-3, augment="none")
        paths.append(train(config, log=lambda message: None))
    dataset = load_dataset(env.dataset)
    for path in paths:
        methods = [m for m in SCORED_METHODS if m != "wildcat" or "wildcat" in path.name]
        precompute(dataset, [path], methods, run=Run.for_dataset(dataset, env.cache / "runs"),
                   cache=HeatmapCache(env.cache / "heatmaps"), device="cpu", progress=lambda *_: None)


def texts(elements) -> str:
    """The text of AppTest elements as the reader sees it: the markdown escapes `medattn.ui.plain`
    adds to names (`demo\\_00040`) removed, one element a line."""
    import re

    return "\n".join(re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements)
