"""Which torch device a run uses: `auto` picks CUDA where there is one, else Apple's MPS, else the CPU."""
from __future__ import annotations

import os
import time

import torch


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str) -> str:
    """`auto`, `cpu`, `cuda`, `cuda:N` or `mps` → a device name; ValueError when the device asked for is absent."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name}: no CUDA device is available")
    if name == "mps" and not mps_available():
        raise ValueError(f"{name}: no Apple MPS device is available (macOS with Apple silicon only)")
    return name


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them PyTorch emulates bf16 on the CPU, where one autoencoder training step took
    ~100 s instead of 2.2 s in fp32 (AVX2 only). CPUs torch cannot tell about count as without."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def idle_cpus(interval: float = 0.05) -> float | None:
    """How many of this process's cores the other processes left idle over `interval` seconds (/proc/stat); None
    where that cannot be read (not Linux)."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, all
    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    machine = os.cpu_count() or 1
    return machine * (idle1 - idle0) / max(1, total1 - total0)


def cpu_threads() -> int:
    """Torch's threads for a CPU run: the cores that other processes leave idle, at least one; OMP_NUM_THREADS (or
    torch.set_num_threads before this) wins. torch's threads meet at a barrier in every operator, so one that shares
    its core with another busy process holds the others up: with a second CPU-bound process on a 2-core machine,
    2 threads ran the default 5.5× slower than 1 (7.9 against 1.43 s an image)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    idle = idle_cpus()
    return cores if idle is None else max(1, min(cores, int(idle + 0.5)))
