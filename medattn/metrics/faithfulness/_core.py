"""What every faithfulness metric shares: input checks, the class score, fills, pixel order and
batched forward passes over perturbed copies.

Conventions (DESIGN.md, "Faithfulness and robustness"):
- `x` is the model input (B, C, H, W) float; `attributions` are maps (B, H, W) in the same
  frame (a map of one pixel acts on all its channels); `targets` one class index per image.
- The class score is the probability the checkpoint's task defines: softmax over the logits for
  `task="multiclass"`, the class's own sigmoid otherwise ("multilabel", "binary"), so a
  multi-label class is scored on its own output and not against the other classes
  (Quantus#233: Quantus takes softmax of every model). `task="logit"` scores the raw logit.
- Fills (`baseline`) are in model-input units: a float (one constant), `"blur"` (Petsiuk et
  al.'s insertion substrate: each channel blurred by a Gaussian of σ = 5 px in an 11-px
  window), or a tensor broadcastable to `x` (e.g. the image's black carried through the
  checkpoint's preprocessing, (C, 1, 1)).
- `precision` is "float32" (the default: every operation in float32, so a score is the same on
  every CPU up to float32 rounding) or "bfloat16", an explicit choice (as the explainers'):
  the forward passes under bfloat16 autocast on CPUs with native bfloat16 (AMX / AVX512-BF16)
  for the backbones of `explain.base.MIXED_PRECISION_ARCHS`, float32 elsewhere. On the demo
  ResNet-18 WILDCAT (4 test images × saliency and Grad-CAM maps, 50 steps) it moved deletion
  AUCs by at most 2.3e-4 and insertion AUCs by 2e-5, and took half the time.
- Random draws come from `numpy.random.RandomState(seed)` or `torch.Generator().manual_seed(seed)`
  started afresh for each image, so an image's value depends on its seed only, never on the
  batch it was computed in, and every map of one image meets the same perturbations (common
  random numbers: paired comparisons of methods see no draw-to-draw noise).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import Tensor, nn

from medattn.explain.base import bfloat16_applies, check_precision, evaluation_model, frozen

TASKS = ("multiclass", "multilabel", "binary", "logit")
Baseline = Union[float, str, Tensor, np.ndarray]
Targets = Union[int, Sequence[int], np.ndarray, Tensor]
DEFAULT_BATCH_SIZE = 64
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # Petsiuk et al. 2018 (RISE's gkern(11, 5))


def as_input(x: Tensor | np.ndarray, name: str = "x") -> Tensor:
    """`x` as a float32 (B, C, H, W) tensor; ValueError naming the shape otherwise."""
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or min(x.shape) < 1:
        raise ValueError(f"{name} must be images (B, C, H, W), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.detach().float()


def as_maps(attributions: Tensor | np.ndarray, x: Tensor) -> np.ndarray:
    """Attributions (B, H, W) (or (B, 1, H, W)) as float64 numpy in `x`'s frame."""
    maps = attributions.detach().cpu().numpy() if isinstance(attributions, Tensor) else np.asarray(attributions)
    maps = maps.astype(np.float64, copy=False)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim == 2:
        maps = maps[None]
    expected = (x.shape[0], *x.shape[2:])
    if maps.shape != expected:
        raise ValueError(f"attributions must be maps (B, H, W) = {expected} in the input's frame, got {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("attributions contain NaN or infinite values")
    return maps


def as_targets(targets: Targets, n: int) -> np.ndarray:
    """One class index per image (an int is used for all), int64 (n,)."""
    t = np.asarray(targets.detach().cpu() if isinstance(targets, Tensor) else targets).astype(np.int64).reshape(-1)
    if t.size == 1:
        t = np.repeat(t, n)
    if t.size != n:
        raise ValueError(f"got {t.size} targets for {n} images")
    return t


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def class_scores(logits: Tensor, targets: Tensor, task: str) -> Tensor:
    """The targets' scores (N,) from logits (N, K) under `task` (module docstring)."""
    logits = logits.float()
    if targets.numel() and int(targets.max()) >= logits.shape[1]:
        raise ValueError(f"target {int(targets.max())} is not a class of a model with {logits.shape[1]} outputs")
    if task == "multiclass":
        scores = torch.softmax(logits, dim=1)
    elif task == "logit":
        scores = logits
    else:
        scores = torch.sigmoid(logits)
    return scores.gather(1, targets.view(-1, 1)).squeeze(1)


def fill(x: Tensor, baseline: Baseline) -> Tensor:
    """The fill image (B, C, H, W) that replaces removed pixels (module docstring)."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number, 'blur' or a tensor, got {baseline!r}")
        return TF.gaussian_blur(x, [BLUR_KERNEL, BLUR_KERNEL], [BLUR_SIGMA, BLUR_SIGMA])
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    value = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(value, x.shape).clone()
    except RuntimeError:
        raise ValueError(f"baseline of shape {tuple(value.shape)} does not broadcast to the input {tuple(x.shape)}") from None


def pixel_ranks(maps: np.ndarray, seed: int, descending: bool = True) -> np.ndarray:
    """Each pixel's place (0 = first) when pixels are sorted by map value, (B, H, W) int64.

    `descending`: most relevant (largest signed value) first, as MoRF; else least relevant
    first (LeRF). Signed maps are ranked by their signed value: negative evidence comes last,
    not first as under |φ| (Quantus takes |φ| by default in its localisation metrics,
    Quantus#338). Ties, e.g. every pixel of a flat map, go in a random order drawn from
    `seed` (the same for every image), so a flat map scores like a random one instead of
    like a top-to-bottom sweep.
    """
    batch, height, width = maps.shape
    tiebreak = np.random.RandomState(seed).permutation(height * width)
    ranks = np.empty((batch, height * width), dtype=np.int64)
    for i, values in enumerate(maps.reshape(batch, -1)):
        order = np.lexsort((tiebreak, -values if descending else values))
        ranks[i, order] = np.arange(order.size)
    return ranks.reshape(maps.shape)


def image_rng(seed: int) -> np.random.RandomState:
    """A fresh legacy NumPy stream for one image (the draws Quantus makes after np.random.seed)."""
    return np.random.RandomState(int(seed))


def torch_rng(seed: int) -> torch.Generator:
    """A fresh CPU torch stream for one image (the draws Captum makes after torch.manual_seed)."""
    return torch.Generator().manual_seed(int(seed))


class Scorer:
    """Scores of many perturbed copies of images through one model, in batches: a context
    manager that holds the model's evaluation copy (BatchNorm folded, channels-last;
    `explain.base.evaluation_model`) frozen and in inference mode."""

    def __init__(self, model: nn.Module, x: Tensor, task: str, batch_size: int = DEFAULT_BATCH_SIZE,
                 precision: str = "float32"):
        check_task(task)
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        check_precision("faithfulness", precision)
        self.model, self.task, self.batch_size = model, task, int(batch_size)
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._example = x[:1].to(self.device)
        self.bfloat16 = precision == "bfloat16" and bfloat16_applies(model, self.device)
        self._stack: list = []

    def __enter__(self) -> "Scorer":
        freeze = frozen(self.model)
        freeze.__enter__()
        copy_cm = evaluation_model(self.model, self._example)
        self.fast = copy_cm.__enter__()
        self._stack = [copy_cm, freeze]
        return self

    def __exit__(self, *exc: object) -> None:
        for cm in self._stack:
            cm.__exit__(*exc)
        self._stack = []

    def logits(self, copies: Tensor) -> Tensor:
        """Logits (N, K) of N inputs, float32 on the CPU."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(copies), self.batch_size):
                chunk = copies[start:start + self.batch_size].to(self.device, torch.float32)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                    out.append(self.fast(chunk).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, 0))

    def scores(self, copies: Tensor, targets: Tensor | np.ndarray) -> np.ndarray:
        """Class scores (N,) of N inputs for their N targets."""
        targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        return class_scores(self.logits(copies), targets, self.task).double().numpy()

    def stream(self, chunks: Iterator[tuple[Tensor, np.ndarray]], targets: np.ndarray) -> np.ndarray:
        """Scores of copies produced lazily in chunks of (inputs, image index), each for its
        image's target, concatenated: bounded memory however many copies there are."""
        parts = [self.scores(copies, targets[index]) for copies, index in chunks]
        return np.concatenate(parts) if parts else np.zeros(0)


