"""Which torch device a run uses: `auto` picks CUDA where there is one."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> str:
    """`auto`, `cpu`, `cuda` or `cuda:N` → a device name; ValueError when CUDA is asked for and absent."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name}: no CUDA device is available")
    return name
