"""fmboost beside the upscalers people already install, in one run: quality on BSD68 and Set14, and time.

    PY=$(bash ../shared/tools/peers/setup.sh | tail -1)          # the peers' own venv (not a project dependency)
    python benchmarks/peers.py --data ../shared/data --peers-python "$PY" [--model default] [--steps 1] [--taus 200]
                               [--threads 2]

Every photo of each set is cropped to even size and downscaled ×2 with PIL's bicubic (fmboost eval's protocol);
fmboost (the model's flow at each `--steps` NFE, also at each sampling `--taus`, and bicubic) runs here in the
CLI's default precision (`fmboost upscale --dtype auto`, recorded), and each
peer (../shared/tools/peers/upscale.py: srmd, esrgan, cugan) upscales the same low-res files in its own process;
all outputs are scored by `fmboost eval`'s function: PSNR and SSIM (RGB, 2 px shaved), sharpness, NIQE, and the
colour shift (the largest of the three channels' mean difference from the photo, in 8-bit levels). Seconds per
image are wall clock at `--threads` threads, each method after a warm-up. Peers that are not installed are skipped
and the file says so.
Writes results/peers/SET.json; `python experiments/report.py` renders docs from it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fmboost.data.images import load_image
from fmboost.evaluation.evaluate import load_metric_nets, load_pairs, score
from fmboost.evaluation.metrics import channel_shift
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.precision import auto_dtype, dtype_name
from peer_tools import DEFAULT_PY, PEER_SCRIPT, installed  # noqa: F401  (DEFAULT_PY: re-exported)

ROOT = Path(__file__).resolve().parents[1]
SETS = {"bsd68": "val/bsd68", "set14": "val/set14"}


def colour_shift(out, hr, border: int = 2) -> float:
    """The largest of the three channels' mean difference from the photo, in levels."""
    return float(np.abs(channel_shift(out, hr, border)).max())


def run_peer(py: Path, peer: str, pairs: list, threads: int, work: Path):
    """The peer's outputs (in pair order) and its seconds per image, from its own process."""
    lr_dir, out_dir = work / "lr", work / peer
    lr_dir.mkdir(exist_ok=True)
    for p in pairs:
        if not (lr_dir / f"{p['name']}.png").exists():
            p["lr"].save(lr_dir / f"{p['name']}.png")
    times = work / f"{peer}_times.json"
    subprocess.run([str(py), str(PEER_SCRIPT), peer, str(lr_dir), str(out_dir), "--suffix", "", "--threads",
                    str(threads), "--json", str(times)], check=True, capture_output=True, text=True)
    seconds = json.loads(times.read_text())["seconds"]
    outs = [load_image(out_dir / f"{p['name']}.png") for p in pairs]
    # The first image pays for ncnn's set-up (fmboost's methods get a warm-up call instead): left out of the mean.
    per = [seconds[f"{p['name']}.png"] for p in pairs]
    return outs, float(np.mean(per[1:] if len(per) > 1 else per))


def fmboost_methods(model: str, steps: list[int], taus: list[float] = ()) -> dict:
    """name → function image → image, for bicubic and the model's flow at each NFE: at the model's own sampling τ,
    then at each of `taus` (`fmboost upscale --tau`; seed 0)."""
    from fmboost.data.images import resize_by
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe, dtype = FMBoostPipeline.from_pretrained(model), auto_dtype("cpu")  # `fmboost upscale`'s precision
    methods = {"bicubic": lambda im: resize_by(im, 2, "bicubic")}
    for n in steps:
        methods[f"fmboost (NFE {n})"] = lambda im, n=n: pipe.upscale(im, steps=n, dtype=dtype)[0]
    for tau in taus:
        for n in steps:
            methods[f"fmboost (NFE {n}, τ {tau:g})"] = lambda im, n=n, tau=tau: pipe.upscale(im, steps=n, tau=tau,
                                                                                         dtype=dtype)[0]
    return methods


def model_steps(model: str) -> int:
    """The NFE the model runs when the user gives none (its fmboost.json): which row is what a user gets."""
    from fmboost.data.model_config import ModelConfig
    from fmboost.data.sources import resolve_model

    return ModelConfig.read(resolve_model(model)).steps


def timed(upscale, pairs: list) -> tuple[list, float]:
    """(the outputs of each pair's low-res image, mean wall seconds per image) after one warm-up call."""
    upscale(pairs[0]["lr"])
    outs, seconds = [], []
    for q in pairs:
        t0 = time.perf_counter()
        outs.append(upscale(q["lr"]))
        seconds.append(time.perf_counter() - t0)
    return outs, float(np.mean(seconds))


def row(name: str, outs, hr, seconds: float, active, nets, scale: int = 2) -> dict:
    scores, per_image = score(outs, hr, scale, active, nets, {}, 0, 0, 0)
    per_image["colour_shift"] = [colour_shift(o, h, scale) for o, h in zip(outs, hr)]
    print(f"  {name}: PSNR {scores['psnr']:.2f} SSIM {scores['ssim']:.4f} NIQE {scores.get('niqe') or 0:.3f} "
          f"{seconds:.3f} s/image", flush=True)
    return {"method": name, **{k: v for k, v in scores.items() if v is not None},
            "colour_shift": float(np.mean(per_image["colour_shift"])), "seconds": seconds, "per_image": per_image}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--sets", default="bsd68,set14")
    p.add_argument("--model", default="default")
    p.add_argument("--steps", default="1", help="comma-separated NFE values of the flow")
    p.add_argument("--taus", default="", help="comma-separated sampling τ values (`fmboost upscale --tau`) to run "
                                              "at each NFE besides the model's own")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peers", default="srmd", help="comma-separated: srmd, esrgan, cugan")
    p.add_argument("--peers-python", default=str(DEFAULT_PY))
    p.add_argument("--max-images", type=int)
    p.add_argument("--out", default=str(ROOT / "results" / "peers"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(tuned_on="fmboost's settings on held-back training photos; the peers as published")
    py, metrics = Path(args.peers_python), ("psnr", "ssim", "sharpness", "niqe")
    methods = fmboost_methods(args.model, [int(s) for s in args.steps.split(",")],
                              [float(t) for t in filter(None, args.taus.split(","))])
    for name in args.sets.split(","):
        pairs = load_pairs(Path(args.data) / SETS[name], 2, max_images=args.max_images)
        hr = [q["hr"] for q in pairs]
        nets, _, active = load_metric_nets(metrics, None, "cpu", len(pairs))
        rows, skipped = [], {}
        print(name, flush=True)
        for method, upscale in methods.items():
            outs, seconds = timed(upscale, pairs)
            rows.append(row(method, outs, hr, seconds, active, nets))
        with tempfile.TemporaryDirectory() as tmp:
            for peer in filter(None, args.peers.split(",")):
                if not installed(py):
                    skipped[peer] = f"not installed ({py} or {PEER_SCRIPT} missing)"
                    print(f"  {peer}: skipped, {skipped[peer]}", flush=True)
                    continue
                outs, seconds = run_peer(py, peer, pairs, args.threads, Path(tmp))
                rows.append(row(peer, outs, hr, seconds, active, nets))
        write_json(Path(args.out) / f"{name}.json",
                   {"meta": meta, "set": name, "images": [q["name"] for q in pairs], "threads": args.threads,
                    "model": args.model, "model_steps": model_steps(args.model),
                    "dtype": dtype_name(auto_dtype("cpu")),
                    "peers_skipped": skipped, "results": rows})


if __name__ == "__main__":
    sys.exit(main())
