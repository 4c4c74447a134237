"""How long quick commands take from start to exit, against `python -c pass` measured in the same run.

    python benchmarks/startup.py [--runs 5] [--out results/bench/startup_cpu.json]

Each command runs as a whole process, `--runs` times after one warm-up, alternating with the baseline so a
shared machine's drift hits both alike. Wall seconds (what a user waits) and CPU seconds (user + sys of the
process, which other jobs on a loaded machine do not inflate) are kept per run; the medians and their ratios to
the baseline's are printed, and everything is written as raw JSON with the machine, date, commands and commit.
The hub cases time a hub id that cannot be fetched (HF_HUB_OFFLINE=1, and with no route to the hub).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from raw import ROOT, meta, write_raw  # noqa: E402
FMBOOST = [sys.executable, "-m", "fmboost.cli.main"]


def timed(argv: list[str], env: dict | None = None) -> dict:
    """One run: wall and CPU seconds (the child's user + sys, from the OS's accounting) and the exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(wall_s=round(wall, 4), cpu_s=round(cpu, 4), exit_code=done.returncode,
                stderr_tail=done.stderr.strip().splitlines()[-1:] if done.returncode else [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "results" / "bench" / "startup_cpu.json"))
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fmboost-startup-"))
    from PIL import Image

    Image.new("RGB", (512, 512), (90, 140, 200)).save(tmp / "x.png")
    offline = dict(os.environ, HF_HUB_OFFLINE="1")
    online = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    bogus = "fmboost-bench/no-such-model"
    cases = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "python -c 'import torch'": ([sys.executable, "-c", "import torch"], None),
        "fmboost upscale x.png --method bicubic": (
            FMBOOST + ["upscale", str(tmp / "x.png"), "-o", str(tmp / "y.png"), "--method", "bicubic",
                       "--overwrite"], None),
        "fmboost info": (FMBOOST + ["info"], None),
        "fmboost --help": (FMBOOST + ["--help"], None),
        "fmboost upscale x.png --model BOGUS_HUB_ID (HF_HUB_OFFLINE=1)": (
            FMBOOST + ["upscale", str(tmp / "x.png"), "--model", bogus], offline),
        "fmboost upscale x.png --model BOGUS_HUB_ID (no route to the hub)": (
            FMBOOST + ["upscale", str(tmp / "x.png"), "--model", bogus], online),
    }
    runs = {name: [] for name in cases}
    for name, (argv, env) in cases.items():  # warm-up: file caches, .pyc files
        timed(argv, env)
    for i in range(args.runs):
        for name, (argv, env) in cases.items():
            runs[name].append(timed(argv, env))
            print(f"run {i + 1}/{args.runs} {name}: {runs[name][-1]['wall_s']:.2f} s wall, "
                  f"{runs[name][-1]['cpu_s']:.2f} s cpu", flush=True)  # as it goes: a loaded machine is slow

    base = {k: statistics.median(r[k] for r in runs["python -c pass"]) for k in ("wall_s", "cpu_s")}
    summary = {}
    print(f"{'command':68s} {'wall s':>8s} {'× pass':>7s} {'cpu s':>7s} {'× pass':>7s}")
    for name, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")}
        summary[name] = dict(median_wall_s=med["wall_s"], median_cpu_s=med["cpu_s"],
                             wall_ratio_to_pass=round(med["wall_s"] / base["wall_s"], 2),
                             cpu_ratio_to_pass=round(med["cpu_s"] / base["cpu_s"], 2),
                             exit_codes=sorted({r["exit_code"] for r in rs}))
        print(f"{name:68s} {med['wall_s']:8.2f} {summary[name]['wall_ratio_to_pass']:7.1f} "
              f"{med['cpu_s']:7.2f} {summary[name]['cpu_ratio_to_pass']:7.1f}")
    write_raw(args.out, dict(meta=meta(runs=args.runs, warmup=1), summary=summary, runs=runs))


if __name__ == "__main__":
    main()
