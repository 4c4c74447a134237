"""Seconds per image of each method and its ratio to `cfm` at NFE 4, all measured in this one run.

    python benchmarks/methods.py [--preset tiny] [--size 256] [--repeats 2] [--device cpu]

Speed needs only the architecture: every objective uses the same U-Net (random weights of `--preset`) on the
embedded default autoencoder, so the differences are the sampling procedures themselves.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from fmboost import DEFAULT_MODEL
from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.images import load_image, resize
from fmboost.models.presets import build_model
from fmboost.pipelines.upscale import FMBoostPipeline

RUNS = [("cfm", 4, "euler"), ("cfm", 1, "euler"), ("cfm", 8, "euler"), ("naive-fm", 4, "euler"),
        ("naive-fm", 50, "euler"), ("diffusion", 50, "ddim"), ("regression-l2", 1, None), ("x0", 0, None),
        ("bicubic", 0, None)]


sys.path.insert(0, str(Path(__file__).parent))
from timing import device_label, print_ratios, save_ratios, seconds  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--image", default="examples/astronaut.png")
    p.add_argument("--size", type=int, default=256, help="low-res input side in pixels")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    autoencoder = Autoencoder.from_pretrained(DEFAULT_MODEL / "autoencoder").to(args.device)
    model = build_model(args.preset, autoencoder.latent_channels).eval().to(args.device)
    image = resize(load_image(args.image), (args.size, args.size))
    times = {}
    for method, steps, solver in RUNS:
        objective = method if method not in ("x0", "bicubic") else "cfm"
        pipe = FMBoostPipeline(autoencoder, model, objective=objective)
        label = f"{method} NFE {steps}" if steps else method
        times[label] = seconds(lambda: pipe(image, steps=max(steps, 1), solver=solver or "euler", method=method),
                               args.repeats)
    print(f"{args.size}² → {2 * args.size}², U-Net preset {args.preset}, {device_label(args.device)}; "
          f"mean of {args.repeats} after a warm-up")
    print_ratios(times, "cfm NFE 4")
    save_ratios("methods", times, "cfm NFE 4", args.device, **vars(args))


if __name__ == "__main__":
    main()
