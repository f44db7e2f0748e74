"""The GPU report: `python -m medattn.bench --gpu-report` (on a CUDA machine, in under 10 minutes).

Three sections, each timed on the device the command is given (`--device`, default the best one):
1. throughput: integrated gradients (50 steps) and Grad-CAM on the six demo checkpoints and on
   ResNet-50 / DenseNet-121 with random weights at 224 px: images per second on a batch, the
   FLOPs per image (`medattn.bench.methods.counting`, forward and backward), and the fraction of
   the card's dense peak that makes (`DENSE_PEAK_TFLOPS`: NVIDIA's datasheet figures without
   sparsity, for the math the convolutions run in: TF32 where cuDNN may use it, PyTorch's default
   on Ampere and later, else FP32; on a CPU the measured float32 convolution rate stands in);
2. precompute: the default methods over the demo test split for all six demo checkpoints, into a
   fresh cache, with maps per second (`medattn.jobs.precompute`);
3. Compare: the app's default grid rendered through Streamlit's AppTest on a fresh cache, with
   the seconds until every map is final.

Targets on an H100-class card (issue 22): IG-50 on ResNet-50 >= 100 images/s, Grad-CAM >= 1,000
images/s, the whole demo precompute < 2 min. `--quick` runs a reduced form anywhere (two
checkpoints, ResNet-50 only, 8 images, small batches), which the test suite runs on the CPU.
Writes JSON (`--out`, default artifacts/gpu_report.json) and prints a Markdown block for the
README.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn.bench.methods import DEFAULT_OUT, conv_rate, counting
from medattn.data import load_dataset
from medattn.data.dataset import Dataset
from medattn.device import cpu_line, describe
from medattn.explain import get_explainer

DEFAULT_REPORT = DEFAULT_OUT.with_name("gpu_report.json")
DEMO = ("demo_resnet18_wildcat", "demo_resnet18_linear", "demo_resnet18_mldam", "demo_mobilenet_v2_recurrent",
        "demo_densenet121_channel_attention", "demo_resnet50_residual_attention")
ARCHS = ("resnet50", "densenet121")
METHODS = {"integrated_gradients": {"steps": 50}, "gradcam": {}}
TARGETS = {("resnet50", "integrated_gradients"): 100.0, ("resnet50", "gradcam"): 1000.0}  # images/s, H100 class
PRECOMPUTE_TARGET_S = 120.0
# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets: (FP32, TF32 tensor, BF16 tensor).
DENSE_PEAK_TFLOPS = {
    "H200": (67.0, 494.5, 989.5),
    "H100 NVL": (60.0, 417.5, 835.5),
    "H100 PCIe": (51.0, 378.0, 756.0),
    "H100": (67.0, 494.5, 989.5),  # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    "A100": (19.5, 156.0, 312.0),
    "L40S": (91.6, 183.0, 362.0),
    "L4": (30.3, 60.0, 121.0),
    "A10": (31.2, 62.5, 125.0),
}


def conv_math(device: torch.device) -> str:
    """What float32 convolutions run in on `device`: "tf32" on CUDA cards that have it while cuDNN
    may use it (`torch.backends.cudnn.allow_tf32`, True by default), else "float32"."""
    if device.type != "cuda":
        return "float32"
    major, _ = torch.cuda.get_device_capability(device)
    return "tf32" if major >= 8 and torch.backends.cudnn.allow_tf32 else "float32"


def dense_peak(device: torch.device) -> tuple[float, str]:
    """(peak GFLOP/s for the convolutions' math on `device`, where the figure comes from)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (fp32, tf32, _) in DENSE_PEAK_TFLOPS.items():  # most specific names first
            if key in name:
                math = conv_math(device)
                return (tf32 if math == "tf32" else fp32) * 1000, f"{name}: NVIDIA's dense {math.upper()} peak"
    rate = conv_rate(device)
    return rate, f"{describe(device)}: measured float32 3x3 convolution rate (no datasheet peak)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(model: torch.nn.Module, images: torch.Tensor, targets: Sequence[int], method: str,
               params: dict[str, Any], device: torch.device, peak_gflops: float, repeats: int = 3,
               batch_size: int | None = None) -> dict[str, float]:
    """Images per second of `method` on the batch `images` (after one untimed call), its GFLOP
    per image and the fraction of `peak_gflops` the best of `repeats` calls reaches."""
    explainer = get_explainer(method)(model, device=device, batch_size=batch_size)
    x = images.to(device)
    explainer.attribute(x, targets, **params)  # warm-up: evaluation copy, kernels, allocator
    with counting() as counted:
        explainer.attribute(x[:1], targets[:1], **params)
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        explainer.attribute(x, targets, **params)
        _sync(device)
        times.append(time.perf_counter() - started)
    per_second = len(x) / min(times)
    gflop = counted.total / 1e9
    return {"images_per_second": per_second, "gflop_per_image": gflop,
            "fraction_of_peak": gflop * per_second / peak_gflops if peak_gflops else float("nan")}