def masked_copies(x: Tensor, fills: Tensor, ranks: np.ndarray, counts: Sequence[int],
                  chunk: int) -> Iterator[tuple[Tensor, np.ndarray]]:
    """For each image i and each count n in `counts`: `x[i]` with its n first-ranked pixels
    (all channels) replaced by `fills[i]`. Yields (copies, image index) in chunks of about
    `chunk` copies, image-major, so memory stays bounded."""
    counts = np.asarray(counts, dtype=np.int64)
    rank_t = torch.from_numpy(ranks)
    per_chunk = max(1, chunk)
    for i in range(x.shape[0]):
        for start in range(0, counts.size, per_chunk):
            n = torch.from_numpy(counts[start:start + per_chunk])
            removed = (rank_t[i][None] < n[:, None, None]).unsqueeze(1)  # (S, 1, H, W)
            yield torch.where(removed, fills[i:i + 1], x[i:i + 1]), np.full(len(n), i)


def trapezoid_auc(curves: np.ndarray) -> np.ndarray:
    """Area under curves sampled at equal steps over [0, 1] (B, S+1) → (B,) (Petsiuk et al.'s
    `auc`: the trapezoidal rule with the x axis scaled to [0, 1])."""
    curves = np.asarray(curves, dtype=np.float64)
    steps = curves.shape[1] - 1
    if steps < 1:
        raise ValueError("a curve needs at least two points")
    return (curves.sum(axis=1) - (curves[:, 0] + curves[:, -1]) / 2.0) / steps


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
