"""Infidelity and max-sensitivity (Yeh et al. 2019, "On the (in)fidelity and sensitivity of
explanations", NeurIPS), as Captum's `infidelity` and `sensitivity_max` define them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from medattn.metrics.faithfulness._core import (
    Scorer, Targets, as_input, as_maps, as_targets, check_task, positive_int, torch_rng,
)

Explain = Callable[[nn.Module, Tensor, Tensor], "Tensor | np.ndarray"]  # (model, x, targets) -> (B, H, W)


def infidelity(model: nn.Module, x: Tensor, attributions: Tensor | np.ndarray, targets: Targets, *,
               n_samples: int = 32, noise_std: float = 0.1, normalize: bool = True, task: str = "logit",
               seed: int = 0, batch_size: int = 64, precision: str = "float32") -> np.ndarray:
    """Infidelity (Yeh et al. 2019, eq. 1): E_I[(Iᵀφ − (f(x) − f(x − I)))²] over `n_samples`
    Gaussian perturbations I of std `noise_std` (model-input units) on every channel of every
    pixel, φ the map broadcast over channels, f the target's logit (`task="logit"`; a
    probability with another task). Lower is better, ≥ 0; the gradient map of a linear model
    scores 0.

    `normalize=True` first scales φ by the least-squares β = Σ Iᵀφ·Δf / Σ (Iᵀφ)² (Captum's
    `normalize`), so the value does not depend on the map's scale: without it a map and its
    double score differently (captum#613). Equals Captum's `infidelity` with a perturbation
    function returning (I, x − I), where I = `noise_std · torch.randn((n_samples, C, H, W),
    generator=torch.Generator().manual_seed(seed))` (the same draws for every image).
    Returns (B,) float64.
    """
    x = as_input(x)
    maps, t = as_maps(attributions, x), as_targets(targets, x.shape[0])
    n = positive_int("n_samples", n_samples)
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive (model-input units), got {noise_std!r}")
    check_task(task)
    noise = torch.randn((n, *x.shape[1:]), generator=torch_rng(seed)) * float(noise_std)
    projected = torch.einsum("nchw,bhw->bn", noise.double(), torch.from_numpy(maps)).numpy()  # Iᵀφ (B, n)

    def copies():
        for i in range(x.shape[0]):
            yield x[i:i + 1], np.array([i])
            for start in range(0, n, batch_size):
                part = noise[start:start + batch_size]
                yield x[i:i + 1] - part, np.full(len(part), i)

    with Scorer(model, x, task, batch_size, precision) as scorer:
        scores = scorer.stream(copies(), t).reshape(x.shape[0], n + 1)
    delta = scores[:, :1] - scores[:, 1:]
    if normalize:
        aa, ab = (projected ** 2).sum(axis=1), (projected * delta).sum(axis=1)
        beta = ab / np.where(aa != 0, aa, 1.0)
        projected = beta[:, None] * projected
    return ((projected - delta) ** 2).mean(axis=1)


def max_sensitivity(model: nn.Module, x: Tensor, targets: Targets, explain: Explain, *, radius: float = 0.02,
                    n_samples: int = 10, seed: int = 0, batch_size: int | None = 1) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019, §4; Captum's `sensitivity_max` with its default
    perturbation and Frobenius norm): max over `n_samples` inputs x + δ, δ uniform in
    [-radius, radius] on every channel of every pixel (model-input units), of
    ‖Φ(x + δ) − Φ(x)‖_F / ‖Φ(x)‖_F, Φ = `explain(model, inputs, targets)` (B, H, W); a zero
    map divides by 1, as Captum does. Lower is better; a constant explanation scores 0.

    δ is `torch.empty((n_samples, C, H, W)).uniform_(-radius, radius, generator=
    torch.Generator().manual_seed(seed))`, the same for every image: Captum's draws after
    `torch.manual_seed(seed)` for one image. `batch_size` perturbed inputs per `explain` call
    (None: all `n_samples` at once); default 1, since on a 2-core CPU medattn's saliency
    explainer took 3x longer for a batch of 10 192-px images than for 10 single calls.
    Returns (B,) float64.
    """
    x = as_input(x)
    t = torch.as_tensor(as_targets(targets, x.shape[0]))
    n = positive_int("n_samples", n_samples)
    chunk = n if batch_size is None else positive_int("batch_size", batch_size)
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0 (model-input units), got {radius!r}")
    delta = torch.empty((n, *x.shape[1:])).uniform_(-float(radius), float(radius), generator=torch_rng(seed))
    original = as_maps(_explained(explain, model, x, t), x).reshape(x.shape[0], -1)
    norms = np.linalg.norm(original, axis=1)
    norms = np.where(norms == 0, 1.0, norms)
    out = np.zeros(x.shape[0])
    for i in range(x.shape[0]):
        for start in range(0, n, chunk):
            part = x[i:i + 1] + delta[start:start + chunk]
            maps = as_maps(_explained(explain, model, part, t[i].repeat(len(part))), part).reshape(len(part), -1)
            out[i] = max(out[i], float((np.linalg.norm(maps - original[i], axis=1) / norms[i]).max()))
    return out


def _explained(explain: Explain, model: nn.Module, x: Tensor, targets: Tensor) -> Tensor | np.ndarray:
    maps = explain(model, x, targets)
    return maps.detach().cpu() if isinstance(maps, Tensor) else maps
