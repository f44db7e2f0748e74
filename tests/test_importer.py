"""Importing other tools' weights: torchvision key names in every common wrapper, prefix and
old-name form, TorchXRayVision / MONAI / timm models, and the refusals (partial loads, whole
pickled models, unreadable files). Each imported model's logits must equal the source model's."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from medattn.errors import CheckpointError
from medattn.models import load_checkpoint
from medattn.data.preprocess import Preprocessing
from medattn.models.importer import Controls, import_checkpoint, main

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
TOLERANCE = 1e-4
CLASSES = ["Atelectasis", "Effusion", "Mass"]


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Nothing may fetch weights: torch.hub's downloaders fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


_NETS: dict[str, torch.nn.Module] = {}


def torchvision_net(arch: str) -> torch.nn.Module:
    """A random-weight torchvision model with len(CLASSES) outputs, built once per arch, with
    BatchNorm statistics that are not the defaults (so a missed buffer shows in the logits)."""
    if arch not in _NETS:
        torch.manual_seed(0)
        net = getattr(torchvision.models, arch)(weights=None, num_classes=len(CLASSES))
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        _NETS[arch] = net.eval()
    return _NETS[arch]


def old_densenet_names(state: dict) -> dict:
    """torchvision < 0.4 DenseNet layer names (norm.1, conv.2) and a Sequential(Linear, Sigmoid)
    head saved as classifier.0, as CheXNet reproductions have them."""
    renamed = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}
    return {k.replace("classifier.", "classifier.0."): v for k, v in renamed.items()}


# form name → (file name, how the state dict is saved)
FORMS = {
    "plain": ("weights.pth", lambda sd: sd),
    "state_dict": ("weights.pth.tar", lambda sd: {"state_dict": sd, "epoch": 7, "best_auc": 0.8}),
    "model_state_dict": ("weights.bin", lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}}),
    "model": ("weights.pt", lambda sd: {"model": sd}),
    "lightning": ("epoch=3.ckpt", lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 10}),
    "module": ("checkpoint", lambda sd: {f"module.{k}": v for k, v in sd.items()}),
    "safetensors": ("weights.safetensors", None),
    "chexnet": ("model.pth.tar", lambda sd: {"state_dict": {f"module.densenet121.{k}": v for k, v in old_densenet_names(sd).items()}}),
}
# Every form on the cheapest network; ResNet-50 and DenseNet-121 (the slow ones) in one form
# each, the CheXNet form combining module., a wrapper attribute, old names and classifier.0.
CASES = ([(arch, form) for arch in ("mobilenet_v2", "resnet50", "densenet121") for form in FORMS if form != "chexnet"]
         + [("densenet121", "chexnet")])


def write(tmp_path: Path, state: dict, form: str) -> Path:
    name, wrap = FORMS[form]
    path = tmp_path / name
    if wrap is None:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(wrap(state), path)
    return path


def cli(weights: Path, out: Path, *extra: str) -> int:
    return main([str(weights), "--classes", *CLASSES, "--task", "multilabel", "--input-size", str(SIZE),
                 "--out", str(out), *extra])


@pytest.mark.parametrize("arch,form", CASES, ids=[f"{a}-{f}" for a, f in CASES])
def test_torchvision_state_dicts_import_with_equal_logits(tmp_path, x, capsys, arch, form):
    net = torchvision_net(arch)
    weights = write(tmp_path, net.state_dict(), form)
    assert cli(weights, tmp_path / "imported", "--arch", arch) == 0, capsys.readouterr().err
    assert "verified: max |Δlogit|" in capsys.readouterr().out
    model, meta = load_checkpoint(tmp_path / "imported")
    with torch.inference_mode():
        assert (model(x) - net(x)).abs().max() <= TOLERANCE
    assert meta["classes"] == CLASSES and meta["imported"]["file"] == weights.name
    assert meta["preprocessing"]["size"] == SIZE


def test_the_command_line_runs_as_a_module(tmp_path, x):
    net = torchvision_net("mobilenet_v2")
    weights = write(tmp_path, net.state_dict(), "state_dict")
    done = subprocess.run([sys.executable, "-m", "medattn.models.importer", str(weights), "--arch", "mobilenet_v2",
                           "--classes", *CLASSES, "--task", "multilabel", "--input-size", str(SIZE),
                           "--resize", "shorter_side_center_crop", "--resize-size", str(SIZE + 8),
                           "--interpolation", "bilinear", "--out", str(tmp_path / "cli")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr, done.stderr  # the package does not import its CLI module first
    assert "read the state dict under 'state_dict'" in done.stdout
    model, meta = load_checkpoint(tmp_path / "cli")
    with torch.inference_mode():
        assert (model(x) - net(x)).abs().max() <= TOLERANCE
    expected = {"resize": "shorter_side_center_crop", "size": SIZE + 8, "crop": SIZE, "interpolation": "bilinear"}
    assert {k: meta["preprocessing"][k] for k in expected} == expected


def _xrv():
    import torchxrayvision as xrv

    return xrv.models.DenseNet(weights=None), ["--library", "xrv", "--arch", "DenseNet"], 1


def _monai():
    from monai.networks.nets import DenseNet121

    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=len(CLASSES))
    return net, ["--library", "monai", "--arch", "DenseNet121", "--kwarg", "in_channels=1", "--classes", *CLASSES], 1


def _timm():
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=len(CLASSES))
    return net, ["--library", "timm", "--arch", "resnet18", "--classes", *CLASSES], 3


@pytest.mark.parametrize("make", [_xrv, _monai, _timm], ids=["torchxrayvision", "monai", "timm"])
def test_library_models_import_with_equal_logits(tmp_path, capsys, make):
    torch.manual_seed(0)
    net, args, channels = make()
    net.eval()
    state = net.state_dict()
    if "xrv" in args:
        state["op_threshs"] = torch.rand(18)  # saved by xrv's pretrained models; dropped (logits)
    torch.save({"state_dict": state}, tmp_path / "weights.pth")
    code = main([str(tmp_path / "weights.pth"), *args, "--task", "multilabel", "--input-size", str(SIZE),
                 "--out", str(tmp_path / "lib")])
    assert code == 0, capsys.readouterr().err
    model, meta = load_checkpoint(tmp_path / "lib")
    x = torch.randn(2, channels, SIZE, SIZE)
    with torch.inference_mode():
        assert (model(x) - net(x)).abs().max() <= TOLERANCE
    assert meta["library"] in {"torchxrayvision", "monai", "timm"} and meta["constructor"]["callable"]
    assert meta["preprocessing"]["channels"] == channels
    assert isinstance(model.gradcam_layer, torch.nn.Module)
    from medattn.explain import unavailable

    assert unavailable(model, "gradcam") is None
    assert "class maps" in unavailable(model, "wildcat")
    if "xrv" in args:
        assert meta["preprocessing"]["intensity"] == "xrv" and len(meta["classes"]) == 18
        assert (meta["preprocessing"]["resize"], meta["preprocessing"]["interpolation"]) == ("center_crop_resize", "xrv")


def test_a_partial_load_is_refused_by_name_unless_allowed(tmp_path, x, capsys):
    state = {k: v for k, v in torchvision_net("mobilenet_v2").state_dict().items() if not k.startswith("classifier")}
    weights = write(tmp_path, state, "plain")
    assert cli(weights, tmp_path / "partial", "--arch", "mobilenet_v2") == 2
    err = capsys.readouterr().err
    assert "2 not in the file (would stay random): classifier.1.weight (= classifier.weight)" in err
    assert "--allow-missing" in err and not (tmp_path / "partial.json").exists()
    assert cli(weights, tmp_path / "partial", "--arch", "mobilenet_v2", "--allow-missing", "classifier.*") == 0
    assert "left random (allowed): classifier.1.weight" in capsys.readouterr().out
    model, meta = load_checkpoint(tmp_path / "partial")
    assert meta["imported"]["left_random"] == ["classifier.1.weight (= classifier.weight)", "classifier.1.bias (= classifier.bias)"]


def test_wrong_class_count_says_so(tmp_path, capsys):
    weights = write(tmp_path, torchvision_net("mobilenet_v2").state_dict(), "plain")
    assert main([str(weights), "--arch", "mobilenet_v2", "--classes", "A", "B", "--task", "multilabel",
                 "--input-size", str(SIZE), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "classifier.1.weight (= classifier.weight): file [3, 1280] vs model [2, 1280]" in err
    assert "--classes lists another number of classes" in err


class Payload:
    """Unpickling this would create a file: proof that a loader ran pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_whole_pickled_model_is_never_unpickled_and_the_fix_is_spelled_out(tmp_path, capsys):
    marker = tmp_path / "unpickled"
    torch.save({"net": torchvision_net("mobilenet_v2"), "payload": Payload(marker)}, tmp_path / "whole.pth")
    assert cli(tmp_path / "whole.pth", tmp_path / "w", "--arch", "mobilenet_v2") == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert "unpickles nothing but tensors" in err
    assert "the global(s) torch.nn.modules.container.Sequential" in err or "MobileNetV2" in err
    assert "builtins.getattr" in err and "pathlib.Path" in err  # every global the file needs is named
    assert "a dict holding a whole model under 'net'" in err
    assert f"checkpoint = torch.load('{tmp_path / 'whole.pth'}', weights_only=False)" in err
    assert "torch.save(checkpoint['net'].state_dict(), 'state_dict.pt')" in err


