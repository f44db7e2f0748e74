"""Benchmarks of the explanation methods: `python -m medattn.bench --help`. Its metrics section
(`medattn.bench.metrics`) times every faithfulness metric against Quantus.

For each model (a demo checkpoint, and ResNet-50 / DenseNet-121 with random weights at
224×224) and each method that applies to it, on demo test images:
- seconds per image: the median over `--repeats` calls on one image, after one untimed
  warm-up call (which also counts the FLOPs);
- images per second: one call on a batch of `--batch` images (after an untimed one);
- peak memory above what was in use before the call, in one more call after the timed ones:
  on the CPU the process's peak resident set (VmHWM, reset through /proc/self/clear_refs;
  where that is not possible, the growth of ru_maxrss, a lower bound) while glibc gives every
  block of 128 KiB or more back to the system when freed (otherwise memory an earlier call
  freed is reused without growing the resident set and reads as 0 MB; returning it costs ~30%
  of the time, hence the separate call); on CUDA torch.cuda.max_memory_allocated;
- GFLOP per image: the formulas of torch.utils.flop_counter applied to every operator the call
  runs, forward and backward (FlopCounterMode itself cannot watch Captum: its module tracker
  rejects autograd.grad on leaf inputs), and GFLOP/s against the machine's convolution rate (a
  3×3 convolution timed at the start);
- the call a Captum user would write for the same method and settings (defaults otherwise,
  weights not frozen, the model as it is), timed alternately with ours (A B A B ...) so that
  background load falls on both alike; ratio = Captum's median / ours, and the Spearman
  correlation between the two maps (reduced over channels the same way).

PDA runs with fast settings (window 16, stride 8, marginal sampling, 4 samples; pda_features
4 samples) drawing from 16 demo training images. A method whose warm-up call takes longer than
`--max-seconds` is timed by one more call only, without the batch call (noted in the row). Writes JSON (`--out`).

Integrated gradients (50 steps, black baseline) on ResNet-50 at 224, 2-core CPU shared with a
training job, interleaved medians: see the closing note of issue 4 for the current figures.
Captum's default call already skips weight gradients (autograd.grad asks for input gradients
only, so the FLOPs are the same); what makes ours faster is `evaluation_copy`: BatchNorm folded
into the convolutions (about a quarter of the CPU time went to BatchNorm forward and backward)
and channels-last memory format; for occlusion also `explain.incremental` (each occluded copy's
first stage computed only where its window reaches, so it runs fewer FLOPs than Captum's).

Our maps are timed in float32, the precision they are stored and scored in on every CPU; the
first line printed names the CPU and its instruction sets (the figures depend on them).
`--bfloat16` also times the opt-in bfloat16 path (`precision="bfloat16"`: the later
ResNet/DenseNet stages in bfloat16, on CPUs with AVX512-BF16 or AMX) beside each float32 row
where it applies, with its ratio to Captum and its Spearman correlation with our float32 map.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import ctypes.util
import functools
import json
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum import attr
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from medattn.data import load_dataset
from medattn.data.dataset import Dataset
from medattn.data.preprocess import to_input
from medattn.device import best_device, cpu_line, describe
from medattn.explain import METHODS, get_explainer, unavailable
from medattn.explain.base import native_bfloat16
from medattn.metrics.protocols import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol
from medattn.explain.cam import cam_layer
from medattn.explain.gradients import OCCLUSION_AT_224, ig_baseline, occlusion_fill, quiet_relu_hooks
from medattn.inference import CHECKPOINT_DIR, list_checkpoints, load_model
from medattn.models.files import unique_checkpoints
from medattn.metrics.similarity import spearman

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "artifacts" / "bench.json"
DEFAULT_ARCHS = ("demo", "resnet50", "densenet121")
DEMO_PREFERENCE = ("demo_resnet18_wildcat", "demo_resnet18_linear")
FAST_PDA = {"window": 16, "stride": 8, "sampling": "marginal", "samples": 4}
FAST_PDA_FEATURES = {"sampling": "marginal", "samples": 4}
REFERENCE_IMAGES = 16


@dataclass
class Subject:
    """A model to benchmark, with the images it sees."""

    name: str
    model: nn.Module
    size: int
    images: Tensor          # (B, 3, size, size) model inputs, the first is the single image
    targets: list[int]
    reference: Tensor       # PDA's reference images (R, 3, size, size)
    demo: bool = False      # the demo checkpoint (its totals go in the summary)
    note: str = ""


@dataclass
class Row:
    model: str
    method: str
    params: dict[str, Any]
    seconds_per_image: float
    seconds_all: list[float]
    images_per_second: float | None
    batch: int
    peak_memory_mb: float
    gflop_per_image: float
    gflop_per_second: float
    fraction_of_conv_rate: float
    captum_seconds_per_image: float | None = None
    captum_seconds_all: list[float] = field(default_factory=list)
    captum_ratio: float | None = None
    captum_gflop_per_image: float | None = None
    captum_peak_memory_mb: float | None = None
    spearman_vs_captum: float | None = None
    precision: str = "float32"  # what our maps were computed in (Explainer.used_precision)
    # the opt-in bfloat16 path (--bfloat16), where it applies: timed beside float32
    bfloat16_seconds_per_image: float | None = None
    bfloat16_captum_ratio: float | None = None
    bfloat16_spearman_vs_float32: float | None = None
    # integrated gradients: steps used and completeness error |Σ map − (f(x) − f(baseline))| / |f(x) − f(baseline)|
    steps: int | None = None
    completeness: float | None = None
    captum_completeness: float | None = None
    note: str = ""


class FlopCount(TorchDispatchMode):
    """Counts FLOPs of every operator run inside it with torch.utils.flop_counter's formulas."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


