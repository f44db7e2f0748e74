"""The conformance matrix: every zoo model × every method, against the reference recipes.

For one zoo entry (`medattn.models.zoo`): a random-weight instance of the library's model
(BatchNorm statistics away from their defaults, so a misplaced buffer shows) is saved in the
form its weights are published in, imported through the importer's command line
(`python -m medattn.models.importer`, TorchXRayVision's whole-model files through the re-save
recipe the refusal prints), loaded with `load_checkpoint`, and checked to give the source
model's logits. Then, on one image fed through the checkpoint's own preprocessing, every method
either gives the map its reference recipe gives (`medattn.explain.reference`; max relative
difference <= TOLERANCE) or is `unavailable` with its reason. An exception in one model ×
method is that cell's outcome ("error"), never the run's.

`check_entry(entry, tiny=True)` runs the test-sized instance (`tests/test_models_zoo.py`);
`python -m medattn.bench --zoo` the full-size ones. `table(outcomes)` prints the matrix.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from medattn.explain import METHODS, explain, unavailable
from medattn.explain.reference import compare, reference_map
from medattn.models.zoo import ZooEntry

# A map equals the reference when max |ours − exact| / max |exact| (exact: the recipe in
# float64) is at most TOLERANCE, or at most RELATIVE × the same figure of the library's own
# float32 maps (contiguous and channels-last, the larger): deep ReLU networks' gradients turn at
# kinks that float32 rounding moves (Captum's float32 saliency on a DenseNet-121 is 2.5 % of its
# maximum from its float64 value in channels-last, 7e-7 in contiguous order), and no float32 map
# is nearer the exact one than that spread.
TOLERANCE = 1e-3
RELATIVE = 2.0
# below these a map is float32 noise: occlusion's score drops (logit units, relative to the
# logits' size) and PDA's weights of evidence (bits) of a model that hardly responds to its input
FLOOR = {"occlusion": 1e-5, "pda": 1e-4, "pda_features": 1e-4}
FLAT = 1e-12  # a reference map this flat checks nothing: the cell is an error, not "equal"
LOGIT_TOLERANCE = 1e-4
TINY_PARAMS: dict[str, dict[str, Any]] = {  # few evaluations: the matrix checks equality, not quality
    "smoothgrad": {"n_samples": 2}, "integrated_gradients": {"steps": 4},
    "smoothgrad_ig": {"n_samples": 2, "steps": 2},
    "occlusion": {"window": 32, "stride": 32}, "pda": {"window": 32, "stride": 32, "samples": 2},
    "pda_features": {"samples": 2},
}
FULL_PARAMS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"n_samples": 8}, "integrated_gradients": {"steps": 32}, "smoothgrad_ig": {"n_samples": 4, "steps": 8},
    "pda": {"window": 32, "stride": 32, "samples": 2}, "pda_features": {"samples": 2},
}
REFERENCE_IMAGES = 2  # PDA's reference set; its recipe needs samples == this
TARGETS = (0, 1, 2)


@dataclass(frozen=True)
class Outcome:
    """One cell: `status` "equal", "differs", "unavailable" (`reason` the method's one line)
    or "error" (`reason` the exception). `max_rel_diff`: max |ours − exact| / max |exact|;
    `reference_rel_diff`: the same of the library's own float32 map (see TOLERANCE)."""

    model: str
    method: str
    status: str
    max_rel_diff: float | None = None
    reason: str = ""
    seconds: float = 0.0
    reference_rel_diff: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("equal", "unavailable")


def source_model(entry: ZooEntry, example: torch.Tensor, tiny: bool = True, seed: int = 0) -> nn.Module:
    """The library's own model for `entry` with random weights, in eval mode, as a trained
    model would be: BatchNorm statistics measured on `example` (images through the model's
    preprocessing, so a TorchXRayVision model's first running variances are ~1e6 like the
    published ones), its affine parameters near but not at 1 and 0 (libraries zero the last norm
    of residual blocks, which would make them identities; far from 1 the products over 50 layers
    make logits of ±500 and maps that float32 cannot reproduce), zero-initialised weights (ViT
    heads) drawn at random: every model's output depends on its input, and a misplaced tensor
    shows."""
    from medattn.models.external import ExternalModel

    callable_name, kwargs = entry.constructor(tiny)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if entry.library is None:
            net = torchvision.models.get_model(entry.importer_arch(tiny), weights=None, num_classes=entry.classes)
        else:
            net = ExternalModel(entry.library, callable_name, entry.classes, kwargs, channels=entry.channels).net
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        with torch.no_grad():
            for parameter in net.parameters():
                if parameter.ndim >= 2 and not parameter.any():
                    parameter.normal_(0.0, 0.05)
            for norm in norms:
                if norm.affine:  # near 1 (a zeroed one small): products over 50 layers stay near 1
                    zeroed = not norm.weight.any()
                    norm.weight.uniform_(*((0.1, 0.3) if zeroed else (0.9, 1.1)))
                    norm.bias.uniform_(-0.05, 0.05)
                norm.reset_running_stats()
                norm.momentum = None  # a cumulative average over the calibration pass
            net.train()
            net(example)
            for norm in norms:
                norm.momentum = 0.1
            net.eval()
            heads = [m for m in net.modules() if isinstance(m, nn.Linear)]
            if heads:  # logits of a trained model's size (~1), not ±100: float32 reproduces their maps
                out = net(example)
                out = out[0] if isinstance(out, (tuple, list)) else out
                scale = float(out.std()) or 1.0
                heads[-1].weight /= scale
                if heads[-1].bias is not None:
                    heads[-1].bias.zero_()
    return net


WEIGHTS_FILE = {"safetensors": "model.safetensors", "training_checkpoint": "model_best.pth.tar",
                "whole_model": "model_whole.pt", "state_dict": "model.pt"}


def write_weights(entry: ZooEntry, net: nn.Module, path: Path) -> None:
    """`net`'s weights in the entry's published form (`zoo.WEIGHTS_FORMS`) at `path`."""
    state = net.state_dict()
    if entry.weights_form == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif entry.weights_form == "training_checkpoint":
        wrapped = {f"module.{entry.arch}.{k.replace('classifier.', 'classifier.0.')}": v for k, v in state.items()}
        torch.save({"epoch": 30, "arch": entry.arch, "state_dict": wrapped, "best_auc": np.float64(0.8413),
                    "optimizer": torch.optim.Adam(net.parameters()).state_dict()}, path)
    elif entry.weights_form == "whole_model":
        torch.save(net, path)
    else:
        torch.save(state, path)


def import_entry(entry: ZooEntry, folder: Path, tiny: bool = True) -> tuple[Path, nn.Module, str]:
    """(checkpoint path, source model, the importer's output) for `entry`, imported through the
    importer's command line from its published weights form. RuntimeError with the importer's
    message when it refuses."""
    from medattn.models.importer import main as importer, parse_args, preprocessing_from

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE[entry.weights_form]
    callable_name, kwargs = entry.constructor(tiny)
    args = [str(weights), "--arch", entry.importer_arch(tiny), "--classes", *[f"class{i}" for i in range(entry.classes)],
            "--task", "multilabel", "--input-size", str(entry.size(tiny)), "--out", str(folder / "imported"),
            "--overwrite", *entry.importer_args]
    if entry.library is not None:
        args += ["--library", entry.library]
        args += [a for k, v in kwargs.items() if not (entry.library == "timm" and k == "model_name")
                 for a in ("--kwarg", f"{k}={_json(v)}")]
    prep = preprocessing_from(parse_args(args), entry.library, entry.channels)
    clean = torch.cat([prep.to_input(probe_image(entry.size(tiny), seed=100 + i)) for i in range(4)])
    spread = float(clean.max() - clean.min())
    noisy = clean + 0.15 * spread * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    example = torch.cat([clean, noisy])  # SmoothGrad's noisy copies are in the statistics too
    net = source_model(entry, example, tiny)
    write_weights(entry, net, weights)
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = importer(args)
        if code != 0 and entry.weights_form == "whole_model":
            # the refusal's recipe, run where the file was made (this process wrote it)
            torch.save(torch.load(weights, weights_only=False).state_dict(), folder / "state_dict.pt")
            args[0] = str(folder / "state_dict.pt")
            code = importer(args)
    if code != 0:
        raise RuntimeError(f"the importer refused {entry.name}: {log.getvalue().strip()}")
    return folder / "imported", net, log.getvalue()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def probe_image(size: int, seed: int) -> np.ndarray:
    """A smooth grey image (1.25·size × size) in [0, 1]: anatomy-like blobs, non-square, so
    every geometry does some work."""
    rng = np.random.default_rng(seed)
    height, width = int(size * 1.25), size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width), np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.1, 0.35) * size
        image += rng.uniform(0.2, 1.0) * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * r * r))
    image += 0.05 * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(image / image.max(), 0.0, 1.0)


