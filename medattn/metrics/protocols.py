"""Scoring protocols: how a raw explanation map becomes the map that is scored, in which frame,
for which class, under whose published choices.

- "medattn" (default): the map under medattn's normalisation policy (`DEFAULT_SIGN[method]`,
  99.5th-percentile clip, min-max; medattn/explain/README.md) resized to the stored image;
  AUPRC and IoU on that map, the pointing game at the maximum before the clip.
- "chexlocalize" (Saporta et al. 2022, rajpurkarlab/cheXlocalize): the map min-max normalised
  without a clip, upsampled bilinearly to the stored image; IoU of the Otsu segmentation
  (`medattn.metrics.chexlocalize`), pointing game at the first argmax.
- "arun2021" (Arun et al. 2021, "Assessing the trustworthiness of saliency maps for localizing
  abnormalities in medical imaging"): gradient maps as |a| summed over channels
  (`channels="sum_abs"`), SmoothGrad over squared gradients, integrated gradients (and SIG) with
  10 steps; the map of the class the model predicts (argmax of its probabilities, their
  2-class softmax); |map| clipped at its 99th percentile, min-max; scored in the model-input
  frame (their 320×320) against boxes whose corners are scaled c → int(S · int(c) / (D − 1)),
  S the input side and D the stored image's side (their 1024-pixel RSNA images: /1023).

Every protocol scores flat maps by the flat-map rules of `medattn.metrics.localization`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from medattn.metrics.boxes import as_box_array, box_mask
from medattn.metrics.masks import GroundTruth, is_mask


@dataclass(frozen=True)
class Protocol:
    """One published way of scoring a map (see the module docstring)."""

    name: str
    source: str
    clip_percentile: float | None  # percentile clip before min-max, None: none
    sign: str | None  # None: the method's DEFAULT_SIGN
    frame: str  # "image": the stored image's frame; "input": the model-input frame
    targets: str  # "classes": positives ∪ predicted classes; "predicted": the top class only
    explain_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def params(self, method: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Explainer parameters for `method` under this protocol: `given`, then the protocol's."""
        return {**(given or {}), **self.explain_params.get(method, {})}


PROTOCOLS: dict[str, Protocol] = {
    "medattn": Protocol("medattn", "medattn's normalisation policy (medattn/explain/README.md)", 99.5, None,
                        "image", "classes"),
    "chexlocalize": Protocol("chexlocalize", "Saporta et al. 2022 (CheXlocalize)", None, None, "image", "classes"),
    "arun2021": Protocol(
        "arun2021", "Arun et al. 2021 (localization utility on RSNA pneumonia)", 99.0, "absolute", "input", "predicted",
        {
            "saliency": {"channels": "sum_abs"},
            "smoothgrad": {"channels": "sum_abs", "squared": True},
            "integrated_gradients": {"channels": "sum_abs", "steps": 10},
            "smoothgrad_ig": {"channels": "sum_abs", "steps": 10},
            "guided_backprop": {"channels": "sum_abs"},
            "guided_gradcam": {"channels": "sum_abs"},
        },
    ),
}
DEFAULT_PROTOCOL = "medattn"


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; ValueError listing the known ones."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown scoring protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def scale_coordinate(c: float, side: int, source_side: int) -> int:
    """Arun et al.'s box scaling: int(side · int(c) / (source_side − 1))."""
    return int(side * int(c) / (source_side - 1))


def scaled_truth(truth: GroundTruth, image_shape: tuple[int, int], frame_shape: tuple[int, int]) -> np.ndarray:
    """The ground truth as a boolean mask of the model-input frame `frame_shape` (S_h, S_w):
    boxes by `scale_coordinate` on their corners (x, y, x + w, y + h), then the inclusive box
    mask; a segmentation mask resized with nearest-neighbour interpolation."""
    height, width = int(image_shape[0]), int(image_shape[1])
    out_h, out_w = int(frame_shape[0]), int(frame_shape[1])
    if is_mask(truth):
        return cv2.resize(truth.astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_NEAREST).astype(bool)
    scaled = []
    for x, y, w, h in as_box_array(truth):
        x0, y0 = scale_coordinate(x, out_w, width), scale_coordinate(y, out_h, height)
        x1, y1 = scale_coordinate(x + w, out_w, width), scale_coordinate(y + h, out_h, height)
        scaled.append((x0, y0, x1 - x0, y1 - y0))
    return box_mask(np.array(scaled, dtype=float).reshape(-1, 4), (out_h, out_w))
