"""Prediction difference analysis (Zintgraf et al. 2017) over input pixels (`pda`) and over the
spatial cells of a feature map (`pda_features`, Saednia et al. 2020).

For each square window of the analysed tensor (the image, or a layer's feature map), `samples`
copies have the window replaced by samples of what it could have been; `q` is the class
probability averaged over the copies, `p` the probability with the window known, and the
window's relevance is the weight of evidence `WE(p, q)` (see `weight_of_evidence`; positive =
the window's content speaks for the class). A pixel's relevance is the mean WE over the windows
covering it. Windows start every `stride` cells; one more window flush with the far edge is
added where the grid would leave a margin, so every pixel is covered.

Samplers (`sampling`), fitted on or drawn from `reference`, a tensor (R, 3, H, W) of images in
the model's input space (other images of the same dataset; the image explained is not removed):
- "marginal": each copy takes the window from a different reference image at the same place
  (distinct images while R >= samples).
- "conditional": a stationary multivariate Gaussian over (window + 2·padding)² patches, one per
  channel as the authors' code does, fitted on `FIT_PATCHES` patches taken at random places of
  the reference images; each window is sampled from it conditioned on the rest of its patch in
  the explained image (Gaussian conditioning, `RIDGE` on the covariance). At the image border
  the patch is shifted inwards so it stays whole, as in the authors' code; samples are clipped to
  the range of the reference values. The conditioning operators are cached per window offset
  within the patch.
Without `reference` (a warning says so) marginal samples come from a Gaussian per channel with
the image's own mean and std, and the conditional Gaussian is fitted on the image's own patches.

Grey inputs: when every channel is an affine function of the first (grey repeated to three
channels, then normalised per channel as medattn.data.transforms does), samplers work on the
first channel only and the others follow through that affine map, so samples stay grey.

Probabilities: `output="sigmoid"` (each class its own two-outcome problem, K = 2 in the Laplace
correction) or `"softmax"` (K = number of logits); `"auto"` picks sigmoid when the model's `task`
is binary or multilabel or it has a single logit, else softmax. `n_train` (N in the correction)
defaults to 100000, the value the authors' code uses.

`pda_features` hooks `layer` (a dotted submodule name, default as Grad-CAM: the model's
`gradcam_layer`), replaces windows of its output with samples from the reference images'
feature maps at the same place (marginal only: a Gaussian over C·(window + 2·padding)² feature
values is not estimable from a reference set), runs the rest of the network, and upsamples the
relevance bilinearly to the input frame. The layer runs once per forward pass on the image
alone and the rest of the network on the batch of perturbed maps; models whose rest cannot
take a batch larger than their input are run on as many copies of the image instead.

Execution: each forward pass holds the copies of several windows (`batch_size` evaluations,
default 64), in inference mode on the explainer's device; pixel PDA runs on
`base.evaluation_model` (BatchNorm folded, channels-last, and with precision "bfloat16" the
later ResNet/DenseNet stages in bfloat16 on CPUs that have it), each copy's first backbone stage
computed only where its window reaches (`incremental`, as occlusion). Cost: (number of windows × samples + 1) evaluations per image,
e.g. 27² × 4 + 1 = 2917 for window 16, stride 8 on a 224-pixel image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from medattn.explain import incremental
from medattn.explain.base import Explainer, evaluation_model, positive_int, to_input_frame
from medattn.explain.cam import as_grid, cam_layer, cam_layout

DEFAULT_N_TRAIN = 100_000  # N of the Laplace correction, as in the authors' code
DEFAULT_BATCH_SIZE = 64  # model evaluations per forward pass
FIT_PATCHES = 20_000  # patches the conditional Gaussian is fitted on (the authors' figure)
RIDGE = 1e-4  # added to the covariance diagonal, relative to the mean variance
SAMPLINGS = ("marginal", "conditional")
OUTPUTS = ("auto", "softmax", "sigmoid")

Progress = Callable[[int, int], None] | bool | None


def weight_of_evidence(p: Any, q: Any, n_train: int, n_classes: int) -> Any:
    """WE = log2(p'/(1-p')) - log2(q'/(1-q')) in bits, with the Laplace correction
    p' = (p·N + 1)/(N + K), N = n_train, K = n_classes; elementwise over floats, arrays or
    tensors (tensors in, tensor out)."""
    if n_train < 0:
        raise ValueError(f"n_train must be >= 0, got {n_train}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2 (a probability against its complement), "
                         f"got {n_classes}")

    def log_odds(v: Any) -> Any:
        v = (v * n_train + 1) / (n_train + n_classes)
        return torch.log2(v / (1 - v)) if isinstance(v, Tensor) else np.log2(v / (1 - v))

    return log_odds(p) - log_odds(q)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window start positions along one axis: every `stride`, plus one flush with the end."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


class _PredictionDifferenceBase(Explainer):
    """The window sweep both PDA explainers share, and their `progress` option."""

    needs_grad = False
    reports_progress = True

    def __init__(self, model: nn.Module, device: str | torch.device | None = None,
                 batch_size: int | None = None, progress: Progress = None,
                 precision: str = "float32", **params: Any):
        super().__init__(model, device=device, batch_size=batch_size or DEFAULT_BATCH_SIZE,
                         precision=precision, **params)
        self.progress = progress

    def _sweep(self, logits_of: Callable[[Tensor], Tensor], base: Tensor, work: Tensor,
               target: int, sampler: Sampler, lift: Callable[[Tensor], Tensor], window: int,
               stride: int, samples: int, n_train: int, output: str, seed: int,
               tick: Callable[[int], None],
               plan: incremental.OcclusionPlan | None = None) -> Tensor:
        """Relevance (h, w) of every cell of `base` (C, h, w): the mean WE of the windows
        covering it. `logits_of` maps a batch of perturbed copies to logits; the sampler draws
        from `work` (base in its working channels) and `lift` maps draws back to base's. With
        a `plan` (pixel PDA) the copies are computed incrementally instead."""
        c, h, w = base.shape
        generator = torch.Generator(device=base.device).manual_seed(int(seed))
        logits = logits_of(base[None])
        output = _resolve_output(self.model, output, logits.shape[1])
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"{self.name}: target {target} out of range for a model with "
                             f"{logits.shape[1]} outputs")
        n_classes = 2 if output == "sigmoid" else logits.shape[1]
        p = _probabilities(logits, output)[0, target].double().cpu()
        corners = [(i, j) for i in window_starts(h, window, stride)
                   for j in window_starts(w, window, stride)]
        total = torch.zeros(h, w, dtype=torch.float64)
        counts = torch.zeros(h, w, dtype=torch.float64)
        per_pass = max(1, self.batch_size // samples)
        for start in range(0, len(corners), per_pass):
            chunk = corners[start:start + per_pass]
            drawn = torch.cat([lift(sampler(work, i, j, window, samples, generator))
                               for i, j in chunk])
            if plan is not None:
                logits = plan.logits([ij for ij in chunk for _ in range(samples)],
                                     (window, window), drawn)
            else:
                batch = base.expand(len(chunk) * samples, c, h, w).clone()
                view = batch.view(len(chunk), samples, c, h, w)
                for k, (i, j) in enumerate(chunk):
                    view[k, :, :, i:i + window, j:j + window] = drawn[k * samples:(k + 1) * samples]
                logits = logits_of(batch)
            probs = _probabilities(logits, output)[:, target]
            q = probs.view(len(chunk), samples).mean(dim=1).double().cpu()
            for (i, j), we in zip(chunk, weight_of_evidence(p, q, n_train, n_classes).tolist()):
                total[i:i + window, j:j + window] += we
                counts[i:i + window, j:j + window] += 1
            tick(len(chunk))
        return (total / counts).float()


class PredictionDifference(_PredictionDifferenceBase):
    """Prediction difference analysis over input pixels (see the module docstring).

    window: side of the square window in pixels, default 10. stride: default 1 (overlapping
    windows, as the authors). padding: ring around the window the conditional sampler conditions
    on, default 2. samples: copies per window, default 10. sampling: "marginal" (default) or
    "conditional". reference: images (R, 3, H, W) the samplers use, default None. n_train:
    default 100000. output: "auto" (default), "softmax" or "sigmoid". seed: default 0 (an
    image's map depends on the seed alone, not on the batch it came in).

    `progress`, an execution option like `batch_size`, is a callback progress(done, total)
    counting windows over the whole call, or True for a tqdm bar. The map is in bits of
    evidence, signed.
    """

    name = "pda"
    bfloat16_stages = True
    defaults = {"window": 10, "stride": 1, "padding": 2, "samples": 10, "sampling": "marginal",
                "reference": None, "n_train": DEFAULT_N_TRAIN, "output": "auto", "seed": 0}

    def _attribute(self, x: Tensor, targets: Tensor, window: int, stride: int, padding: int,
                   samples: int, sampling: str, reference: Tensor | None, n_train: int,
                   output: str, seed: int) -> Tensor:
        window, stride, samples = _check(self.name, x.shape[2:], window, stride, samples,
                                         sampling, n_train, output)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"{self.name}: padding must be an integer >= 0, got {padding!r}")
        ref = _check_reference(self.name, reference, x, self.device)
        channels = GreyChannels.detect(x if ref is None else torch.cat([x, ref]))
        shared = None
        if ref is not None:
            shared = _sampler(sampling, channels.lower(ref), window, padding, seed, own=False)
        else:
            _warn_no_reference(self.name, sampling)
        tick = _ticker(self.progress, len(x) * _n_windows(x.shape[2:], window, stride))
        # BatchNorm folded, channels-last and, with precision "bfloat16", the later stages of
        # ResNet/DenseNet in bfloat16 (base.evaluation_model): the app's fast PDA on the demo
        # ResNet-18 models ran 1.2x faster than in float32, maps at Spearman >= 0.9998.
        maps = []
        with evaluation_model(self.model, x, self.mixed) as fast:
            for image, target in zip(x, targets.tolist()):
                work = channels.lower(image[None])
                sampler = shared if shared is not None else \
                    _sampler(sampling, work, window, padding, seed, own=True)
                plan = incremental.plan(fast, self.model, image[None], (window, window), 0.0)
                maps.append(self._sweep(fast, image, work[0], target, sampler, channels.lift,
                                        window, stride, samples, n_train, output, seed, tick,
                                        plan))
        return torch.stack(maps)


class FeaturePredictionDifference(_PredictionDifferenceBase):
    """Prediction difference analysis over the spatial cells of a feature map, mapped back to
    the input frame by bilinear upsampling (see the module docstring).

    layer: dotted submodule name, default None = the model's `gradcam_layer` (as Grad-CAM); it
    must run once per forward pass. window: in feature cells, default 1 (each cell, all
    channels, as Saednia et al.), clipped to the map size. stride: default 1. samples: default
    10. sampling: "marginal" only. reference: images (R, 3, H, W) whose feature maps supply the
    samples, default None. n_train, output, seed, progress: as pda.
    """

    name = "pda_features"
    defaults = {"layer": None, "window": 1, "stride": 1, "samples": 10, "sampling": "marginal",
                "reference": None, "n_train": DEFAULT_N_TRAIN, "output": "auto", "seed": 0}

    def __init__(self, model: nn.Module, device: str | torch.device | None = None,
                 batch_size: int | None = None, progress: Progress = None,
                 precision: str = "float32", **params: Any):
        super().__init__(model, device=device, batch_size=batch_size, progress=progress,
                         precision=precision, **params)
        self._expand_input = False

    def _attribute(self, x: Tensor, targets: Tensor, layer: str | None, window: int,
                   stride: int, samples: int, sampling: str, reference: Tensor | None,
                   n_train: int, output: str, seed: int) -> Tensor:
        if sampling != "marginal":
            raise ValueError(f"{self.name}: only sampling='marginal' is supported over feature "
                             f"maps (a Gaussian over channels × cells cannot be fitted on a "
                             f"reference set), got {sampling!r}")
        module = cam_layer(self.model, layer)
        self._layout = cam_layout(self.model, layer)
        ref = _check_reference(self.name, reference, x, self.device)
        features = [self._capture(module, image[None]) for image in x]
        size = features[0].shape[2:]
        window = min(positive_int(self.name, "window", window), *size)
        window, stride, samples = _check(self.name, size, window, stride, samples, sampling,
                                         n_train, output)
        shared = None
        if ref is not None:
            shared = MarginalSampler(torch.cat([self._capture(module, chunk)
                                                for chunk in torch.split(ref, self.batch_size)]))
        else:
            _warn_no_reference(self.name, sampling)
        tick = _ticker(self.progress, len(x) * _n_windows(size, window, stride))
        maps = []
        for image, feature, target in zip(x, features, targets.tolist()):
            sampler = shared if shared is not None else MarginalSampler(feature, gaussian=True)

            def logits_of(batch: Tensor, image: Tensor = image) -> Tensor:
                return self._rest(module, image[None], batch)

            maps.append(self._sweep(logits_of, feature[0], feature[0], target, sampler,
                                    _identity, window, stride, samples, n_train, output, seed,
                                    tick))
        return to_input_frame(torch.stack(maps), x.shape[2:])

    def _capture(self, module: nn.Module, x: Tensor) -> Tensor:
        """The output of `module` as a grid (B, C, h, w) when the model runs on x."""
        seen: list[Tensor] = []
        with as_grid(module, self._layout) as tap:
            handle = tap.register_forward_hook(lambda _m, _i, out: seen.append(out))
            try:
                self.model(x)
            finally:
                handle.remove()
        if len(seen) != 1:
            raise ValueError(f"{self.name}: layer {type(module).__name__} ran {len(seen)} times "
                             "in one forward pass; choose a block that runs once (e.g. 'layer4')")
        return seen[0]

    def _rest(self, module: nn.Module, image: Tensor, features: Tensor) -> Tensor:
        """Logits with `module`'s output replaced by `features` (N, C, h, w) (in the layer's own
        layout). The layer's input side runs on the one image, unless the rest of the model then
        fails or returns the wrong batch size: from then on it runs on N copies of the image."""
        with as_grid(module, self._layout) as tap:
            handle = tap.register_forward_hook(lambda _m, _i, _out: features)
            try:
                if not self._expand_input:
                    try:
                        logits = self.model(image)
                        if logits.shape[0] == len(features):
                            return logits
                    except RuntimeError:
                        pass
                    self._expand_input = True
                return self.model(image.expand(len(features), *image.shape[1:]))
            finally:
                handle.remove()


class GreyChannels:
    """Images whose channels are all affine functions of the first (grey repeated, then
    normalised per channel): samplers work on `lower(t)`, the first channel, and `lift` maps
    draws back to every channel. For other images both are the identity."""

    TOLERANCE = 1e-4  # largest fit error, relative to the largest |value|, still called grey

    def __init__(self, scale: Tensor | None = None, shift: Tensor | None = None):
        self.scale, self.shift = scale, shift

    @classmethod
    def detect(cls, images: Tensor) -> GreyChannels:
        """Least-squares fit of channel c = scale_c · channel 0 + shift_c over `images`
        (B, C, H, W); grey when the fit is exact to TOLERANCE."""
        if images.shape[1] == 1:
            return cls()
        flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
        first = flat[0] - flat[0].mean()
        variance = (first * first).sum()
        if variance > 0:
            scale = ((flat - flat.mean(dim=1, keepdim=True)) @ first) / variance
        else:
            scale = torch.zeros(len(flat), dtype=flat.dtype, device=flat.device)
        scale[0] = 1.0
        shift = flat.mean(dim=1) - scale * flat[0].mean()
        error = (flat - scale[:, None] * flat[0] - shift[:, None]).abs().max()
        if error > cls.TOLERANCE * (1 + flat.abs().max()):
            return cls()
        return cls(scale.float().view(-1, 1, 1), shift.float().view(-1, 1, 1))

    def lower(self, t: Tensor) -> Tensor:
        """(B, C, H, W) → (B, 1, H, W) for grey images, else unchanged."""
        return t if self.scale is None else t[:, :1]

    def lift(self, t: Tensor) -> Tensor:
        """(..., 1, h, w) → (..., C, h, w) for grey images, else unchanged."""
        return t if self.scale is None else t * self.scale + self.shift


class MarginalSampler:
    """Windows taken from other images at the same place (`images` (R, C, H, W)); with
    gaussian=True, drawn from a Gaussian per channel with the mean and std of `images`."""

    def __init__(self, images: Tensor, gaussian: bool = False):
        self.images = images
        self.gaussian = gaussian
        self.mean = images.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
        self.std = images.std(dim=(0, 2, 3), unbiased=False).view(1, -1, 1, 1)

    def __call__(self, base: Tensor, i: int, j: int, window: int, n: int,
                 generator: torch.Generator) -> Tensor:
        """n draws (n, C, window, window) for the window at (i, j) of `base` (C, H, W)."""
        if self.gaussian:
            z = torch.randn(n, base.shape[0], window, window, generator=generator,
                            device=base.device)
            return self.mean + self.std * z
        count = len(self.images)
        if count >= n:
            picks = torch.randperm(count, generator=generator, device=base.device)[:n]
        else:
            picks = torch.randint(count, (n,), generator=generator, device=base.device)
        return self.images[picks, :, i:i + window, j:j + window]


class ConditionalSampler:
    """A stationary Gaussian per channel over (window + 2·padding)² patches fitted on
    `images` (R, C, H, W); draws a window conditioned on the rest of its patch."""

    def __init__(self, images: Tensor, window: int, padding: int, seed: int):
        height, width = images.shape[2:]
        self.device = images.device
        self.patch = (min(window + 2 * padding, height), min(window + 2 * padding, width))
        self.padding = padding
        self.low, self.high = float(images.min()), float(images.max())
        self.mean, self.cov = self._fit(images.detach().cpu().double(), seed)
        self._operators: dict[tuple[int, int, int], tuple[Tensor, ...]] = {}

    def _fit(self, images: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """Mean (C, D) and ridged covariance (C, D, D) of FIT_PATCHES patches of `images` at
        random places (all places when there are no more)."""
        count, channels, height, width = images.shape
        ph, pw = self.patch
        rows, cols = height - ph + 1, width - pw + 1
        places = count * rows * cols
        if places <= FIT_PATCHES:
            flat = torch.arange(places)
        else:
            flat = torch.randint(places, (FIT_PATCHES,),
                                 generator=torch.Generator().manual_seed(int(seed)))
        r, i, j = flat // (rows * cols), flat % (rows * cols) // cols, flat % cols
        patches = images[r[:, None, None, None], torch.arange(channels)[None, :, None, None],
                         (i[:, None] + torch.arange(ph))[:, None, :, None],
                         (j[:, None] + torch.arange(pw))[:, None, None, :]]
        patches = patches.reshape(len(flat), channels, ph * pw)
        mean = patches.mean(dim=0)
        centred = patches - mean
        cov = torch.einsum("ncd,nce->cde", centred, centred) / max(len(flat) - 1, 1)
        ridge = RIDGE * cov.diagonal(dim1=1, dim2=2).mean(dim=1) + 1e-12
        return mean, cov + ridge[:, None, None] * torch.eye(ph * pw, dtype=cov.dtype)

    def _conditioning(self, oy: int, ox: int, window: int) -> tuple[Tensor, ...]:
        """(outer, mu_in, mu_out, gain, root) for a window at (oy, ox) in the patch: the
        window's mean is mu_in + gain·(patch[outer] − mu_out), its covariance root·rootᵀ."""
        key = (oy, ox, window)
        if key not in self._operators:
            ph, pw = self.patch
            inside = torch.zeros(ph, pw, dtype=torch.bool)
            inside[oy:oy + window, ox:ox + window] = True
            inner = inside.flatten().nonzero().squeeze(1)
            outer = (~inside).flatten().nonzero().squeeze(1)
            c11 = self.cov[:, inner][:, :, inner]
            c12 = self.cov[:, inner][:, :, outer]
            c22 = self.cov[:, outer][:, :, outer]
            gain = torch.linalg.solve(c22, c12.transpose(1, 2)).transpose(1, 2) if len(outer) \
                else c12
            cond = c11 - gain @ c12.transpose(1, 2)
            values, vectors = torch.linalg.eigh((cond + cond.transpose(1, 2)) / 2)
            root = vectors * values.clamp(min=0).sqrt()[:, None, :]
            ops = (self.mean[:, inner], self.mean[:, outer], gain, root)
            self._operators[key] = (outer.to(self.device),
                                    *(t.to(self.device, torch.float32) for t in ops))
        return self._operators[key]

    def __call__(self, base: Tensor, i: int, j: int, window: int, n: int,
                 generator: torch.Generator) -> Tensor:
        """n draws (n, C, window, window) for the window at (i, j) of `base` (C, H, W)."""
        channels, height, width = base.shape
        ph, pw = self.patch
        top = min(max(i - self.padding, 0), height - ph)
        left = min(max(j - self.padding, 0), width - pw)
        outer, mu_in, mu_out, gain, root = self._conditioning(i - top, j - left, window)
        patch = base[:, top:top + ph, left:left + pw].reshape(channels, -1)
        mean = mu_in + (gain @ (patch[:, outer] - mu_out)[:, :, None]).squeeze(2)
        z = torch.randn(n, channels, mu_in.shape[1], generator=generator, device=base.device)
        drawn = mean + torch.einsum("cij,ncj->nci", root, z)
        return drawn.clamp(self.low, self.high).view(n, channels, window, window)


