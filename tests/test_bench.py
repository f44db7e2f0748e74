"""The benchmark runner (smoke, one repeat, no timing assertions) and the faster model copy the
gradient explainers run on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from medattn.bench.methods import FlopCount, PeakMemory, counting, main
from medattn.explain import get_explainer
from medattn.explain.base import BFloat16, ChannelsLast, counterpart, evaluation_copy, evaluation_model, frozen
from medattn.models import build


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_evaluation_copy_folds_batchnorm_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model, x = build("resnet18", "wildcat", 3).eval(), torch.randn(2, 3, 64, 64)
    for m in model.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with frozen(model):
        fast = evaluation_copy(model, x)
    assert isinstance(fast, ChannelsLast) and batchnorms(fast) == 0 and batchnorms(model) == 20
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


class SharedConv(nn.Module):
    """The convolution's output feeds its BatchNorm and a skip: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.bn.running_mean.fill_(0.3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((self.bn(h) + h).mean(dim=(2, 3)))


class Flat(nn.Module):
    """.view()s its feature map, which fails in channels-last format."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 2, 3), nn.Linear(2 * 14 * 14, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(len(h), -1))


def test_evaluation_copy_keeps_shared_outputs_and_falls_back():
    shared, x = SharedConv().eval(), torch.randn(1, 3, 16, 16)
    fast = evaluation_copy(shared, x)
    assert batchnorms(fast) == 1
    with torch.no_grad():
        torch.testing.assert_close(fast(x), shared(x))
    flat = Flat().eval()
    assert evaluation_copy(flat, x) is flat


def test_evaluation_model_is_built_once_lent_to_one_caller_and_rebuilt_for_new_weights():
    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3).eval(), torch.randn(1, 3, 64, 64)
    with frozen(model):
        with evaluation_model(model, x) as first:
            with evaluation_model(model, x) as second:  # a second thread at the same time
                assert first is not second
        with evaluation_model(model, x) as again:
            assert again is first or again is second  # reused, not copied again
        with evaluation_model(model, torch.randn(1, 3, 96, 96)) as other_size:
            assert other_size not in (first, second)
        with torch.no_grad():
            model.classifier.bias.add_(1.0)  # new weights: a copy of the old ones would lie
        with evaluation_model(model, x) as fresh, torch.no_grad():
            assert fresh not in (first, second, other_size)
            torch.testing.assert_close(fresh(x), model(x), rtol=1e-4, atol=1e-4)
        flat = Flat().eval()
        with evaluation_model(flat, torch.randn(1, 3, 16, 16)) as same:
            assert same is flat


def test_gradcam_reads_a_folded_convolution_on_the_model_itself():
    """A layer whose output folding changes (a convolution followed by BatchNorm) is read on
    the model as it is; a block's output, unchanged by folding, on the faster copy."""
    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3).eval(), torch.randn(1, 3, 64, 64)
    with frozen(model), evaluation_model(model, x) as fast:
        conv, block = model.get_submodule("backbone.stages.2.layer4.1.conv2"), model.get_submodule("backbone.stages.2")
        assert counterpart(model, fast, conv) is None
        assert counterpart(model, fast, block) is fast.model.get_submodule("backbone.stages.2")
    from captum.attr import LayerGradCam

    layer = "backbone.stages.2.layer4.1.conv2"
    ours = get_explainer("gradcam")(model, device="cpu").attribute(x, 1, layer=layer)
    theirs = LayerGradCam(model, model.get_submodule(layer)).attribute(x, target=1, relu_attributions=True)
    theirs = torch.nn.functional.interpolate(theirs, size=(64, 64), mode="bilinear").squeeze(1)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_integrated_gradients_agree_with_captum(precision, monkeypatch):
    from captum.attr import IntegratedGradients

    from medattn.explain import base
    from medattn.explain.gradients import ig_baseline

    monkeypatch.setattr(base, "native_bfloat16", lambda: True)  # bfloat16 stages even on a CPU without them

    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3).eval(), torch.randn(1, 3, 64, 64)
    ours = get_explainer("integrated_gradients")(model, device="cpu", precision=precision)
    mine = ours.attribute(x, 1, steps=16)[0].numpy()
    theirs = IntegratedGradients(model).attribute(x, baselines=ig_baseline(model, x, "black"),
                                                  target=1, n_steps=16).sum(1)[0].detach().numpy()
    if precision == "float32":
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())
    assert spearmanr(mine.ravel(), theirs.ravel()).statistic > 0.99


def test_bfloat16_stages_return_float32():
    stage = BFloat16(nn.Conv2d(3, 4, 3))
    assert stage(torch.randn(1, 3, 8, 8)).dtype == torch.float32


