"""Which methods the app runs, with which settings, on which models.

PDA runs with fast settings in the app: a square window of 1/8 of the model's input side (16
pixels at 128) every half window, 4 marginal samples. The window count (15 × 15) and so the
cost in model evaluations (901) are then the same at every input size, and the window covers
the same share of the anatomy; the authors' window 10, stride 1, 10 samples needs ~150 000
evaluations at 128 pixels. Precompute started from the app uses the same settings, so its maps
are the ones the pages read back from the cache.

Slow methods show a preview first on Compare (`preview_params`): the same method with less work
(fewer path steps or noise samples, windows that do not overlap, one PDA sample), 4-50 times
cheaper and sized to about a second of the model's work on a CPU (`explain.work_size`), shown
labelled "preview" until the final map replaces it; previews are never scored or stored.
"""

from __future__ import annotations

import math
from typing import Any

from medattn.explain import get_explainer
from medattn.explain.gradients import OCCLUSION_AT_224
from medattn.inference import LoadedModel

PDA_SAMPLES = 4
DEFAULT_METHODS = ("saliency", "integrated_gradients", "pda", "wildcat")
# Roughly cheapest first: the grid fills in this order, so slow panels never hold up fast ones.
COST_ORDER = ("wildcat", "attention", "gradcam", "saliency", "guided_backprop", "guided_gradcam",
              "integrated_gradients", "smoothgrad", "occlusion", "pda_features", "smoothgrad_ig", "pda")


def app_params(method: str, input_size: int) -> dict[str, Any]:
    """The parameters the app passes for `method` on a model with this input side."""
    if method == "pda":
        window = max(2, round(input_size / 8))
        return {"window": window, "stride": max(1, window // 2), "sampling": "marginal", "samples": PDA_SAMPLES}
    if method == "pda_features":
        return {"samples": PDA_SAMPLES}
    return {}


def preview_params(method: str, input_size: int, gradient_budget: int | None = None,
                   forward_budget: int | None = None) -> dict[str, Any] | None:
    """The coarse settings of `method`'s preview on a model with this input side, over
    `app_params`; None for a method quick enough to show at once. The budgets
    (`medattn.explain.work_size.evaluations`: the forward and backward passes, or the forward
    passes, a preview may take on this model on a CPU) make a costly model's preview coarser
    still: fewer path steps (at least 4 of the usual 8), noise samples (at least 2 of 5), PDA
    windows (at least 4 × 4).
    Without them, the settings for a model as cheap as the demo's."""
    steps = 8 if gradient_budget is None else max(4, min(8, gradient_budget))  # of 50
    if method == "integrated_gradients":
        return {"steps": steps}
    if method == "smoothgrad":
        return {"n_samples": max(2, min(5, steps - 3))}  # of 25
    if method == "smoothgrad_ig":
        return {"n_samples": 2, "steps": steps}  # at most 16 evaluations of 200
    if method == "occlusion":
        window = max(1, round(OCCLUSION_AT_224[0] * input_size / 224))
        return {"window": window, "stride": window}  # a quarter of the windows
    if method == "pda":
        side = 8 if forward_budget is None else max(4, min(8, math.isqrt(forward_budget)))
        window = max(app_params(method, input_size)["window"], math.ceil(input_size / side))
        return {**app_params(method, input_size), "window": window, "stride": window, "samples": 1}  # side² windows, 1 sample
    if method == "pda_features":
        return {**app_params(method, input_size), "samples": 1}
    return None


def precompute_params(loaded: LoadedModel) -> dict[str, dict[str, Any]]:
    """`app_params` of every method for one model, in precompute's `params` form."""
    return {method: app_params(method, loaded.input_size) for method in ("pda", "pda_features")}


def unavailable(loaded: LoadedModel, method: str) -> str | None:
    """Why `method` cannot explain this model, in a panel's words (e.g. "linear head has no
    class maps"), else None."""
    explainer = get_explainer(method)
    reason = explainer.unavailable(loaded.model)
    if reason is None or explainer.requires is None:  # e.g. guided methods on a GELU model: the method's own line
        return reason
    return f"{loaded.meta.get('head', 'this')} head has no {explainer.requires[1]}"


def cost_rank(method: str) -> int:
    return COST_ORDER.index(method) if method in COST_ORDER else len(COST_ORDER)
