"""The faithfulness metrics benchmark: each metric of `medattn.metrics.faithfulness` on one demo
image beside Quantus 0.6's call for it on the same model, input, map and number of model
evaluations (`python -m medattn.bench --sections metrics`, or `python -m medattn.bench.metrics`).

Ours and Quantus's call run alternately (A B A B …, after one untimed call each) so background
load falls on both alike; a call under 0.2 s is repeated to make each timed sample last that
long; ratio = Quantus's median seconds per image / ours. The map is the
image's saliency map; fills are the image's black through the checkpoint's preprocessing (ours)
and Quantus's "black" (the image's minimum). Where Quantus has no such metric or fails, the
row says which call stands in (same passes through the model) and why:
- insertion and ROAD LeRF: Quantus has neither; its PixelFlipping (resp. ROAD, MoRF) with the
  same passes stands in;
- ROAD: Quantus ranks channel entries and indexes pixels with them on 3-channel input
  (Quantus#333), so its call runs on the image's one grey channel through a module that repeats
  it to the model's 3 channels (the imputation of one channel, ours imputes 3);
- infidelity: Quantus's Infidelity is another definition (square patches replaced, not Yeh et
  al.'s Gaussian perturbations); its call with as many patches as our samples stands in, and
  Captum's `infidelity` (the definition we follow) is timed too;
- max-sensitivity and random-logit re-explain: both sides get the same explain function
  (medattn's saliency explainer), so the ratio is what the metric adds (batching).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medattn.explain import explain
from medattn.metrics import faithfulness as faith

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "artifacts" / "bench_metrics.json"
STEPS = 96  # deletion/insertion/pixel-flipping steps: divides 192² and 128² pixels
PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
SUBSETS, SUBSET = 100, 224
SAMPLES = 16  # infidelity (Quantus: 16 patches of a quarter side)
SENSITIVITY_SAMPLES, RADIUS = 10, 0.2
PATCH, REGIONS = 8, 96


@dataclass
class MetricRow:
    metric: str
    seconds: float
    seconds_all: list[float]
    quantus_seconds: float | None
    quantus_seconds_all: list[float]
    ratio: float | None
    quantus_call: str
    captum_seconds: float | None = None
    note: str = ""


class GreyToModel(nn.Module):
    """A one-channel input repeated to the model's channels (Quantus's ROAD needs one channel)."""

    def __init__(self, model: nn.Module, channels: int):
        super().__init__()
        self.model, self.channels = model, channels

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.expand(-1, self.channels, -1, -1))


def quantus_module():
    import quantus

    if not hasattr(np, "trapz"):  # NumPy 2.4 removed it; Quantus 0.6 calls it (same rule)
        np.trapz = np.trapezoid
    return quantus


def calls(model: nn.Module, x: Tensor, target: int, task: str, black: Tensor) -> dict[str, tuple]:
    """metric → (ours, Quantus's call, its description, Captum's call or None, note)."""
    q = quantus_module()
    common: dict[str, Any] = dict(disable_warnings=True, normalise=False)
    saliency = torch.from_numpy(explain(model, x, target, "saliency")).reshape(1, *x.shape[2:])
    maps, y, channels = saliency, np.array([target]), x.shape[1]
    pixels = int(np.prod(x.shape[2:]))
    with torch.inference_mode():
        classes = int(model(x).shape[1])  # given to both random-logit calls
    xn, an, softmax = x.numpy(), maps.numpy()[:, None], task == "multiclass"

    def run_quantus(metric, model_=model, x_=xn, **kwargs):
        return lambda: metric(model=model_, x_batch=x_, y_batch=y, a_batch=an, softmax=softmax, device="cpu", **kwargs)

    def explain_fn(model, inputs, targets, **kwargs):  # Quantus's explain_func protocol (keywords)
        batch = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        out = explain(model.get_model() if hasattr(model, "get_model") else model, batch,
                      [int(t) for t in np.atleast_1d(targets)], "saliency")
        return out.reshape(len(batch), 1, *batch.shape[2:])

    def ours_explain(model_, inputs, targets):
        return explain(model_, inputs, targets.tolist(), "saliency").reshape(len(inputs), *inputs.shape[2:])

    flipping = q.PixelFlipping(features_in_step=pixels * channels // STEPS, perturb_baseline="black", **common)
    grey = GreyToModel(model, channels).eval()
    road_q = q.ROAD(percentages=list(PERCENTAGES), **common)
    from captum.metrics import infidelity as captum_infidelity

    noise = torch.randn((SAMPLES, *x.shape[1:]), generator=torch.Generator().manual_seed(0)) * 0.2
    captum_call = lambda: captum_infidelity(model, lambda inputs: (noise, inputs - noise), x,  # noqa: E731
                                            maps[:, None].expand_as(x), target=target, n_perturb_samples=SAMPLES,
                                            normalize=True)
    return {
        "deletion": (lambda: faith.deletion(model, x, maps, y, steps=STEPS, baseline=black, task=task),
                     run_quantus(flipping), f"PixelFlipping({STEPS} steps)", None, ""),
        "insertion": (lambda: faith.insertion(model, x, maps, y, steps=STEPS, task=task),
                      run_quantus(flipping), f"PixelFlipping({STEPS} steps)", None, "Quantus has no insertion"),
        "road_morf": (lambda: faith.road(model, x, maps, y, percentages=PERCENTAGES, task=task),
                      run_quantus(road_q, grey, xn[:, :1]), f"ROAD({len(PERCENTAGES)} percentages), grey input", None,
                      "Quantus#333: its ROAD fails on 3 channels"),
        "road_lerf": (lambda: faith.road(model, x, maps, y, percentages=PERCENTAGES, order="lerf", task=task),
                      run_quantus(road_q, grey, xn[:, :1]), "ROAD (MoRF; no LeRF), grey input", None,
                      "Quantus has no LeRF"),
        "pixel_flipping": (lambda: faith.pixel_flipping(model, x, maps, y, steps=STEPS, baseline=black, task=task),
                           run_quantus(flipping), f"PixelFlipping({STEPS} steps)", None, ""),
        "region_perturbation": (lambda: faith.region_perturbation(model, x, maps, y, patch_size=PATCH, regions=REGIONS,
                                                                  baseline=black, task=task),
                                run_quantus(q.RegionPerturbation(patch_size=PATCH, regions_evaluation=REGIONS,
                                                                 perturb_baseline="black", **common)),
                                f"RegionPerturbation({PATCH} px, {REGIONS} regions)", None, ""),
        "faithfulness_correlation": (
            lambda: faith.faithfulness_correlation(model, x, maps, y, n_subsets=SUBSETS, subset_size=SUBSET,
                                                   baseline=black, task=task),
            run_quantus(q.FaithfulnessCorrelation(nr_runs=SUBSETS, subset_size=SUBSET * channels,
                                                  perturb_baseline="black", return_aggregate=False, **common)),
            f"FaithfulnessCorrelation({SUBSETS} subsets)", None, ""),
        "infidelity": (lambda: faith.infidelity(model, x, maps, y, n_samples=SAMPLES, noise_std=0.2),
                       run_quantus(q.Infidelity(perturb_patch_sizes=[x.shape[-1] // 4], n_perturb_samples=1,
                                                perturb_baseline="black", **common)),
                       f"Infidelity({SAMPLES} patches; another definition)", captum_call,
                       "Quantus's Infidelity replaces patches"),
        "max_sensitivity": (lambda: faith.max_sensitivity(model, x, y, ours_explain, radius=RADIUS,
                                                          n_samples=SENSITIVITY_SAMPLES),
                            run_quantus(q.MaxSensitivity(nr_samples=SENSITIVITY_SAMPLES, lower_bound=RADIUS, **common),
                                        explain_func=explain_fn),
                            f"MaxSensitivity({SENSITIVITY_SAMPLES} samples), same explain", None, ""),
        "sparseness": (lambda: faith.sparseness(maps), run_quantus(q.Sparseness(**common)), "Sparseness", None, ""),
        "complexity": (lambda: faith.complexity(maps), run_quantus(q.Complexity(**common)), "Complexity", None, ""),
        "random_logit": (lambda: faith.random_logit(model, x, y, ours_explain, attributions=maps, num_classes=classes),
                         run_quantus(q.RandomLogit(num_classes=classes, **common), explain_func=explain_fn),
                         "RandomLogit, same explain", None, ""),
    }


MIN_SAMPLE_S = 0.2  # a timed sample of a fast call repeats it this long (timer and load noise)


def _timed(call: Callable[[], Any], times: int = 1) -> float:
    """Seconds per call, over `times` calls in a row."""
    started = time.perf_counter()
    for _ in range(times):
        call()
    return (time.perf_counter() - started) / times


def _times(call: Callable[[], Any]) -> int:
    """How many calls make one timed sample: one untimed call says how long a call takes."""
    return max(1, int(MIN_SAMPLE_S / max(_timed(call), 1e-6)))


def bench_metrics(model: nn.Module, x: Tensor, target: int, task: str, black: Tensor, repeats: int = 2,
                  metrics: list[str] | None = None, log: Callable[[str], None] = print) -> list[MetricRow]:
    """One row per metric: ours and Quantus's call timed alternately (module docstring)."""
    model.eval()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = calls(model, x, target, task, black)
        for name in metrics or list(table):
            ours, theirs, described, captum, note = table[name]
            ours_n, theirs_n = _times(ours), 1
            try:
                theirs_n = _times(theirs)
            except Exception as exc:  # noqa: BLE001 - a reference's failure is a row, not the end of the bench
                theirs, note = None, f"{note}; Quantus failed: {type(exc).__name__}: {exc}".strip("; ")
            mine, other = [], []
            for _ in range(repeats):
                mine.append(_timed(ours, ours_n))
                if theirs is not None:
                    other.append(_timed(theirs, theirs_n))
            captum_seconds = statistics.median(_timed(captum) for _ in range(repeats)) if captum else None
            row = MetricRow(name, statistics.median(mine), mine, statistics.median(other) if other else None, other,
                            statistics.median(other) / statistics.median(mine) if other else None, described,
                            captum_seconds, note)
            rows.append(row)
            log(format_row(row))
    return rows