def test_flop_count_sees_forward_and_backward_and_inference_mode():
    conv, x = nn.Conv2d(3, 8, 3), torch.randn(1, 3, 10, 10, requires_grad=True)
    forward = 2 * 8 * 8 * 8 * 3 * 9
    with FlopCount() as counted:
        torch.autograd.grad(conv(x).sum(), x)
    assert counted.total == 2 * forward  # input gradient only: weights are not asked for
    with counting() as counted, torch.inference_mode():
        conv(x)
    assert counted.total == forward
    assert isinstance(torch.inference_mode(), torch.inference_mode)  # restored


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_every_call_not_only_the_first():
    """Freed memory that the allocator keeps resident must not hide a later call's peak."""
    with PeakMemory(torch.device("cpu")):  # leaves the fast (heap-keeping) allocator settings
        pass
    churn = [torch.ones(2**20) for _ in range(64)]  # freed memory the heap keeps
    del churn
    peaks = []
    for _ in range(3):
        with PeakMemory(torch.device("cpu")) as peak:
            blocks = [torch.ones(2**20) for _ in range(64)]  # 64 × 4 MiB, touched
            del blocks
        peaks.append(peak.mb)
    assert all(200 < mb < 400 for mb in peaks), peaks


def test_bench_cli_smoke(tiny_demo, tmp_path, capsys):
    out = tmp_path / "bench.json"
    methods = ["saliency", "integrated_gradients", "gradcam", "pda", "wildcat"]
    assert main(["--archs", "resnet18", "--size", "32", "--dataset", str(tiny_demo), "--methods",
                 *methods, "--repeats", "1", "--batch", "2", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["method"]: r for r in result["results"]}
    assert set(rows) == {"saliency", "integrated_gradients", "gradcam", "pda"}  # no class maps
    assert result["machine"]["conv_gflop_per_second"] > 0
    for method, row in rows.items():
        assert row["seconds_per_image"] > 0 and row["images_per_second"] > 0, method
        assert row["gflop_per_image"] > 0 and row["peak_memory_mb"] >= 0, method
    assert rows["pda"]["captum_ratio"] is None and rows["pda"]["params"]["window"] == 16
    ig = rows["integrated_gradients"]
    assert ig["captum_ratio"] > 0 and ig["spearman_vs_captum"] > 0.99
    assert ig["steps"] == 50 and ig["completeness"] >= 0 and ig["captum_completeness"] >= 0  # same rule, 50 steps
    assert ig["completeness"] == pytest.approx(ig["captum_completeness"], rel=0.05, abs=1e-3)
    # 50 steps of forward + input-gradient passes, both ways, within the copy's checks
    assert ig["gflop_per_image"] == pytest.approx(ig["captum_gflop_per_image"], rel=0.1)
    assert "integrated_gradients" in capsys.readouterr().out


def test_evaluation_models_of_several_kinds_coexist():
    """Saliency (float32 copy) and integrated gradients (mixed-precision copy) alternating on
    one model each keep their copy: a precompute alternates methods image by image."""
    torch.manual_seed(0)
    model, x = build("resnet18", "linear", 3).eval(), torch.randn(1, 3, 64, 64)
    with frozen(model):
        with evaluation_model(model, x) as plain, evaluation_model(model, x, mixed=True) as mixed:
            pass
        with evaluation_model(model, x) as plain_again, evaluation_model(model, x, mixed=True) as mixed_again:
            assert {id(plain_again), id(mixed_again)} == {id(plain), id(mixed)}  # no copy made again


def test_bench_cli_a_checkpoint_glob_benches_each_once_and_no_pda_prints_no_nan(tiny_demo, tiny_checkpoint, tmp_path, capsys):
    """`--checkpoint checkpoints/NAME*` names NAME.json and NAME.safetensors: it was benched
    twice; and without PDA the summary line ended 'PDA fast settings nan s'."""
    out = tmp_path / "bench.json"
    files = [str(tiny_checkpoint.with_suffix(suffix)) for suffix in (".json", ".safetensors")]
    assert main(["--archs", "demo", "--checkpoint", *files, "--dataset", str(tiny_demo), "--methods", "saliency",
                 "--repeats", "1", "--batch", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["results"]) == 1
    printed = capsys.readouterr().out
    assert "all methods but PDA" in printed and "nan" not in printed


def test_bench_prints_the_cpu_and_times_the_opt_in_bfloat16_path_beside_float32(tiny_demo, tmp_path, capsys, monkeypatch):
    """The figures depend on the CPU's instruction sets: the bench names them, times the stored
    (float32) maps and, with --bfloat16, the faster path beside them where it applies."""
    from medattn.explain import base

    monkeypatch.setattr(base, "native_bfloat16", lambda: True)  # as on a CPU with AVX512-BF16
    out = tmp_path / "bench.json"
    assert main(["--archs", "resnet18", "--size", "32", "--dataset", str(tiny_demo), "--methods", "saliency",
                 "integrated_gradients", "--repeats", "1", "--batch", "1", "--device", "cpu", "--bfloat16",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert f"CPU: {result['machine']['cpu']}\n" in printed
    assert "native bfloat16: yes" in result["machine"]["cpu"] and result["machine"]["native_bfloat16"]
    rows = {r["method"]: r for r in result["results"]}
    assert {r["precision"] for r in rows.values()} == {"float32"}
    assert rows["saliency"]["bfloat16_seconds_per_image"] is None  # no bfloat16 stages
    ig = rows["integrated_gradients"]
    assert ig["bfloat16_seconds_per_image"] > 0 and ig["bfloat16_spearman_vs_float32"] > 0.9
    assert ig["bfloat16_captum_ratio"] > 0 and result["summary"]["versus_captum"]["resnet18 (random weights)"]["bfloat16_set_ratio"]
    assert " bf16 " in printed and "opt-in bfloat16 ×Captum integrated_gradients" in printed


def test_gpu_report_runs_in_its_reduced_form_on_the_cpu(tiny_demo, tiny_checkpoint, tmp_path):
    """`python -m medattn.bench --gpu-report` must run in one command on the first GPU machine at
    hand; its three sections (throughput against the peak, precompute, Compare through AppTest)
    run here in a reduced form on tiny models."""
    from medattn.bench import gpu

    out, lines = tmp_path / "gpu.json", []
    result = gpu.report(torch.device("cpu"), quick=True, dataset_root=tiny_demo, checkpoints=tiny_checkpoint.parent,
                        out=out, log=lines.append, names=[tiny_checkpoint.name], archs=["resnet18"], size=32, steps=4)
    assert json.loads(out.read_text())["machine"]["conv_math"] == "float32"
    assert {(r["model"], r["method"]) for r in result["throughput"]} == {
        (tiny_checkpoint.name, "integrated_gradients"), (tiny_checkpoint.name, "gradcam"),
        ("resnet18 (random weights)", "integrated_gradients"), ("resnet18 (random weights)", "gradcam")}
    assert all(r["images_per_second"] > 0 and r["gflop_per_image"] > 0 and r["fraction_of_peak"] > 0
               for r in result["throughput"])
    assert result["precompute"]["maps"] > 0 and result["precompute"]["checkpoints"] == [tiny_checkpoint.name]
    assert result["compare"]["errors"] == [] and " maps ready (" in result["compare"]["status"]
    assert "| model | method | images/s |" in lines[-2] and lines[0].startswith("# GPU report: cpu")
    assert gpu.dense_peak(torch.device("cpu"))[1].endswith("(no datasheet peak)")


@pytest.mark.parametrize("name, capability, tf32, expected", [
    ("NVIDIA H100 80GB HBM3", (9, 0), True, 494_500), ("NVIDIA H100 PCIe", (9, 0), True, 378_000),
    ("NVIDIA H100 NVL", (9, 0), True, 417_500), ("NVIDIA H200", (9, 0), True, 494_500),
    ("NVIDIA H100 80GB HBM3", (9, 0), False, 67_000), ("NVIDIA A100-SXM4-80GB", (8, 0), True, 156_000)])
def test_the_dense_peak_is_the_datasheet_figure_of_the_math_the_convolutions_run_in(monkeypatch, name, capability, tf32,
                                                                                      expected):
    from medattn.bench import gpu

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    peak, source = gpu.dense_peak(torch.device("cuda"))
    assert peak == pytest.approx(expected) and ("TF32" if tf32 else "FLOAT32") in source


def test_precompute_ab_times_both_sides_and_checks_they_give_the_same_rows(tiny_demo, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "ab.json"
    assert main(["--precompute-ab", "--dataset", str(tiny_demo), "--checkpoint", str(tiny_checkpoint), "--ab-images", "4",
                 "--ab-methods", "saliency", "gradcam", "wildcat", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 4 and result["maps"] >= 12 and result["ratio"] > 0
    assert set(result["maps_per_second"]) == {"shared", "one by one"} and "native bfloat16" in result["cpu"]
    assert set(result["method_seconds"]["shared"]) == {"saliency", "gradcam", "wildcat"}
    printed = capsys.readouterr().out
    assert "ratio:" in printed and "load average" in printed and "CPU:" in printed


def test_precompute_ab_fails_when_the_rows_differ():
    import pandas as pd

    from medattn.bench.precompute import CLOSE, KEYS, SAME, same_rows

    row = {**{k: "x" for k in KEYS + SAME}, **{c: 0.5 for c in CLOSE}}
    base = pd.DataFrame([row, {**row, "image_id": "y"}])
    assert same_rows(base, base.iloc[::-1])["auprc"]["rows_differing"] == 0  # order does not matter
    with pytest.raises(AssertionError):
        same_rows(base, base.assign(auprc=[0.5, 0.6]))
    with pytest.raises(AssertionError):
        same_rows(base, base.assign(hit=["x", "miss"]))
    with pytest.raises(AssertionError):
        same_rows(base, base.iloc[:1])