@contextlib.contextmanager
def counting() -> Iterator[FlopCount]:
    """A FlopCount that also sees forward-only methods: operators run in inference mode skip
    Python dispatch modes, so inside this block `torch.inference_mode()` means no_grad (the
    same operators, only the tensors' bookkeeping differs)."""
    original = torch.inference_mode

    def no_grad_instead(mode: bool = True) -> Any:
        return torch.no_grad() if mode else contextlib.nullcontext()

    torch.inference_mode = no_grad_instead  # type: ignore[assignment]
    try:
        with FlopCount() as counter:
            yield counter
    finally:
        torch.inference_mode = original  # type: ignore[assignment]


class PeakMemory:
    """Peak memory (MiB) of a block above what was in use when it started (module docstring).
    Slows the block down on the CPU: never around a timed call."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        _mmap_threshold(EXACT_MMAP_THRESHOLD)
        if _reset_peak_rss():
            self.base = _status_kb("VmRSS") * 1024
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = (_status_kb("VmHWM") * 1024
                    or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            _mmap_threshold(FAST_MMAP_THRESHOLD)
        self.mb = max(0.0, (peak - self.base) / 2**20)


# glibc malloc: blocks at or above the mmap threshold are returned to the system when freed.
# Its default threshold adapts (up to 32 MiB) and cannot be restored once set; a fixed 32 MiB with
# a 64 MiB trim threshold times the same as the default here.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
EXACT_MMAP_THRESHOLD, FAST_MMAP_THRESHOLD = 128 * 1024, 32 * 2**20


def _mmap_threshold(size: int) -> None:
    """Set glibc's mmap threshold (and the trim threshold to twice it) and give the heap's free
    memory back to the system, so that reusing it counts again; nothing elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, size)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * size)
        libc.malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmHWM") > 0
    except OSError:
        return False


