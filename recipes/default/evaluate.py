"""Measures a model on BSD68 and Set14 downscaled ×2 (bicubic): the table of the README's default-model section.

    python recipes/default/evaluate.py [--data ../shared/data] [--model fmboost/weights/default] [--out docs/default_model.md]

PSNR/SSIM on RGB with `scale` border pixels shaved (fmboost.evaluation.metrics); the autoencoder row is its own
reconstruction D(E(x)) of the high-res photo, the ceiling of every latent method.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fmboost import DEFAULT_MODEL
from fmboost.data.images import list_images, load_image, to_pil, to_tensor
from fmboost.evaluation import metrics as M
from fmboost.evaluation.evaluate import evaluate
from fmboost.pipelines.upscale import FMBoostPipeline, pad_to_multiple


def reconstruction_scores(pipe, hr_dir, scale: int) -> tuple[float, float]:
    psnr, ssim = [], []
    for path in list_images(hr_dir):
        hr = load_image(path)
        hr = hr.crop((0, 0, hr.width - hr.width % scale, hr.height - hr.height % scale))
        x = pad_to_multiple(to_tensor(hr)[None], pipe.autoencoder.downsample_factor)
        rec = to_pil(pipe.autoencoder.decode(pipe.autoencoder.encode(x))[0, :, : hr.height, : hr.width])
        psnr.append(M.psnr(rec, hr, "rgb", scale))
        ssim.append(M.ssim(rec, hr, "rgb", scale))
    return float(np.mean(psnr)), float(np.mean(ssim))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--steps", default="1,2,4,8")
    p.add_argument("--eval-dir", default="runs/default/eval")
    p.add_argument("--out", default="docs/default_model.md")
    args = p.parse_args()
    torch.manual_seed(0)
    pipe = FMBoostPipeline.from_pretrained(args.model)
    steps = [int(s) for s in args.steps.split(",")]
    lines = ["| set | method | NFE | PSNR (dB) | SSIM | s / image |", "|---|---|---|---|---|---|"]
    for name in ("bsd68", "set14"):
        hr_dir = Path(args.data) / "val" / name
        res = evaluate(hr_dir, [args.model], scale=2, methods=["cfm", "x0", "bicubic"], steps=steps,
                       out_dir=Path(args.eval_dir) / name, metrics=["psnr", "ssim"], device="cpu")
        for r in res["results"]:
            method = r["method"] + (" (euler)" if r["method"] == "cfm" else "")
            lines.append(f"| {name} | {method} | {r['nfe']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                         f"{r['seconds']:.3f} |")
        psnr, ssim = reconstruction_scores(pipe, hr_dir, 2)
        lines.append(f"| {name} | autoencoder D(E(HR)), the ceiling | – | {psnr:.2f} | {ssim:.4f} | – |")
        device = res["device"]
    table = "\n".join(lines)
    text = (f"Measured by `python recipes/default/evaluate.py` on {device}, ×2 from bicubic-downscaled "
            f"photos, `scale` border pixels shaved, RGB.\n\n{table}\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
