"""Checkpoints: NAME.safetensors (the weights) + NAME.json (what the model is and how it was made).

NAME.json holds `arch`, `head`, `num_classes`, `params` (enough to rebuild the model with
`build`), `dtype` of the stored weights, `sha256` of NAME.safetensors, `medattn_version`,
`created`, and the metadata given to `save_checkpoint`: by convention `classes`, `task`,
`input_size`, `normalisation` ({"mean": [...], "std": [...]}), `preprocessing`
(`medattn.data.preprocess.Preprocessing.to_meta()`), `dataset`, `dataset_hash`, `metrics`,
`training`, `imported` (any other JSON-serialisable field is kept as given). Models from other
libraries (`medattn.models.external`) also record `library` and `constructor`, and are rebuilt
from them on load.

Loading never unpickles: weights are read with safetensors, and `.pt/.pth` files from other
tools are read only by the importer (`python -m medattn.models.importer`) through
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import medattn
from medattn.data.dataset import TASKS
from medattn.errors import CheckpointError
from medattn.models.files import brief, checkpoint_paths, file_sha256, sniff
from medattn.models.quantize import dequantize, store
from medattn.models.registry import build

log = logging.getLogger("medattn.checkpoint")
FORMAT = "medattn-checkpoint"
# reloaded logits may differ from float32's by this share of (1 + max |logit|) on the probe input
PROBE_TOLERANCE = {"float16": 1e-2, "int8": 1e-1}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8}
RESERVED = ("format", "arch", "head", "num_classes", "params", "dtype", "sha256",
            "medattn_version", "created", "library", "constructor", "storage")
IMPORT_HINT = ("import it once with: python -m medattn.models.importer {path} --arch ARCH "
               "--classes C1 C2 … --task TASK --input-size N --name NAME (into your models folder)")


def save_checkpoint(model: nn.Module, path: str | os.PathLike, dtype: str = "float32",
                    **meta: Any) -> Path:
    """Write NAME.safetensors + NAME.json for a model made by `build`; returns NAME.

    dtype: "float32", "float16" (half the size) or "int8" (a quarter: per-channel int8 conv and
    linear weights, see medattn.models.quantize); weights load back as float32. A tensor float16
    cannot hold stays float32 (logged, and listed under `storage.float32_tensors` in the json),
    and the reloaded model's logits are checked against float32's on a probe image
    (`storage.probe_max_logit_difference`): CheckpointError naming the tensors changed most,
    and nothing written, when they differ by more than PROBE_TOLERANCE. `meta`: see the module
    docstring. Each file is written to a temporary name and renamed, so a crash never leaves
    half a checkpoint.
    """
    missing = [a for a in ("arch", "head", "num_classes", "params") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"save_checkpoint needs a model made by medattn.models.build; "
                        f"{type(model).__name__} has no {', '.join(missing)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    _check_meta(meta, model.num_classes)
    weights, info_path = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    storage: dict[str, Any] = {}
    if dtype == "float32":
        tensors = state
    else:
        tensors, kept = store(state, dtype)
        if kept:
            log.warning("%s: %d tensor(s) kept in float32, beyond float16's range: %s", weights.with_suffix("").name,
                        len(kept), brief(kept, 8))
        storage = {"float32_tensors": kept,
                   "probe_max_logit_difference": _probe(model, dequantize(tensors), dtype, meta)}
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    _replace(weights, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    info = {
        "format": FORMAT, "arch": model.arch, "head": model.head,
        "num_classes": int(model.num_classes), "params": dict(model.params), "dtype": dtype,
        "sha256": file_sha256(weights), "medattn_version": medattn.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **({"storage": storage} if storage else {}), **meta,
    }
    if hasattr(model, "library"):
        info.update(library=model.library, constructor=model.constructor)
    text = json.dumps(info, indent=2, default=_json_default) + "\n"
    _replace(info_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    # safetensors creates its file with its own mode; give the weights the json's permissions
    os.chmod(weights, stat.S_IMODE(info_path.stat().st_mode))
    return weights.with_suffix("")


def _probe(model: nn.Module, stored: dict[str, Tensor], dtype: str, meta: Mapping[str, Any]) -> float:
    """max |Δlogit| between `model` and a copy holding the `stored` weights as they load back,
    on a probe image through the checkpoint's preprocessing; CheckpointError when it exceeds
    PROBE_TOLERANCE[dtype] × (1 + max |logit|): the reduced storage would change what the model
    says."""
    from medattn.data.preprocess import Preprocessing

    prep = Preprocessing.from_meta(meta)
    image = np.random.default_rng(0).random((prep.input_size, prep.input_size), dtype=np.float32)
    x = prep.to_input(image)
    reloaded = copy.deepcopy(model).cpu().eval()
    reloaded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in stored.items()})
    with torch.inference_mode():
        expected = copy.deepcopy(model).cpu().eval()(x)
        got = reloaded(x)
    gap = float((got - expected).abs().max())
    if not gap <= PROBE_TOLERANCE[dtype] * (1 + float(expected.abs().max())):
        state = model.state_dict()
        worst = sorted(((float((stored[k].float() - v.detach().cpu().float()).abs().max()
                                / (v.detach().abs().max().cpu() + 1e-12)), k)
                        for k, v in state.items() if v.is_floating_point()), reverse=True)[:3]
        raise CheckpointError(f"{dtype} storage changes the logits by up to {gap:.3g} on a probe image (more than "
                              f"{PROBE_TOLERANCE[dtype]:g} of their size); the tensors it changes most: "
                              + ", ".join(f"{k} ({e:.2g} of its largest value)" for e, k in worst)
                              + "; save in float32 (dtype='float32', --dtype float32)")
    return gap


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode with float32 weights, the NAME.json contents) for NAME, NAME.json or
    NAME.safetensors. Raises CheckpointError saying what is wrong: a pickle file given, a
    missing file, malformed JSON, a sha256 mismatch, weights that do not fit the model the JSON
    describes (missing, unexpected, mis-shaped tensors)."""
    given = Path(path)
    weights, info_path = checkpoint_paths(given)
    if given.is_file() and given.suffix != ".json" and (given != weights or not info_path.is_file()):
        # model.pth, x.pth.tar, a file named checkpoint, a .safetensors without medattn's json
        raise CheckpointError(_foreign_message(given))
    for file, role in ((info_path, "metadata"), (weights, "weights")):
        if not file.is_file():
            raise CheckpointError(f"checkpoint {weights.with_suffix('')}: missing {file.name} "
                                  f"({role}); a checkpoint is NAME.safetensors + NAME.json")
    meta = _read_info(info_path)
    _check_safetensors_header(weights)
    digest = file_sha256(weights)
    if digest != meta["sha256"]:
        raise CheckpointError(f"{weights}: sha256 {digest[:16]}… does not match "
                              f"{meta['sha256'][:16]}… recorded in {info_path.name}; the "
                              "weights were changed or corrupted after saving")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: unreadable safetensors file: {e}") from None
    try:
        if "library" in meta:
            from medattn.models.external import rebuild

            model = rebuild(meta)
        else:
            model = build(meta["arch"], meta["head"], meta["num_classes"], **meta["params"])
    except (TypeError, ValueError, ImportError) as e:
        raise CheckpointError(f"{info_path}: cannot build the model it describes: {e}") from None
    if meta.get("dtype") == "int8":
        tensors = dequantize(tensors)
    _load_weights(model, tensors, str(weights), f"the model in {info_path.name}")
    from medattn.data.preprocess import Preprocessing

    try:  # how the model sees an image: explainers take their baselines and fills from it
        model.preprocessing = Preprocessing.from_meta(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{info_path}: invalid preprocessing: {e}") from None
    return model.eval(), meta


def _check_meta(meta: dict[str, Any], num_classes: int) -> None:
    reserved = sorted(set(meta) & set(RESERVED))
    if reserved:
        raise ValueError(f"save_checkpoint: {', '.join(reserved)} come from the model and "
                         f"cannot be given as metadata")
    classes = meta.get("classes")
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f"save_checkpoint: {len(classes)} classes given for a model with "
                         f"{num_classes} outputs")
    if meta.get("task") is not None and meta["task"] not in TASKS:
        raise ValueError(f"save_checkpoint: task must be one of {', '.join(TASKS)}, got {meta['task']!r}")
    if meta.get("preprocessing") is not None:
        from medattn.data.preprocess import Preprocessing

        Preprocessing(**meta["preprocessing"])  # ValueError naming the bad field
    norm = meta.get("normalisation")
    if norm is not None and not (isinstance(norm, Mapping) and {"mean", "std"} <= set(norm)):
        raise ValueError(f"save_checkpoint: normalisation must be {{'mean': [...], 'std': [...]}}, got {norm!r}")
    for key, value in meta.items():
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError) as e:
            raise ValueError(f"save_checkpoint: metadata field {key!r} is not JSON-serialisable: {e}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray, Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    tmp = target.with_name(target.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read_info(info_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{info_path}: malformed JSON at line {e.lineno}, column "
                              f"{e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{info_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{info_path}: expected a JSON object, got {type(meta).__name__}")
    kinds = {"arch": str, "head": str, "num_classes": int, "params": dict, "sha256": str}
    wrong = [f"{k} (missing)" if k not in meta else f"{k} (not {t.__name__})"
             for k, t in kinds.items()
             if k not in meta or not isinstance(meta[k], t) or isinstance(meta[k], bool)]
    if wrong:
        raise CheckpointError(f"{info_path}: required field(s) missing or invalid: {', '.join(wrong)}")
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) != meta["num_classes"]):
        raise CheckpointError(f"{info_path}: 'classes' lists {len(classes) if isinstance(classes, list) else classes!r} "
                              f"entries but num_classes is {meta['num_classes']}")
    return meta


