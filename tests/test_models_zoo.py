"""The model-zoo conformance matrix (issue 17): every zoo model, built small with random
weights, saved in its published weights form and imported through the importer's command line,
gives the source model's logits; and for every method its map equals the reference recipe
(Captum, pytorch-grad-cam, the PDA definition; `medattn.explain.reference`) or the method is
`unavailable` with its one-line reason. The table is printed at the end (`pytest -s`); the
full-size matrix is `python -m medattn.bench --zoo`.

Which cells are unavailable is stated here, in named lists, as timm's conformance tests keep
their exclusions; any other outcome than the one listed fails."""

from __future__ import annotations

import fnmatch
import socket
from dataclasses import fields

import numpy as np
import pytest

from medattn.explain import METHODS
from medattn.explain.conformance import Outcome, check_entry, table
from medattn.models import zoo
from medattn.models.external import LIBRARIES, resolve_kwargs

# methods that read maps only medattn's own heads compute: unavailable on every library model
INTRINSIC = ("wildcat", "attention")
# models with activations that have no guided-backpropagation rule (GELU, SiLU, Swish)
NOT_MONOTONE = ("*efficientnet*", "*EfficientNet*", "*convnext*", "*vit*", "*deit*", "*swin*")
GUIDED = ("guided_backprop", "guided_gradcam")
# zoo entries left out of the tiny matrix (none): name them here with the reason
EXCLUDED: tuple[str, ...] = ()

_OUTCOMES: list[Outcome] = []


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing may download: a library's pretrained default reaching the network fails loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args[1:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def expected_unavailable(name: str, method: str) -> bool:
    return method in INTRINSIC or (method in GUIDED and any(fnmatch.fnmatchcase(name, p) for p in NOT_MONOTONE))


@pytest.mark.parametrize("name", zoo.list_models(exclude=EXCLUDED))
def test_every_method_equals_its_reference_or_is_unavailable(name, tmp_path):
    outcomes = check_entry(zoo.get_entry(name), tmp_path)
    _OUTCOMES.extend(outcomes)
    assert [o.method for o in outcomes] == list(METHODS)
    wrong = [o for o in outcomes if o.ok is False or (o.status == "unavailable") != expected_unavailable(name, o.method)]
    assert not wrong, "\n".join(f"{o.method}: {o.status} {o.max_rel_diff} {o.reason}" for o in wrong)
    for o in outcomes:
        if o.status == "unavailable":
            assert o.reason and "\n" not in o.reason and o.reason.startswith(f"'{o.method}'")


def test_the_matrix_table(capsys):
    """Printed for the reader (`pytest -s tests/test_models_zoo.py`); every cell says equal
    with its figure, or n/a with the reason below the table."""
    if not _OUTCOMES:
        pytest.skip("no zoo model ran in this session")
    text = table(_OUTCOMES)
    with capsys.disabled():
        print("\n" + text)
    assert text.count("\n| ") == len({o.model for o in _OUTCOMES})
    assert "error" not in text.split("\n\n")[0] and "≠" not in text


def test_every_zoo_entry_states_its_facts():
    """One schema over all entries, as torchvision tests its weights' metadata."""
    names = zoo.list_models()
    assert len(names) >= 18 and names == sorted(set(names))
    for name in names:
        entry = zoo.get_entry(name)
        assert name.split("/")[0] in ("torchvision", "timm", "monai", "xrv")
        assert entry.library in (None, *LIBRARIES)
        assert entry.callable.startswith(entry.library or "torchvision"), name
        assert entry.weights_form in zoo.WEIGHTS_FORMS and entry.layout in zoo.LAYOUTS
        assert entry.channels in (1, 3) and entry.classes >= 2 and entry.input_size >= 64
        assert entry.source and entry.licence and entry.gradcam_layer
        assert entry.tiny.size <= 64
        assert all(f.name for f in fields(entry))
        for tiny in (False, True):  # both configurations' arguments resolve from the signatures
            callable_name, kwargs = entry.constructor(tiny)
            if entry.library is not None:
                resolve_kwargs(entry.library, callable_name, kwargs, entry.channels)
    assert zoo.list_models("timm/*", exclude="*vit*") == [n for n in names if n.startswith("timm/") and "vit" not in n]
    with pytest.raises(ValueError, match="no zoo entry 'nope'"):
        zoo.get_entry("nope")
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(zoo.get_entry(names[0]))


