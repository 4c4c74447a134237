"""How much fmboost and SRMD slow down when another CPU-bound process shares the machine.

    python benchmarks/contention.py [--image examples/astronaut.png] [--sizes 256,512] [--repeats 3] [--peers-python PY]
        [--busy-session same|own] [--threads 1,3] [--out results/bench/contention_cpu.json]

Each method upscales the same crops (`--sizes`, top-left of the image) ×2, in a fresh process each time (what a user's command pays, model
loading excluded: each process times its second call), first on a quiet CPU and then beside one busy-looping
process. fmboost runs with its own thread choice (`auto`: fmboost/models/device.py, cpu_threads) and with
OMP_NUM_THREADS=2 forced, in the CLI's default precision (`--dtype auto`; where that is bf16, a row in fp32 as
well); SRMD (../shared/tools/peers, when installed) with 2 threads. Writes
results/bench/contention_cpu.json: the median seconds of each, and the ratio busy / quiet (the slowdown).
`--busy-session own` starts the busy process in a session of its own, as another program would run: Linux's
autogroup scheduler then shares a core between the two sessions, not between their threads. `--threads` adds rows
of fmboost at those forced thread counts.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from peer_tools import DEFAULT_PY, PEER_SCRIPT, installed

ROOT = Path(__file__).resolve().parents[1]

FMBOOST = """
import sys, time
from fmboost.cli.common import pick_device
from fmboost.data.images import load_image
from fmboost.pipelines.precision import resolve_dtype
from fmboost.pipelines.upscale import FMBoostPipeline
import torch
pick_device("cpu")  # the CLI's thread choice
dtype = resolve_dtype(sys.argv[4], "cpu")[0]  # `auto`: the CLI's precision
if sys.argv[3] != "auto":  # a forced count (OpenMP caps OMP_NUM_THREADS at the cores; this does not)
    torch.set_num_threads(int(sys.argv[3]))
pipe = FMBoostPipeline.from_pretrained("default")
im = load_image(sys.argv[1])
steps = int(sys.argv[2]) or None  # 0: the model's own
pipe.upscale(im, steps=steps, dtype=dtype)
t = time.perf_counter(); pipe.upscale(im, steps=steps, dtype=dtype)
print(time.perf_counter() - t, torch.get_num_threads())
"""


def busy():
    while True:
        pass


def start_busy(session: str):
    """One process spinning on a core: a child of this one (`same` session), or a program of its own (`own`)."""
    if session == "own":
        return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    hog = multiprocessing.Process(target=busy, daemon=True)
    hog.start()
    return hog


def fmboost_seconds(image: Path, steps: int, threads: str | None, forced: int | None = None,
                    dtype: str = "auto") -> tuple[float, int]:
    """`threads`: OMP_NUM_THREADS, as a user sets it; `forced`: torch.set_num_threads after the CLI's choice;
    `dtype`: `fmboost upscale --dtype` (auto: the CLI's default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    out = subprocess.run([sys.executable, "-c", FMBOOST, str(image), str(steps), str(forced or "auto"), dtype], env=env,
                         cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def srmd_seconds(py: Path, image: Path, work: Path) -> float:
    """SRMD on the crop twice in one process (the first pays ncnn's set-up); the second's time."""
    src = work / "in"
    src.mkdir(exist_ok=True)
    for i in range(2):
        (src / f"{i}.png").write_bytes(image.read_bytes())
    times = work / "times.json"
    subprocess.run([str(py), str(PEER_SCRIPT), "srmd", str(src), str(work / "out"), "--threads", "2", "--json",
                    str(times)], capture_output=True, text=True, check=True)
    return json.loads(times.read_text())["seconds"]["1.png"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(ROOT / "examples" / "astronaut.png"))
    p.add_argument("--sizes", default="256,512", help="comma-separated crop sides, in input pixels")
    p.add_argument("--steps", type=int, default=0, help="NFE (default: the model's own, its fmboost.json)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peers-python", default=str(DEFAULT_PY))
    p.add_argument("--busy-session", choices=("same", "own"), default="same")
    p.add_argument("--threads", default="", help="comma-separated forced thread counts for extra fmboost rows")
    p.add_argument("--out", default=str(ROOT / "results" / "bench" / "contention_cpu.json"))
    args = p.parse_args()
    import torch
    from PIL import Image

    from fmboost.data.model_config import ModelConfig
    from fmboost.data.sources import DEFAULT_MODEL
    from fmboost.evaluation.provenance import run_meta, write_json
    from fmboost.pipelines.precision import auto_dtype, dtype_name

    meta = run_meta(tuned_on="nothing (a timing)")
    steps = args.steps or ModelConfig.read(DEFAULT_MODEL).steps
    py = Path(args.peers_python)
    sizes = [int(v) for v in args.sizes.split(",")]
    im = Image.open(args.image).convert("RGB")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        methods = {}
        for size in sizes:
            crop = Path(tmp) / f"crop{size}.png"
            # Timing does not depend on content: a crop larger than the image comes from it enlarged.
            big = im if min(im.size) >= size else im.resize((max(size, im.width * size // min(im.size)),) * 2,
                                                            Image.LANCZOS)
            big.crop((0, 0, size, size)).save(crop)
            methods[("fmboost (auto threads)", size)] = lambda c=crop: fmboost_seconds(c, args.steps, None)
            methods[("fmboost (2 threads)", size)] = lambda c=crop: fmboost_seconds(c, args.steps, "2")
            if auto_dtype("cpu") != torch.float32:  # what the default's bf16 buys, beside the same in fp32
                methods[("fmboost (fp32, auto threads)", size)] = \
                    lambda c=crop: fmboost_seconds(c, args.steps, None, dtype="fp32")
            for n in [int(t) for t in args.threads.split(",") if t]:
                methods[(f"fmboost ({n} threads, forced)", size)] = \
                    lambda c=crop, n=n: fmboost_seconds(c, args.steps, None, n)
            if installed(py):
                work = Path(tmp) / f"srmd{size}"
                work.mkdir()
                methods[("srmd (2 threads)", size)] = lambda c=crop, w=work: (srmd_seconds(py, c, w), 2)
        for load in ("quiet", "busy"):
            hog = start_busy(args.busy_session) if load == "busy" else None
            try:
                for _ in range(args.repeats):  # interleaved, so a drift in the machine hits every method alike
                    for key, run in methods.items():
                        seconds, threads = run()
                        rows.setdefault(key, {}).setdefault(load, []).append(seconds)
                        rows[key][f"threads_{load}"] = threads
            finally:
                if hog:
                    hog.terminate()
    results = {}
    for (name, size), r in rows.items():
        quiet, loaded = statistics.median(r["quiet"]), statistics.median(r["busy"])
        results.setdefault(name, {})[str(size)] = {
            "quiet_s": quiet, "busy_s": loaded, "slowdown": loaded / quiet, "threads_quiet": r["threads_quiet"],
            "threads_busy": r["threads_busy"], "runs": {k: r[k] for k in ("quiet", "busy")}}
        print(f"{name:24s} {size}²  quiet {quiet:.2f} s ({r['threads_quiet']} threads)  busy {loaded:.2f} s "
              f"({r['threads_busy']} threads)  slowdown ×{loaded / quiet:.2f}", flush=True)
    write_json(args.out, {"meta": meta, "settings": {"sizes": sizes, "steps": steps, "repeats": args.repeats,
                                                     "model": "default", "srmd": "srmd (2 threads)" in results,
                                                     "busy_session": args.busy_session,
                                                     "auto_dtype": dtype_name(auto_dtype("cpu"))},
                          "results": results})


if __name__ == "__main__":
    main()