def check_entry(entry: ZooEntry, folder: Path, methods: Sequence[str] = METHODS, tiny: bool = True,
                params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Outcome]:
    """One Outcome per method for `entry` (see the module docstring); an import that fails or
    whose logits differ from the source model's makes every cell an "error"."""
    from medattn.models import load_checkpoint

    params = TINY_PARAMS if params is None and tiny else (FULL_PARAMS if params is None else params)
    try:
        path, net, _ = import_entry(entry, folder, tiny)
        model, meta = load_checkpoint(path)
        prep = model.preprocessing
        x = prep.to_input(probe_image(entry.size(tiny), seed=1))
        with torch.inference_mode():
            source_out = net(x)
            source_out = source_out[0] if isinstance(source_out, (tuple, list)) else source_out
            gap = float((model(x) - source_out).abs().max())
        if not gap <= LOGIT_TOLERANCE * (1 + float(source_out.abs().max())):
            raise RuntimeError(f"imported logits differ from the source model's by {gap:.3g}")
    except Exception as exc:  # noqa: BLE001 - the whole row fails, named; the matrix goes on
        return [Outcome(entry.name, m, "error", reason=f"import: {_line(exc)}") for m in methods]
    reference = torch.cat([prep.to_input(probe_image(entry.size(tiny), seed=10 + i)) for i in range(REFERENCE_IMAGES)])
    exact = copy.deepcopy(model).double()  # the recipes' float64 model, made once
    return [_cell(entry, model, exact, x, method, {**_method_params(method, params), **(
        {"reference": reference} if method.startswith("pda") else {})}) for method in methods]


