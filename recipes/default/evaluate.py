"""Measures a model on BSD68 and Set14 downscaled ×2 (bicubic): the raw results behind the default-model tables.

    python recipes/default/evaluate.py [--data ../shared/data] [--model fmboost/weights/default] [--max-images N]
    python experiments/report.py          # then: README.md and docs/default_model.md from results/default_model/

Writes results/default_model/{bsd68,set14}.json (`fmboost eval`'s raw results: means, per-image values, meta)
with one more entry, `reconstruction`: the autoencoder's own D(E(x)) of the high-res photos, the ceiling of
every latent method. PSNR/SSIM on RGB with `scale` border pixels shaved; sharpness and NIQE as in `fmboost eval`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fmboost import DEFAULT_MODEL
from fmboost.data.images import list_images, load_image, to_pil, to_tensor
from fmboost.evaluation import metrics as M
from fmboost.evaluation.evaluate import evaluate
from fmboost.evaluation.niqe import niqe
from fmboost.evaluation.provenance import write_json
from fmboost.pipelines.upscale import FMBoostPipeline, pad_to_multiple

ROOT = Path(__file__).resolve().parents[2]
# What the embedded default's settings were chosen on (README, "The embedded default model").
TUNED_ON = ("the sampling τ and the colour fix were chosen on held-back training photos (every 10th of train/ and "
            "train_hr/, recipes/default/tune.py); the autoencoder and the flow were trained on the other photos; "
            "training τ = 100 was kept from the previous default")


def reconstruction_scores(pipe, paths, scale: int) -> dict:
    """D(E(HR)) of each photo against the photo: what no flow on this autoencoder can exceed."""
    per = {"psnr": [], "ssim": [], "niqe": []}
    for path in paths:
        hr = load_image(path)
        hr = hr.crop((0, 0, hr.width - hr.width % scale, hr.height - hr.height % scale))
        x = pad_to_multiple(to_tensor(hr)[None], pipe.autoencoder.downsample_factor)
        rec = to_pil(pipe.autoencoder.decode(pipe.autoencoder.encode(x))[0, :, : hr.height, : hr.width])
        per["psnr"].append(M.psnr(rec, hr, "rgb", scale))
        per["ssim"].append(M.ssim(rec, hr, "rgb", scale))
        per["niqe"].append(niqe(rec, scale))
    return {**{k: float(np.mean(v)) for k, v in per.items()}, "per_image": per}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--steps", default="1,4")
    p.add_argument("--sets", default="bsd68,set14", help="which of val/bsd68, val/set14 (comma-separated)")
    p.add_argument("--max-images", type=int, help="only the first N photos of each set (sorted by name)")
    p.add_argument("--eval-dir", default="runs/default/eval", help="fmboost eval's plots and grids")
    p.add_argument("--results", default=str(ROOT / "results" / "default_model"), help="raw results folder")
    p.add_argument("--tuned-on", default=TUNED_ON)
    args = p.parse_args()
    torch.manual_seed(0)
    pipe = FMBoostPipeline.from_pretrained(args.model)
    steps = [int(s) for s in args.steps.split(",")]
    for name in args.sets.split(","):
        hr_dir = Path(args.data) / "val" / name
        raw = Path(args.results) / f"{name}.json"
        evaluate(hr_dir, [args.model], scale=2, methods=["cfm", "x0", "bicubic"], steps=steps,
                 out_dir=Path(args.eval_dir) / name, metrics=["psnr", "ssim", "sharpness", "niqe"], device="cpu",
                 max_images=args.max_images, tuned_on=args.tuned_on, results_out=raw, dtype="auto")
        results = json.loads(raw.read_text())
        results["reconstruction"] = reconstruction_scores(pipe, list_images(hr_dir)[: args.max_images], 2)
        write_json(raw, results)
        print(f"{raw}: {len(results['results'])} runs on {len(results['images'])} photos")
    print("docs: python experiments/report.py")


if __name__ == "__main__":
    main()
