"""Which torch device a run uses: `auto` picks CUDA where there is one, else Apple's MPS, else the CPU."""
from __future__ import annotations

import torch

from fmboost.errors import InputError


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str) -> str:
    """`auto`, `cpu`, `cuda`, `cuda:N` or `mps` → a device name; ValueError when the device asked for is absent."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"{name}: no CUDA device is available")
    if name == "mps" and not mps_available():
        raise InputError(f"{name}: no Apple MPS device is available (macOS with Apple silicon only)")
    return name


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them PyTorch emulates bf16 on the CPU, where one autoencoder training step took
    ~100 s instead of 2.2 s in fp32 (AVX2 only). CPUs torch cannot tell about count as without."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)