def _check_safetensors_header(weights: Path) -> None:
    """Refuse a pickle (or anything else) saved under the .safetensors name before hashing it."""
    with open(weights, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return
    raise CheckpointError(_foreign_message(weights))


def _foreign_message(path: Path) -> str:
    kind = sniff(path)
    if kind == "torch":
        return (f"{path} is a PyTorch pickle file (torch.save), not a medattn checkpoint; medattn "
                f"never unpickles checkpoints. A checkpoint is NAME.safetensors + NAME.json; "
                f"{IMPORT_HINT.format(path=path)}")
    if kind == "safetensors":
        return f"{path} is a safetensors file without medattn's NAME.json beside it; {IMPORT_HINT.format(path=path)}"
    return (f"{path}: unreadable: neither a medattn checkpoint (NAME.safetensors + NAME.json), "
            f"a safetensors file nor a PyTorch file (torch.save)")


def _load_weights(model: nn.Module, tensors: Mapping[str, Tensor], source: str, target: str) -> None:
    """Copy `tensors` into `model` (floating ones as float32) after checking that names and
    shapes match exactly."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    misshaped = [f"{k} {list(tensors[k].shape)} vs {list(shape)}" for k, shape in expected.items()
                 if k in tensors and tuple(tensors[k].shape) != shape]
    problems = [f"{len(keys)} {what}: {brief(keys)}" for what, keys in
                (("mis-shaped (file vs model)", misshaped), ("missing", missing),
                 ("unexpected", unexpected)) if keys]
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit {target} (arch={model.arch}, "
                              f"head={model.head}, num_classes={model.num_classes}): "
                              + "; ".join(problems))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
