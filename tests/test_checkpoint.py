"""Checkpoint IO: safetensors + JSON round trips, every refusal with a message that says what
is wrong, no unpickling, and importing .pt/.pth state dicts from other tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.errors import CheckpointError
from medattn.models import build, import_state_dict, load_checkpoint, save_checkpoint
from medattn.models.checkpoint import PROBE_TOLERANCE, file_sha256

META = dict(classes=["effusion", "mass", "nodule"], task="multilabel", input_size=64,
            normalisation={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            dataset="demo", dataset_hash="abc123", metrics={"auc": np.float64(0.75)},
            training={"lr": 1e-4, "epochs": 2})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build("resnet18", "wildcat", 3, num_maps=2, kmax=0.3)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        net.train()(torch.randn(4, 3, 64, 64))
    return net.eval()


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


@pytest.fixture
def saved(tmp_path, model):
    return save_checkpoint(model, tmp_path / "ckpt", **META)


def logits(net, x):
    with torch.no_grad():
        return net.eval()(x)


def edit_json(base: Path, **changes) -> None:
    path = base.with_name(base.name + ".json")
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))


def test_float32_round_trip_gives_identical_logits(saved, model, x):
    assert saved.with_name("ckpt.safetensors").is_file() and saved.with_name("ckpt.json").is_file()
    for name in ("ckpt", "ckpt.json", "ckpt.safetensors"):
        loaded, meta = load_checkpoint(saved.with_name(name))
        assert torch.equal(logits(loaded, x), logits(model, x))
    assert not loaded.training
    assert (loaded.arch, loaded.head, loaded.num_classes) == ("resnet18", "wildcat", 3)
    assert loaded.params == model.params == meta["params"]
    assert meta["sha256"] == file_sha256(saved.with_name("ckpt.safetensors"))
    assert meta["metrics"] == {"auc": 0.75} and meta["classes"] == META["classes"]
    assert {"medattn_version", "input_size", "normalisation", "dataset_hash", "training"} <= set(meta)


def test_float16_halves_the_file_and_loads_as_close_float32(tmp_path, saved, model, x):
    half = save_checkpoint(model, tmp_path / "half", dtype="float16", **META)
    full_size = saved.with_name("ckpt.safetensors").stat().st_size
    assert half.with_name("half.safetensors").stat().st_size < 0.55 * full_size
    loaded, meta = load_checkpoint(half)
    assert meta["dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    reference = logits(model, x)
    assert torch.allclose(logits(loaded, x), reference, rtol=1e-2, atol=1e-2 * reference.abs().max())


def test_int8_quarters_the_file_and_keeps_predictions(tmp_path, saved, model, x):
    small = save_checkpoint(model, tmp_path / "small", dtype="int8", **META)
    full_size = saved.with_name("ckpt.safetensors").stat().st_size
    assert small.with_name("small.safetensors").stat().st_size < 0.3 * full_size
    loaded, meta = load_checkpoint(small)
    assert meta["dtype"] == "int8"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for key, value in model.state_dict().items():
        if value.is_floating_point() and value.ndim >= 2 and value.numel() >= 256:
            step = value.abs().reshape(value.shape[0], -1).amax(1) / 127
            error = (loaded.state_dict()[key] - value).abs().reshape(value.shape[0], -1).amax(1)
            assert torch.all(error <= step / 2 + 1e-7), key  # within half a quantisation step
    reference = logits(model, x)
    assert torch.allclose(logits(loaded, x), reference, atol=0.05 * reference.abs().max())


def test_save_refuses_what_it_cannot_describe(tmp_path, model):
    with pytest.raises(TypeError, match="made by medattn.models.build"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "plain")
    with pytest.raises(ValueError, match="2 classes given for a model with 3 outputs"):
        save_checkpoint(model, tmp_path / "c", classes=["a", "b"])
    with pytest.raises(ValueError, match="arch come from the model"):
        save_checkpoint(model, tmp_path / "c", arch="resnet50")
    with pytest.raises(ValueError, match="dtype must be one of float32, float16, int8"):
        save_checkpoint(model, tmp_path / "c", dtype="bfloat4")
    with pytest.raises(ValueError, match="metadata field 'metrics' is not JSON-serialisable"):
        save_checkpoint(model, tmp_path / "c", metrics={"f": object()})
    assert not list(tmp_path.iterdir())


def test_wrong_arch_in_json_lists_the_keys_that_do_not_fit(saved):
    edit_json(saved, arch="resnet34")
    with pytest.raises(CheckpointError, match=r"do not fit .*arch=resnet34.* missing: backbone"):
        load_checkpoint(saved)


def test_wrong_class_count_names_the_misshaped_tensors(saved):
    edit_json(saved, num_classes=4, classes=None)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved)
    assert "num_classes=4" in str(err.value)
    assert "mis-shaped (file vs model): maps.weight [6, 512, 1, 1] vs [8, 512, 1, 1]" in str(err.value)


def test_wrong_head_in_json_is_refused(saved):
    edit_json(saved, head="linear", params={})
    with pytest.raises(CheckpointError, match=r"missing: classifier.weight, classifier.bias; 2 unexpected: maps.bias, maps.weight"):
        load_checkpoint(saved)


def test_classes_disagreeing_with_num_classes_are_refused(saved):
    edit_json(saved, classes=["a", "b"])
    with pytest.raises(CheckpointError, match="'classes' lists 2 entries but num_classes is 3"):
        load_checkpoint(saved)


def test_tampered_weights_fail_the_sha256_check(saved):
    weights = saved.with_name("ckpt.safetensors")
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match .* recorded in ckpt.json; the weights were changed"):
        load_checkpoint(saved)


def test_missing_and_malformed_files_are_named(saved):
    saved.with_name("ckpt.json").write_text('{"arch": "resnet18",')
    with pytest.raises(CheckpointError, match=r"ckpt.json: malformed JSON at line 1"):
        load_checkpoint(saved)
    saved.with_name("ckpt.json").write_text('{"arch": "resnet18"}')
    with pytest.raises(CheckpointError, match=r"head \(missing\), num_classes \(missing\)"):
        load_checkpoint(saved)
    saved.with_name("ckpt.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing ckpt.json \(metadata\)"):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match=r"missing other.safetensors \(weights\)"):
        saved.with_name("other.json").write_text("{}")
        load_checkpoint(saved.with_name("other"))


def test_unknown_arch_in_json_is_refused(saved):
    edit_json(saved, arch="alexnet")
    with pytest.raises(CheckpointError, match="cannot build the model it describes: unknown arch 'alexnet'"):
        load_checkpoint(saved)


class Payload:
    """Unpickling this would create a file: proof that a loader ran pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_files_are_refused_without_unpickling(tmp_path, saved, model):
    marker = tmp_path / "unpickled"
    torch.save({"state_dict": model.state_dict(), "payload": Payload(marker)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="model.pt is a PyTorch pickle file"):
        load_checkpoint(tmp_path / "model.pt")
    os.replace(tmp_path / "model.pt", saved.with_name("ckpt.safetensors"))
    with pytest.raises(CheckpointError, match="ckpt.safetensors is a PyTorch pickle file .* never unpickles"):
        load_checkpoint(saved)
    assert not marker.exists()


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
])
def test_import_state_dict_round_trip(tmp_path, model, x, wrap):
    torch.save(wrap(model.state_dict()), tmp_path / "other.pth")
    imported = import_state_dict(tmp_path / "other.pth", "resnet18", "wildcat", 3, num_maps=2, kmax=0.3)
    assert torch.equal(logits(imported, x), logits(model, x))
    assert imported.params == model.params


