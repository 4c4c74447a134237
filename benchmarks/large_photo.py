"""A whole photo as a user upscales it: `fmboost upscale PHOTO --tile` of a 1200×900 photo, beside SRMD.

    python benchmarks/large_photo.py [--image examples/astronaut.png] [--size 1200x900] [--repeats 2]
                                     [--peers-python PY]

Each run is the whole command in a fresh process (start-up, model loading, reading, tiles, writing): the wall
time a user waits. fmboost runs with its default settings (its own thread choice, the embedded default's steps);
SRMD (../shared/tools/peers, when installed) with 2 threads on the same photo. Timing does not depend on content,
so the photo is `--image` resized to `--size`. Writes results/bench/large_photo_cpu.json: the median seconds and
fmboost / SRMD.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from peer_tools import DEFAULT_PY, PEER_SCRIPT, installed  # noqa: E402


def fmboost_seconds(photo: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fmboost.cli.main", "upscale", str(photo), "-o", str(out), "--tile",
                    "--overwrite"], cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - t


def srmd_seconds(py: Path, folder: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([str(py), str(PEER_SCRIPT), "srmd", str(folder), str(out), "--threads", "2"],
                   capture_output=True, text=True, check=True)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(ROOT / "examples" / "astronaut.png"))
    p.add_argument("--size", default="1200x900", help="WIDTHxHEIGHT of the photo")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--peers-python", default=str(DEFAULT_PY))
    p.add_argument("--out", default=str(ROOT / "results" / "bench" / "large_photo_cpu.json"))
    args = p.parse_args()
    from PIL import Image

    from fmboost.evaluation.provenance import run_meta, write_json

    meta = run_meta(tuned_on="nothing (a timing)")
    width, height = (int(v) for v in args.size.lower().split("x"))
    py = Path(args.peers_python)
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        photo = folder / "photo.png"
        Image.open(args.image).convert("RGB").resize((width, height), Image.LANCZOS).save(photo)
        methods = {"fmboost (upscale --tile)": lambda: fmboost_seconds(photo, Path(tmp) / "fmboost.png")}
        if installed(py):
            methods["srmd (2 threads)"] = lambda: srmd_seconds(py, folder, Path(tmp) / "srmd")
        for _ in range(args.repeats):  # interleaved, so a drift in the machine hits both alike
            for name, run in methods.items():
                runs.setdefault(name, []).append(run())
                print(f"{name:26s} {runs[name][-1]:.1f} s", flush=True)
    results = {name: {"seconds": statistics.median(r), "runs": r} for name, r in runs.items()}
    if "srmd (2 threads)" in results:
        results["fmboost (upscale --tile)"]["vs_srmd"] = (results["fmboost (upscale --tile)"]["seconds"]
                                                         / results["srmd (2 threads)"]["seconds"])
    write_json(args.out, {"meta": meta, "settings": {"size": [width, height], "repeats": args.repeats,
                                                     "model": "default", "srmd": "srmd (2 threads)" in results},
                          "results": results})
    print(json.dumps({k: round(v["seconds"], 2) for k, v in results.items()}))


if __name__ == "__main__":
    main()
