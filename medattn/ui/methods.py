"""Which methods the app runs, with which settings, on which models.

PDA runs with fast settings in the app: a square window of 1/8 of the model's input side (16
pixels at 128) every half window, 4 marginal samples. The window count (15 × 15) and so the
cost in model evaluations (901) are then the same at every input size, and the window covers
the same share of the anatomy; the authors' window 10, stride 1, 10 samples needs ~150 000
evaluations at 128 pixels. Precompute started from the app uses the same settings, so its maps
are the ones the pages read back from the cache.
"""

from __future__ import annotations

from typing import Any

from medattn.explain import get_explainer
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
