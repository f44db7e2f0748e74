"""How a model sees an image, as checkpoint metadata: `Preprocessing`, and the way back from a
map on the model's input to the stored image's frame.

A read image (float32 (H, W) in [0, 1], `medattn.data.io.read_image`) becomes a model input in
two steps:

1. Geometry (`Preprocessing.geometry`), (H, W) → (S, S) in [0, 1]:
   - `resize="stretch"`: the whole image resized to `size` × `size` (aspect not kept; medattn's
     own models are trained so).
   - `resize="shorter_side_center_crop"`: the shorter side resized to `size` (the longer one to
     `int(size · long / short)`), then the centred `crop` × `crop` square, exactly as
     torchvision's `Resize(size)` → `CenterCrop(crop)` compute them (CheXNet-style models).
   - `resize="center_crop_resize"`: the centred square of the shorter side's length cut first
     (top-left at H//2 − m//2, W//2 − m//2, m = min(H, W)), then resized to `size` × `size`:
     TorchXRayVision's `XRayCenterCrop` → `XRayResizer`.
   - `interpolation="area"`: OpenCV INTER_AREA when shrinking, INTER_LINEAR when enlarging
     (medattn's default); `"bilinear"`: PIL's bilinear filter (antialiased when shrinking), as
     torchvision's `Resize` applies it to PIL images. 8-bit images are resized as 8-bit PIL
     images with the same rounding, so the result equals torchvision's pipeline on the file.
     `"xrv"`: TorchXRayVision's `XRayResizer` (`skimage.transform.resize`, order 1,
     anti-aliased, constant padding), computed on xrv's scale where the padding is mid-grey, as
     xrv resizes its normalised images.
2. Intensity (`Preprocessing.intensity`), (B, 1, S, S) in [0, 1] → (B, `channels`, S, S):
   `"imagenet"` z-score with ImageNet's mean/std, `"xrv"` TorchXRayVision's scale
   `(2x - 1) · 1024` ∈ [-1024, 1024], `"unit"` [0, 1] as is, `"meanstd"` z-score with the given
   `mean`/`std` (one value, or one per channel). Grey is repeated to 3 channels when
   `channels=3`.
   `constant_input(value)` is the model input of a constant stored image (value 0: its black),
   the image-terms baseline and fill of the explainers and the faithfulness metrics.

Maps come back with `Preprocessing.place(map, shape)`: a map on the (S, S) input is resized
onto the region of the stored image that the input covers (the whole image for "stretch", the
crop's footprint otherwise). Outside the crop the model saw nothing, so there is no evidence
there: `place` fills it with `outside` (0 by default, the lowest value of a [0, 1] map, so
scores rank those pixels last, never above anything the model saw, and a box entirely outside
the crop gets AUPRC at chance or below and no hit), and `support(shape)` is the boolean mask
of pixels the model saw, which displays use to show the rest as "not seen" rather than as
"low evidence". NaN is not used: every metric and colormap would have to special-case it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from medattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize

RESIZE_MODES = ("stretch", "shorter_side_center_crop", "center_crop_resize")
INTERPOLATIONS = ("area", "bilinear", "xrv")
INTENSITIES = ("imagenet", "xrv", "unit", "meanstd")
XRV_RANGE = 1024.0  # TorchXRayVision: xrv.datasets.normalize maps [0, maxval] to [-1024, 1024]


@dataclass(frozen=True)
class Crop:
    """Where the model's input lies in the stored image: rows [top, bottom), columns
    [left, right) in stored-image pixels (floats: the crop's exact footprint)."""

    top: float
    left: float
    bottom: float
    right: float

    def pixels(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) rounded to whole pixels and clipped to `shape`."""
        height, width = shape
        return (max(0, round(self.top)), max(0, round(self.left)),
                min(height, round(self.bottom)), min(width, round(self.right)))


@dataclass(frozen=True)
class Preprocessing:
    """A model's preprocessing (see the module docstring). `input_size` is the side of the
    square the model receives: `size` for "stretch", `crop` otherwise."""

    resize: str = "stretch"
    size: int = 224
    crop: int | None = None
    interpolation: str = "area"
    channels: int = 3
    intensity: str = "imagenet"
    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, allowed: str) -> ValueError:
            return ValueError(f"preprocessing: {name} must be {allowed}, got {value!r}")

        if self.resize not in RESIZE_MODES:
            raise bad("resize", self.resize, " or ".join(RESIZE_MODES))
        if self.interpolation not in INTERPOLATIONS:
            raise bad("interpolation", self.interpolation, " or ".join(INTERPOLATIONS))
        if self.intensity not in INTENSITIES:
            raise bad("intensity", self.intensity, ", ".join(INTENSITIES))
        if self.channels not in (1, 3):
            raise bad("channels", self.channels, "1 or 3")
        if not _positive_int(self.size):
            raise bad("size", self.size, "a positive integer")
        if self.resize in ("stretch", "center_crop_resize") and self.crop not in (None, self.size):
            raise bad("crop", self.crop, f"unset for resize={self.resize!r} (the input is size={self.size})")
        if self.resize == "shorter_side_center_crop":
            if self.crop is None:
                object.__setattr__(self, "crop", self.size)
            if not _positive_int(self.crop) or self.crop > self.size:
                raise bad("crop", self.crop, f"a positive integer <= size ({self.size})")
        if self.intensity == "imagenet" and self.channels != 3:
            raise bad("intensity", self.intensity, "'xrv', 'unit' or 'meanstd' for 1-channel input "
                      "(ImageNet's statistics are per colour channel)")
        if self.intensity in ("imagenet", "xrv", "unit"):  # fixed scales: mean/std are implied
            fixed = self.intensity == "imagenet"
            object.__setattr__(self, "mean", IMAGENET_MEAN if fixed else ())
            object.__setattr__(self, "std", IMAGENET_STD if fixed else ())
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.intensity == "meanstd":
            for name, values in (("mean", self.mean), ("std", self.std)):
                if len(values) not in (1, self.channels):
                    raise bad(name, list(values), f"1 or {self.channels} values")
            if any(not s > 0 for s in self.std):
                raise bad("std", list(self.std), "positive")

    @property
    def input_size(self) -> int:
        return int(self.crop if self.resize == "shorter_side_center_crop" else self.size)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "Preprocessing":
        """The preprocessing a checkpoint json records under `preprocessing`; checkpoints
        written before that field: stretch to `input_size` with area filtering, 3 channels and
        their `normalisation` mean/std (ImageNet when absent)."""
        given = meta.get("preprocessing")
        if isinstance(given, Mapping):
            known = {k: v for k, v in given.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        norm = meta.get("normalisation") or {}
        mean, std = tuple(norm.get("mean", IMAGENET_MEAN)), tuple(norm.get("std", IMAGENET_STD))
        imagenet = np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD)
        return cls(size=int(meta.get("input_size", 224)),
                   intensity="imagenet" if imagenet else "meanstd", mean=mean, std=std)

    def to_meta(self) -> dict[str, Any]:
        """The json form (`preprocessing` field of a checkpoint), every field explicit."""
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    def describe(self) -> str:
        """One line for tables, e.g. 'resize 256 → crop 224 (bilinear) · 3 ch · imagenet'."""
        geometry = {"stretch": f"stretch to {self.size}",
                    "center_crop_resize": f"centre square → {self.size}"}.get(
                        self.resize, f"shorter side {self.size} → centre crop {self.crop}")
        scale = (self.intensity if self.intensity != "meanstd"
                 else f"mean {list(self.mean)} std {list(self.std)}")
        return f"{geometry} ({self.interpolation}) · {self.channels} ch · {scale}"

    # geometry -----------------------------------------------------------------------------

    def resized_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(h, w) after the resize step, before any crop (torchvision's rule for Resize(int));
        for "center_crop_resize", which crops first, the input square."""
        height, width = shape[:2]
        if self.resize in ("stretch", "center_crop_resize"):
            return self.size, self.size
        short, long = min(height, width), max(height, width)
        new_long = int(self.size * long / short)
        return (self.size, new_long) if height <= width else (new_long, self.size)

    def crop_offset(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(top, left) of the input square in the resized image (torchvision's CenterCrop)."""
        if self.resize in ("stretch", "center_crop_resize"):
            return 0, 0
        height, width = self.resized_shape(shape)
        return int(round((height - self.crop) / 2.0)), int(round((width - self.crop) / 2.0))

    def footprint(self, shape: tuple[int, int]) -> Crop:
        """Where the input square lies in a stored image of `shape` (H, W)."""
        height, width = shape[:2]
        if self.resize == "center_crop_resize":
            top, left, side = _center_square(height, width)
            return Crop(top, left, top + side, left + side)
        resized_h, resized_w = self.resized_shape(shape)
        top, left = self.crop_offset(shape)
        side = self.input_size
        sy, sx = height / resized_h, width / resized_w
        return Crop(top * sy, left * sx, (top + side) * sy, (left + side) * sx)

    def geometry(self, image: np.ndarray) -> np.ndarray:
        """A read image (H, W) in [0, 1] → the model's (S, S) square in [0, 1], float32."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"preprocessing expects a grey image (H, W), got shape {image.shape}")
        if self.resize == "center_crop_resize":
            top, left, side = _center_square(*image.shape)
            image = image[top: top + side, left: left + side]
        resized = _resize(image, self.resized_shape(image.shape), self.interpolation)
        top, left = self.crop_offset(image.shape)
        side = self.input_size
        return np.ascontiguousarray(resized[top: top + side, left: left + side])

    # intensity ----------------------------------------------------------------------------

    def intensity_scale(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) in [0, 1] → (B, channels, S, S) on the model's intensity scale."""
        if batch.ndim != 4 or batch.shape[1] not in (1, self.channels):
            raise ValueError(f"expected (B, 1, S, S) images, got shape {tuple(batch.shape)}")
        if batch.shape[1] != self.channels:
            batch = batch.expand(-1, self.channels, -1, -1)
        if self.intensity == "unit":
            return batch
        if self.intensity == "xrv":
            return (2.0 * batch - 1.0) * XRV_RANGE
        view = (1, -1, 1, 1)
        mean = torch.as_tensor(self.mean, dtype=batch.dtype, device=batch.device).view(view)
        std = torch.as_tensor(self.std, dtype=batch.dtype, device=batch.device).view(view)
        return (batch - mean) / std

    def constant_input(self, value: float = 0.0, like: torch.Tensor | None = None) -> torch.Tensor:
        """The model input of a stored image whose every pixel has intensity `value` (in the
        stored image's [0, 1]; 0 is its black, 1 its white), carried through this intensity
        scale and channel count: (1, channels, S, S) float32, or shaped, typed and placed like
        `like` (B, channels, H, W). A constant image stays constant through any resize or crop,
        so only the intensity step matters. This is what "black" means for baselines and fills
        (integrated gradients, occlusion, deletion/insertion): ImageNet's z-score gives
        (-2.12, -2.04, -1.80), xrv -1024, unit 0. ValueError when `like` has another channel
        count than this preprocessing gives."""
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"constant_input: value is a stored-image intensity in [0, 1], got {value!r}")
        if like is None:
            grey = torch.full((1, 1, self.input_size, self.input_size), float(value))
            return self.intensity_scale(grey)
        if like.ndim != 4 or like.shape[1] != self.channels:
            raise ValueError(f"constant_input: the model takes {self.channels}-channel input "
                             f"({self.describe()}), got a tensor of shape {tuple(like.shape)}")
        grey = torch.full((1, 1, 1, 1), float(value), dtype=like.dtype, device=like.device)
        return self.intensity_scale(grey).expand_as(like)

    def to_input(self, image: np.ndarray) -> torch.Tensor:
        """One read image (H, W) in [0, 1] → the (1, channels, S, S) float32 model input."""
        square = torch.from_numpy(self.geometry(image))
        return self.intensity_scale(square[None, None])

    # the way back ---------------------------------------------------------------------------

    def place(self, map_: np.ndarray, shape: tuple[int, int], outside: float = 0.0) -> np.ndarray:
        """A map on the model input (S, S) (or any size with its aspect) → the stored image's
        frame `shape` (H, W): resized onto the input's footprint, `outside` elsewhere (see the
        module docstring for why no evidence is 0 and not NaN)."""
        height, width = shape[:2]
        if self.resize == "stretch":
            return _resize_map(map_, (height, width))
        top, left, bottom, right = self.footprint(shape).pixels((height, width))
        out = np.full((height, width), outside, dtype=np.float32)
        if bottom > top and right > left:
            out[top:bottom, left:right] = _resize_map(map_, (bottom - top, right - left))
        return out

    def support(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Boolean (H, W) mask of the stored-image pixels the model saw; None when it saw all."""
        if self.resize == "stretch":
            return None
        top, left, bottom, right = self.footprint(shape).pixels(shape[:2])
        if (top, left, bottom, right) == (0, 0, shape[0], shape[1]):
            return None
        mask = np.zeros(shape[:2], dtype=bool)
        mask[top:bottom, left:right] = True
        return mask


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _resize_map(map_: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Maps go back with medattn's one rule (`transforms.resize`: area down, linear up)."""
    return resize(np.asarray(map_, dtype=np.float32), shape)


def _center_square(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of TorchXRayVision's XRayCenterCrop: the centred square of side
    min(H, W) at H//2 − side//2, W//2 − side//2."""
    side = min(height, width)
    return height // 2 - side // 2, width // 2 - side // 2, side


def _resize(image: np.ndarray, shape: tuple[int, int], interpolation: str) -> np.ndarray:
    height, width = shape
    if image.shape == (height, width):
        return image
    if interpolation == "area":
        return resize(image, (height, width))
    if interpolation == "xrv":
        from skimage.transform import resize as sk_resize

        # xrv resizes images already on its [-1024, 1024] scale: pad with that scale's 0
        centred = 2.0 * image.astype(np.float64) - 1.0
        out = sk_resize(centred, (height, width), order=1, mode="constant", cval=0.0, anti_aliasing=True,
                        preserve_range=True)
        return ((out + 1.0) / 2.0).astype(np.float32)
    eight_bit = np.round(image * 255.0)
    if np.abs(eight_bit - image * 255.0).max() < 1e-3:
        # An 8-bit source: resize it as PIL resizes 8-bit images (torchvision on the file).
        pil = Image.fromarray(eight_bit.astype(np.uint8))
        return np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR), np.float32) / 255.0
    pil = Image.fromarray(np.ascontiguousarray(image, np.float32))  # deeper sources (16-bit, DICOM) keep their precision
    return np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def to_input(
    image: np.ndarray,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """One image as a (1, 3, size, size) float tensor ready for the model: stretched to the
    square and z-normalised (`Preprocessing` with its defaults, which a checkpoint may change)."""
    return Preprocessing(size=size, intensity="meanstd", mean=tuple(mean), std=tuple(std)).to_input(image)