def test_an_in_place_relu_after_the_layer_rewrites_pytorch_grad_cams_activations(tmp_path):
    """DenseNets apply F.relu(features, inplace=True) after the Grad-CAM layer: the activations
    pytorch-grad-cam keeps are rewritten to their positive part while its gradients are of the
    layer's own output (pytorch/vision#4164, frgfm/torch-cam#72). Its recipe with the layer's
    output guarded (what the matrix uses) and ours read the layer's own output."""
    import torch

    from medattn.explain import explain
    from medattn.explain.conformance import import_entry, probe_image
    from medattn.explain.reference import compare, reference_map
    from medattn.models import load_checkpoint

    path, _, _ = import_entry(zoo.get_entry("xrv/densenet121-res224-all"), tmp_path)
    model, _ = load_checkpoint(path)
    x = model.preprocessing.to_input(probe_image(64, seed=1))
    ours = torch.from_numpy(explain(model, x, 0, "gradcam", device="cpu", precision="float32"))
    guarded = reference_map("gradcam", model, x, 0)
    raw = reference_map("gradcam", model, x, 0, {"inplace_safe": False})
    assert compare("gradcam", ours, guarded) < 1e-4
    assert compare("gradcam", raw, guarded) > 0.05


@pytest.fixture(scope="module")
def nih(shared_data, tmp_path_factory):
    from medattn.data import load_dataset
    from medattn.data.build import main

    out = tmp_path_factory.mktemp("nih") / "nih"
    assert main(["nih", "--source", str(shared_data / "nih-cxr14-sample"), "--out", str(out)]) == 0
    return load_dataset(out)


@pytest.mark.parametrize("name", ["xrv/densenet121-res224-all", "monai/resnet50"])
def test_precompute_over_nih_maps_every_method_that_applies(nih, tmp_path, name, capsys):
    """A 1-channel TorchXRayVision model and a MONAI ResNet, imported: precompute over NIH images
    gives rows for every method that applies and one line for each that does not; IG on
    1-channel models crashed and took the whole run with it (issue 17)."""
    from medattn.explain.conformance import TINY_PARAMS, import_entry
    from medattn.jobs.precompute import main as precompute_cli, precompute
    from medattn.models import load_checkpoint
    from medattn.store import HeatmapCache, Run

    entry = zoo.get_entry(name)
    path, _, _ = import_entry(entry, tmp_path / "model")
    meta = load_checkpoint(path)[1]
    meta["classes"] = list(nih.classes) + [f"extra{i}" for i in range(entry.classes - len(nih.classes))]
    (path.parent / "imported.json").write_text(__import__("json").dumps(meta))  # outputs named as NIH's classes
    boxed = sorted(set(nih.boxes["image_id"]) & set(nih.split("test").index))[:1]
    params = {**TINY_PARAMS, "pda": {"window": 16, "stride": 16, "samples": 2}}
    frame = precompute(nih, [path], list(METHODS), image_ids=boxed, run=Run(tmp_path / "run"),
                       cache=HeatmapCache(tmp_path / "cache"), device="cpu", params=params, progress=lambda *_: None)
    applies = [m for m in METHODS if not expected_unavailable(name, m)]
    assert set(frame["method"]) == set(applies)
    assert frame.attrs["failed"] == []
    assert [line.split(" on ")[0] for line in frame.attrs["not_applicable"]] == [m for m in METHODS if m not in applies]
    boxed_rows = frame[frame["n_boxes"] >= 1]
    assert set(boxed_rows["method"]) == set(applies) and np.isfinite(boxed_rows["auprc"].astype(float)).all()
    # the command line says the same in its summary
    assert precompute_cli(["--dataset", str(nih.root), "--checkpoints", str(path), "--methods", "saliency", "wildcat",
                           "--images", *boxed, "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "not applicable: wildcat on imported: 'wildcat' needs a model with class maps" in out