def test_import_state_dict_refuses_unsafe_or_unfit_files(tmp_path, model):
    marker = tmp_path / "unpickled"
    torch.save({"weights": model.state_dict(), "payload": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil.pt: refused: it holds .*needs the global\(s\)"):
        import_state_dict(tmp_path / "evil.pt", "resnet18", "wildcat", 3)
    assert not marker.exists()
    torch.save(model.state_dict(), tmp_path / "ok.pt")
    with pytest.raises(CheckpointError, match=r"do not fit resnet18 \+ linear .*not in the file \(would stay random\): classifier.weight"):
        import_state_dict(tmp_path / "ok.pt", "resnet18", "linear", 3)
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        import_state_dict(tmp_path / "list.pt", "resnet18", "linear", 3)
    with pytest.raises(CheckpointError, match="no such file"):
        import_state_dict(tmp_path / "absent.pt", "resnet18", "linear", 3)


def test_unique_checkpoints_names_each_checkpoint_once(tmp_path):
    from medattn.models.files import unique_checkpoints

    a, b = tmp_path / "a", tmp_path / "b"
    given = [f"{a}.json", f"{a}.safetensors", b, f"{b}.json", a, "all"]
    assert unique_checkpoints(given) == [f"{a}.json", b, "all"]


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_reduced_storage_keeps_what_float16_cannot_hold_in_float32(tmp_path, dtype, caplog):
    """A BatchNorm running variance of ~988,000 (a TorchXRayVision-scale input) was stored as inf
    and the reloaded model's logits were wrong without a word (issue 17)."""
    from medattn.data.preprocess import Preprocessing
    from medattn.models.external import ExternalModel

    torch.manual_seed(0)
    model = ExternalModel("torchxrayvision", "torchxrayvision.models.DenseNet", 3,
                          {"num_init_features": 8, "growth_rate": 4, "block_config": [1, 1]}).eval()
    with torch.no_grad():
        model.net.features.norm0.running_var.uniform_(9.0e5, 1.1e6)  # conv0's output variance on [-1024, 1024]
        model.net.features.norm0.running_mean.uniform_(-50.0, 50.0)
    prep = Preprocessing(size=64, channels=1, intensity="xrv")
    with caplog.at_level("WARNING", logger="medattn.checkpoint"):
        path = save_checkpoint(model, tmp_path / "xrv", dtype=dtype, preprocessing=prep.to_meta())
    assert "net.features.norm0.running_var" in caplog.text and "kept in float32" in caplog.text
    loaded, meta = load_checkpoint(path)
    assert meta["storage"]["float32_tensors"] == ["net.features.norm0.running_var"]
    x = prep.to_input(np.random.default_rng(1).random((64, 64), dtype=np.float32))
    assert torch.isfinite(loaded.net.features.norm0.running_var).all()
    expected = logits(model, x)
    assert torch.allclose(logits(loaded, x), expected, atol=PROBE_TOLERANCE[dtype] * (1 + float(expected.abs().max())))
    assert meta["storage"]["probe_max_logit_difference"] <= PROBE_TOLERANCE[dtype] * (1 + float(expected.abs().max()))


def test_a_save_whose_reloaded_logits_drift_fails_naming_the_tensors(tmp_path, monkeypatch):
    from medattn.models import checkpoint

    torch.manual_seed(0)
    model = build("resnet18", "linear", 3).eval()
    monkeypatch.setitem(checkpoint.PROBE_TOLERANCE, "int8", 1e-9)
    with pytest.raises(CheckpointError, match=r"int8 storage changes the logits by up to .* the tensors it changes most: "):
        save_checkpoint(model, tmp_path / "drift", dtype="int8", input_size=64)
    assert not (tmp_path / "drift.json").exists() and not (tmp_path / "drift.safetensors").exists()
