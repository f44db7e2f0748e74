"""The field's reference recipe for each method: what a user of the reference library writes,
on the unmodified model, with medattn's parameters. The parity matrix over the model zoo
(`medattn.explain.conformance`, `tests/test_models_zoo.py`, `python -m medattn.bench --zoo`)
compares every explainer's map with these.

- saliency, smoothgrad, integrated_gradients, smoothgrad_ig, guided_backprop, guided_gradcam,
  occlusion: Captum 0.9 (`Saliency`, `NoiseTunnel`, `IntegratedGradients`, `GuidedBackprop`,
  `GuidedGradCam` with bilinear upsampling, `Occlusion`), baselines and fills the stored
  image's black through the model's preprocessing (`medattn.explain.fills`), reduced over
  channels by the method's default rule.
- gradcam: pytorch-grad-cam's `GradCAM` on the model's Grad-CAM layer with its
  `reshape_transform` conventions (Jacob Gildenblat et al., github.com/jacobgil/pytorch-grad-cam,
  "Vision Transformers" and "Swin" tutorials): class/distillation tokens dropped and the patch
  tokens laid out as a grid, channels-last outputs permuted. It returns maps min-max scaled to
  [0, 1], so `compare` scales ours the same way (the scaling is affine and commutes with
  bilinear upsampling). A test dependency (`grad-cam` in requirements.txt); the product keeps
  Captum.
- pda, pda_features: the definition of Zintgraf et al. 2017 written out directly: with
  `samples` equal to the number of reference images, the marginal sampler uses every reference
  image once per window, so q is their mean class probability and the map is deterministic;
  WE = log2 odds(p') − log2 odds(q') with the Laplace correction, each pixel the mean over the
  windows covering it (windows every `stride`, plus one flush with the far edge).
- wildcat, attention: no reference (the model's own maps); they apply to medattn's heads only.

The matrix runs each recipe in float64 (the recipe's exact value) and in float32 in both memory
formats (what users of the library get, in two orders of the same arithmetic): an explainer is
as right as it can be when its float32 map is as close to the exact value as the library's own
float32 maps are (see `conformance.TOLERANCE`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from captum import attr
from torch import Tensor, nn

from medattn.explain.cam import cam_layer, cam_layout
from medattn.explain.fills import image_fill
from medattn.explain.gradients import OCCLUSION_AT_224, quiet_relu_hooks
from medattn.explain.registry import method_params

NO_REFERENCE = ("wildcat", "attention")


def reference_map(method: str, model: nn.Module, x: Tensor, target: int,
                  params: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float64,
                  channels_last: bool = False) -> Tensor | None:
    """The reference map (H, W) of `method` for one image x (1, C, H, W) and class `target`,
    with `params` over the method's defaults, computed in `dtype` (and channels-last memory
    format: the same arithmetic in another order) on a copy of the model (on `model` itself when
    it is in `dtype` already: the recipes leave it as it was); None for methods without a
    reference."""
    if method in NO_REFERENCE:
        return None
    p = {**method_params(method), **(params or {})}
    if channels_last or next(model.parameters()).dtype != dtype:  # never the caller's model
        model = copy.deepcopy(model).to(dtype)
    model = model.eval()
    x = x.to(dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(p.get("reference"), Tensor):
        p["reference"] = p["reference"].to(dtype)
    with torch.enable_grad():
        return _RECIPES[method](model, x, int(target), p).detach().float()[0]


def _saliency(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    return attr.Saliency(model).attribute(x, target=target, abs=True).amax(1)


def _noise_std(x: Tensor, p: dict) -> float:
    return float(p["noise"]) * float(x.max() - x.min())


def _smoothgrad(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    torch.manual_seed(int(p["seed"]))
    return attr.NoiseTunnel(attr.Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=p["n_samples"], stdevs=_noise_std(x, p), target=target,
        abs=True).amax(1)


INTERNAL_BATCH = 8  # evaluations per pass of the path methods' recipes: float64 at 224 px stays in memory


def _integrated_gradients(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    return attr.IntegratedGradients(model).attribute(
        x, baselines=image_fill(model, x, p["baseline"]), target=target, n_steps=p["steps"],
        internal_batch_size=INTERNAL_BATCH).sum(1)


def _smoothgrad_ig(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    torch.manual_seed(int(p["seed"]))
    return attr.NoiseTunnel(attr.IntegratedGradients(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=p["n_samples"], stdevs=_noise_std(x, p),
        baselines=image_fill(model, x, p["baseline"]), target=target, n_steps=p["steps"],
        internal_batch_size=INTERNAL_BATCH).sum(1)


def _guided_backprop(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    with quiet_relu_hooks():
        return attr.GuidedBackprop(model).attribute(x, target=target).abs().amax(1)


def _guided_gradcam(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    with quiet_relu_hooks():
        return attr.GuidedGradCam(model, cam_layer(model, p["layer"])).attribute(
            x, target=target, interpolate_mode="bilinear").abs().amax(1)


def _occlusion(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    size = x.shape[2:]
    window = p["window"] or tuple(max(1, round(OCCLUSION_AT_224[0] * s / 224)) for s in size)
    stride = p["stride"] or tuple(max(1, round(OCCLUSION_AT_224[1] * s / 224)) for s in size)
    window = (window, window) if isinstance(window, int) else tuple(window)
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    fill = image_fill(model, x, p["baseline"]) if isinstance(p["baseline"], str) else float(p["baseline"])
    with torch.no_grad():
        return attr.Occlusion(model).attribute(
            x, sliding_window_shapes=(x.shape[1], *window), strides=(x.shape[1], *stride), baselines=fill,
            target=target).mean(1)


def _gradcam(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = cam_layer(model, p["layer"])
    layout = cam_layout(model, p["layer"])
    side = None

    def reshape_transform(tensor: Tensor) -> Tensor:  # pytorch-grad-cam's tutorials' conventions
        nonlocal side
        if tensor.ndim == 3:  # tokens: drop the class/distillation tokens, patches to a grid
            patches = tensor[:, layout.prefix_tokens:, :]
            side = math.isqrt(patches.shape[1])
            return patches.reshape(tensor.shape[0], side, side, tensor.shape[2]).permute(0, 3, 1, 2)
        return tensor.permute(0, 3, 1, 2) if layout.channels_last else tensor

    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape_transform) as cam:
        # registered after pytorch-grad-cam's hooks: they keep the layer's output, the network
        # goes on with a copy, so an in-place ReLU after the layer (DenseNet) cannot rewrite the
        # activations they read (pytorch/vision#4164; `inplace_safe=False` shows the difference)
        guard = layer.register_forward_hook(lambda _m, _i, out: out.clone()) if p.get("inplace_safe", True) else None
        try:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        finally:
            if guard is not None:
                guard.remove()
    return torch.from_numpy(maps)


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, size - window + 1, stride))
    return starts + [size - window] if starts[-1] + window < size else starts


def _log_odds(v: Tensor, n_train: int, n_classes: int) -> Tensor:
    v = (v * n_train + 1) / (n_train + n_classes)
    return torch.log2(v / (1 - v))


def _prediction_difference(logits_of: Any, base: Tensor, reference: Tensor, target: int, p: dict,
                           sigmoid: bool) -> Tensor:
    """The mean weight of evidence (h, w) over the windows covering each cell of `base`
    (C, h, w), every window replaced by each of the reference maps (R, C, h, w) in turn."""
    if p["samples"] != len(reference):
        raise ValueError("the PDA reference recipe needs samples == the number of reference images")
    window, stride = int(p["window"]), int(p["stride"])
    _, h, w = base.shape

    def probability(batch: Tensor) -> Tensor:
        logits = logits_of(batch).double()
        return (torch.sigmoid(logits) if sigmoid else torch.softmax(logits, 1))[:, target]

    n_classes = 2 if sigmoid else logits_of(base[None]).shape[1]
    p_known = probability(base[None])[0]
    total = torch.zeros(h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for i in _window_starts(h, window, stride):
        for j in _window_starts(w, window, stride):
            copies = base.expand(len(reference), -1, -1, -1).clone()
            copies[:, :, i:i + window, j:j + window] = reference[:, :, i:i + window, j:j + window]
            q = probability(copies).mean()
            we = _log_odds(p_known, p["n_train"], n_classes) - _log_odds(q, p["n_train"], n_classes)
            total[i:i + window, j:j + window] += we
            count[i:i + window, j:j + window] += 1
    return (total / count).float()


def _sigmoid_output(model: nn.Module, p: dict, n_logits: int) -> bool:
    if p["output"] != "auto":
        return p["output"] == "sigmoid"
    return getattr(model, "task", None) in ("binary", "multilabel") or n_logits == 1


def _pda(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    with torch.no_grad():
        sigmoid = _sigmoid_output(model, p, model(x).shape[1])
        return _prediction_difference(model, x[0], p["reference"], target, p, sigmoid)[None]


def _pda_features(model: nn.Module, x: Tensor, target: int, p: dict) -> Tensor:
    layer = cam_layer(model, p["layer"])
    layout = cam_layout(model, p["layer"])
    seen: list[Tensor] = []

    def grids(images: Tensor) -> Tensor:
        handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(layout.to_grid(out)))
        try:
            model(images)
        finally:
            handle.remove()
        return seen.pop()

    def logits_of(batch: Tensor) -> Tensor:
        handle = layer.register_forward_hook(lambda _m, _i, out: layout.from_grid(batch, like=out))
        try:
            return model(x.expand(len(batch), -1, -1, -1))
        finally:
            handle.remove()

    with torch.no_grad():
        base = grids(x)[0]
        reference = grids(p["reference"])
        sigmoid = _sigmoid_output(model, p, model(x).shape[1])
        window = min(int(p["window"]), *base.shape[1:])
        relevance = _prediction_difference(logits_of, base, reference, target, {**p, "window": window}, sigmoid)
    return F.interpolate(relevance[None, None], size=tuple(x.shape[2:]), mode="bilinear",
                         align_corners=False)[0]


_RECIPES = {
    "saliency": _saliency, "smoothgrad": _smoothgrad, "integrated_gradients": _integrated_gradients,
    "smoothgrad_ig": _smoothgrad_ig, "guided_backprop": _guided_backprop, "gradcam": _gradcam,
    "guided_gradcam": _guided_gradcam, "occlusion": _occlusion, "pda": _pda, "pda_features": _pda_features,
}


def compare(method: str, ours: Tensor, reference: Tensor, floor: float = 0.0) -> float:
    """max |ours − reference| / max(max |reference|, floor) (0 when both are zero; inf when
    only the reference is); Grad-CAM maps are min-max scaled first, as pytorch-grad-cam returns
    them. `floor`, in the map's units, is the size below which a map is rounding noise."""
    ours, reference = ours.double(), reference.double()
    if method == "gradcam":
        ours = _min_max(ours)
        reference = _min_max(reference)
    scale = max(float(reference.abs().max()), floor)
    gap = float((ours - reference).abs().max())
    if scale == 0:
        return 0.0 if gap == 0 else math.inf
    return gap / scale


def _min_max(m: Tensor) -> Tensor:
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else torch.zeros_like(m)
