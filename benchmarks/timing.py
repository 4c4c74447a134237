"""Shared by the benchmarks: wall-clock seconds after a warm-up, and a table of ratios to a baseline row."""
from __future__ import annotations

import time

import torch


def seconds(fn, repeats: int, warmup: int = 1, clock=time.perf_counter) -> float:
    for _ in range(warmup):  # first calls pay for allocation and kernel selection (and torch.compile's compiling)
        fn()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = clock()
    for _ in range(repeats):
        fn()
    sync()
    return (clock() - t0) / repeats


def device_label(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"


def print_ratios(times: dict[str, float], base: str) -> None:
    width = max(len(k) for k in times) + 2
    print(f"{'method':{width}s} {'s/image':>9s} {'× ' + base:>{len(base) + 4}s}")
    for name, t in times.items():
        print(f"{name:{width}s} {t:9.4f} {t / times[base]:{len(base) + 4}.2f}")
