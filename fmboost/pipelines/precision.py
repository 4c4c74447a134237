"""Which number format the upscale computes in, per device: fp16 and bf16 only where the device has kernels, and by
default (`auto`) bf16 exactly where the device computes it natively."""
from __future__ import annotations

import torch

from fmboost.errors import InputError
from fmboost.models.device import cpu_has_native_bf16

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def auto_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a CPU with AVX-512 BF16 or AMX and on a CUDA GPU that has bf16 kernels; fp32 everywhere else.
    On a CPU without those units bf16 is emulated and many times slower, so the choice follows the hardware, never a
    recipe. What bf16 costs and buys is measured by recipes/default/precision.py (docs/default_model.md)."""
    kind = torch.device(device).type
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """How raw results record a precision: `bfloat16`, `float32`."""
    return str(dtype).removeprefix("torch.")


def resolve_dtype(name: str, device: str) -> tuple[torch.dtype, str | None]:
    """(dtype, notice): `auto` is `auto_dtype`; fp16 on the CPU is refused (no half-precision kernels for these
    convolutions); bf16 on a CPU without native support falls back to fp32 with a one-line notice."""
    if name == "auto":
        return auto_dtype(device), None
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; choose one of auto, {', '.join(DTYPES)}")
    kind = torch.device(device).type
    if name == "fp16" and kind == "cpu":
        raise InputError("fp16 does not run on the CPU (no half-precision kernels); use fp32, or bf16 on a CPU "
                         "with AVX-512 BF16 or AMX")
    if name == "bf16" and kind == "cpu" and not cpu_has_native_bf16():
        capability = torch.backends.cpu.get_cpu_capability()
        return torch.float32, (f"bf16 is emulated on this CPU ({capability}, no AVX-512 BF16 or AMX) and would be "
                               f"much slower: computing in fp32")
    return DTYPES[name], None
