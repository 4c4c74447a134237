"""Measures the real-world model on degraded BSD68 and Set14: the raw results behind docs/results.md's
"Real-world ×2" section.

    python recipes/real/evaluate.py [--data ../shared/data] [--max-images N] [--steps 1,4]
    python experiments/report.py          # then: docs/results.md from results/real/

The low-res inputs are a fixed, seeded Real-ESRGAN degradation of each photo (`fmboost degrade --seed 0`), so every
method sees the same inputs. The `real` model (fine-tuned on such degradations) is compared with the clean
`default` model, `x0` (the upsampled latent decoded without the flow) and bicubic. Writes
results/real/{bsd68,set14}.json (both models' rows, per-image values, meta) and the image grids next to the docs.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fmboost import EMBEDDED_MODELS
from fmboost.cli.main import main as fmboost
from fmboost.evaluation.evaluate import evaluate
from fmboost.evaluation.provenance import write_json

ROOT = Path(__file__).resolve().parents[2]
TUNED_ON = ("`real` fine-tunes the default (whose τ, sampling τ and colour fix were chosen on held-back training "
            "photos by recipes/default/tune.py) on degraded crops of train/ + train_hr/; its step count chosen on 16 "
            "held-back training photos (recipes/real/choose_steps.py)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--steps", default="1,4")
    p.add_argument("--run", default="runs/real", help="where the degraded inputs and fmboost eval's outputs go")
    p.add_argument("--results", default=str(ROOT / "results" / "real"), help="raw results folder")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where the image grids go")
    p.add_argument("--max-images", type=int, help="only the first N photos of each set (sorted by name)")
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    metrics = ["psnr", "ssim", "sharpness", "niqe"]
    for name in ("bsd68", "set14"):
        hr_dir, lr_dir = Path(args.data) / "val" / name, Path(args.run) / "val_degraded" / name
        if not lr_dir.exists():
            if fmboost(["degrade", str(hr_dir), str(lr_dir), "--scale", "2", "--seed", "0", "--png"]) != 0:
                raise SystemExit(f"could not write the degraded inputs of {hr_dir}")
        # x0 and bicubic do not depend on the flow (both models share the autoencoder): run them once.
        runs = [(EMBEDDED_MODELS["real"], ["cfm", "x0", "bicubic"], name),
                (EMBEDDED_MODELS["default"], ["cfm"], f"{name}_default")]
        merged = None
        for model, methods, out in runs:
            res = evaluate(hr_dir, [str(model)], scale=2, methods=methods, steps=steps, lr_dir=lr_dir,
                           max_images=args.max_images, out_dir=Path(args.run) / "eval" / out, metrics=metrics,
                           device="cpu", tuned_on=TUNED_ON)
            if merged is None:
                merged = res
            else:
                merged["results"] += res["results"]
        raw = write_json(Path(args.results) / f"{name}.json", merged)
        shutil.copy(Path(args.run) / "eval" / name / "grid.png", Path(args.docs) / f"real_{name}_grid.png")
        print(f"{raw}: {len(merged['results'])} runs on {len(merged['images'])} photos")
    print("docs: python experiments/report.py")


if __name__ == "__main__":
    main()