@pytest.mark.parametrize("name", ["model.pth.tar", "checkpoint", "model.pt", "weights.bin"])
def test_load_checkpoint_on_foreign_files_names_the_importer(tmp_path, name):
    torch.save({"w": torch.zeros(1)}, tmp_path / name)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / name)
    assert "python -m medattn.models.importer" in str(info.value)
    assert "missing" not in str(info.value)


@pytest.mark.parametrize("name", ["random.pt", "random", "random.safetensors"])
def test_random_bytes_are_unreadable_not_a_pickle(tmp_path, name, capsys):
    (tmp_path / name).write_bytes(os.urandom(4096).replace(b"PK", b"pk").lstrip(b"\x80") or b"x")
    with pytest.raises(CheckpointError, match="unreadable") as info:
        load_checkpoint(tmp_path / name)
    assert "pickle" not in str(info.value).split("unreadable")[0]
    assert cli(tmp_path / name, tmp_path / "r", "--arch", "mobilenet_v2") == 2
    assert "unreadable" in capsys.readouterr().err


def test_weights_get_the_permissions_of_their_json(tmp_path):
    weights = write(tmp_path, torchvision_net("mobilenet_v2").state_dict(), "plain")
    old = os.umask(0o027)
    try:
        assert cli(weights, tmp_path / "perm", "--arch", "mobilenet_v2") == 0
    finally:
        os.umask(old)
    modes = {stat.S_IMODE((tmp_path / f"perm{suffix}").stat().st_mode) for suffix in (".json", ".safetensors")}
    assert modes == {0o640}


