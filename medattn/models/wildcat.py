"""WILDCAT head (Durand et al. 2017) as used by Aggarwal et al. 2020 for RSNA pneumonia: a
1×1 convolution to C·M maps, class-wise pooling of each class's M maps ("modalities") into one
class map, and spatial pooling of each class map by the mean of its k highest and (weighted by
alpha) k lowest regions. The pooling follows the authors' reference implementation
(durandtibo/wildcat.pytorch) exactly; see `positive_k` and `WildcatPool2d`.

Defaults: Aggarwal et al. searched k, alpha and M per model without publishing the chosen values
(reporting only that low k worked best), so the defaults are those of the reference
implementation's VOC 2007 setting: M = 8 maps per class, kmax = kmin = 0.2, alpha = 0.7.
"""

from __future__ import annotations

from torch import Tensor, nn

from medattn.models.backbones import Backbone
from medattn.models.base import MedattnModel, check_int, check_number


def positive_k(k: float, n: int) -> int:
    """Number of regions for k over n regions: 0 if k <= 0; round(k·n) if 0 < k < 1 (a
    fraction, Python rounding); n if k > n; otherwise int(k)."""
    if k <= 0:
        return 0
    if k < 1:
        return round(k * n)
    if k > n:
        return int(n)
    return int(k)


class ClassWisePool(nn.Module):
    """(B, C·M, H, W) → (B, C, H, W): the mean of each class's M consecutive maps."""

    def __init__(self, num_maps: int):
        super().__init__()
        self.num_maps = check_int("ClassWisePool", "num_maps", num_maps)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        if channels % self.num_maps:
            raise ValueError(f"ClassWisePool: {channels} channels are not a multiple of "
                             f"num_maps={self.num_maps}")
        return x.view(batch, channels // self.num_maps, self.num_maps, height, width).mean(dim=2)

    def extra_repr(self) -> str:
        return f"num_maps={self.num_maps}"


class WildcatPool2d(nn.Module):
    """(B, C, H, W) → (B, C). With n = H·W and kmax, kmin resolved by `positive_k`
    (kmin=None means kmin = kmax): score = mean of the kmax highest values; when kmin > 0 and
    alpha != 0, score = (that mean + alpha · mean of the kmin lowest values) / 2.

    alpha = 0 (int or float) gives the plain top mean, the documented formula. The reference
    code tests `alpha is not 0`, an identity test that a float 0.0 passes, so there a float
    alpha=0.0 still halves the top mean ((top + 0 · bottom) / 2) and only an int 0 does not.
    Weights trained with the reference code and alpha=0.0 expect that halving (their logits
    are half ours): set `alpha_zero_halves=True` to reproduce it.
    """

    def __init__(self, kmax: float = 1, kmin: float | None = None, alpha: float = 1.0,
                 alpha_zero_halves: bool = False):
        super().__init__()
        self.kmax = check_number("WildcatPool2d", "kmax", kmax)
        if self.kmax <= 0:
            raise ValueError(f"WildcatPool2d: kmax must be > 0 (the score is a mean over the "
                             f"kmax highest regions), got {kmax!r}")
        self.kmin = None if kmin is None else check_number("WildcatPool2d", "kmin", kmin)
        self.alpha = check_number("WildcatPool2d", "alpha", alpha)
        if not isinstance(alpha_zero_halves, bool):
            raise ValueError(f"WildcatPool2d: alpha_zero_halves must be True or False, got {alpha_zero_halves!r}")
        self.alpha_zero_halves = alpha_zero_halves

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[2] * x.shape[3]
        kmax = positive_k(self.kmax, n)
        kmin = positive_k(self.kmax if self.kmin is None else self.kmin, n)
        if kmax == 0:
            raise ValueError(f"WildcatPool2d: kmax={self.kmax} selects no region of a "
                             f"{x.shape[2]}×{x.shape[3]} map")
        ranked = x.flatten(2).sort(dim=2, descending=True).values
        score = ranked[..., :kmax].mean(dim=2)
        if kmin > 0 and (self.alpha != 0 or self.alpha_zero_halves):
            score = (score + self.alpha * ranked[..., n - kmin:].mean(dim=2)) / 2
        return score

    def extra_repr(self) -> str:
        extra = ", alpha_zero_halves=True" if self.alpha_zero_halves else ""
        return f"kmax={self.kmax}, kmin={self.kmin}, alpha={self.alpha}{extra}"


class WildcatModel(MedattnModel):
    """Backbone I_C → 1×1 conv (C·num_maps) → ClassWisePool → WildcatPool2d → logits.
    `class_maps(x)` returns the class-wise pooled maps (B, C, h, w) the logits are pooled from.
    Parameters: num_maps (M), kmax, kmin (None = kmax), alpha, alpha_zero_halves (reference
    code's pooling at alpha=0.0, see `WildcatPool2d`)."""

    name = "wildcat"
    defaults = {"num_maps": 8, "kmax": 0.2, "kmin": None, "alpha": 0.7, "alpha_zero_halves": False}

    def __init__(self, backbone: Backbone, num_classes: int, num_maps: int, kmax: float,
                 kmin: float | None, alpha: float, alpha_zero_halves: bool = False):
        num_maps = check_int(self.name, "num_maps", num_maps)
        spatial = WildcatPool2d(kmax, kmin, alpha, alpha_zero_halves)
        super().__init__(backbone, num_classes, {"num_maps": num_maps, "kmax": spatial.kmax,
                                                 "kmin": spatial.kmin, "alpha": spatial.alpha,
                                                 "alpha_zero_halves": alpha_zero_halves})
        self.maps = nn.Conv2d(backbone.channels[-1], num_classes * num_maps, kernel_size=1)
        self.class_pool = ClassWisePool(num_maps)
        self.spatial_pool = spatial

    def class_maps(self, x: Tensor) -> Tensor:
        return self.class_pool(self.maps(self.backbone(x)[-1]))

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial_pool(self.class_maps(x))
