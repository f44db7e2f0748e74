"""Input-attribution explainers through Captum: gradients, SmoothGrad, integrated gradients,
SmoothGrad on IG, guided backprop, occlusion.

Channel aggregation (the map is per pixel, the attribution per channel), parameter `channels`
(`base.reduce_channels`):
- saliency, smoothgrad, guided_backprop: "max_abs" by default, max |a| over channels (Simonyan
  et al. 2014); the maps are non-negative.
- integrated_gradients, smoothgrad_ig: "sum" by default, sign kept. The sum keeps IG's
  completeness (the map sums to f(x) − f(baseline)); `normalize` then takes |m| by default.
- "sum_abs" (any of them): the sum of |a|, as Arun et al. 2021 (`protocol="arun2021"`).
- occlusion: f(x) − f(x with the window set to `baseline`), averaged over the windows covering
  a pixel (identical over channels); positive where hiding the pixel lowers the class score.
Scores are the model's logits for the target class.

Speed: every method here runs on `base.evaluation_model`, a copy of the model built once per
model and input shape (BatchNorm folded into the convolutions, channels-last), in float32 by
default. With the explainer's `precision="bfloat16"` (an explicit choice, keyed and recorded
apart by the pipeline) the two path methods and occlusion also run the later backbone stages of
ResNet/DenseNet models in bfloat16 on CPUs that have it (maps agree with float32 to a Spearman
correlation >= 0.99; occlusion on the demo WILDCAT model: 1.0 on three test images, 1.2x faster;
bfloat16 throughout would be 1.85x at 0.995, not used). Occlusion computes each occluded copy's first backbone
stage only where its window reaches (`incremental`, Krypton's incremental inference): on the demo
ResNet-18 at 192 px about 1.7x fewer operations per copy, maps equal to Captum's to rounding.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from captum import attr
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from medattn.explain import incremental
from medattn.explain.base import Explainer, as_batch, evaluation_model, positive_int, reduce_channels
from medattn.explain.fills import FILLS, image_fill
from medattn.explain.guided import guided, guided_unavailable
from medattn.explain.shared import shared_gradients

BLUR_SIGMA_FRACTION = 1 / 16  # "blur" baseline: Gaussian sigma as a fraction of max(H, W)
OCCLUSION_AT_224 = (16, 8)  # default occlusion window and stride for a 224-pixel side


class Saliency(Explainer):
    """Gradient of the class score w.r.t. the input, |.| reduced over channels.

    channels: "max_abs" (default), "sum_abs" or "sum" (see the module docstring)."""

    name = "saliency"
    batch_invariant = True
    defaults = {"channels": "max_abs"}
    keyless = ("channels",)

    def _attribute(self, x: Tensor, targets: Tensor, channels: str) -> Tensor:
        with evaluation_model(self.model, x) as fast:
            grads = _shared(attr.Saliency(fast)).attribute(x, target=targets, abs=False)
        return reduce_channels(self.name, grads, channels)


class SmoothGrad(Explainer):
    """Saliency averaged over `n_samples` noisy copies (Smilkov et al. 2017).

    noise: Gaussian std as a fraction of the image's range (x.max() − x.min()), default 0.15.
    n_samples: noisy copies, default 25. seed: noise seed, default 0 (maps are reproducible and
    an image's map does not depend on the batch it came in). squared: average the squared
    gradients instead of |gradient| (Captum's "smoothgrad_sq"; Arun et al. 2021), default False.
    channels: as saliency, default "max_abs".
    """

    name = "smoothgrad"
    defaults = {"n_samples": 25, "noise": 0.15, "seed": 0, "squared": False, "channels": "max_abs"}
    keyless = ("squared", "channels")

    def _attribute(self, x: Tensor, targets: Tensor, n_samples: int, noise: float,
                   seed: int, squared: bool, channels: str) -> Tensor:
        kind = "smoothgrad_sq" if squared else "smoothgrad"
        with evaluation_model(self.model, x) as fast:
            saliency = attr.Saliency(fast)
            grads = [_smooth(self, saliency, x[i:i + 1], int(targets[i]), n_samples, noise, seed,
                             per_sample_cost=1, abs=True, nt_type=kind) for i in range(len(x))]
        return reduce_channels(self.name, torch.cat(grads), channels)


@dataclass(frozen=True)
class Completeness:
    """How far an integrated-gradients map is from completeness (Sundararajan et al. 2017,
    §3: the attributions sum to f(x) − f(baseline)): `error` = |Σ attributions − (f(x) −
    f(baseline))| in logits, `relative` = error / |f(x) − f(baseline)|, at `steps` path steps."""

    steps: int
    error: float
    relative: float


class IntegratedGradients(Explainer):
    """Integrated gradients (Sundararajan et al. 2017), summed over channels, sign kept.

    steps: path steps (Gauss-Legendre), default 50; or "auto": the fewest of AUTO_STEPS whose
    map passes the authors' completeness check within `tolerance`, tried in turn (the last is
    kept when none does). tolerance: the completeness error allowed with "auto", relative to
    |f(x) − f(baseline)|, default 0.05 (the authors' "within 5%").
    baseline: "black" (default: intensity 0 of the stored image through the model's
    preprocessing, `medattn.explain.fills`), "zeros" (zeros in model-input units, the mean
    image under a z-score), "blur" (the image blurred with a Gaussian of sigma max(H, W)/16),
    or a tensor (C, H, W) / (B, C, H, W) in model-input units.
    channels: "sum" (default), "sum_abs" or "max_abs" (see the module docstring).

    After each call `completeness` holds one `Completeness` per image (Captum's convergence
    delta: two more forward passes per image). Checking a map against the error of a 50-step
    call on the same image would cost that call itself, so "auto" takes a stated tolerance.
    """

    name = "integrated_gradients"
    batch_invariant = True
    bfloat16_stages = True
    defaults = {"steps": 50, "baseline": "black", "channels": "sum", "tolerance": 0.05}
    keyless = ("channels", "tolerance")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.completeness: list[Completeness] = []

    def _attribute(self, x: Tensor, targets: Tensor, steps: int | str, baseline: Any, channels: str,
                   tolerance: float) -> Tensor:
        if steps != "auto":
            steps = positive_int(self.name, "steps", steps)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
            raise ValueError(f"{self.name}: tolerance must be a number > 0, got {tolerance!r}")
        base = ig_baseline(self.model, x, baseline)
        with evaluation_model(self.model, x, self.mixed) as fast:
            ig = _shared(attr.IntegratedGradients(fast))
            if steps == "auto":
                found = [_fewest_steps(ig, x[i:i + 1], base[i:i + 1], targets[i:i + 1], tolerance, self.batch_size)
                         for i in range(len(x))]
                a = torch.cat([a for a, _ in found])
                self.completeness = [c for _, c in found]
            else:
                a, self.completeness = _integrated(ig, x, base, targets, steps, max(self.batch_size, len(x)))
        return reduce_channels(self.name, a, channels)


AUTO_STEPS = (16, 24, 32, 50, 64, 100, 128)  # integrated gradients' steps="auto" tries these in turn


def _integrated(ig: attr.IntegratedGradients, x: Tensor, base: Tensor, targets: Tensor, steps: int,
                batch_size: int) -> tuple[Tensor, list[Completeness]]:
    """Captum's integrated gradients (B, C, H, W) with each image's completeness."""
    a, delta = ig.attribute(x, baselines=base, target=targets, n_steps=steps, internal_batch_size=batch_size,
                            return_convergence_delta=True)
    delta = delta.detach().float().cpu()  # Σ a − (f(x) − f(baseline)), so the rise is Σ a − delta
    rise = (a.detach().float().cpu().flatten(1).sum(1) - delta).abs().tolist()
    return a, [Completeness(steps, e, e / r if r > 0 else (float("inf") if e > 0 else 0.0))
               for e, r in zip(delta.abs().tolist(), rise)]


def _fewest_steps(ig: attr.IntegratedGradients, x: Tensor, base: Tensor, target: Tensor, tolerance: float,
                  batch_size: int) -> tuple[Tensor, Completeness]:
    """One image's map at the fewest AUTO_STEPS whose relative completeness error is at most
    `tolerance` (the last tried when none is), and its completeness."""
    for steps in AUTO_STEPS:
        a, [check] = _integrated(ig, x, base, target, steps, batch_size)
        if check.relative <= tolerance:
            break
    return a, check


class SmoothGradIG(Explainer):
    """SmoothGrad over integrated gradients (SIG): IG averaged over noisy copies of the image,
    summed over channels, sign kept. Costs n_samples × steps evaluations per image.

    n_samples: default 10; noise: default 0.15 of the image's range; steps: default 20;
    baseline: as integrated_gradients (default "black"); seed: default 0; channels: as
    integrated_gradients (default "sum").
    """

    name = "smoothgrad_ig"
    defaults = {"n_samples": 10, "noise": 0.15, "steps": 20, "baseline": "black", "seed": 0, "channels": "sum"}
    bfloat16_stages = True
    keyless = ("channels",)

    def _attribute(self, x: Tensor, targets: Tensor, n_samples: int, noise: float, steps: int,
                   baseline: Any, seed: int, channels: str) -> Tensor:
        steps = positive_int(self.name, "steps", steps)
        base = ig_baseline(self.model, x, baseline)
        with evaluation_model(self.model, x, self.mixed) as fast:
            ig = attr.IntegratedGradients(fast)
            a = [_smooth(self, ig, x[i:i + 1], int(targets[i]), n_samples, noise, seed,
                         per_sample_cost=steps, baselines=base[i:i + 1], n_steps=steps,
                         internal_batch_size=self.batch_size) for i in range(len(x))]
        return reduce_channels(self.name, torch.cat(a), channels)


class GuidedBackprop(Explainer):
    """Guided backpropagation (Springenberg et al. 2015) with the guided rule on every activation
    module that has one (`medattn.explain.guided`); unavailable for models with SiLU, Hardswish,
    GELU or Mish. channels: as saliency, default "max_abs"."""

    name = "guided_backprop"
    batch_invariant = True
    defaults = {"channels": "max_abs"}
    keyless = ("channels",)

    @classmethod
    def unavailable(cls, model: torch.nn.Module) -> str | None:
        return guided_unavailable(cls.name, model)

    def _attribute(self, x: Tensor, targets: Tensor, channels: str) -> Tensor:
        with evaluation_model(self.model, x) as fast:
            return reduce_channels(self.name, guided_gradients(fast, x, targets), channels)


def guided_gradients(model: torch.nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    """Guided-backpropagation gradients (B, C, H, W) of the target logits w.r.t. x."""
    with guided(model):
        return _shared(attr.Saliency(model)).attribute(x, target=targets, abs=False)


def _shared(method: attr.GradientAttribution) -> attr.GradientAttribution:
    """`method` with one forward pass per distinct input row (`shared.shared_gradients`): the
    same image stacked once per target class goes through the model once per gradient."""
    method.gradient_func = shared_gradients
    return method


class Occlusion(Explainer):
    """Occlusion (Zeiler & Fergus 2014): drop in the class logit when a square window is set to
    `baseline`, averaged over the windows covering each pixel.

    window, stride: pixels, int or (h, w); default None = 16 and 8 at a 224-pixel side, scaled
    with the input size. baseline: the fill, "black" (default: the stored image's black through
    the model's preprocessing, `medattn.explain.fills`) or a number in model-input units.
    """

    name = "occlusion"
    defaults = {"window": None, "stride": None, "baseline": "black"}
    bfloat16_stages = True
    needs_grad = False

    def _attribute(self, x: Tensor, targets: Tensor, window: Any, stride: Any,
                   baseline: Any) -> Tensor:
        size = x.shape[2:]
        win = _pair(self.name, "window", window, size, OCCLUSION_AT_224[0])
        step = _pair(self.name, "stride", stride, size, OCCLUSION_AT_224[1])
        if any(w > s for w, s in zip(win, size)) or any(s > w for s, w in zip(step, win)):
            raise ValueError(f"{self.name}: need stride <= window <= image size, got stride "
                             f"{step}, window {win}, image {tuple(size)}")
        channels = x.shape[1]
        fill = occlusion_fill(self.model, x, baseline)
        # one value per channel (C, 1, 1): what a window is set to, in the copies and the plans
        value = fill[0, :, :1, :1].clone() if isinstance(fill, Tensor) else fill
        with evaluation_model(self.model, x, self.mixed) as fast:
            plans = [incremental.plan(fast, self.model, x[i:i + 1], win, value)
                     for i in range(len(x))]
            if all(p is not None for p in plans):
                return torch.stack([_occlusion_map(p, int(t), win, step, value, self.batch_size)
                                    for p, t in zip(plans, targets)])
            a = attr.Occlusion(fast).attribute(
                x, sliding_window_shapes=(channels, *win), strides=(channels, *step),
                baselines=fill, target=targets,
                perturbations_per_eval=max(1, self.batch_size // len(x)))
        return a.mean(dim=1)


def _occlusion_map(plan: incremental.OcclusionPlan, target: int, window: tuple[int, int],
                   stride: tuple[int, int], fill: float | Tensor, batch_size: int) -> Tensor:
    """Occlusion map (H, W) of one image through an incremental plan, with Captum's windows:
    corners at k·stride for k = 0 … ceil((side − window) / stride) (the last clipped to the
    image), each pixel the mean score drop over the windows that cover it."""
    height, width = plan.x.shape[2:]
    rows = range(0, (math.ceil((height - window[0]) / stride[0]) + 1) * stride[0], stride[0])
    cols = range(0, (math.ceil((width - window[1]) / stride[1]) + 1) * stride[1], stride[1])
    corners = [(r, c) for r in rows for c in cols]
    score = plan.fast(plan.x)[0, target]
    total = torch.zeros(height, width)
    covered = torch.zeros(height, width)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first:first + batch_size]
        drops = (score - plan.logits(chunk, window, fill)[:, target]).float().cpu()
        for (r, c), drop in zip(chunk, drops.tolist()):
            total[r:r + window[0], c:c + window[1]] += drop
            covered[r:r + window[0], c:c + window[1]] += 1
    return (total / covered).to(plan.x.device)


@contextlib.contextmanager
def quiet_relu_hooks() -> Iterator[None]:
    """Silence Captum's per-call notice that guided backprop hooks the ReLUs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        yield


def ig_baseline(model: torch.nn.Module, x: Tensor, baseline: Any) -> Tensor:
    """The IG reference image(s) for batch x: see IntegratedGradients for the choices."""
    if isinstance(baseline, Tensor):
        b = as_batch(baseline).to(x)
        if b.shape[1:] != x.shape[1:] or b.shape[0] not in (1, len(x)):
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not match "
                             f"the images {tuple(x.shape)}")
        return b.expand_as(x)
    if baseline in FILLS:
        return image_fill(model, x, baseline)
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "blur":
        sigma = max(x.shape[2:]) * BLUR_SIGMA_FRACTION
        kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(x.shape[2:]) // 2) - 1)
        return gaussian_blur(x, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    raise ValueError(f"baseline must be 'black', 'zeros', 'blur' or a tensor, got {baseline!r}")


def occlusion_fill(model: torch.nn.Module, x: Tensor, baseline: Any) -> float | Tensor:
    """Occlusion's fill for batch x: "black" (the image's black in model-input units, a
    tensor like x) or a float in model-input units."""
    if isinstance(baseline, str):
        return image_fill(model, x, baseline)
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
        raise ValueError(f"occlusion: baseline must be 'black' or a number in model-input units, got {baseline!r}")
    return float(baseline)


def _smooth(explainer: Explainer, method: attr.Attribution, x: Tensor, target: int,
            n_samples: int, noise: float, seed: int, per_sample_cost: int,
            nt_type: str = "smoothgrad", **kwargs: Any) -> Tensor:
    """Captum NoiseTunnel (`nt_type`) on one image x (1, C, H, W): the noise std is a fraction
    of this image's range and the noise comes from `seed` alone, so a map does not depend on
    the batch it came in. Noisy copies are batched at about `explainer.batch_size`
    evaluations per pass."""
    n_samples = positive_int(explainer.name, "n_samples", n_samples)
    if noise < 0:
        raise ValueError(f"{explainer.name}: noise must be >= 0, got {noise}")
    std = float(noise) * float(x.detach().max() - x.detach().min())
    devices = [explainer.device] if explainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        return attr.NoiseTunnel(method).attribute(
            x, nt_type=nt_type, nt_samples=n_samples, stdevs=std, target=target,
            nt_samples_batch_size=max(1, explainer.batch_size // per_sample_cost), **kwargs)


def _pair(method: str, name: str, value: Any, size: torch.Size, at_224: int) -> tuple[int, int]:
    """An int or (h, w) → (h, w); None → `at_224` scaled to each side of the input."""
    if value is None:
        return tuple(max(1, round(at_224 * side / 224)) for side in size)  # type: ignore[return-value]
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{method}: {name} must be an int or (h, w), got {value!r}")
    return tuple(positive_int(method, name, v) for v in pair)  # type: ignore[return-value]