def _subjects(dataset: Dataset, checkpoints: Path, names: Sequence[str], archs: Sequence[str], batch: int,
              device: torch.device, size: int = 224) -> list[tuple[str, torch.nn.Module, torch.Tensor, list[int]]]:
    """(name, model, a batch of `batch` demo test images as its input, their classes) for the demo
    checkpoints present and the random-weights archs at `size`."""
    from medattn.inference import load_model
    from medattn.models import build

    test = dataset.split("test")
    ids = [i for i in test.index if dataset.labels(i).sum() > 0][:batch]
    ids = (ids * (batch // max(1, len(ids)) + 1))[:batch]  # repeated when the split is small
    classes = [int(np.flatnonzero(dataset.labels(i))[0]) for i in ids]
    out = []
    for name in names:
        if not (checkpoints / f"{name}.json").is_file():
            continue
        loaded = load_model(checkpoints / name, str(device), dataset)
        out.append((name, loaded.model, torch.cat([loaded.to_input(dataset.read_image(i)).cpu() for i in ids]), classes))
    from medattn.data.preprocess import to_input

    for arch in archs:
        torch.manual_seed(0)
        model = build(arch, "linear", len(dataset.classes)).eval()
        out.append((f"{arch} (random weights)", model,
                    torch.cat([to_input(dataset.read_image(i), size=size) for i in ids]), classes))
    return out


def precompute_section(dataset: Dataset, checkpoints: Path, names: Sequence[str], device: torch.device,
                       image_ids: Sequence[str] | None) -> dict[str, Any]:
    """The default methods over the test split (or `image_ids`) for these checkpoints, into a
    fresh run and cache: maps, seconds, maps per second."""
    from medattn.jobs.precompute import FAST_METHODS, precompute
    from medattn.store import HeatmapCache, Run

    paths = [checkpoints / n for n in names if (checkpoints / f"{n}.json").is_file()]
    with tempfile.TemporaryDirectory(prefix="medattn-gpu-report-") as tmp:
        started = time.perf_counter()
        frame = precompute(dataset, paths, list(FAST_METHODS), image_ids=image_ids, run=Run(Path(tmp) / "run"),
                           cache=HeatmapCache(Path(tmp) / "cache"), device=str(device), progress=lambda *_: None)
        seconds = time.perf_counter() - started
    return {"checkpoints": [p.name for p in paths], "methods": list(FAST_METHODS), "maps": len(frame),
            "images": int(frame["image_id"].nunique()) if len(frame) else 0, "seconds": seconds,
            "maps_per_second": len(frame) / seconds if seconds else None}


def compare_section(dataset: Path, checkpoints: Path, names: Sequence[str], device: torch.device,
                    methods: Sequence[str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """The Compare page's grid through AppTest with these checkpoints on `device`, on a fresh
    cache: seconds until the script run ends (every map final), and the grid's status line."""
    from streamlit.testing.v1 import AppTest

    from medattn import inference, pipeline

    app = str(Path(__file__).resolve().parents[2] / "workbench.py")
    with tempfile.TemporaryDirectory(prefix="medattn-gpu-report-app-") as tmp:
        folder = Path(tmp) / "checkpoints"
        folder.mkdir()
        for name in names:
            for suffix in (".json", ".safetensors"):
                (folder / f"{name}{suffix}").symlink_to((checkpoints / f"{name}{suffix}").resolve())
        saved = (inference.CHECKPOINT_DIR, pipeline.CACHE_DIR, dict(os.environ))
        inference.CHECKPOINT_DIR, pipeline.CACHE_DIR = folder, Path(tmp) / "cache"
        os.environ.update({"MEDATTN_DATASET": str(dataset), "MEDATTN_PREFETCH": "0"})
        try:
            at = AppTest.from_file(app, default_timeout=timeout)
            at.session_state["sb_device"] = device.type if device.type in ("cpu", "cuda") else "auto"
            if methods:
                at.session_state["sb_methods"] = list(methods)
            started = time.perf_counter()
            at.run()
            seconds = time.perf_counter() - started
            errors = [str(e.value) for e in at.exception]
            status = next((c.value for c in at.caption if " maps ready (" in str(c.value)), None)
        finally:
            inference.CHECKPOINT_DIR, pipeline.CACHE_DIR = saved[0], saved[1]
            os.environ.clear()
            os.environ.update(saved[2])
    return {"seconds": seconds, "status": status, "errors": errors}


def report(device: torch.device, quick: bool = False, dataset_root: Path | None = None,
           checkpoints: Path | None = None, out: Path = DEFAULT_REPORT, log: Callable[[str], None] = print,
           names: Sequence[str] | None = None, archs: Sequence[str] | None = None, size: int = 224,
           steps: int = 50) -> dict[str, Any]:
    """Run the three sections and write the JSON; the result. `names` (checkpoints in
    `checkpoints`), `archs` (random-weights backbones at `size` px) and integrated gradients'
    `steps` default to the report's own (`DEMO`, `ARCHS`, 224, 50); the test suite passes tiny ones."""
    from medattn.inference import CHECKPOINT_DIR

    if dataset_root is None:
        from medattn.data.demo import ensure_demo

        dataset_root = ensure_demo()
    checkpoints = Path(checkpoints or CHECKPOINT_DIR)
    dataset = load_dataset(dataset_root)
    names = list(names) if names is not None else list(DEMO[:2] if quick else DEMO)
    archs = list(archs) if archs is not None else list(ARCHS[:1] if quick else ARCHS)
    methods = {**METHODS, "integrated_gradients": {"steps": steps}}
    batch = 2 if quick else (64 if device.type == "cuda" else 4)
    evaluations = 256 if device.type == "cuda" else 32  # model evaluations per pass (IG steps): DenseNet-121 at 224 fits 80 GB
    peak, source = dense_peak(device)
    result: dict[str, Any] = {
        "machine": {"device": describe(device), "cpu": cpu_line(), "torch": torch.__version__,
                    "platform": platform.platform(), "conv_math": conv_math(device), "peak_gflops": peak,
                    "peak_source": source},
        "quick": quick, "throughput": [], "targets": {f"{a} {m}": t for (a, m), t in TARGETS.items()},
    }
    log(f"# GPU report: {describe(device)}; convolutions in {conv_math(device)}; peak {peak:,.0f} GFLOP/s ({source})")
    log(f"CPU: {result['machine']['cpu']}")
    for name, model, images, classes in _subjects(dataset, checkpoints, names, archs, batch, device, size):
        for method, params in methods.items():
            if get_explainer(method).unavailable(model) is not None:
                continue
            figures = throughput(model, images, classes, method, params, device, peak, repeats=1 if quick else 3,
                                 batch_size=evaluations)
            result["throughput"].append({"model": name, "method": method, "batch": len(images), **figures})
            log(f"{name:40s} {method:22s} {figures['images_per_second']:9.1f} images/s  "
                f"{figures['gflop_per_image']:7.1f} GFLOP/image  {100 * figures['fraction_of_peak']:5.1f}% of peak")
    test = list(dataset.split("test").index)
    result["precompute"] = precompute_section(dataset, checkpoints, names, device, test[:8] if quick else None)
    p = result["precompute"]
    log(f"precompute: {p['maps']} maps ({len(p['checkpoints'])} checkpoints × {p['images']} test images × "
        f"{', '.join(p['methods'])}) in {p['seconds']:.1f} s, {p['maps_per_second']:.1f} maps/s"
        + ("" if quick else f" (target < {PRECOMPUTE_TARGET_S:.0f} s)"))
    result["compare"] = compare_section(dataset_root, checkpoints, names[:2], device,
                                        methods=["saliency", "gradcam"] if quick else None)
    c = result["compare"]
    log(f"Compare grid through AppTest: {c['seconds']:.1f} s; {c['status']}" + (f"; errors {c['errors']}" if c["errors"] else ""))
    log(markdown(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(out)
    log(f"wrote {out}")
    return result


def markdown(result: dict[str, Any]) -> str:
    """The report as a Markdown table for the README."""
    machine = result["machine"]
    lines = [f"GPU report on {machine['device']} (convolutions in {machine['conv_math']}; "
             f"peak {machine['peak_gflops']:,.0f} GFLOP/s, {machine['peak_source']}), torch {machine['torch']}:", "",
             "| model | method | images/s | GFLOP/image | % of dense peak |", "|---|---|---|---|---|"]
    for row in result["throughput"]:
        lines.append(f"| {row['model']} | {row['method']} | {row['images_per_second']:.1f} | "
                     f"{row['gflop_per_image']:.1f} | {100 * row['fraction_of_peak']:.1f} |")
    p, c = result["precompute"], result["compare"]
    lines += ["", f"Precompute ({p['maps']} maps, {len(p['checkpoints'])} checkpoints, {p['images']} test images): "
                  f"{p['seconds']:.1f} s, {p['maps_per_second']:.1f} maps/s. Compare grid through AppTest: "
                  f"{c['seconds']:.1f} s."]
    return "\n".join(lines)