def test_the_cli_never_replaces_a_checkpoint_without_overwrite(tmp_path, capsys):
    """`--out checkpoints/demo_resnet18_linear` silently replaced the demo model."""
    net = torchvision_net("resnet18")
    weights = write(tmp_path, net.state_dict(), "plain")
    out = tmp_path / "taken"
    for suffix in (".json", ".safetensors"):
        out.with_name(out.name + suffix).write_text("kept")
    assert cli(weights, out, "--arch", "resnet18") == 2
    assert "--overwrite" in capsys.readouterr().err and out.with_name("taken.json").read_text() == "kept"
    assert cli(weights, out, "--arch", "resnet18", "--overwrite") == 0
    assert out.with_name("taken.json").read_text() != "kept"


def test_a_classic_training_checkpoint_with_numpy_scalars_imports_with_equal_logits(tmp_path, x, capsys):
    """`model_best.pth.tar` = {epoch, state_dict, best_auc: numpy.float64, optimizer} was refused
    (issue 17): numpy scalars and dtypes are allowed beside the weights, nothing else."""
    import numpy as np

    net = torchvision_net("mobilenet_v2")
    torch.save({"epoch": 12, "arch": "mobilenet_v2", "state_dict": net.state_dict(), "best_auc": np.float64(0.8412),
                "best_epoch": np.int64(9), "optimizer": torch.optim.SGD(net.parameters(), lr=0.1).state_dict()},
               tmp_path / "model_best.pth.tar")
    assert cli(tmp_path / "model_best.pth.tar", tmp_path / "best", "--arch", "mobilenet_v2") == 0, capsys.readouterr().err
    model, _ = load_checkpoint(tmp_path / "best")
    with torch.inference_mode():
        assert (model(x) - net(x)).abs().max() <= TOLERANCE


