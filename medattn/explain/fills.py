"""Baselines and fills in the image's own terms.

A stored image is read as float (H, W) in [0, 1] (`medattn.data.io.read_image`) and reaches the
model through its checkpoint's preprocessing (`medattn.data.preprocess.Preprocessing`: ImageNet
z-score, TorchXRayVision's [-1024, 1024], unit, or a given mean/std, and grey repeated to the
model's channel count). A baseline or fill named in the image's terms is a constant stored
image carried through that same preprocessing (`Preprocessing.constant_input`), so "black"
means the image's black on every model:

    intensity    "black" in model-input units
    imagenet     (-2.118, -2.036, -1.804)  (per channel)
    xrv          -1024
    unit         0
    meanstd      -mean / std  (per channel)

Per method:
- integrated_gradients, smoothgrad_ig: `baseline` "black" (default), "zeros" (0 in model-input
  units, the mean image under a z-score), "blur", or a tensor in model-input units.
- occlusion: `baseline` "black" (default) or a float in model-input units.
- pda, pda_features: no constant fill; windows are replaced by samples of other images (or of
  the image's own intensity distribution), already in model-input units.

The model's preprocessing is its `preprocessing` attribute, which `load_checkpoint` sets from
the checkpoint json; a model without one (built in memory by `medattn.models.build`) is fed as
medattn trains: ImageNet's z-score on 3 channels.
"""

from __future__ import annotations

from torch import Tensor, nn

from medattn.data.preprocess import Preprocessing
from medattn.explain.base import describe

FILLS = ("black",)  # fills named in the image's terms
TRAINING_DEFAULT = Preprocessing()  # how medattn's own models are fed unless told otherwise


def model_preprocessing(model: nn.Module, x: Tensor) -> Preprocessing:
    """The preprocessing `model` is fed through (its `preprocessing` attribute), for inputs
    like `x` (B, C, H, W). ValueError for a model that records none and takes other than
    3-channel input, where no default applies."""
    prep = getattr(model, "preprocessing", None)
    if isinstance(prep, Preprocessing):
        return prep
    if x.shape[1] == TRAINING_DEFAULT.channels:
        return TRAINING_DEFAULT
    raise ValueError(f"{describe(model)} records no preprocessing and takes {x.shape[1]}-channel input, so "
                     "the image's black has no known value in its input units: load it with "
                     "load_checkpoint (which sets model.preprocessing), set model.preprocessing = "
                     "Preprocessing(...), or give the baseline in model-input units")


def image_fill(model: nn.Module, x: Tensor, name: str) -> Tensor:
    """The fill `name` (one of FILLS) as a tensor like `x`, in `model`'s input units."""
    if name != "black":
        raise ValueError(f"unknown fill {name!r}; fills in the image's terms: {', '.join(FILLS)}")
    return model_preprocessing(model, x).constant_input(0.0, like=x)
