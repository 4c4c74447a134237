"""Measures the real-world model on degraded BSD68 and Set14: the table of docs/results.md, "Real-world ×2".

    python recipes/real/evaluate.py [--data ../shared/data] [--out docs/results.md]

The low-res inputs are a fixed, seeded Real-ESRGAN degradation of each photo (`fmboost degrade --seed 0`), so every
method sees the same inputs. The `real` model (fine-tuned on such degradations) is compared with the clean
`default` model, `x0` (the upsampled latent decoded without the flow) and bicubic.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fmboost import EMBEDDED_MODELS
from fmboost.cli.main import main as fmboost
from fmboost.evaluation.evaluate import evaluate
from fmboost.evaluation.report import replace_section


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--steps", default="1,4,8")
    p.add_argument("--run", default="runs/real", help="where the degraded inputs and evaluations go")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--max-images", type=int, help="only the first N photos of each set (sorted by name)")
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    lines = ["| set | model | method | NFE | PSNR (dB) | SSIM | s / image |", "|---|---|---|---|---|---|---|"]
    counts = {}
    for name in ("bsd68", "set14"):
        hr_dir, lr_dir = Path(args.data) / "val" / name, Path(args.run) / "val_degraded" / name
        if not lr_dir.exists():
            if fmboost(["degrade", str(hr_dir), str(lr_dir), "--scale", "2", "--seed", "0", "--png"]) != 0:
                raise SystemExit(f"could not write the degraded inputs of {hr_dir}")
        # x0 and bicubic do not depend on the flow (both models share the autoencoder): run them once.
        runs = [(EMBEDDED_MODELS["real"], ["cfm", "x0", "bicubic"], name),
                (EMBEDDED_MODELS["default"], ["cfm"], f"{name}_default")]
        results = []
        for model, methods, out in runs:
            res = evaluate(hr_dir, [str(model)], scale=2, methods=methods, steps=steps, lr_dir=lr_dir,
                           max_images=args.max_images, out_dir=Path(args.run) / "eval" / out,
                           metrics=["psnr", "ssim"], device="cpu")
            results += res["results"]
        for r in results:
            lines.append(f"| {name} | {r['model']} | {r['method']} | {r['nfe']} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.4f} | {r['seconds']:.3f} |")
        shutil.copy(Path(args.run) / "eval" / name / "grid.png", Path(args.out).parent / f"real_{name}_grid.png")
        device, counts[name] = res["device"], len(res["images"])
    table = "\n".join(lines)
    text = (f"## Real-world ×2: degraded inputs\n\nMeasured by `python recipes/real/evaluate.py` on {device}. "
            f"Photos: {counts['bsd68']} of BSD68, {counts['set14']} of Set14 (sorted by name). "
            f"Inputs: `fmboost degrade --scale 2 --seed 0` of each photo (Real-ESRGAN's second-order blur, "
            f"resize, noise and JPEG); references: the clean photos; RGB, 2 border pixels shaved; "
            f"LPIPS not measured (no weights offline).\n\n{table}\n\n"
            f"![BSD68 grid](real_bsd68_grid.png)\n![Set14 grid](real_set14_grid.png)\n")
    replace_section(Path(args.out), "real", text)
    print(text)


if __name__ == "__main__":
    main()