@pytest.mark.parametrize("extra, refused, held, recipe", [
    ({"args": __import__("argparse").Namespace(lr=0.1)}, "argparse.Namespace",
     "a dict with a state dict under 'state_dict' and 'args' (argparse.Namespace)",
     "torch.save(checkpoint['state_dict'], 'state_dict.pt')"),
    ({"scores": __import__("numpy").arange(3)}, "numpy.ndarray", "a dict with a state dict under 'state_dict'",
     "torch.save(checkpoint['state_dict'], 'state_dict.pt')"),
])
def test_any_other_global_is_refused_by_name_with_a_recipe_for_the_files_content(tmp_path, capsys, extra, refused,
                                                                                  held, recipe):
    net = torchvision_net("mobilenet_v2")
    torch.save({"epoch": 1, "state_dict": net.state_dict(), **extra}, tmp_path / "ckpt.pth")
    assert cli(tmp_path / "ckpt.pth", tmp_path / "no", "--arch", "mobilenet_v2") == 2
    err = capsys.readouterr().err
    assert refused in err and held in err and recipe in err
    assert not (tmp_path / "no.json").exists()


def test_a_whole_model_gets_the_whole_model_recipe(tmp_path, capsys):
    torch.save(torchvision_net("mobilenet_v2"), tmp_path / "whole.pt")
    assert cli(tmp_path / "whole.pt", tmp_path / "w", "--arch", "mobilenet_v2") == 2
    err = capsys.readouterr().err
    assert "a whole pickled model (torchvision.models.mobilenetv2.MobileNetV2)" in err
    assert "model = torch.load(" in err and "torch.save(model.state_dict(), 'state_dict.pt')" in err


@pytest.mark.parametrize("arch, kwargs, channels_arg", [
    ("resnet18", [], "n_input_channels"),  # a builder function: arguments read from the ResNet class it returns
    ("SEResNet50", ["--kwarg", "layers=[1,1,1,1]"], "in_channels"),  # **kwargs passed on to SENet
    ("EfficientNetBN", ["--kwarg", "model_name=efficientnet-b0"], "in_channels"),  # pretrained=True by default
])
def test_monai_classifiers_import_by_their_own_constructor_arguments(tmp_path, capsys, arch, kwargs, channels_arg):
    """Every MONAI classifier but DenseNet121 failed ("unexpected keyword argument
    'out_channels'"): the class count and channel arguments are read from the signature."""
    from medattn.models.external import ExternalModel

    torch.manual_seed(0)
    source = ExternalModel("monai", f"monai.networks.nets.{arch}", len(CLASSES),
                           {k: v for k, v in (a.split("=", 1) for a in kwargs[1::2])} | (
                               {"layers": [1, 1, 1, 1]} if arch == "SEResNet50" else {}), channels=1).eval()
    torch.save(source.net.state_dict(), tmp_path / "model.pt")
    code = main([str(tmp_path / "model.pt"), "--library", "monai", "--arch", arch, *kwargs, "--classes", *CLASSES,
                 "--task", "multilabel", "--input-size", str(SIZE), "--out", str(tmp_path / "m")])
    assert code == 0, capsys.readouterr().err
    model, meta = load_checkpoint(tmp_path / "m")
    assert meta["constructor"]["kwargs"][channels_arg] == 1 and meta["constructor"]["kwargs"]["spatial_dims"] == 2
    assert model.num_classes == len(CLASSES) and meta["preprocessing"]["channels"] == 1
    probe = torch.randn(2, 1, SIZE, SIZE)
    with torch.inference_mode():
        assert (model(probe) - source(probe)).abs().max() <= TOLERANCE


