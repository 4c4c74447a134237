"""Which torch device a run uses: `auto` picks CUDA where there is one, else Apple's MPS, else the CPU."""
from __future__ import annotations

import os
import time

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
    """Torch's threads for a CPU run; OMP_NUM_THREADS (or torch.set_num_threads before this) wins.

    torch's threads meet at a barrier in every operator, so a thread that shares its core with another busy process
    holds the others up: with a second CPU-bound process on a 2-core machine, 2 threads ran the default 5.5× slower
    than 1 (7.9 against 1.43 s an image). So, with `busy` of the `cores` taken by other processes:
    - none busy, or /proc/stat unreadable: a thread per core;
    - every core busy: one thread (beside two busy programs on 2 cores, 1 thread beat 2, 3 and 4);
    - otherwise a thread per idle core, or, where the busy cores are at least as many as the idle ones, two per idle
      core and one per busy core: every thread then gets about half a core, so the barrier waits for no single slow
      one, and the busy cores' share adds at least half again to what the idle ones give (2 cores, one busy:
      3 threads). Measured on 2 cores only (docs/default_model.md). Where the idle cores outnumber the busy ones,
      the busy cores' share would add little and doubling the threads costs, so they keep a thread per idle core."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    idle = idle_cpus()
    if idle is None:
        return cores
    free = max(0, min(cores, int(idle + 0.5)))
    busy = cores - free
    if busy == 0:
        return cores
    if free == 0:
        return 1
    return 2 * free + busy if busy >= free else free


# glibc's M_MMAP_THRESHOLD (malloc.h): allocations above it get fresh pages from the kernel, returned on free.
M_MMAP_THRESHOLD = -3
REUSE_BELOW = 1 << 30


def reuse_freed_memory() -> bool:
    """Lets glibc's malloc keep freed blocks up to 1 GiB for reuse instead of unmapping them. An upscale allocates
    and frees activation tensors of tens to hundreds of MB in every layer; by default each comes as fresh pages
    from the kernel, zeroed on first touch, which made a 512² ×2 on the CPU 1.7× slower (23.7 against 13.7 s at
    1 thread). Peak memory is unchanged; freed memory goes back to the system less eagerly. Does nothing (False)
    off glibc, or when MALLOC_MMAP_THRESHOLD_ is set (the user's own choice wins)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None:
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, REUSE_BELOW))
    except (OSError, AttributeError):
        return False