Sampler = MarginalSampler | ConditionalSampler


def _sampler(sampling: str, images: Tensor, window: int, padding: int, seed: int,
             own: bool) -> Sampler:
    """The sampler for `sampling` fitted on or drawing from `images`; own=True when those are
    the explained image itself (no reference given)."""
    if sampling == "conditional":
        return ConditionalSampler(images, window, padding, seed)
    return MarginalSampler(images, gaussian=own)


def _resolve_output(model: nn.Module, output: str, n_logits: int) -> str:
    """"sigmoid" or "softmax" for `output` (see the module docstring for "auto")."""
    if output == "auto":
        binary = getattr(model, "task", None) in ("binary", "multilabel")
        return "sigmoid" if binary or n_logits == 1 else "softmax"
    if output == "softmax" and n_logits == 1:
        raise ValueError("output='softmax' needs at least two logits; this model has one")
    return output


def _probabilities(logits: Tensor, output: str) -> Tensor:
    return torch.sigmoid(logits) if output == "sigmoid" else torch.softmax(logits, dim=1)


def _check(method: str, size: Sequence[int], window: Any, stride: Any, samples: Any,
           sampling: Any, n_train: Any, output: Any) -> tuple[int, int, int]:
    """Validated (window, stride, samples); ValueError naming the parameter otherwise."""
    window = positive_int(method, "window", window)
    stride = positive_int(method, "stride", stride)
    samples = positive_int(method, "samples", samples)
    if window > min(size):
        raise ValueError(f"{method}: window {window} is larger than the map {tuple(size)}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"{method}: sampling must be one of {', '.join(SAMPLINGS)}, "
                         f"got {sampling!r}")
    if output not in OUTPUTS:
        raise ValueError(f"{method}: output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 0:
        raise ValueError(f"{method}: n_train must be an integer >= 0, got {n_train!r}")
    return window, stride, samples


def _check_reference(method: str, reference: Any, x: Tensor,
                     device: torch.device) -> Tensor | None:
    """`reference` as float32 (R, C, H, W) on `device`, matching the images x; None stays."""
    if reference is None:
        return None
    if not isinstance(reference, Tensor) or reference.ndim != 4 or len(reference) == 0 \
            or reference.shape[1:] != x.shape[1:]:
        shape = tuple(reference.shape) if isinstance(reference, Tensor) else type(reference).__name__
        raise ValueError(f"{method}: reference must be images (R, {', '.join(map(str, x.shape[1:]))}) "
                         f"like the input, got {shape}")
    if not torch.isfinite(reference).all():
        raise ValueError(f"{method}: reference contains NaN or infinite values")
    return reference.to(device, torch.float32)


def _warn_no_reference(method: str, sampling: str) -> None:
    fallback = ("the conditional Gaussian is fitted on the image's own patches"
                if sampling == "conditional" else
                "marginal samples come from a Gaussian per channel with the image's own "
                "mean and std")
    warnings.warn(f"{method}: no reference images given; {fallback}", stacklevel=4)


def _n_windows(size: Sequence[int], window: int, stride: int) -> int:
    return len(window_starts(size[0], window, stride)) * len(window_starts(size[1], window, stride))


def _ticker(progress: Progress, total: int) -> Callable[[int], None]:
    """tick(n): n more windows done; reports (done, total) to a callback or a tqdm bar."""
    bar = tqdm(total=total, unit="window") if progress is True else None
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
            if done >= total:
                bar.close()
        elif callable(progress):
            progress(done, total)

    return tick


def _identity(t: Tensor) -> Tensor:
    return t