def test_a_class_count_argument_must_agree_with_the_classes(tmp_path, capsys):
    torch.save(torchvision_net("mobilenet_v2").state_dict(), tmp_path / "w.pt")
    assert main([str(tmp_path / "w.pt"), "--library", "monai", "--arch", "DenseNet121", "--kwarg", "out_channels=5",
                 "--classes", *CLASSES, "--task", "multilabel", "--input-size", str(SIZE), "--out", str(tmp_path / "c")]) == 2
    assert "out_channels=5 but --classes names 3 classes" in capsys.readouterr().err


# What the app shows: an upload named by its own name (never where the server holds it), the
# advice in the page's own fields, and a pickle said for what it is.
PAGE = Controls(allow_missing="'May stay random'", ignore="'May be dropped'", classes="'Output classes'",
                channels="'Channels'")


def _legacy_pickle(folder: Path, marker: Path) -> Path:
    torch.save({"state_dict": torchvision_net("mobilenet_v2").state_dict(), "x": Payload(marker)}, folder / "evil.pt",
               _use_new_zipfile_serialization=False)
    return folder / "evil.pt"


def _whole_model(folder: Path, marker: Path) -> Path:
    torch.save(torchvision_net("mobilenet_v2"), folder / "evil.pt")
    return folder / "evil.pt"


def _other_backbone(folder: Path, marker: Path) -> Path:
    torch.save(torchvision.models.resnet18(weights=None, num_classes=len(CLASSES)).state_dict(), folder / "evil.pt")
    return folder / "evil.pt"


def _wrong_classes(folder: Path, marker: Path) -> Path:
    torch.save(torchvision.models.mobilenet_v2(weights=None, num_classes=7).state_dict(), folder / "evil.pt")
    return folder / "evil.pt"


@pytest.mark.parametrize("make, said", [
    (_legacy_pickle, ["refused", "legacy (pre-zip) pickle", "'state_dict'", "torch.load('evil.pt', weights_only=False)",
                      "on your own machine"]),
    (_whole_model, ["refused", "a whole pickled model", "model = torch.load('evil.pt', weights_only=False)"]),
    (_other_backbone, ["do not fit", "'May stay random'", "'May be dropped'"]),
    (_wrong_classes, ["mis-shaped", "'Output classes' lists another number"]),
])
def test_messages_for_an_upload_name_its_file_and_the_pages_controls_only(tmp_path, make, said):
    held = tmp_path / "cache" / "uploads" / "6288" / "0123abcd"  # where the server keeps an upload
    held.mkdir(parents=True)
    marker = tmp_path / "unpickled"
    weights = make(held, marker)
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(weights, tmp_path / "out", arch="mobilenet_v2", classes=CLASSES, task="multilabel",
                          preprocessing=Preprocessing(size=SIZE), shown="evil.pt", controls=PAGE)
    message = str(info.value)
    assert message.startswith("evil.pt: ") and str(tmp_path) not in message and "uploads" not in message
    assert "--" not in message and "unknown" not in message, message  # no CLI flag, no "needs the global(s) unknown"
    assert all(s in message for s in said), message
    assert not marker.exists() and not (tmp_path / "out.json").exists()
