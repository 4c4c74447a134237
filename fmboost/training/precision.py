"""Whether bf16 autocast is worth using on a device.

On CPUs without native bf16 (AVX2 only) autocast emulates it: one autoencoder step took ~100 s instead of 2.2 s
in fp32. So a recipe's `bf16: true` is a request, honoured only where the hardware has it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

# /proc/cpuinfo flags of x86 CPUs with native bf16 arithmetic (AVX512-BF16 dot products, AMX tiles).
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_flags() -> set[str]:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return set()
    for line in info.read_text().splitlines():
        if line.startswith(("flags", "Features")):  # x86, ARM
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively: x86 with AVX512-BF16/AMX, Linux ARM with the BF16 extension.
    CPUs that do not say (macOS, other systems) count as without: fp32 is never the pathologically slow choice."""
    return bool((BF16_FLAGS | {"bf16"}) & cpu_flags())


def resolve_bf16(requested: bool, device: str | torch.device = "cpu") -> bool:
    """`requested`, unless the device lacks native bf16; then fp32, with a one-line notice on stderr."""
    if not requested:
        return False
    kind = torch.device(device).type
    if kind == "cpu" and not cpu_has_bf16():
        print(f"bf16 off: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16, and emulated "
              "bf16 autocast is many times slower than fp32; training in fp32", file=sys.stderr)
        return False
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        print("bf16 off: this GPU does not support bf16; training in fp32", file=sys.stderr)
        return False
    return True