def _status_kb(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def conv_rate(device: torch.device, repeats: int = 5) -> float:
    """Achievable GFLOP/s of a float32 3×3 convolution (256 → 256 channels, 28×28 maps,
    channels-last) on `device`: the fastest of `repeats` timed calls (background load only
    ever slows a call down)."""
    batch = 128 if device.type == "cuda" else 16
    x = torch.randn(batch, 256, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
    flops = 2 * batch * 256 * 28 * 28 * 256 * 9
    with torch.inference_mode():
        F.conv2d(x, w, padding=1)
        times = [_timed(lambda: F.conv2d(x, w, padding=1), device)[1] for _ in range(repeats)]
    return flops / min(times) / 1e9


def _timed(call: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    out = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - started


def method_params(method: str, subject: Subject, protocol: str = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """The settings each method is benchmarked with (defaults, PDA fast settings), with the
    explainer parameters of the scoring `protocol` (`medattn.metrics.protocols`)."""
    if method == "pda":
        return {**FAST_PDA, "reference": subject.reference}
    if method == "pda_features":
        return {**FAST_PDA_FEATURES, "reference": subject.reference}
    return get_protocol(protocol).params(method)


def captum_call(method: str, model: nn.Module, x: Tensor, target: int) -> Callable[[], Tensor] | None:
    """What a Captum user writes for `method` with our settings (Captum defaults otherwise),
    returning the map reduced over channels as our explainer does; None without an equivalent."""
    size = x.shape[2:]
    if method == "saliency":
        return lambda: attr.Saliency(model).attribute(x, target=target, abs=True).amax(1)
    if method == "smoothgrad":
        std = 0.15 * float(x.max() - x.min())
        return lambda: attr.NoiseTunnel(attr.Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=25, stdevs=std, target=target, abs=True).amax(1)
    if method == "integrated_gradients":
        base = ig_baseline(model, x, "black")
        return lambda: attr.IntegratedGradients(model).attribute(
            x, baselines=base, target=target, n_steps=50).sum(1)
    if method == "smoothgrad_ig":
        base, std = ig_baseline(model, x, "black"), 0.15 * float(x.max() - x.min())
        return lambda: attr.NoiseTunnel(attr.IntegratedGradients(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=10, stdevs=std, baselines=base, target=target,
            n_steps=20).sum(1)
    if method == "guided_backprop":
        return lambda: _quiet(lambda: attr.GuidedBackprop(model).attribute(x, target=target)).abs().amax(1)
    if method == "gradcam":
        return lambda: attr.LayerAttribution.interpolate(
            attr.LayerGradCam(model, cam_layer(model)).attribute(x, target=target, relu_attributions=True),
            tuple(size), interpolate_mode="bilinear").squeeze(1)
    if method == "guided_gradcam":
        return lambda: _quiet(lambda: attr.GuidedGradCam(model, cam_layer(model)).attribute(
            x, target=target, interpolate_mode="bilinear")).abs().amax(1)
    if method == "occlusion":
        win = tuple(max(1, round(OCCLUSION_AT_224[0] * s / 224)) for s in size)
        step = tuple(max(1, round(OCCLUSION_AT_224[1] * s / 224)) for s in size)
        fill = occlusion_fill(model, x, "black")  # ours, so that the ρ column compares one computation
        return lambda: attr.Occlusion(model).attribute(
            x, sliding_window_shapes=(x.shape[1], *win), strides=(x.shape[1], *step), baselines=fill,
            target=target).mean(1)
    return None


def _quiet(call: Callable[[], Tensor]) -> Tensor:
    with quiet_relu_hooks():
        return call()


def _captum(call: Callable[[], Tensor]) -> Tensor:
    """Captum's call without its notice that it set requires_grad on the input."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
        return call().detach().cpu()


def bench_method(subject: Subject, method: str, device: torch.device, repeats: int, batch: int,
                 rate: float, max_seconds: float, bfloat16: bool = False, protocol: str = DEFAULT_PROTOCOL,
                 overrides: dict[str, Any] | None = None) -> Row:
    """One row: our explainer in float32 (the maps that are stored) and, where Captum has the
    method, Captum's default call; with `bfloat16`, also our opt-in bfloat16 path where it
    applies on this CPU (`Explainer.used_precision`), timed in the same alternation.
    `overrides`: our call's parameters over the benchmark's (e.g. integrated gradients'
    steps="auto"); Captum's call keeps its defaults."""
    params = {**method_params(method, subject, protocol), **(overrides or {})}
    ours = get_explainer(method)(subject.model, device=device)
    fast = get_explainer(method)(subject.model, device=device, precision="bfloat16")
    with_bfloat16 = bfloat16 and fast.mixed
    x, target = subject.images[:1].to(device), subject.targets[0]

    def run_ours() -> Tensor:
        return ours.attribute(x, target, **params)

    def run_fast() -> Tensor:
        return fast.attribute(x, target, **params)

    reference_model = copy.deepcopy(subject.model).to(device).eval().requires_grad_(True)
    theirs = captum_call(method, reference_model, x.clone(), target)
    notes = []
    with counting() as counted:
        _, warmup = _timed(run_ours, device)
    flops = counted.total
    captum_flops = None
    if theirs is not None:
        with counting() as counted:
            _captum(theirs)
        captum_flops = counted.total
    slow = warmup > max_seconds
    if slow:
        notes.append(f"one call (warm-up took {warmup:.0f} s > --max-seconds)")
    if with_bfloat16:
        run_fast()  # its own warm-up (its own evaluation copy)
    times, captum_times, fast_times = [], [], []
    mine = other = quick = None
    for _ in range(1 if slow else repeats):
        mine, seconds = _timed(run_ours, device)
        times.append(seconds)
        if theirs is not None:
            other, seconds = _timed(lambda: _captum(theirs), device)
            captum_times.append(seconds)
        if with_bfloat16:
            quick, seconds = _timed(run_fast, device)
            fast_times.append(seconds)
    checks = list(getattr(ours, "completeness", []))  # of the last timed call on the one image
    with PeakMemory(device) as peak:
        run_ours()
    captum_peak = None
    if theirs is not None:
        with PeakMemory(device) as theirs_peak:
            _captum(theirs)
        captum_peak = theirs_peak.mb
    ips = None
    if not slow and batch > 1:  # one warm-up call (new shapes), then one timed call
        images = subject.images[:batch].to(device)
        targets = subject.targets[:batch]
        ours.attribute(images, targets, **params)
        _, seconds = _timed(lambda: ours.attribute(images, targets, **params), device)
        ips = len(images) / seconds
    per_image = statistics.median(times)
    row = Row(
        model=subject.name, method=method,
        params={k: v for k, v in params.items() if k != "reference"},
        seconds_per_image=per_image, seconds_all=times, images_per_second=ips,
        batch=min(batch, len(subject.images)), peak_memory_mb=peak.mb,
        gflop_per_image=flops / 1e9, gflop_per_second=flops / 1e9 / per_image,
        fraction_of_conv_rate=flops / 1e9 / per_image / rate, precision="float32", note="; ".join(notes))
    if with_bfloat16:
        row.bfloat16_seconds_per_image = statistics.median(fast_times)
        rho = spearman(quick[0].numpy(), mine[0].numpy())
        row.bfloat16_spearman_vs_float32 = None if np.isnan(rho) else rho
    if theirs is not None:
        row.captum_seconds_per_image = statistics.median(captum_times)
        row.captum_seconds_all = captum_times
        row.captum_ratio = row.captum_seconds_per_image / per_image
        row.captum_gflop_per_image = (captum_flops or 0) / 1e9
        row.captum_peak_memory_mb = captum_peak
        rho = spearman(mine[0].numpy(), other[0].numpy())  # NaN when a map is constant
        row.spearman_vs_captum = None if np.isnan(rho) else rho
        if row.bfloat16_seconds_per_image:
            row.bfloat16_captum_ratio = row.captum_seconds_per_image / row.bfloat16_seconds_per_image
    if checks:
        [check] = checks
        row.steps, row.completeness = check.steps, check.relative
        if other is not None:
            with torch.no_grad():
                logits = reference_model(torch.cat([x, ig_baseline(reference_model, x, "black")]))[:, target]
            rise = float(logits[0] - logits[1])
            row.captum_completeness = abs(float(other[0].sum()) - rise) / abs(rise) if rise else None
    return row


def demo_checkpoint(checkpoint: Path | None = None) -> Path | None:
    """`checkpoint`, else the first of DEMO_PREFERENCE in the checkpoint folder, else any demo_*;
    None when there is none."""
    found = {p.name: p for p in list_checkpoints(CHECKPOINT_DIR) if p.name.startswith("demo_")}
    return checkpoint or next((found[n] for n in DEMO_PREFERENCE if n in found), next(iter(sorted(found.values())), None))


def demo_subject(dataset: Dataset, checkpoint: Path | None, device: torch.device,
                 batch: int) -> Subject:
    """The demo checkpoint (preferring DEMO_PREFERENCE), or, when none is there, a freshly
    built model of the preferred demo recipe with a note."""
    from medattn.demo_models import DEMO_MODELS
    from medattn.models import build

    path = demo_checkpoint(checkpoint)
    if path is not None:
        loaded = load_model(path, device).for_dataset(dataset)  # raises for a model without these classes
        return _subject(loaded.name, loaded.model, loaded.input_size, dataset, batch,
                        loaded.preprocessing.to_input, demo=True)
    recipe = DEMO_MODELS[DEMO_PREFERENCE[0]]
    model = build(recipe["arch"], recipe["head"], len(dataset.classes)).eval()
    return _subject(f"{DEMO_PREFERENCE[0]} (untrained)", model, recipe["input_size"], dataset, batch,
                    demo=True, note=f"no demo checkpoint in {CHECKPOINT_DIR}: a freshly built "
                         f"{recipe['arch']} + {recipe['head']} (random weights) stands in")


def arch_subject(arch: str, size: int, dataset: Dataset, batch: int) -> Subject:
    """`arch` with a linear head and random weights (seed 0)."""
    from medattn.models import build

    torch.manual_seed(0)
    model = build(arch, "linear", len(dataset.classes)).eval()
    return _subject(f"{arch} (random weights)", model, size, dataset, batch)


def _subject(name: str, model: nn.Module, size: int, dataset: Dataset, batch: int,
             prepare: Callable[[np.ndarray], Tensor] | None = None,
             demo: bool = False, note: str = "") -> Subject:
    """`prepare`: an image (H, W) → the model's input (1, C, S, S), a checkpoint's own
    preprocessing (crop, channels, intensity scale); default medattn's stretch to `size` with
    ImageNet normalisation."""
    prepare = prepare or functools.partial(to_input, size=size)
    test = dataset.split("test")
    positives = sorted(test[test[dataset.classes].to_numpy().sum(axis=1) > 0].index)[:max(batch, 1)]
    if not positives:
        raise SystemExit(f"{dataset.root} has no test images with a positive class to benchmark on")
    images = torch.cat([prepare(dataset.read_image(i)).cpu() for i in positives])
    targets = [int(np.flatnonzero(dataset.labels(i) > 0)[0]) for i in positives]
    train = sorted(dataset.split("train").index)[:REFERENCE_IMAGES]
    reference = torch.cat([prepare(dataset.read_image(i)).cpu() for i in train])
    return Subject(name, model, size, images, targets, reference, demo, note)


def run_bench(subjects: Sequence[Subject], methods: Sequence[str], device: torch.device,
              repeats: int = 3, batch: int = 4, max_seconds: float = 120.0, bfloat16: bool = False,
              skip: Callable[[Subject, str], bool] | None = None,
              log: Callable[[str], None] = print, protocol: str = DEFAULT_PROTOCOL,
              overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Benchmark every applicable method on every subject; the JSON-ready result."""
    rate = conv_rate(device)
    cpu = cpu_line()
    log(f"CPU: {cpu}")
    log(f"{describe(device)}: float32 3×3 convolution at {rate:.1f} GFLOP/s; our maps in float32"
        + (", the opt-in bfloat16 path beside them where it applies" if bfloat16 else ""))
    rows: list[Row] = []
    for subject in subjects:
        subject.model.to(device).eval()
        if subject.note:
            log(f"note: {subject.note}")
        for method in methods:
            if unavailable(subject.model, method) is not None or (skip is not None and skip(subject, method)):
                continue
            row = bench_method(subject, method, device, repeats, batch, rate, max_seconds, bfloat16, protocol,
                               (overrides or {}).get(method))
            rows.append(row)
            log(format_row(row))
    demo_name = next((s.name for s in subjects if s.demo), None)
    demo = [r for r in rows if r.model == demo_name]
    summary = {
        "demo_model": demo_name,
        "demo_seconds_all_methods_but_pda": sum(r.seconds_per_image for r in demo
                                                if not r.method.startswith("pda")),
        "demo_seconds_pda_fast": next((r.seconds_per_image for r in demo if r.method == "pda"), None),
        "versus_captum": {s.name: versus_captum([r for r in rows if r.model == s.name]) for s in subjects},
    }
    return {
        "machine": {"device": describe(device), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": cpu, "native_bfloat16": native_bfloat16(),
                    "conv_gflop_per_second": rate},
        "settings": {"repeats": repeats, "batch": batch, "max_seconds": max_seconds, "bfloat16": bfloat16,
                     "pda": FAST_PDA, "pda_features": FAST_PDA_FEATURES},
        "subjects": [{"name": s.name, "size": s.size, "note": s.note} for s in subjects],
        "results": [asdict(r) for r in rows],
        "summary": summary,
    }


def versus_captum(rows: Sequence[Row]) -> dict[str, Any]:
    """One model's rows against Captum's default calls: each method's ratio (Captum's seconds
    per image / ours) and the set's, the sum of Captum's seconds over every method that has a
    Captum call divided by the sum of ours (PDA, WILDCAT and attention maps have none)."""
    timed = [r for r in rows if r.captum_ratio is not None]
    ours = sum(r.seconds_per_image for r in timed)
    theirs = sum(r.captum_seconds_per_image or 0.0 for r in timed)
    fast = sum(r.bfloat16_seconds_per_image or r.seconds_per_image for r in timed)
    with_bfloat16 = any(r.bfloat16_seconds_per_image for r in timed)
    return {"methods": {r.method: r.captum_ratio for r in timed},
            "seconds_ours": ours, "seconds_captum": theirs, "set_ratio": theirs / ours if ours else None,
            "bfloat16_methods": {r.method: r.bfloat16_captum_ratio for r in timed if r.bfloat16_captum_ratio},
            "bfloat16_set_ratio": theirs / fast if with_bfloat16 and fast else None}


def format_versus_captum(model: str, versus: dict[str, Any]) -> str:
    if versus["set_ratio"] is None:
        return f"{model}: no method with a Captum equivalent"
    each = ", ".join(f"{m} {r:.2f}" for m, r in versus["methods"].items())
    line = (f"{model}: float32 ×Captum {each}; the set {versus['set_ratio']:.2f} "
            f"(Captum {versus['seconds_captum']:.1f} s / ours {versus['seconds_ours']:.1f} s per image)")
    if versus.get("bfloat16_set_ratio"):
        fast = ", ".join(f"{m} {r:.2f}" for m, r in versus["bfloat16_methods"].items())
        line += f"\n{model}: opt-in bfloat16 ×Captum {fast}; the set {versus['bfloat16_set_ratio']:.2f}"
    return line


HEADER = (f"{'model':32s} {'method':20s} {'prec':>5s} {'s/img':>8s} {'img/s':>7s} {'peak MB':>8s} {'GFLOP':>8s} "
          f"{'GFLOP/s':>8s} {'%conv':>6s} {'captum s':>9s} {'×captum':>8s} {'ρ':>6s}")


def format_row(r: Row) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    line = (f"{r.model[:32]:32s} {r.method:20s} {'fp32':>5s} {r.seconds_per_image:8.2f} {num(r.images_per_second, '7.2f')} "
            f"{r.peak_memory_mb:8.0f} {r.gflop_per_image:8.1f} {r.gflop_per_second:8.1f} "
            f"{100 * r.fraction_of_conv_rate:6.0f} {num(r.captum_seconds_per_image, '9.2f')} "
            f"{num(r.captum_ratio, '8.2f')} {num(r.spearman_vs_captum, '6.3f')}"
            + (f"  ({r.note})" if r.note else ""))
    if r.completeness is not None:
        line += (f"  completeness error {100 * r.completeness:.2f}% at {r.steps} steps"
                 + (f" (Captum's 50: {100 * r.captum_completeness:.2f}%)" if r.captum_completeness is not None else ""))
    if r.bfloat16_seconds_per_image is not None:  # the opt-in path, ρ against our float32 map
        line += (f"\n{r.model[:32]:32s} {r.method:20s} {'bf16':>5s} {r.bfloat16_seconds_per_image:8.2f} "
                 f"{'':>7s} {'':>8s} {'':>8s} {'':>8s} {'':>6s} {'':>9s} {num(r.bfloat16_captum_ratio, '8.2f')} "
                 f"{num(r.bfloat16_spearman_vs_float32, '6.3f')}  (ρ vs float32)")
    return line


def _ig_overrides(steps: str | None, tolerance: float | None) -> dict[str, Any]:
    """--ig-steps / --ig-tolerance as integrated-gradients parameters."""
    chosen: dict[str, Any] = {}
    if steps is not None:
        chosen["steps"] = steps if steps == "auto" else int(steps)
    if tolerance is not None:
        chosen["tolerance"] = tolerance
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--archs", nargs="+", default=list(DEFAULT_ARCHS),
                        help="'demo' (a demo checkpoint) and/or backbone names built with random weights")
    parser.add_argument("--checkpoint", type=Path, nargs="+", default=[None],
                        help="the demo checkpoint(s) (default: a demo_* in checkpoints/); 'all' for every demo_* there")
    parser.add_argument("--dataset", type=Path, help="images to explain (default: the demo dataset)")
    parser.add_argument("--size", type=int, default=224, help="input size of the random-weights models")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4, help="images in the throughput call")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="time a method by its warm-up call alone when that took longer")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ig-steps", default=None,
                        help="integrated gradients' steps for our call: a number, or auto (the fewest passing the "
                             "completeness check within --ig-tolerance); Captum's call keeps its 50")
    parser.add_argument("--ig-tolerance", type=float, default=None, help="relative completeness error for --ig-steps auto")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time the opt-in bfloat16 path (later ResNet/DenseNet stages of integrated gradients, "
                             "SmoothGrad-IG, occlusion and PDA, on CPUs with native bfloat16) beside the float32 maps")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=list(PROTOCOLS),
                        help="explainer parameters of a scoring protocol (arun2021: 10 IG steps, squared "
                             "SmoothGrad, |gradient| summed over channels); see medattn/metrics/protocols.py")
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat, a batch of 2, PDA on the demo model only")
    parser.add_argument("--sections", nargs="+", choices=["methods", "metrics"], default=["methods", "metrics"],
                        help="methods: every explanation method against Captum; metrics: every faithfulness metric "
                             "against Quantus on the demo checkpoint (medattn.bench.metrics)")
    parser.add_argument("--metrics", nargs="+", help="the faithfulness metrics of the metrics section (default: all)")
    parser.add_argument("--metric-repeats", type=int, default=2, help="timed calls per metric, each side")
    parser.add_argument("--zoo", nargs="*", metavar="GLOB",
                        help="instead: the model-zoo conformance matrix at full size (medattn.bench.zoo), every zoo "
                             "model or those matching the globs, e.g. --zoo 'timm/*'")
    parser.add_argument("--zoo-tiny", action="store_true", help="with --zoo: the test suite's tiny configurations")
    parser.add_argument("--gpu-report", action="store_true",
                        help="instead: the GPU report (medattn.bench.gpu): throughput and fraction of the card's dense "
                             "peak, the demo precompute, the Compare grid through AppTest; with --quick a reduced form "
                             "that runs anywhere")
    parser.add_argument("--checkpoints", type=Path, help="--gpu-report: the checkpoint folder (default checkpoints/)")
    parser.add_argument("--precompute-ab", action="store_true",
                        help="instead: precompute over the demo test split with shared work against one map at a "
                             "time, alternately in one run, asserting the same rows (medattn.bench.precompute); "
                             "every demo checkpoint unless --checkpoint names some")
    parser.add_argument("--ab-methods", nargs="+", help="--precompute-ab: the methods (default: precompute's defaults)")
    parser.add_argument("--ab-images", type=int, help="--precompute-ab: the first N test images (default: all)")
    parser.add_argument("--ab-chunks", type=int, default=2,
                        help="--precompute-ab: image chunks, each run by both sides, the order switched every chunk")
    parser.add_argument("--out", type=Path, help=f"JSON to write (default {DEFAULT_OUT}, or bench_zoo.json / "
                                                 "gpu_report.json beside it)")
    args = parser.parse_args(argv)
    if args.zoo is not None:
        from medattn.bench.zoo import main as zoo_main

        return zoo_main(args.zoo, args.zoo_tiny, args.out or DEFAULT_OUT.with_name("bench_zoo.json"))
    if args.gpu_report:
        from medattn.bench import gpu

        gpu.report(best_device(args.device), quick=args.quick, dataset_root=args.dataset,
                   checkpoints=args.checkpoints, out=args.out or gpu.DEFAULT_REPORT, log=lambda line: print(line, flush=True))
        return 0
    if args.precompute_ab:
        from medattn.bench import precompute as precompute_ab
        from medattn.data.demo import ensure_demo
        from medattn.jobs.precompute import FAST_METHODS

        chosen = [c for c in unique_checkpoints(args.checkpoint) if c is not None and str(c) != "all"]
        chosen = chosen or [p for p in list_checkpoints(CHECKPOINT_DIR) if p.name.startswith("demo_")]
        return precompute_ab.main(load_dataset(args.dataset or ensure_demo()), chosen, args.ab_methods or list(FAST_METHODS),
                                  args.ab_images, args.ab_chunks, str(best_device(args.device)),
                                  args.out or DEFAULT_OUT.with_name("bench_precompute_ab.json"))
    args.out = args.out or DEFAULT_OUT
    if args.quick:
        args.repeats, args.batch = 1, 2
    device = best_device(args.device)
    if args.dataset is None:
        from medattn.data.demo import ensure_demo

        args.dataset = ensure_demo()
    dataset = load_dataset(args.dataset)
    checkpoints = unique_checkpoints(args.checkpoint)  # a glob names each twice (NAME.json, NAME.safetensors)
    if [str(c) for c in checkpoints] == ["all"]:
        checkpoints = [p for p in list_checkpoints(CHECKPOINT_DIR) if p.name.startswith("demo_")]
    skip = (lambda s, m: m.startswith("pda") and not s.demo) if args.quick else None
    result: dict[str, Any] = {}
    if "methods" in args.sections:
        subjects = [subject for arch in args.archs
                    for subject in ([demo_subject(dataset, c, device, args.batch) for c in checkpoints]
                                    if arch == "demo" else [arch_subject(arch, args.size, dataset, args.batch)])]
        print(HEADER, flush=True)
        result = run_bench(subjects, args.methods, device, args.repeats, args.batch, args.max_seconds,
                           args.bfloat16, skip, log=lambda line: print(line, flush=True), protocol=args.protocol,
                           overrides={"integrated_gradients": _ig_overrides(args.ig_steps, args.ig_tolerance)})
        summary = result["summary"]
        for model, versus in summary["versus_captum"].items():
            print(format_versus_captum(model, versus))
        if summary["demo_model"] is not None:
            pda = summary["demo_seconds_pda_fast"]  # None when PDA was not benchmarked
            print(f"{summary['demo_model']}: all methods but PDA {summary['demo_seconds_all_methods_but_pda']:.1f} s "
                  f"per image" + (f"; PDA fast settings {pda:.1f} s" if pda else ""))
    if "metrics" in args.sections:
        from medattn.bench import metrics as metrics_bench

        result["metrics"] = metrics_bench.run(dataset, checkpoints[0] if "demo" in args.archs else None, device,
                                              args.metric_repeats, args.metrics, log=lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
