"""Which number format the upscale computes in, per device: fp16 and bf16 only where the device has kernels."""
from __future__ import annotations

import torch

from fmboost.errors import InputError
from fmboost.models.device import cpu_has_native_bf16

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(name: str, device: str) -> tuple[torch.dtype, str | None]:
    """(dtype, notice): fp16 on the CPU is refused (no half-precision kernels for these convolutions); bf16 on a
    CPU without native support falls back to fp32 with a one-line notice."""
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    kind = torch.device(device).type
    if name == "fp16" and kind == "cpu":
        raise InputError("fp16 does not run on the CPU (no half-precision kernels); use fp32, or bf16 on a CPU "
                         "with AVX-512 BF16 or AMX")
    if name == "bf16" and kind == "cpu" and not cpu_has_native_bf16():
        capability = torch.backends.cpu.get_cpu_capability()
        return torch.float32, (f"bf16 is emulated on this CPU ({capability}, no AVX-512 BF16 or AMX) and would be "
                               f"much slower: computing in fp32")
    return DTYPES[name], None