HEADER = f"{'metric':26s} {'ours s':>8s} {'Quantus s':>10s} {'×Quantus':>9s}  Quantus call"


def format_row(r: MetricRow) -> str:
    quantus = "-" if r.quantus_seconds is None else f"{r.quantus_seconds:10.2f}"
    ratio = "-" if r.ratio is None else f"{r.ratio:9.1f}"
    extra = "" if r.captum_seconds is None else f"; Captum infidelity {r.captum_seconds:.2f} s"
    return f"{r.metric:26s} {r.seconds:8.2f} {quantus:>10s} {ratio:>9s}  {r.quantus_call}{extra}" + (
        f"  ({r.note})" if r.note else "")


def run(dataset, checkpoint: Path | None, device: torch.device, repeats: int, metrics: list[str] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """The metrics section on the demo checkpoint (the methods bench's `demo_subject`): the
    JSON-ready result."""
    from medattn.bench.methods import demo_checkpoint, demo_subject
    from medattn.data.preprocess import Preprocessing
    from medattn.inference import load_model

    path = demo_checkpoint(checkpoint)
    subject = demo_subject(dataset, path, device, 1)
    loaded = load_model(path, device, dataset) if path is not None else None
    task = loaded.task if loaded else "multilabel"
    black = (loaded.preprocessing if loaded else Preprocessing(size=subject.size)).constant_input(0.0)
    log(f"metrics on {subject.name} ({subject.size} px, one image, task {task}); {HEADER}")
    rows = bench_metrics(subject.model.to(device), subject.images[:1].to(device), subject.targets[0], task, black,
                         repeats, metrics, log)
    return {"model": subject.name, "repeats": repeats, "settings": {"steps": STEPS, "percentages": PERCENTAGES,
                                                                     "subsets": SUBSETS, "samples": SAMPLES},
            "rows": [asdict(r) for r in rows]}


def main(argv: list[str] | None = None) -> int:
    from medattn.data import load_dataset
    from medattn.data.demo import ensure_demo
    from medattn.device import best_device

    parser = argparse.ArgumentParser(prog="python -m medattn.bench.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", choices=list(faith.METRICS))
    parser.add_argument("--checkpoint", type=Path, help="default: the demo checkpoint the methods bench uses")
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.dataset or ensure_demo())
    result = run(dataset, args.checkpoint, best_device("cpu"), args.repeats, args.metrics,
                 log=lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
