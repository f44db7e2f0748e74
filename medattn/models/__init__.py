"""Models: torchvision backbones with multi-level feature taps, the heads (linear, mldam,
wildcat, recurrent, channel_attention, residual_attention), the registry and checkpoint IO.

Every model returns logits (B, C) and carries `arch`, `head`, `num_classes`, `params`,
`gradcam_layer` and `input_channels` (3). Intrinsic maps, where a head has them:
- `class_maps(x)` (B, C, h, w): wildcat, its class-wise pooled maps; mldam and
  residual_attention, class-weighted maps (CAM of their linear classifier over the attended
  features); recurrent, its class-agnostic attention repeated over the C classes.
- `attention_maps(x)` {name: tensor}: mldam, position attention per level (B, h, w);
  recurrent, per step (B, T, h, w) and their mean; residual_attention, the soft masks
  (B, channels, h, w) per module.
linear and channel_attention have neither.

Other tools' weights come in through `python -m medattn.models.importer` (torchvision key names
onto these backbones: `keymap`; TorchXRayVision, MONAI, timm models as they are: `external`).
"""

from typing import Any

from medattn.models.backbones import ARCHS
from medattn.models.checkpoint import load_checkpoint, save_checkpoint
from medattn.models.registry import COMBINATIONS, HEADS, build, head_params

__all__ = ["ARCHS", "COMBINATIONS", "HEADS", "build", "head_params", "import_state_dict",
           "load_checkpoint", "save_checkpoint"]


def __getattr__(name: str) -> Any:
    """`import_state_dict` on first use (PEP 562): the package never imports its importer
    module itself, so `python -m medattn.models.importer` runs that module once, as __main__,
    without runpy's "found in sys.modules" RuntimeWarning."""
    if name == "import_state_dict":
        from medattn.models.importer import import_state_dict

        return import_state_dict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
