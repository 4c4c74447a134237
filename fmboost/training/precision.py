"""Whether bf16 autocast is worth using for training on a device.

On CPUs without native bf16 (AVX2 only) autocast emulates it: one autoencoder step took ~100 s instead of 2.2 s
in fp32. So a recipe's `bf16: true` is a request, honoured only where the hardware has it.
"""
from __future__ import annotations

import sys

import torch

from fmboost.models import device as devices


def resolve_bf16(requested: bool, device: str | torch.device = "cpu") -> bool:
    """`requested`, unless the device lacks native bf16; then fp32, with a one-line notice on stderr."""
    if not requested:
        return False
    kind = torch.device(device).type
    if kind == "cpu" and not devices.cpu_has_native_bf16():
        print(f"bf16 off: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16, and emulated "
              "bf16 autocast is many times slower than fp32; training in fp32", file=sys.stderr)
        return False
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        print("bf16 off: this GPU does not support bf16; training in fp32", file=sys.stderr)
        return False
    return True
