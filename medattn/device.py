"""Device choice shared by training, explanations and the app: the best one present; what a
CPU offers (the benchmarks print it with their figures, which depend on it)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

# /proc/cpuinfo flags that change which kernels run, named as lscpu prints them
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16",
                "amx_tile": "AMX-TILE"}


def best_device(requested: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU; anything else is taken as given."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    """A human label, e.g. 'cuda (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def cpu_line() -> str:
    """The CPU the figures come from: model name, CPUs this process may use, the instruction
    sets that pick PyTorch's kernels (`CPU_FEATURES`), and whether bfloat16 is native here
    (`medattn.explain.base.native_bfloat16`), e.g. 'Intel(R) Xeon(R) Platinum 8481C · 2 CPUs ·
    AVX2 AVX-512 AVX512-BF16 AMX-BF16 AMX-TILE · native bfloat16: yes'."""
    from medattn.explain.base import native_bfloat16
    from medattn.threads import cpu_count

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    features = " ".join(label for flag, label in CPU_FEATURES.items() if flag in flags) or "flags unknown"
    return f"{name} · {cpu_count()} CPUs · {features} · native bfloat16: {'yes' if native_bfloat16() else 'no'}"
