"""Explanation entry point, explainers and the normalisation policy, on tiny models."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medattn.data.preprocess import Preprocessing
from medattn.errors import MedattnError
from medattn.explain import DEFAULT_SIGN, METHODS, explain, get_explainer, method_params, normalize
from medattn.explain.cam import cam_layer
from medattn.explain.gradients import ig_baseline

SIZE = 64
OWN_METHODS = [m for m in METHODS if not m.startswith("pda")]
FAST = {  # small settings so the whole file stays quick; defaults are tested via method_params
    "smoothgrad": {"n_samples": 4},
    "integrated_gradients": {"steps": 16},
    "smoothgrad_ig": {"n_samples": 3, "steps": 8},
    "occlusion": {"window": 16, "stride": 8},
}


class TinyWildcat(nn.Module):
    """Conv features → 2 maps per class → class maps (mean of each class's maps) → mean pool."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.maps = nn.Conv2d(8, 2 * num_classes, 1)
        self.gradcam_layer = "features"
        self.num_classes = num_classes

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        m = self.maps(self.features(x))
        return m.view(len(x), self.num_classes, 2, *m.shape[2:]).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_maps(x).mean(dim=(2, 3))


class TinyAttention(TinyWildcat):
    """Adds two attention levels at different resolutions."""

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {"level1": torch.sigmoid(f[:, :1]), "level2": torch.sigmoid(f[:, 1:3]).mean(1)[:, ::2, ::2]}


class Mask(nn.Module):
    def __init__(self, region: tuple[slice, slice]):
        super().__init__()
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[(..., *region)] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


REGION = (slice(8, 24), slice(32, 56))


class RegionModel(nn.Module):
    """Logits that depend only on the pixels of REGION (plus the 3×3 conv's 1-pixel rim)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.mask = Mask(REGION)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5, 0.8, 0.3], [-1.0, 0.2, -0.4, 0.6]]))
        self.gradcam_layer = self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mask(self.relu(self.conv(x))).mean(dim=(2, 3)) * 50)


def image(seed: int = 0, batch: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (3, SIZE, SIZE) if batch is None else (batch, 3, SIZE, SIZE)
    return torch.randn(shape, generator=g)


def inside_fraction(m: np.ndarray, rim: int = 2) -> float:
    a = np.abs(m)
    rows, cols = REGION
    inside = a[max(rows.start - rim, 0):rows.stop + rim, max(cols.start - rim, 0):cols.stop + rim]
    return float(inside.sum() / a.sum())


def test_method_list_is_the_contract():
    assert METHODS == ("saliency", "smoothgrad", "integrated_gradients", "smoothgrad_ig",
                       "guided_backprop", "gradcam", "guided_gradcam", "occlusion", "pda",
                       "pda_features", "wildcat", "attention")
    assert set(DEFAULT_SIGN) == set(METHODS)


@pytest.mark.parametrize("method", OWN_METHODS)
def test_every_method_gives_a_finite_float32_map_in_the_input_frame(method):
    model = TinyAttention()
    out = explain(model, image(), 1, method, device="cpu", **FAST.get(method, {}))
    assert out.shape == (SIZE, SIZE) and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max() > 0
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training  # mode restored


@pytest.mark.parametrize("method", ["pda", "pda_features"])
def test_pda_methods_follow_the_protocol(method):
    if importlib.util.find_spec("medattn.explain.pda") is None:
        pytest.skip("medattn.explain.pda not written yet")
    quick = {"window": 16, "stride": 16, "samples": 2, "reference": image(12, batch=4)}
    params = {k: v for k, v in quick.items() if k in method_params(method)}
    out = explain(TinyWildcat(), image(), 0, method, device="cpu", **params)
    assert out.shape == (SIZE, SIZE) and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam",
                                    "guided_backprop", "occlusion"])
def test_maps_fall_inside_the_region_the_logit_depends_on(method):
    out = explain(RegionModel(), image(3), 0, method, device="cpu", **FAST.get(method, {}))
    # occlusion windows (16 px) straddle the region edge, so allow a wider rim for it
    assert inside_fraction(out, rim=16 if method == "occlusion" else 2) > 0.95


def test_integrated_gradients_completeness():
    model, x = RegionModel(), image(4)
    for baseline in ("black", "zeros", "blur"):
        out = explain(model, x, 0, "integrated_gradients", device="cpu", steps=64,
                      baseline=baseline)
        with torch.no_grad():
            base = ig_baseline(model, x[None], baseline)
            delta = float(model(x[None])[0, 0] - model(base)[0, 0])
        assert abs(out.sum() - delta) <= 0.02 * abs(delta) + 1e-3, baseline


@pytest.mark.parametrize("intensity,channels,black", [
    ("imagenet", 3, [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]),
    ("xrv", 1, [-1024.0]), ("unit", 3, [0.0, 0.0, 0.0]), ("unit", 1, [0.0])])
def test_black_is_the_stored_images_black_through_the_models_preprocessing(intensity, channels, black):
    """A "unit" model's IG baseline was ImageNet's black (-2.12, -2.04, -1.80), and a 1-channel
    model's crashed (issue 17): "black" is intensity 0 of the stored image, preprocessed."""
    prep = Preprocessing(intensity=intensity, channels=channels, size=SIZE)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    model.preprocessing = prep
    x = prep.to_input(np.random.default_rng(0).random((SIZE + 7, SIZE), dtype=np.float32))
    expected = torch.tensor(black).view(1, -1, 1, 1).expand_as(x)
    assert torch.allclose(ig_baseline(model, x, "black"), expected, atol=1e-5)
    assert torch.allclose(prep.constant_input(0.0, like=x), expected, atol=1e-5)
    assert torch.allclose(prep.constant_input(0.0), prep.to_input(np.zeros((SIZE, SIZE), np.float32)))
    for method in ("integrated_gradients", "smoothgrad_ig", "occlusion"):
        out = explain(model, x, 1, method, device="cpu", **FAST[method])
        assert out.shape == (SIZE, SIZE) and np.isfinite(out).all(), method
    # occlusion fills its windows with the same black: a window over a black region changes nothing
    dark = prep.constant_input(0.0).clone()
    dark[..., :, SIZE // 2:] = x[..., :, SIZE // 2:]
    occluded = explain(model, dark, 1, "occlusion", device="cpu", window=8, stride=8)
    assert np.abs(occluded[:, :SIZE // 2 - 8]).max() < 1e-5


def test_black_needs_a_known_preprocessing_off_three_channels():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="records no preprocessing and takes 1-channel input"):
        ig_baseline(model, torch.zeros(1, 1, 8, 8), "black")
    assert torch.equal(ig_baseline(model, torch.ones(1, 1, 8, 8), "zeros"), torch.zeros(1, 1, 8, 8))


def test_ig_baselines():
    model, x = TinyWildcat(), image(batch=2)
    black = ig_baseline(model, x, "black")
    expected = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(black[1, :, 5, 7], expected)
    model.preprocessing = Preprocessing(intensity="meanstd", mean=(0.5,), std=(0.25,))
    assert torch.allclose(ig_baseline(model, x, "black"), torch.full_like(x, -2.0))
    assert torch.equal(ig_baseline(model, x, image(9)), image(9).expand_as(x))
    with pytest.raises(ValueError, match="does not match"):
        ig_baseline(model, x, torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="black"):
        ig_baseline(model, x, "white")


@pytest.mark.parametrize("method", [m for m in OWN_METHODS if m != "smoothgrad_ig"])
def test_a_batch_equals_per_image_calls(method):
    model, x, targets = TinyAttention(), image(5, batch=3), [0, 2, 1]
    params = FAST.get(method, {})
    batch = get_explainer(method)(model, device="cpu", batch_size=7).attribute(x, targets, **params)
    assert batch.shape == (3, SIZE, SIZE)
    for i, t in enumerate(targets):
        one = explain(model, x[i], t, method, device="cpu", **params)
        np.testing.assert_allclose(batch[i].numpy(), one, rtol=1e-4, atol=1e-5)


def test_explain_returns_a_stack_for_a_batch_and_checks_targets():
    model, x = TinyWildcat(), image(6, batch=2)
    assert explain(model, x, [0, 1], "saliency", device="cpu").shape == (2, SIZE, SIZE)
    assert explain(model, x[:1], 0, "saliency", device="cpu").shape == (SIZE, SIZE)
    with pytest.raises(ValueError, match="3 targets for 2 images"):
        explain(model, x, [0, 1, 2], "saliency", device="cpu")


def test_parameters_already_frozen_stay_frozen_and_eval_mode_stays():
    model = TinyWildcat().eval()
    model.features[0].weight.requires_grad_(False)
    explain(model, image(), 0, "gradcam", device="cpu")
    assert not model.training
    assert not model.features[0].weight.requires_grad and model.maps.weight.requires_grad


def test_unknown_method_and_parameter_are_rejected_clearly():
    with pytest.raises(ValueError, match="saliency.*attention"):
        explain(TinyWildcat(), image(), 0, "lime")
    with pytest.raises(ValueError, match="unknown parameter.*stepz.*allowed: baseline, channels, steps"):
        explain(TinyWildcat(), image(), 0, "integrated_gradients", device="cpu", stepz=3)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        explain(TinyWildcat(), image(), 0, "smoothgrad", device="cpu", n_samples=0)
    with pytest.raises(ValueError, match="channels must be one of max_abs, sum, sum_abs"):
        explain(TinyWildcat(), image(), 0, "saliency", device="cpu", channels="mean")


def test_method_params_lists_defaults():
    assert method_params("smoothgrad") == {"n_samples": 25, "noise": 0.15, "seed": 0, "squared": False,
                                           "channels": "max_abs"}
    assert method_params("integrated_gradients") == {"steps": 50, "baseline": "black", "channels": "sum", "tolerance": 0.05}
    assert method_params("occlusion") == {"window": None, "stride": None, "baseline": "black"}
    assert method_params("attention") == {"which": "aggregate"}
    assert method_params("saliency") == {"channels": "max_abs"}
    method_params("gradcam")["layer"] = "changed"
    assert method_params("gradcam") == {"layer": None}


def test_intrinsic_maps_need_a_model_that_has_them():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(MedattnError, match=r"wildcat.*class_maps\(\).*Sequential has none"):
        explain(plain, image(), 0, "wildcat", device="cpu")
    with pytest.raises(MedattnError, match=r"intrinsic attention.*TinyWildcat has none"):
        explain(TinyWildcat(), image(), 0, "attention", device="cpu")


# Messages name a model in words (its arch and head, or its class), never as a Python repr.
@pytest.mark.parametrize("arch, head, method, said", [
    ("resnet18", "linear", "wildcat", "resnet18 with a linear head has none"),
    ("resnet18", "linear", "attention", "resnet18 with a linear head has none"),
    ("densenet121", "channel_attention", "wildcat", "densenet121 with a channel_attention head has none"),
])
def test_a_method_a_model_lacks_is_said_with_the_models_arch_and_head_in_words(arch, head, method, said):
    from medattn.explain import unavailable
    from medattn.models import build

    reason = unavailable(build(arch, head, 2), method)
    assert reason is not None and reason.endswith(said) and "=" not in reason and "Model(" not in reason, reason


def test_wildcat_map_is_the_target_class_map_upsampled():
    model, x = TinyWildcat(), image(7)
    with torch.no_grad():
        small = model.class_maps(x[None])[:, 2:3]
    assert small.shape[2:] == (SIZE // 2, SIZE // 2)
    expected = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    out = explain(model, x, 2, "wildcat", device="cpu")
    np.testing.assert_allclose(out, expected[0, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_attention_levels_and_aggregate():
    model, x = TinyAttention(), image(8)
    level1 = explain(model, x, 0, "attention", device="cpu", which="level1")
    level2 = explain(model, x, 0, "attention", device="cpu", which="level2")
    both = explain(model, x, 0, "attention", device="cpu")
    np.testing.assert_allclose(both, (level1 / level1.max() + level2 / level2.max()) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="aggregate, level1, level2"):
        explain(model, x, 0, "attention", device="cpu", which="level3")


def test_gradcam_layer_choice():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3)),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert cam_layer(plain) is plain[2]
    assert cam_layer(plain, "0") is plain[0]
    tiny = TinyWildcat()
    assert cam_layer(tiny) is tiny.features
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        cam_layer(plain, "nope")
    out = explain(plain, image(), 1, "gradcam", device="cpu")
    assert out.shape == (SIZE, SIZE) and (out >= 0).all()


def resnet18(source: str) -> nn.Module:
    if source == "torchvision":  # no gradcam_layer: the last conv child (layer4) is used
        import torchvision

        return torchvision.models.resnet18(weights=None, num_classes=3)
    try:
        from medattn.models import build
    except ImportError as exc:
        pytest.skip(f"medattn.models.build not available yet: {exc}")
    return build("resnet18", "linear", 3)


@pytest.mark.parametrize("source", ["torchvision", "medattn"])
def test_real_resnet18(source):
    torch.manual_seed(1)
    model, x = resnet18(source), image(10)
    for method in ["saliency", "smoothgrad", "integrated_gradients", "smoothgrad_ig",
                   "guided_backprop", "gradcam", "guided_gradcam", "occlusion"]:
        out = explain(model, x, 1, method, device="cpu", **FAST.get(method, {}))
        assert out.shape == (SIZE, SIZE) and np.isfinite(out).all(), method
    assert all(p.grad is None for p in model.parameters())


def test_intrinsic_maps_of_real_heads():
    try:
        from medattn.models import build
    except ImportError as exc:
        pytest.skip(f"medattn.models.build not available yet: {exc}")
    x = image(11)
    wildcat = explain(build("resnet18", "wildcat", 3), x, 2, "wildcat", device="cpu")
    mldam = build("resnet18", "mldam", 3)
    levels = [explain(mldam, x, 0, "attention", device="cpu", which=level)
              for level in ("level_a", "level_b", "level_c")]
    both = explain(mldam, x, 0, "attention", device="cpu")
    for out in (wildcat, both, *levels):
        assert out.shape == (SIZE, SIZE) and np.isfinite(out).all()
    np.testing.assert_allclose(both, sum(m / np.abs(m).max() for m in levels) / 3, rtol=1e-4,
                               atol=1e-6)
    with pytest.raises(MedattnError, match="resnet18 with a linear head has none"):
        explain(build("resnet18", "linear", 3), x, 0, "wildcat", device="cpu")


# --- normalisation policy ---------------------------------------------------------------

def test_normalize_constant_map_is_zeros():
    out = normalize(np.full((8, 8), 3.0))
    assert out.dtype == np.float32 and not out.any()


def test_normalize_clips_the_top_tail():
    m = np.arange(1000.0).reshape(25, 40)
    m[0, 0] = 1e6  # one extreme pixel
    clipped = normalize(m, clip_percentile=99.0)
    assert clipped[0, 0] == 1.0 and clipped[-1, -1] == 1.0 and clipped[24, 20] > 0.98
    unclipped = normalize(m, clip_percentile=None)
    assert unclipped[0, 0] == 1.0 and unclipped[-1, -1] < 1e-3


def test_normalize_keeps_sparse_maps():
    m = np.zeros((64, 64))
    m[10, 20] = 5.0
    out = normalize(m, sign="positive")
    assert out[10, 20] == 1.0 and out.sum() == 1.0


def test_normalize_sign_modes():
    m = np.array([[-2.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(normalize(m, "absolute", None), [[1.0, 0.5], [0.0, 0.5]])
    np.testing.assert_allclose(normalize(m, "positive", None), [[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(normalize(m, "all", None), [[0.0, 1.0], [2 / 3, 1.0]])
    with pytest.raises(ValueError, match="sign must be one of"):
        normalize(m, "negative")


def test_normalize_each_map_of_a_stack_alone_and_accepts_tensors():
    stack = torch.stack([torch.arange(16.0).view(4, 4), 10 * torch.arange(16.0).view(4, 4)])
    out = normalize(stack, clip_percentile=None)
    assert out.shape == (2, 4, 4)
    np.testing.assert_allclose(out[0], out[1])
    with pytest.raises(ValueError, match="NaN"):
        normalize(np.array([[np.nan, 1.0]]))


# --- guided rule on every activation that has one; precision option -------------------------

class Gate(nn.Module):
    """logit = Σ w2 · act(w1 · x): the guided gradient is w1 · act'(w1 · x) · max(w2, 0)."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act
        self.w1 = nn.Parameter(torch.tensor([1.5, -2.0, 0.5, 3.0]).view(1, 4, 1, 1))
        self.w2 = nn.Parameter(torch.tensor([1.0, -1.0, -0.5, 2.0]).view(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w2 * self.act(self.w1 * x[:, :1])).sum(dim=(1, 2, 3)).unsqueeze(1)


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU6(inplace=True), nn.Hardtanh(0.0, 6.0), nn.LeakyReLU(0.1),
                                 nn.ELU(), nn.Softplus(), nn.SELU()], ids=lambda a: type(a).__name__)
def test_guided_rule_on_every_monotone_activation(act):
    x = torch.linspace(-4, 8, 3 * 4 * 4).view(1, 3, 4, 4)
    model = Gate(act)
    got = explain(model, x, 0, "guided_backprop", channels="sum")
    z = model.w1.detach() * x[:, :1]
    with torch.enable_grad():
        z = z.clone().requires_grad_(True)
        slope = torch.autograd.grad(act(z * 1.0).sum(), z)[0]  # * 1.0: in-place activations need a non-leaf
    expected = (model.w1.detach() * slope * model.w2.detach().clamp(min=0)).sum(dim=1)[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    plain = explain(model, x, 0, "saliency", channels="sum")
    assert not np.allclose(got, plain)  # the negative w2 paths were dropped


@pytest.mark.parametrize("act", [nn.SiLU(), nn.Hardswish(), nn.GELU(), nn.Mish()], ids=lambda a: type(a).__name__)
def test_guided_methods_are_unavailable_without_a_guided_rule(act):
    model = Gate(act)
    for method in ("guided_backprop", "guided_gradcam"):
        reason = get_explainer(method).unavailable(model)
        assert reason is not None and type(act).__name__ in reason and "monotone" in reason
        with pytest.raises(MedattnError, match=type(act).__name__):
            explain(model, image(), 0, method)


def test_guided_backprop_on_the_mobilenet_v2_demo_differs_from_saliency():
    """ReLU6 everywhere: Captum's ReLU-only rule left guided backprop equal to saliency."""
    from pathlib import Path

    from medattn.models.checkpoint import load_checkpoint

    path = Path(__file__).resolve().parents[1] / "checkpoints" / "demo_mobilenet_v2_recurrent"
    model = load_checkpoint(path)[0]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    saliency = explain(model, x[0], 0, "saliency", device="cpu")
    guided = explain(model, x[0], 0, "guided_backprop", device="cpu")
    assert not np.allclose(guided, saliency, rtol=0.05)
    ggc = explain(model, x[0], 0, "guided_gradcam", device="cpu")
    cam = torch.nn.functional.interpolate(torch.as_tensor(explain(model, x[0], 0, "gradcam", device="cpu"))[None, None],
                                          size=(64, 64))[0, 0].numpy()
    assert np.isfinite(ggc).all() and not np.allclose(ggc, saliency * cam, rtol=0.05)


def test_guided_backprop_on_plain_relus_equals_captums():
    import warnings

    from captum import attr

    model = RegionModel().eval()
    x = image()[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = attr.GuidedBackprop(model).attribute(x, target=1).abs().amax(1)[0].detach().numpy()
    np.testing.assert_allclose(explain(model, x[0], 1, "guided_backprop"), reference, rtol=1e-6)


def test_precision_is_an_execution_option_of_explain():
    model = TinyWildcat()
    exact = explain(model, image(), 1, "integrated_gradients", precision="float32", steps=8)
    assert np.array_equal(exact, explain(model, image(), 1, "integrated_gradients", precision="float32", steps=8))
    with pytest.raises(ValueError, match="precision"):
        explain(model, image(), 1, "saliency", precision="half")


def test_new_parameters_leave_cache_keys_of_older_maps_unchanged():
    from medattn.pipeline import resolved_params

    assert resolved_params("saliency", {}) == {}
    assert resolved_params("smoothgrad", {}) == {"n_samples": 25, "noise": 0.15, "seed": 0}
    assert resolved_params("saliency", {"channels": "sum_abs"}) == {"channels": "sum_abs"}


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad", "smoothgrad_ig", "occlusion"])
def test_progress_runs_before_each_forward_pass_so_any_method_can_be_stopped(method):
    """The background worker stops a prefetch by raising from `progress`: methods that count no
    windows must reach it too, between passes, and be left reusable."""
    from medattn.models import build

    class Stop(Exception):
        pass

    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3), image(12)
    params = {**FAST.get(method, {}), "batch_size": 4}
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        explain(model, x, 1, method, device="cpu", progress=progress, **params)
    assert calls == [(0, 0), (0, 0)]
    again = explain(model, x, 1, method, device="cpu", progress=lambda done, total: None, **params)
    np.testing.assert_allclose(again, explain(model, x, 1, method, device="cpu", **params), rtol=1e-5, atol=1e-6)
    assert len(calls) == 2  # the callback is gone once the call has ended


# --- integrated gradients with a stated accuracy (completeness) ------------------------------

def test_integrated_gradients_report_their_completeness_error():
    """Sundararajan et al. 2017, §3: the map sums to f(x) − f(baseline); each call says how far
    from it its map is, per image, in logits and relative to the rise."""
    from medattn.explain.gradients import ig_baseline
    from medattn.models import build
    from medattn.pipeline import resolved_params

    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3).eval(), torch.randn(2, 3, 32, 32)
    ig = get_explainer("integrated_gradients")(model, device="cpu", channels="sum")
    maps = ig.attribute(x, [1, 2], steps=8)
    with torch.no_grad():
        rise = (model(x) - model(ig_baseline(model, x, "black")))[[0, 1], [1, 2]]
    for m, check, r in zip(maps, ig.completeness, rise.tolist()):
        assert check.steps == 8
        assert check.error == pytest.approx(abs(float(m.sum()) - r), rel=1e-3, abs=1e-6)
        assert check.relative == pytest.approx(check.error / abs(r), rel=1e-3)
    assert resolved_params("integrated_gradients", {}) == {"steps": 50, "baseline": "black"}  # keys unchanged


def test_auto_steps_are_the_fewest_that_pass_the_completeness_check():
    from medattn.pipeline import resolved_params

    from captum.attr import IntegratedGradients

    from medattn.explain.gradients import AUTO_STEPS, ig_baseline
    from medattn.models import build

    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3).eval(), torch.randn(1, 3, 32, 32)
    base = ig_baseline(model, x, "black")
    with torch.no_grad():
        rise = abs(float(model(x)[0, 1] - model(base)[0, 1]))

    def relative(steps: int) -> float:
        _, delta = IntegratedGradients(model).attribute(x, baselines=base, target=1, n_steps=steps,
                                                        return_convergence_delta=True)
        return abs(float(delta)) / rise

    errors = {steps: relative(steps) for steps in AUTO_STEPS}
    tolerance = sorted(errors.values())[2]  # some rungs pass, some fail
    expected = next(steps for steps in AUTO_STEPS if errors[steps] <= tolerance)
    ig = get_explainer("integrated_gradients")(model, device="cpu")
    auto = ig.attribute(x, 1, steps="auto", tolerance=tolerance)
    [check] = ig.completeness
    assert check.steps == expected and check.relative <= tolerance
    np.testing.assert_allclose(auto, ig.attribute(x, 1, steps=expected), rtol=1e-5, atol=1e-7)
    assert resolved_params("integrated_gradients", {"steps": "auto", "tolerance": 0.01}) == {
        "steps": "auto", "baseline": "black", "tolerance": 0.01}
    with pytest.raises(ValueError, match="tolerance must be a number > 0"):
        ig.attribute(x, 1, steps="auto", tolerance=0)
