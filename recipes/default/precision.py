"""What the CLI's default precision (`fmboost upscale --dtype auto`) costs and buys: the default model on the
held-back *training* photos in fp32 and in bf16, on the same inputs.

    python recipes/default/precision.py [--data ../shared/data] [--model default] [--threads 2]

The held-back photos and their crops are tune.py's (every `--holdout-every`-th photo of train/ and train_hr/, centre
`--crop` px, ×2 from PIL's bicubic). Each is upscaled at the model's own settings in fp32 and, where this CPU computes
bf16 natively (AVX-512 BF16 or AMX: fmboost/pipelines/precision.py), in bf16 autocast; both are scored (PSNR, SSIM)
and compared with each other (the largest and the mean difference in 8-bit levels). Seconds per image are wall clock
at `--threads` threads after a warm-up, the two precisions alternating photo by photo so that a drift in the
machine hits both alike. Writes results/default_model/precision.json; `python experiments/report.py` renders it.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fmboost.data.photos import held_back_pairs
from fmboost.evaluation import metrics as M
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.models.device import cpu_has_native_bf16
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--holdout-every", type=int, default=10)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results" / "default_model" / "precision.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(tuned_on="nothing: the shipped model and settings, scored on held-back training photos")
    pipe = FMBoostPipeline.from_pretrained(args.model)
    pairs = held_back_pairs([f"{args.data}/train", f"{args.data}/train_hr"], args.holdout_every, args.crop)
    dtypes = {"fp32": torch.float32}
    if cpu_has_native_bf16():  # emulated bf16 is many times slower than fp32: not worth an hour to learn that again
        dtypes["bf16"] = torch.bfloat16
    for dtype in dtypes.values():
        pipe.upscale(pairs[0][2], dtype=dtype)  # warm-up: lazy initialisation is no part of either's cost
    per_image = {name: {"psnr": [], "ssim": [], "seconds": []} for name in dtypes}
    diff = {"max_levels": [], "mean_levels": []}
    for _, hr, lr in tqdm(pairs, desc="held-back photos"):
        outs = {}
        for name, dtype in dtypes.items():
            t0 = time.perf_counter()
            outs[name] = pipe.upscale(lr, dtype=dtype)[0]
            per_image[name]["seconds"].append(time.perf_counter() - t0)
            per_image[name]["psnr"].append(M.psnr(outs[name], hr, "rgb", 2))
            per_image[name]["ssim"].append(M.ssim(outs[name], hr, "rgb", 2))
        if "bf16" in outs:
            d = np.abs(np.asarray(outs["fp32"], np.float64) - np.asarray(outs["bf16"], np.float64))
            diff["max_levels"].append(float(d.max()))
            diff["mean_levels"].append(float(d.mean()))
    mean = {name: {"psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"])),
                   "seconds": statistics.median(v["seconds"])} for name, v in per_image.items()}
    write_json(Path(args.out), {
        "meta": meta,
        "settings": {"model": args.model, "crop": args.crop, "threads": args.threads, "holdout_every": args.holdout_every,
                     "steps": pipe.config.steps, "photos": [Path(path).name for path, _, _ in pairs],
                     "bf16_native": cpu_has_native_bf16()},
        "mean": mean, "per_image": per_image,
        "fp32_vs_bf16": {"max_levels": max(diff["max_levels"]), "mean_levels": float(np.mean(diff["mean_levels"]))}
        if diff["max_levels"] else None})
    for name, m in mean.items():
        print(f"{name}: PSNR {m['psnr']:.3f}  SSIM {m['ssim']:.4f}  {m['seconds']:.3f} s/image (median)")


if __name__ == "__main__":
    main()
