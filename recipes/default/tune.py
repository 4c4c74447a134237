"""Chooses the embedded default's sampling settings on held-back *training* photos, never on BSD68/Set14.

    python recipes/default/tune.py --model runs/default/cfm/model [--data ../shared/data] [--taus 0,50,100]

The held-back photos are every `--holdout-every`-th photo of train/ and train_hr/: the autoencoder
(`fmboost train-autoencoder`) and the flow's shards (`fmboost prepare --holdout-every`) both left them out. Each
photo's centre crop (`--crop` px) is downscaled ×2 (bicubic) and upscaled back by bicubic, x0 (no flow) and the flow
at each NFE of `--steps` (Euler) for every sampling τ, each with every colour fix, and the wavelet and luma fixes also back-projected
onto the input (`--back-projections`, pipelines/consistency.py). Writes results/default_model/tuning.json
(per-photo PSNR, SSIM, sharpness, NIQE; means; meta). The flow runs once per τ and the colour fixes are applied to its
decoded output, so the fixes are compared on identical samples.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fmboost.data.images import resize, to_pil, to_tensor
from fmboost.data.photos import held_back_pairs
from fmboost.evaluation import metrics as M
from fmboost.evaluation.niqe import niqe
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.colorfix import color_fix
from fmboost.pipelines.consistency import back_project
from fmboost.pipelines.methods import COLOR_FIXES
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[2]
BACK_PROJECTED = ("wavelet", "luma")  # the fixes worth back-projecting: the others are behind them without it


def scores(out, hr) -> dict:
    # NIQE (no reference) says whether the added detail looks natural, which PSNR cannot (issue 28's detail bar).
    return {"psnr": M.psnr(out, hr, "rgb", 2), "ssim": M.ssim(out, hr, "rgb", 2), "sharpness": M.sharpness(out, hr, 2),
            "niqe": niqe(out, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--holdout-every", type=int, default=10)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", default="1,2,4", help="comma-separated NFE values (Euler steps) to compare")
    p.add_argument("--taus", default="0,50,100", help="sampling τ values to compare")
    p.add_argument("--back-projections", default="1",
                   help="back-projection iterations to compare (besides none), with the fixes in BACK_PROJECTED")
    p.add_argument("--out", default=str(ROOT / "results" / "default_model" / "tuning.json"))
    args = p.parse_args()
    pipe = FMBoostPipeline.from_pretrained(args.model)
    # the raw output: each fix and back-projection is applied below, so the model's own must not be there already
    pipe.config = pipe.config.replace(back_projection=0)
    steps = [int(n) for n in args.steps.split(",")]
    pairs = held_back_pairs([f"{args.data}/train", f"{args.data}/train_hr"], args.holdout_every, args.crop)
    taus = [float(t) for t in args.taus.split(",")]
    back_projections = [int(k) for k in args.back_projections.split(",") if int(k) > 0]
    rows = {}
    for _, hr, small in tqdm(pairs, desc="held-back photos"):
        c = hr.width
        lr = to_tensor(small)[None]
        outs = {"bicubic": resize(small, (c, c))}
        outs["x0"] = to_pil(pipe.upscale_tensor(lr, "x0", color_fix="none")[0][0])
        for nfe, tau in itertools.product(steps, taus):
            # The flow's noise is seeded per call (seed 0), so every τ sees the same draw.
            pipe.config = pipe.config.replace(tau=tau)
            y = pipe.upscale_tensor(lr, "cfm", nfe, color_fix="none")[0]
            for fix in COLOR_FIXES:
                fixed = color_fix(y, lr, fix)
                outs[f"cfm nfe={nfe} tau={tau:g} color_fix={fix}"] = to_pil(fixed[0])
                if fix in BACK_PROJECTED:
                    for k in back_projections:
                        name = f"cfm nfe={nfe} tau={tau:g} color_fix={fix} back_projection={k}"
                        outs[name] = to_pil(back_project(fixed, lr, k)[0])
        for name, out in outs.items():
            for k, v in scores(out, hr).items():
                rows.setdefault(name, {}).setdefault(k, []).append(v)
    summary = {name: {k: float(np.mean(v)) for k, v in m.items()} for name, m in rows.items()}
    write_json(Path(args.out), {"meta": run_meta(tuned_on="held-back training photos (every "
                                                 f"{args.holdout_every}th of train/ and train_hr/)"),
                                "settings": {"model": args.model, "crop": args.crop, "steps": steps,
                                             "taus": taus, "back_projections": back_projections,
                                             "photos": [Path(path).name for path, _, _ in pairs]},
                                "mean": summary, "per_image": rows})
    for name, m in sorted(summary.items(), key=lambda kv: -kv[1]["psnr"]):
        print(f"{name:40s} PSNR {m['psnr']:.2f}  SSIM {m['ssim']:.4f}  sharpness {m['sharpness']:.3f}  "
              f"NIQE {m['niqe']:.3f}")


if __name__ == "__main__":
    main()
