"""Shared by the benchmarks: seconds per call after a warm-up, the clock to time with, and a table of ratios."""
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


def pick_clock(choice: str | None, cuda: bool):
    """(name, clock). "cpu" is this process's CPU time, which other jobs on a shared machine do not inflate: the
    default on a CPU with one thread; "wall" otherwise."""
    name = choice or ("cpu" if not cuda and torch.get_num_threads() == 1 else "wall")
    return name, time.process_time if name == "cpu" else time.perf_counter


def device_label(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"


def print_ratios(times: dict[str, float], base: str) -> None:
    width = max(len(k) for k in times) + 2
    print(f"{'method':{width}s} {'s/image':>9s} {'× ' + base:>{len(base) + 4}s}")
    for name, t in times.items():
        print(f"{name:{width}s} {t:9.4f} {t / times[base]:{len(base) + 4}.2f}")
