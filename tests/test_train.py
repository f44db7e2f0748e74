"""The training CLI: trains, selects by validation loss, writes metrics, resumes after a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medattn.models import load_checkpoint
from medattn.train import TrainConfig, main, train


def _config(dataset, out, **overrides):
    values = dict(dataset=str(dataset), arch="resnet18", head="wildcat", out=str(out), epochs=2,
                  batch_size=8, input_size=64, lr=1e-3, augment="goncalves", workers=0)
    values.update(overrides)
    return TrainConfig(**values)


def test_train_writes_checkpoint_with_history_and_test_report(tiny_demo, tmp_path):
    out = train(_config(tiny_demo, tmp_path / "ck"), log=lambda message: None)
    model, meta = load_checkpoint(out)
    assert meta["arch"] == "resnet18" and meta["head"] == "wildcat"
    assert meta["classes"] == ["nodule", "opacity", "effusion"] and meta["input_size"] == 64
    history = meta["metrics"]["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(np.isfinite(row["val_loss"]) for row in history)
    assert meta["metrics"]["test"]["task"] == "multilabel"
    assert meta["training"]["preset"] == "goncalves" and meta["dataset_hash"]
    assert not (tmp_path / "ck.resume.pt").exists()


def test_resume_after_interruption_keeps_the_cosine_schedule(tiny_demo, tmp_path):
    class Crash(Exception):
        pass

    def crash_after_first_epoch(message):
        if "epoch 1:" in message:
            raise Crash

    config = _config(tiny_demo, tmp_path / "ck", head="linear", epochs=3, schedule="cosine")
    with pytest.raises(Crash):
        train(config, log=crash_after_first_epoch)
    assert (tmp_path / "ck.resume.pt").exists()
    messages = []
    train(config, log=messages.append)
    assert messages[0] == "resuming ck after epoch 1"
    _, meta = load_checkpoint(tmp_path / "ck")
    history = meta["metrics"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # cosine over 3 epochs from 1e-3: 1e-3, 7.5e-4, 2.5e-4 — the resumed run continues the curve
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 7.5e-4, 2.5e-4])


def test_cli_params_and_errors(tiny_demo, tmp_path, capsys):
    assert main(["--dataset", str(tiny_demo), "--arch", "resnet18", "--head", "wildcat", "--out", str(tmp_path / "w"),
                 "--epochs", "1", "--batch-size", "8", "--input-size", "64", "--param", "num_maps=2", "--dtype", "float16"]) == 0
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["params"]["num_maps"] == 2 and meta["dtype"] == "float16"
    with pytest.raises(SystemExit):
        main(["--dataset", str(tiny_demo), "--arch", "resnet18", "--out", str(tmp_path / "x"), "--param", "oops"])
    assert main(["--dataset", str(tiny_demo), "--arch", "resnet18", "--head", "nope", "--out", str(tmp_path / "y")]) == 2
    assert "unknown head 'nope'" in capsys.readouterr().err
    assert main(["--dataset", str(tmp_path / "none"), "--arch", "resnet18", "--out", str(tmp_path / "z")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dataset", str(tiny_demo), "--arch", "resnet18", "--out", str(tmp_path / "s"), "--schedule", "step"])


def test_progress_counts_batches_and_stop_keeps_the_finished_epochs(tiny_demo, tmp_path):
    """What a background job uses: progress in batches over all epochs, stop() asked between
    batches raises Stopped with the finished epochs in the resume file, and a resume starts there."""
    from medattn.train import Stopped

    config = _config(tiny_demo, tmp_path / "ck", head="linear", epochs=2, augment="none")
    calls: list[tuple[int, int, str]] = []

    def progress(done, total, stage):
        calls.append((done, total, stage))

    with pytest.raises(Stopped) as stopped:
        train(config, log=lambda message: None, progress=progress, stop=lambda: len(calls) > calls[0][1] // 2 + 1)
    total = calls[0][1]
    per_epoch = total // 2
    assert calls[0] == (0, total, "epoch 1/2") and [c[0] for c in calls] == list(range(per_epoch + 2))
    assert calls[per_epoch + 1][2] == "epoch 2/2"
    assert stopped.value.epoch == 1 and (tmp_path / "ck.resume.pt").exists() and not (tmp_path / "ck.json").exists()
    calls.clear()
    train(config, log=lambda message: None, progress=progress)
    assert calls[0] == (per_epoch, total, "epoch 2/2") and calls[-1][0] == total
    assert [row["epoch"] for row in load_checkpoint(tmp_path / "ck")[1]["metrics"]["history"]] == [1, 2]