def _exact(method: str, exact: nn.Module, x: torch.Tensor, params: dict[str, Any]) -> tuple[int, torch.Tensor | None]:
    """(target, exact reference map): the first of TARGETS classes whose map is not flat (a
    random model's Grad-CAM of one class can be all negative, so ReLU leaves nothing to compare)."""
    for target in TARGETS:
        expected = reference_map(method, exact, x, target, params)
        if expected is None or float(expected.abs().max() - expected.abs().min()) > FLAT:
            return target, expected
    return target, expected


def _method_params(method: str, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return dict(params.get(method, {}))


def _cell(entry: ZooEntry, model: nn.Module, exact: nn.Module, x: torch.Tensor, method: str,
          params: dict[str, Any]) -> Outcome:
    started = time.perf_counter()
    reason = unavailable(model, method)
    if reason is not None:
        return Outcome(entry.name, method, "unavailable", reason=reason)
    try:
        target, expected = _exact(method, exact, x, params)
        ours = torch.from_numpy(explain(model, x, target, method, device="cpu", precision="float32", **params))
        if not torch.isfinite(ours).all():
            return Outcome(entry.name, method, "error", reason="the map is not finite",
                           seconds=time.perf_counter() - started)
        if expected is None:
            return Outcome(entry.name, method, "error", reason="no reference recipe for an available method")
        if float(expected.abs().max() - expected.abs().min()) <= FLAT:
            return Outcome(entry.name, method, "error", reason="the reference map is flat: the model does not respond",
                           seconds=time.perf_counter() - started)
        floor = FLOOR.get(method, 0.0)
        if method == "occlusion":
            with torch.inference_mode():
                floor *= 1 + float(model(x).abs().max())
        gap = compare(method, ours, expected, floor)
        library = None
        if gap > TOLERANCE:  # the library's own float32 spread, needed only then
            library = max(compare(method, reference_map(method, model, x, target, params, torch.float32, layout),
                                  expected, floor) for layout in (False, True))
    except Exception as exc:  # noqa: BLE001 - one cell's failure is that cell's outcome
        return Outcome(entry.name, method, "error", reason=_line(exc), seconds=time.perf_counter() - started)
    status = "equal" if gap <= max(TOLERANCE, RELATIVE * (library or 0.0)) else "differs"
    return Outcome(entry.name, method, status, max_rel_diff=gap, seconds=time.perf_counter() - started,
                   reference_rel_diff=library)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def table(outcomes: Iterable[Outcome], methods: Sequence[str] = METHODS) -> str:
    """The matrix as a Markdown table: one row per model, one column per method, each cell
    the max relative difference to the reference ("= 3e-07"), "n/a" for unavailable, "≠ …" or
    "error"; then the reasons, one line per distinct (method, reason)."""
    outcomes = list(outcomes)
    models = list(dict.fromkeys(o.model for o in outcomes))
    cells = {(o.model, o.method): o for o in outcomes}
    lines = ["| model | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for model in models:
        row = []
        for method in methods:
            o = cells.get((model, method))
            row.append(_cell_text(o))
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    reasons = sorted({(o.method, o.status, _generic(o)) for o in outcomes if o.status != "equal"})
    if reasons:
        lines.append("")
        lines += [f"- {method} ({status}): {reason}" for method, status, reason in reasons]
    return "\n".join(lines)


def _cell_text(o: Outcome | None) -> str:
    if o is None:
        return ""
    if o.status == "equal":
        return f"= {o.max_rel_diff:.0e}"
    if o.status == "differs":
        return f"≠ {o.max_rel_diff:.2g}"
    return "n/a" if o.status == "unavailable" else "error"


def _generic(outcome: Outcome) -> str:
    """The reason without the model's own name, so one line covers every model it applies to."""
    import re

    return re.sub(r"(External|Linear)Model\([^)]*\)", "the model", outcome.reason) or f"{outcome.max_rel_diff:.3g}"
