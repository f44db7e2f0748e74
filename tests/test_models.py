"""Model building: backbone feature taps, every registered arch × head, the intrinsic maps,
the registry's errors, and the attention consistency loss."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medattn.models import ARCHS, COMBINATIONS, HEADS, build, head_params
from medattn.models.backbones import Backbone
from medattn.models.consistency_loss import attention_consistency_loss

BIG_ARCHS = {"resnet101", "resnet152", "vgg19", "densenet169"}
# Unmarked: every head on resnet18 (residual attention included) and the smallest other net;
# the rest of the cross product is marked slow (pytest -m slow).
QUICK = {(a, h) for a, h in COMBINATIONS if a in ("resnet18", "mobilenet_v3_small")}

# Gonçalves et al. 2021, section 3.2.3, at 224 × 224; the rest follow from torchvision.
PUBLISHED_LEVELS = {
    "densenet121": [(512, 28, 28), (1024, 14, 14), (1024, 7, 7)],
    "resnet50": [(512, 28, 28), (1024, 14, 14), (2048, 7, 7)],
    "vgg16": [(256, 28, 28), (512, 14, 14), (512, 7, 7)],
}


def maybe_slow(pairs, is_quick):
    return [pytest.param(*p, marks=() if is_quick(p) else pytest.mark.slow) for p in pairs]


@pytest.mark.parametrize("arch", maybe_slow([(a,) for a in ARCHS], lambda p: p[0] not in BIG_ARCHS))
def test_backbone_levels_have_the_documented_shapes(arch):
    backbone = Backbone(arch).eval()
    with torch.no_grad():
        levels = backbone(torch.randn(1, 3, 224, 224))
    shapes = [tuple(level.shape[1:]) for level in levels]
    expected = PUBLISHED_LEVELS.get(arch) or [(c, s, s) for c, s in zip(backbone.channels, (28, 14, 7))]
    assert shapes == expected


@pytest.mark.parametrize("arch, head", maybe_slow(COMBINATIONS, lambda p: p in QUICK))
def test_every_combination_builds_and_trains(arch, head):
    torch.manual_seed(0)
    model = build(arch, head, 3)
    assert (model.arch, model.head, model.num_classes, model.input_channels) == (arch, head, 3, 3)
    assert model.params == head_params(head)
    assert any(m is model.gradcam_layer for m in model.modules())
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient: {unused[:5]}"


def test_registry_lists_combinations_and_refuses_residual_attention_off_resnets():
    assert set(HEADS) == {"linear", "mldam", "wildcat", "recurrent", "channel_attention",
                          "residual_attention"}
    assert len(COMBINATIONS) == 5 * len(ARCHS) + 5
    assert ("vgg16", "residual_attention") not in COMBINATIONS
    with pytest.raises(ValueError, match="not available on 'vgg16'.*resnet18, resnet34"):
        build("vgg16", "residual_attention", 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(arch="resnet9", head="linear"), "unknown arch 'resnet9'; choose one of: vgg16, vgg19"),
    (dict(arch="resnet18", head="gated"), "unknown head 'gated'; heads available on 'resnet18': linear, mldam"),
    (dict(arch="vgg16", head="gated"), "available on 'vgg16': linear, mldam, wildcat, recurrent, channel_attention$"),
    (dict(arch="resnet18", head="wildcat", maps=4), r"unknown parameter\(s\) maps; allowed: num_maps=8"),
    (dict(arch="resnet18", head="linear", steps=2), r"unknown parameter\(s\) steps; allowed: none"),
    (dict(arch="resnet18", head="recurrent", steps=0), "recurrent: steps must be an integer >= 1"),
    (dict(arch="resnet18", head="wildcat", alpha="high"), "alpha must be a finite number"),
    (dict(arch="resnet18", head="channel_attention", levels=["d"]), "levels must be a non-empty selection"),
    (dict(arch="resnet18", head="linear", num_classes=0), "num_classes must be a positive integer"),
])
def test_build_refuses_bad_arguments_naming_the_valid_choices(kwargs, message):
    kwargs = {"num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_recorded_params_survive_json():
    for head in HEADS:
        arch = "resnet18" if head == "residual_attention" else "mobilenet_v3_small"
        model = build(arch, head, 2)
        assert json.loads(json.dumps(model.params)) == model.params


@pytest.fixture(scope="module")
def image_pair():
    torch.manual_seed(1)
    return torch.randn(2, 3, 224, 224)


def test_mldam_maps(image_pair):
    model = build("resnet18", "mldam", 4).eval()
    with torch.no_grad():
        attention = model.attention_maps(image_pair)
        class_maps = model.class_maps(image_pair)
        logits = model(image_pair)
    assert {k: tuple(v.shape) for k, v in attention.items()} == {
        "level_a": (2, 28, 28), "level_b": (2, 14, 14), "level_c": (2, 7, 7)}
    for maps in attention.values():  # attention received per cell: a distribution over cells
        assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(2), atol=1e-4)
    assert class_maps.shape == (2, 4, 28, 28)
    assert torch.allclose(class_maps.mean(dim=(2, 3)) + model.classifier.bias, logits, atol=1e-4)


def test_recurrent_maps_and_steps(image_pair):
    model = build("resnet18", "recurrent", 4, steps=2).eval()
    with torch.no_grad():
        step_logits, weights, crude = model.unroll(image_pair)
        attention = model.attention_maps(image_pair)
        class_maps = model.class_maps(image_pair)
        logits = model(image_pair)
        supervised = model.training_outputs(image_pair)
    assert step_logits.shape == (2, 2, 4) and torch.equal(logits, step_logits[:, -1])
    # training supervises the output and the crude (GAP + linear) branch
    assert len(supervised) == 2 and torch.equal(supervised[0], logits)
    assert torch.allclose(supervised[1], model.crude(model.backbone(image_pair)[-1].mean(dim=(2, 3))))
    assert attention["steps"].shape == (2, 2, 7, 7) and attention["mean"].shape == (2, 7, 7)
    assert torch.allclose(attention["steps"].sum(dim=(2, 3)), torch.ones(2, 2), atol=1e-5)
    assert class_maps.shape == (2, 4, 7, 7)
    assert all(torch.equal(class_maps[:, c], attention["mean"]) for c in range(4))


def test_residual_attention_masks_and_class_maps(image_pair):
    model = build("resnet18", "residual_attention", 4).eval()
    with torch.no_grad():
        masks = model.attention_maps(image_pair)
        class_maps = model.class_maps(image_pair)
        logits = model(image_pair)
    assert {k: tuple(v.shape) for k, v in masks.items()} == {
        "mask_a": (2, 128, 28, 28), "mask_b": (2, 256, 14, 14)}
    assert all(((m > 0) & (m < 1)).all() for m in masks.values())
    assert class_maps.shape == (2, 4, 7, 7)
    assert torch.allclose(class_maps.mean(dim=(2, 3)) + model.classifier.bias, logits, atol=1e-4)
    one = build("resnet18", "residual_attention", 4, levels=["a"]).eval()
    with torch.no_grad():
        assert list(one.attention_maps(image_pair)) == ["mask_a"]
    assert one.params == {"levels": ["a"]}
    with pytest.raises(ValueError, match="levels"):
        build("resnet18", "residual_attention", 4, levels=["c"])


def test_gradcam_layer_outputs_the_last_level():
    seen = []
    for head in ("linear", "channel_attention"):
        model = build("resnet18", head, 2).eval()
        handle = model.gradcam_layer.register_forward_hook(lambda m, i, out: seen.append(out.shape))
        with torch.no_grad():
            model(torch.randn(1, 3, 224, 224))
        handle.remove()
    assert seen == [(1, 512, 7, 7), (1, 512, 7, 7)]
    assert build("resnet18", "channel_attention", 2).gradcam_layer.__class__.__name__ == \
        "ResidualChannelAttentionBlock"


def test_channel_attention_blocks_sit_after_the_chosen_levels():
    assert list(build("resnet18", "channel_attention", 2).blocks) == ["a", "b", "c"]
    model = build("resnet18", "channel_attention", 2, levels="cb")
    assert model.params["levels"] == ["b", "c"] and list(model.blocks) == ["b", "c"]


# --- attention consistency loss -------------------------------------------------------------

def peaked(*cells, size=4, height=30.0):
    """Class maps (1, len(cells), size, size), each a single high cell."""
    maps = torch.zeros(1, len(cells), size, size)
    for c, (r, col) in enumerate(cells):
        maps[0, c, r, col] = height
    return maps


def test_consistency_loss_rewards_compact_distinct_maps():
    diffuse = torch.zeros(1, 2, 4, 4)  # uniform: entropy 1, overlap 1
    assert attention_consistency_loss(diffuse).item() == pytest.approx(2.0)
    same = attention_consistency_loss(peaked((0, 0), (0, 0))).item()
    distinct = attention_consistency_loss(peaked((0, 0), (3, 3))).item()
    assert distinct < 0.01
    assert same == pytest.approx(1.0, abs=0.01)  # compact but identical


def test_consistency_loss_with_labels_counts_present_classes():
    maps = peaked((0, 0), (3, 3))
    maps[0, 1] = 0  # class 1 diffuse, class 0 compact; still almost disjoint from each other
    present_0 = attention_consistency_loss(maps, torch.tensor([[1, 0]])).item()
    present_1 = attention_consistency_loss(maps, torch.tensor([[0, 1]])).item()
    assert present_0 < 0.3 < 1.0 < present_1
    assert attention_consistency_loss(maps, torch.tensor([1])).item() == pytest.approx(present_1)


def test_consistency_loss_is_zero_without_anything_to_count_and_still_differentiable():
    maps = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = attention_consistency_loss(maps, torch.zeros(2, 3))
    assert loss.item() == 0.0
    loss.backward()
    single = attention_consistency_loss(torch.zeros(1, 1, 4, 4))
    assert single.item() == pytest.approx(1.0)  # one class: compactness only


def test_consistency_loss_trains_the_maps_of_a_model():
    model = build("resnet18", "wildcat", 2, num_maps=2)
    loss = attention_consistency_loss(model.class_maps(torch.randn(2, 3, 64, 64)))
    loss.backward()
    assert model.maps.weight.grad is not None and math.isfinite(loss.item())


def test_consistency_loss_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"class_maps must be \(B, C, h, w\)"):
        attention_consistency_loss(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"labels must be \(B, C\) = \(2, 3\)"):
        attention_consistency_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\)"):
        attention_consistency_loss(torch.zeros(2, 3, 4, 4), torch.tensor([0, 3]))
