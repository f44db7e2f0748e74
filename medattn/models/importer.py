"""Bring your own model: `python -m medattn.models.importer WEIGHTS --arch ARCH --classes C1 C2 …
--task TASK --input-size N [--name NAME | --out PATH] [preprocessing options]`.

The checkpoint goes to your models folder (`medattn.inference.models_dir`: MEDATTN_MODELS,
default ~/.local/share/medattn/models, created on first use; the app lists it beside the
repository's checkpoints/) under --name (default: the weights file's name), or to --out.

Writes a medattn checkpoint (NAME.safetensors + NAME.json) from
- a state dict in torchvision's own key names for any medattn backbone (`--arch densenet121`,
  onto medattn's layout by `medattn.models.keymap`), or in medattn's own names;
- a TorchXRayVision, MONAI, timm or torchvision-with-its-own-head model
  (`--library xrv --arch DenseNet`, `--library monai --arch DenseNet121 --kwarg in_channels=1`,
  `--library timm --arch resnet18`, `--library torchvision --arch vgg16`; see
  `medattn.models.external`).

WEIGHTS may be .pt/.pth/.pth.tar/.bin/.ckpt/.safetensors or have no suffix. Wrappers are
unwrapped (the state dict under `state_dict`, `model_state_dict`, `model`, `net`, `network`,
`model_state`, `weights` or `params`, as training scripts write them; Lightning's `state_dict`
with its `model.` prefix; `module.`), and every key must find its place: unmatched keys are
listed by name and the import is refused unless `--allow-missing PATTERN…` names the target
tensors that may stay random (and `--ignore PATTERN…` the file's tensors that may be dropped).
Files are read with `torch.load(weights_only=True)` with numpy scalars and dtypes allowed
(`best_auc` as a numpy.float64 beside the weights; `medattn.models.torchfile`), nothing else: a
file that needs any other global is refused with its name and the lines that re-save its
weights for what it holds (a whole model, a dict holding a model, a dict holding a state dict
beside other objects).

For torchvision layouts with a linear head the import is verified: the imported model's logits
are compared with torchvision's own model holding the same weights on a random input.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from medattn.data.dataset import TASKS
from medattn.data.preprocess import INTENSITIES, INTERPOLATIONS, RESIZE_MODES, Preprocessing
from medattn.errors import CheckpointError
from medattn.models.backbones import ARCHS
from medattn.models.checkpoint import save_checkpoint
from medattn.models import torchfile
from medattn.models.catalog import NAME
from medattn.models.external import CLASS_COUNT, INPUT_CHANNELS, LIBRARIES, ExternalModel, strip_unused
from medattn.models.files import brief, check_unpacked_size, checkpoint_paths, file_sha256, sniff
from medattn.models.keymap import LINEAR_HEADS, normalise_keys, torchvision_to_medattn
from medattn.models.registry import HEADS, build

WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "network", "model_state", "weights", "params")
LIBRARY_ALIASES = {"xrv": "torchxrayvision", "tv": "torchvision"}
DEFAULT_INTENSITY = {"torchxrayvision": "xrv", "monai": "unit"}
# TorchXRayVision's own pipeline: XRayCenterCrop → XRayResizer (skimage), on its [-1024, 1024] scale
DEFAULT_GEOMETRY = {"torchxrayvision": ("center_crop_resize", "xrv")}
DEFAULT_CHANNELS = {"torchxrayvision": 1, "monai": 1}
VERIFY_TOLERANCE = 1e-4
VERIFY_SIZE = 64  # the check is of the weights' placement, which no input size changes; 64 px is cheap


@dataclass
class ImportReport:
    """What an import did: tensors placed, steps taken, what stayed random or was dropped, and
    the verification against the source architecture (max |Δlogit|, None when not run)."""

    loaded: int = 0
    notes: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    max_logit_difference: float | None = None

    def as_meta(self) -> dict[str, Any]:
        return {"notes": self.notes, "left_random": self.random, "dropped": self.dropped,
                "max_logit_difference": self.max_logit_difference}


@dataclass(frozen=True)
class Controls:
    """How a front end spells the import's options in the advice its errors give: the command
    line's flags (`CLI`) or the Models page's fields, so no message names a control the user
    does not have."""

    allow_missing: str = "--allow-missing PATTERN…"
    ignore: str = "--ignore PATTERN…"
    classes: str = "--classes"
    channels: str = "--channels"


CLI = Controls()


# reading ----------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike, shown: str | None = None) -> tuple[dict[str, Tensor], list[str]]:
    """(name → tensor, notes) from a weights file of any supported form, never unpickling
    anything but tensors and plain containers. Raises CheckpointError naming the file as
    `shown` (default: its path; an upload's own file name, so no server path is shown)."""
    path = Path(path)
    shown = shown or str(path)
    if not path.is_file():
        raise CheckpointError(f"{shown}: no such file")
    kind = sniff(path)
    if kind == "safetensors":
        try:
            return load_file(str(path)), []
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{shown}: unreadable safetensors file: {e}") from None
    if kind != "torch":
        raise CheckpointError(f"{shown}: unreadable: neither a safetensors file nor a PyTorch file "
                              "(torch.save); nothing else can hold weights")
    try:
        check_unpacked_size(path)
    except ValueError as e:
        raise CheckpointError(str(e).replace(str(path), shown)) from None
    try:
        loaded = torchfile.load(path)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types; all mean "not plain tensors"
        text = str(e)
        refused = torchfile.unsafe_globals(path)
        if refused or "weights_only" in text or "global" in text.lower():
            raise CheckpointError(_refusal(path, shown, refused)) from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise CheckpointError(f"{shown}: unreadable PyTorch file: {first}") from None
    return unwrap(loaded, shown)


def _refusal(path: Path, shown: str, refused: list[str]) -> str:
    """Why a pickle is refused, what it is, and the lines that re-save its weights on the
    user's own machine (where the file was made and its code is at hand)."""
    held, recipe = torchfile.resave_recipe(path, WRAPPERS, shown=shown)
    if refused:
        what = f"it holds {held}, which needs the global(s) {', '.join(refused)}"
    else:  # torch names globals only in its zip format: say what the file is instead
        what = (f"it is a {'' if torchfile.is_zip(path) else 'legacy (pre-zip) '}pickle that holds {held}, "
                "objects beyond tensors that only running its pickle could build")
    return (f"{shown}: refused: {what}. medattn unpickles nothing but tensors, plain containers and numpy "
            "scalars, as unpickling runs code from the file. Re-save its weights as a state dict on your own "
            f"machine, where the file was made and its code is at hand:\n{recipe}\nthen import state_dict.pt.")


def unwrap(loaded: Any, path: Path | str) -> tuple[dict[str, Tensor], list[str]]:
    """The state dict inside what torch.load returned (see the module docstring); `path`
    names the file in errors."""
    notes = []
    while isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        key = next((k for k in WRAPPERS if isinstance(loaded.get(k), Mapping)), None)
        if key is None:
            break
        loaded = loaded[key]
        notes.append(f"read the state dict under {key!r}")
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(f"{path}: expected a state dict (names → tensors), or a dict with one "
                              f"under {', '.join(repr(k) for k in WRAPPERS)}; got {type(loaded).__name__}"
                              + (f" with keys {brief([str(k) for k in loaded])}" if isinstance(loaded, Mapping) else ""))
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict: {brief(bad)} do not map names to tensors")
    return dict(loaded), notes


def _is_state_dict(value: Mapping) -> bool:
    return bool(value) and all(isinstance(v, Tensor) for v in value.values())


# loading ---------------------------------------------------------------------------------


def load_into(target: nn.Module, tensors: Mapping[str, Tensor], source: str, describe: str,
          allow_missing: Sequence[str] = (), ignore: Sequence[str] = (),
          aliases: Mapping[str, str] | None = None, controls: Controls = CLI) -> ImportReport:
    """Load `tensors` (already in `target`'s names) into `target`, refusing a partial load.

    `allow_missing`: fnmatch patterns of target tensors that may stay as initialised;
    `ignore`: patterns of file tensors that may be dropped. `aliases`: target name → the name
    the user knows it by (torchvision's), used in messages and matched by the patterns too.
    BatchNorm's `num_batches_tracked` counters (absent from files older than PyTorch 0.4.1)
    never matter in evaluation and are filled with 0. Advice names the options as `controls`
    spells them."""
    aliases = aliases or {}
    expected = target.state_dict()
    report = ImportReport()
    missing = [k for k in expected if k not in tensors]
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in counters]
    unexpected = [k for k in tensors if k not in expected]

    def named(key: str) -> str:
        return f"{aliases[key]} (= {key})" if key in aliases and aliases[key] != key else key

    def matches(key: str, patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(k, p) for p in patterns for k in (key, aliases.get(key, key)))

    misshaped = [f"{named(k)}: file {list(tensors[k].shape)} vs model {list(expected[k].shape)}"
                 for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    refused_missing = [k for k in missing if not matches(k, allow_missing)]
    refused_unexpected = [k for k in unexpected if not any(fnmatch.fnmatchcase(k, p) for p in ignore)]
    problems = []
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped: {brief(misshaped, 6)}")
    if refused_missing:
        problems.append(f"{len(refused_missing)} not in the file (would stay random): "
                        f"{brief([named(k) for k in refused_missing], 8)}")
    if refused_unexpected:
        problems.append(f"{len(refused_unexpected)} in the file but not in the model: {brief(refused_unexpected, 8)}")
    if problems:
        hint = (f" Name target tensors that may stay random in {controls.allow_missing} (e.g. 'classifier.*' "
                f"for a new head) and file tensors to drop in {controls.ignore}."
                if refused_missing or refused_unexpected else "")
        if any("classifier" in m or "fc." in m for m in misshaped):
            hint += (f" A mis-shaped classifier usually means {controls.classes} lists another number of classes "
                     "than the file has outputs.")
        raise CheckpointError(f"{source}: the weights do not fit {describe}: " + "; ".join(problems) + "." + hint)
    state = dict(expected)
    state.update({k: v.to(expected[k].dtype) for k, v in tensors.items() if k in expected})
    for k in counters:
        state[k] = torch.zeros_like(expected[k])
    target.load_state_dict(state)
    report.loaded = len(tensors) - len(unexpected)
    report.random = [named(k) for k in missing]
    report.dropped = unexpected
    if counters:
        report.notes.append(f"filled {len(counters)} BatchNorm num_batches_tracked counters (absent from the file)")
    return report


def import_state_dict(pt_path: str | os.PathLike, arch: str, head: str, num_classes: int,
                      **params: Any) -> nn.Module:
    """A model built by `build(arch, head, num_classes, **params)` (eval mode) with the weights
    of a file from another tool in medattn's own key names or torchvision's (any common wrapper
    or prefix; see `medattn.models.importer.import_torchvision`). Raises CheckpointError when
    the file cannot be read safely or its tensors do not fit the model."""
    return import_torchvision(pt_path, arch, head, num_classes, **params)[0]


def import_torchvision(path: str | os.PathLike, arch: str, head: str, num_classes: int,
                       allow_missing: Sequence[str] = (), ignore: Sequence[str] = (), verify_size: int | None = None,
                       shown: str | None = None, controls: Controls = CLI,
                       **params: Any) -> tuple[nn.Module, ImportReport]:
    """(medattn model `arch` + `head` in eval mode, report) from a state dict in torchvision's
    key names or medattn's own. With `verify_size` and a linear head on a backbone whose
    torchvision head is linear, the logits are compared with torchvision's model holding the
    same weights on a random (1, 3, verify_size, verify_size) input. Errors name the file as
    `shown` and the options as `controls` spells them."""
    model = build(arch, head, num_classes, **params)
    shown = shown or str(path)
    raw, notes = read_state_dict(path, shown)
    own = set(model.state_dict())
    if sum(k in own for k in raw) > len(raw) / 2:  # already medattn's layout (saved by hand)
        tensors, more = normalise_keys(raw, own)
        report = load_into(model, tensors, shown, _describe(model), allow_missing, ignore, controls=controls)
        report.notes[:0] = notes + more + ["keys were in medattn's layout already"]
        return model.eval(), report
    names = torchvision_to_medattn(arch)
    source, more = normalise_keys(raw, set(names))
    tensors = {names.get(k, k): v for k, v in source.items()}
    aliases = {v: k for k, v in names.items()}
    report = load_into(model, tensors, shown, _describe(model), allow_missing, ignore, aliases, controls)
    report.notes[:0] = notes + more + [f"mapped torchvision's {arch} names onto medattn's layout"]
    if verify_size and head == "linear" and any(arch.startswith(p) for p in LINEAR_HEADS) and not report.random:
        reference = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        wanted = reference.state_dict()
        reference.load_state_dict({k: v for k, v in source.items() if k in wanted}, strict=False)
        report.max_logit_difference = _difference(model.eval(), reference.eval(), 3, verify_size)
        _check_difference(report, f"torchvision's {arch}")
    return model.eval(), report


def import_external(path: str | os.PathLike, library: str, callable_name: str, num_classes: int,
                    kwargs: Mapping[str, Any] | None = None, allow_missing: Sequence[str] = (),
                    ignore: Sequence[str] = (), channels: int | None = None,
                    probe_size: int = VERIFY_SIZE, shown: str | None = None,
                    controls: Controls = CLI) -> tuple[ExternalModel, ImportReport]:
    """(the library's model wrapped as `ExternalModel`, report) from a state dict in the
    library's own key names. `channels` sets the constructor's input-channel argument unless
    `kwargs` names it. The model must answer a (1, channels, probe_size, probe_size) input
    with (1, num_classes) logits (a classifier), else CheckpointError. `shown`, `controls`: as
    in `import_torchvision`."""
    try:
        model = ExternalModel(library, callable_name, num_classes, kwargs, channels=channels)
    except (ValueError, ImportError) as e:
        raise CheckpointError(f"cannot build {callable_name}: {e}") from None
    shown = shown or str(path)
    raw, notes = read_state_dict(path, shown)
    tensors, more = normalise_keys(raw, set(model.net.state_dict()))
    tensors, dropped = strip_unused(tensors, model)
    report = load_into(model.net, tensors, shown, _describe(model), allow_missing, ignore, controls=controls)
    report.notes[:0] = notes + more + dropped
    model.eval()
    probe = torch.zeros(1, model.input_channels, probe_size, probe_size)
    try:
        with torch.inference_mode():
            out = model(probe)
    except Exception as e:  # noqa: BLE001 - any failure means the model cannot take this input
        raise CheckpointError(f"{callable_name} with {kwargs or {}} cannot run on a {tuple(probe.shape)} input: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(out, Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise CheckpointError(f"{callable_name} returns {shape} for one image, not (1, {num_classes}) class "
                              "logits: medattn imports classifiers")
    return model, report


def _describe(model: nn.Module) -> str:
    return f"{model.arch} + {model.head} ({model.num_classes} outputs)"


def _difference(ours: nn.Module, reference: nn.Module, channels: int, size: int) -> float:
    x = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return float((ours(x) - reference(x)).abs().max())


def _check_difference(report: ImportReport, what: str) -> None:
    if report.max_logit_difference is not None and not report.max_logit_difference <= VERIFY_TOLERANCE:
        raise CheckpointError(f"the imported model's logits differ from {what}'s by up to "
                              f"{report.max_logit_difference:.3g} (> {VERIFY_TOLERANCE}); not saved")


# the whole import -------------------------------------------------------------------------


def import_checkpoint(weights: str | os.PathLike, out: str | os.PathLike, *, arch: str, classes: Sequence[str],
                      task: str, preprocessing: Preprocessing, library: str | None = None, head: str = "linear",
                      kwargs: Mapping[str, Any] | None = None, head_params: Mapping[str, Any] | None = None,
                      allow_missing: Sequence[str] = (), ignore: Sequence[str] = (), dataset: str | None = None,
                      dtype: str = "float32", shown: str | None = None, controls: Controls = CLI,
                      **meta: Any) -> tuple[Path, ImportReport]:
    """Import `weights` and write checkpoint `out` (NAME.safetensors + NAME.json); returns
    (NAME, report). `library` None: torchvision/medattn key names onto `arch` + `head`;
    otherwise one of `external.LIBRARIES` with `arch` the class (or timm/torchvision model)
    name. Raises CheckpointError or ValueError saying what to change, naming the file as `shown`
    (default: its path; the app gives an upload's own name) and the options as `controls` spells
    them (default: the command line's flags); nothing is written then."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    classes = [str(c) for c in classes]
    named = [c for c in classes if c]
    if not named or len(set(named)) != len(named):
        raise ValueError(f"classes must be distinct names (empty ones mark untrained outputs), got {classes}")
    library = LIBRARY_ALIASES.get(library, library) if library else None
    if library is None:
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; medattn backbones: {', '.join(ARCHS)} "
                             f"(or name a --library: {', '.join(LIBRARIES)})")
        model, report = import_torchvision(weights, arch, head, len(classes), allow_missing, ignore,
                                           verify_size=min(preprocessing.input_size, VERIFY_SIZE), shown=shown,
                                           controls=controls, **dict(head_params or {}))
        channels = 3
    else:
        model, report = import_external(weights, library, _callable(library, arch), len(classes),
                                        _kwargs(library, arch, kwargs), allow_missing, ignore,
                                        channels=preprocessing.channels, probe_size=preprocessing.input_size,
                                        shown=shown, controls=controls)
        channels = model.input_channels
    if preprocessing.channels != channels:
        raise ValueError(f"the model takes {channels}-channel input but the preprocessing gives "
                         f"{preprocessing.channels}; set {controls.channels} to {channels}")
    source = Path(weights)
    norm = ({"mean": list(preprocessing.mean), "std": list(preprocessing.std)}
            if preprocessing.intensity in ("imagenet", "meanstd") else None)
    imported = {"file": source.name, "sha256": file_sha256(source), **report.as_meta()}
    saved = save_checkpoint(model, out, dtype=dtype, classes=classes, task=task,
                            input_size=preprocessing.input_size, preprocessing=preprocessing.to_meta(),
                            **({"normalisation": norm} if norm else {}),
                            **({"dataset": dataset} if dataset else {}), imported=imported, **meta)
    return saved, report


def _callable(library: str, arch: str) -> str:
    if library == "timm":
        return "timm.create_model"
    if arch.startswith(library + "."):
        return arch
    module = {"torchxrayvision": "torchxrayvision.models", "monai": "monai.networks.nets",
              "torchvision": "torchvision.models"}[library]
    return f"{module}.{arch}"


def _kwargs(library: str, arch: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(kwargs or {})
    if library == "timm":
        out.setdefault("model_name", arch)
    return out


# command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m medattn.models.importer", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Import a model's weights from another tool as a medattn checkpoint (NAME.safetensors + NAME.json).",
        epilog=__doc__[__doc__.index("Writes a medattn checkpoint"):])
    parser.add_argument("weights", type=Path, help="the file to import")
    parser.add_argument("--arch", required=True,
                        help=f"medattn backbone ({', '.join(ARCHS)}), or with --library the class / model name")
    parser.add_argument("--library", choices=sorted(set(LIBRARIES) | set(LIBRARY_ALIASES)),
                        help="the model comes from this library (default: torchvision key names onto medattn's layout)")
    parser.add_argument("--head", default="linear", choices=sorted(HEADS), help="medattn head (without --library)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="head parameter")
    parser.add_argument("--kwarg", action="append", default=[], metavar="KEY=VALUE",
                        help="constructor argument of a --library model (JSON value), e.g. in_channels=1")
    parser.add_argument("--classes", nargs="+", help="output names in order ('' for an untrained output); "
                        "default for --library xrv: its pathology list")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--name", help="checkpoint name in your models folder (MEDATTN_MODELS, default "
                        "~/.local/share/medattn/models; the app lists it); default: the weights file's name")
    parser.add_argument("--out", type=Path, help="checkpoint path without suffix, instead of --name (any folder)")
    parser.add_argument("--dataset", help="what it was trained on (shown on the Models page)")
    group = parser.add_argument_group("preprocessing (stored in the checkpoint, applied wherever the model sees an image)")
    group.add_argument("--input-size", type=int, required=True, help="side of the square the model receives")
    group.add_argument("--resize", choices=RESIZE_MODES,
                       help="default: center_crop_resize for TorchXRayVision (its XRayCenterCrop → XRayResizer), "
                            "else stretch")
    group.add_argument("--resize-size", type=int, help="shorter side before the centre crop (default: --input-size)")
    group.add_argument("--interpolation", choices=INTERPOLATIONS,
                       help="area: OpenCV area/linear (default); bilinear: PIL's, as torchvision's Resize on PIL "
                            "images; xrv: TorchXRayVision's XRayResizer (default for --library xrv)")
    group.add_argument("--channels", type=int, choices=(1, 3),
                       help="default: an input-channel --kwarg when given, else 1 for TorchXRayVision and MONAI, 3 otherwise")
    group.add_argument("--intensity", choices=INTENSITIES,
                       help="default: xrv for TorchXRayVision, unit for MONAI, else imagenet (meanstd with --mean/--std)")
    group.add_argument("--mean", type=float, nargs="+")
    group.add_argument("--std", type=float, nargs="+")
    group.add_argument("--allow-missing", nargs="+", default=[], metavar="PATTERN",
                       help="model tensors that may stay random (fnmatch, medattn or torchvision names)")
    group.add_argument("--ignore", nargs="+", default=[], metavar="PATTERN", help="file tensors that may be dropped")
    parser.add_argument("--dtype", choices=["float32", "float16", "int8"], default="float32")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of that name")
    return parser.parse_args(argv)


def preprocessing_from(args: argparse.Namespace, library: str | None, channels: int) -> Preprocessing:
    """The preprocessing the command line asks for, each option defaulting to the library's own
    (DEFAULT_GEOMETRY, DEFAULT_INTENSITY)."""
    intensity = args.intensity or ("meanstd" if args.mean or args.std else DEFAULT_INTENSITY.get(library or "", "imagenet"))
    extra = {}
    if intensity == "meanstd":
        if not (args.mean and args.std):
            raise ValueError("--intensity meanstd needs --mean and --std")
        extra = {"mean": tuple(args.mean), "std": tuple(args.std)}
    own_resize, own_interpolation = DEFAULT_GEOMETRY.get(library or "", ("stretch", "area"))
    resize = args.resize or own_resize
    interpolation = args.interpolation or (own_interpolation if resize == own_resize else "area")
    if resize != "shorter_side_center_crop":
        if args.resize_size not in (None, args.input_size):
            raise ValueError("--resize-size applies to --resize shorter_side_center_crop only")
        geometry = {"size": args.input_size}
    else:
        geometry = {"size": args.resize_size or args.input_size, "crop": args.input_size}
    return Preprocessing(resize=resize, interpolation=interpolation, channels=args.channels or channels,
                         intensity=intensity, **geometry, **extra)


def _pairs(items: Sequence[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def default_out(weights: Path, name: str | None) -> Path:
    """Where an import goes without --out: NAME (default the weights file's name without its
    suffixes) in the user's models folder (`medattn.inference.models_dir`), created on first use."""
    from medattn.inference import models_dir

    if name is None:
        name = weights.name.split(".")[0] or "imported"
    if not NAME.match(name):
        raise ValueError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (no folders); or give --out")
    return models_dir() / name


def main(argv: Sequence[str] | None = None) -> int:
    """Import from the command line; prints what was done, or one clear error and exits 2."""
    args = parse_args(argv)
    library = LIBRARY_ALIASES.get(args.library, args.library)
    try:
        if args.out is None:
            args.out = default_out(args.weights, args.name)
        elif args.name:
            raise ValueError("give --name (your models folder) or --out (a path), not both")
        taken = [p.name for p in checkpoint_paths(args.out) if p.exists()]
        if taken and not args.overwrite:  # e.g. --out checkpoints/demo_resnet18_linear replaced the demo model
            raise ValueError(f"{' and '.join(taken)} exist in {args.out.parent}: choose another --out, or add "
                             "--overwrite to replace that checkpoint")
        kwargs = _pairs(args.kwarg, "--kwarg")
        classes = args.classes
        if classes is None and library == "torchxrayvision":
            import torchxrayvision as xrv

            classes = list(xrv.datasets.default_pathologies)
        if not classes:
            raise ValueError("--classes is required: the model's output names, in order")
        for name in [k for k in CLASS_COUNT if k in kwargs]:  # the class count is --classes' length
            if kwargs.pop(name) != len(classes):
                raise ValueError(f"--kwarg {name}={_pairs(args.kwarg, '--kwarg')[name]} but --classes names "
                                 f"{len(classes)} classes; the class count is the number of --classes")
        given = [int(kwargs[k]) for k in INPUT_CHANNELS if isinstance(kwargs.get(k), int)]
        channels = given[0] if given else DEFAULT_CHANNELS.get(library or "", 3)
        preprocessing = preprocessing_from(args, library, channels)
        path, report = import_checkpoint(
            args.weights, args.out, arch=args.arch, classes=classes, task=args.task, preprocessing=preprocessing,
            library=library, head=args.head, kwargs=kwargs, head_params=_pairs(args.param, "--param"),
            allow_missing=args.allow_missing, ignore=args.ignore, dataset=args.dataset, dtype=args.dtype)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"  {note}")
    if report.random:
        print(f"  left random (allowed): {brief(report.random, 8)}")
    if report.dropped:
        print(f"  dropped (ignored): {brief(report.dropped, 8)}")
    if report.max_logit_difference is not None:
        print(f"  verified: max |Δlogit| = {report.max_logit_difference:.2g} against the source architecture")
    print(f"imported {report.loaded} tensors from {args.weights} → {path}.safetensors + {path.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
