"""Shared by the benchmarks: seconds per call after a warm-up, the clock to time with, a table of ratios, and
the raw-results file each benchmark writes under results/bench/ (rendered into the docs by experiments/report.py)."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from fmboost.evaluation.provenance import run_meta, write_json

RESULTS = Path(__file__).resolve().parent.parent / "results" / "bench"
# Taken when a benchmark starts (it imports this first): the code and load it ran with, not those at its end.
STARTED = run_meta("cuda" if torch.cuda.is_available() else "cpu", tuned_on="nothing: timing of random weights")


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


def save_results(path, device: str, **payload) -> Path:
    """results/bench/NAME.json: `meta` (machine, date, command, git commit) and what the benchmark measured."""
    return write_json(path, {"meta": STARTED, **payload})


def save_ratios(name: str, times: dict[str, float], base: str, device: str, **settings) -> Path:
    """results/bench/NAME_DEVICE.json for the benchmarks that print a table of ratios."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    path = save_results(RESULTS / f"{name}_{kind}.json", device, settings=settings, baseline=base,
                        seconds={k: {"seconds": t, "ratio": t / times[base]} for k, t in times.items()})
    print(f"raw results: {path}")
    return path
