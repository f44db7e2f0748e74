"""Shared fixtures: where the real sample data lives."""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine spinning threads of
# parallel test processes (app servers, Chromium) slowed a ResNet-18 forward pass 50-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDATTN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def user_models_folder(tmp_path_factory) -> Path:
    """The user's models folder of a test session (MEDATTN_MODELS, also for the app processes
    tests start): never the real one under the home folder."""
    from medattn import inference

    folder = tmp_path_factory.mktemp("user_models")
    patch = pytest.MonkeyPatch()
    patch.setattr(inference, "MODELS_DIR", folder)
    patch.setenv("MEDATTN_MODELS", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says why (CI always has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED_DATA} (set MEDATTN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A 48-image, 64 px demo dataset: enough to train and explain in seconds."""
    from medattn.data.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("tiny_demo"), n=48, size=64, seed=3)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_demo, tmp_path_factory) -> Path:
    """A ResNet-18 WILDCAT checkpoint trained one epoch on tiny_demo at 64 px."""
    from medattn.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_checkpoints") / "tiny_resnet18_wildcat"
    config = TrainConfig(dataset=str(tiny_demo), arch="resnet18", head="wildcat", out=str(out),
                         epochs=1, batch_size=16, input_size=64, lr=1e-3, augment="none")
    return train(config, log=lambda message: None)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (tests/postgres.py). In CI one that cannot start is a
    failure; elsewhere the test skips and says why."""
    from tests.postgres import Cluster

    try:
        cluster = Cluster()
    except (RuntimeError, OSError, ImportError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL cluster could start: {error}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def study_db(request, tmp_path) -> str:
    """A fresh reader-study database on each backend: an SQLite file's path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "study.db")
    return request.getfixturevalue("postgres").url()
