"""State-dict key names from other tools → medattn's layout (`backbone.stages.N.…` + `classifier`).

`normalise_keys` undoes the usual wrappers and renames (each step reported in plain words):
- `module.` (DataParallel / DistributedDataParallel), a Lightning `model.` prefix, and one
  wrapper attribute shared by every key (CheXNet reproductions save `densenet121.features…`);
- torchvision's pre-0.4 DenseNet names `norm.1`/`relu.1`/`conv.1`/`norm.2`/`relu.2`/`conv.2`
  → `norm1`/…/`conv2` (torchvision's own `_load_state_dict` fix-up does the same);
- a one-layer `Sequential` head, `classifier.0.…` / `fc.0.…` (e.g. Linear followed by Sigmoid),
  → `classifier.…` / `fc.…`.

`torchvision_to_medattn(arch)` is the name map for each backbone, read off the modules
themselves: medattn's stages are built from torchvision's network (`backbones.cut`), so each
tensor has one name in each layout. torchvision's classifier maps onto the linear head's
`classifier` where it is one linear layer over globally averaged last features (ResNet `fc`,
DenseNet `classifier`, MobileNetV2 `classifier.1`); VGG's and MobileNetV3's heads are
multi-layer perceptrons that medattn's heads do not have (import those with `--library
torchvision` to keep their head).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import torch
import torchvision
from torch import Tensor

from medattn.models.backbones import ARCHS, cut

# torchvision's one-linear-layer heads: arch prefix → the Linear's name in torchvision
LINEAR_HEADS = {"resnet": "fc", "densenet": "classifier", "mobilenet_v2": "classifier.1"}
WRAPPER_PREFIXES = ("module.", "model.")
_OLD_DENSENET = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.((?:1|2)\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
_SEQUENTIAL_HEAD = re.compile(r"^(fc|classifier)\.0\.(weight|bias)$")


def normalise_keys(state: Mapping[str, Tensor], target: set[str]) -> tuple[dict[str, Tensor], list[str]]:
    """(state dict with wrappers stripped and old names renamed, what was done in words).

    `target`: the key names of the model the weights are meant for (torchvision's names for a
    medattn backbone); a prefix is only stripped where no target name starts with it, and a
    first name component shared by every key but unknown to the target is taken for a wrapper
    attribute."""
    keys = list(state)
    notes: list[str] = []
    stripping = True
    while stripping and keys:
        stripping = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in keys) and not any(t.startswith(prefix) for t in target):
                keys = [k[len(prefix):] for k in keys]
                notes.append(f"stripped the prefix {prefix!r}")
                stripping = True
    firsts = {k.split(".", 1)[0] for k in keys}
    top_level = {t.split(".", 1)[0] for t in target}
    if len(firsts) == 1 and all("." in k for k in keys) and not firsts & top_level:
        wrapper = firsts.pop() + "."
        keys = [k[len(wrapper):] for k in keys]
        notes.append(f"stripped the wrapper attribute {wrapper!r}")
    renamed = [_OLD_DENSENET.sub(lambda m: m.group(1) + m.group(2), k) for k in keys]
    if renamed != keys:
        notes.append("renamed pre-0.4 DenseNet keys (norm.1 → norm1, conv.2 → conv2, …)")
    roots = {m.group(1) for m in map(_SEQUENTIAL_HEAD.match, renamed) if m}
    roots = {r for r in roots if f"{r}.weight" in target and f"{r}.0.weight" not in target
             and not any(k.startswith(f"{r}.") and not _SEQUENTIAL_HEAD.match(k) for k in renamed)}
    if roots:
        renamed = [_SEQUENTIAL_HEAD.sub(r"\1.\2", k) if k.split(".", 1)[0] in roots else k for k in renamed]
        notes.append(f"read the Sequential head {', '.join(sorted(r + '.0' for r in roots))} as one linear layer")
    return dict(zip(renamed, state.values())), notes


@lru_cache(maxsize=None)
def _name_map(arch: str) -> tuple[tuple[str, str], ...]:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    with torch.device("meta"):  # names only: nothing allocated, nothing initialised for real
        net = getattr(torchvision.models, arch)(weights=None)
        stages = cut(arch, net)
    names = {id(t): k for k, t in net.state_dict(keep_vars=True).items()}
    pairs = [(names[id(t)], f"backbone.stages.{i}.{k}")
             for i, stage in enumerate(stages) for k, t in stage.state_dict(keep_vars=True).items()]
    head = next((h for prefix, h in LINEAR_HEADS.items() if arch.startswith(prefix)), None)
    if head is not None:
        pairs += [(f"{head}.weight", "classifier.weight"), (f"{head}.bias", "classifier.bias")]
    return tuple(pairs)


def torchvision_to_medattn(arch: str) -> dict[str, str]:
    """torchvision key → medattn key for backbone `arch` (and its head where it is linear)."""
    return dict(_name_map(arch))
