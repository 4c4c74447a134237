"""Seconds per image of `cfm` at NFE 1/4/8 against the autoencoder decode alone and bicubic, as ratios.

    python benchmarks/upscale.py [--model DIR] [--size 256] [--repeats 3] [--device cpu]

Writes results/bench/upscale_<size>px_<device>.json.

Every figure comes from this one run on this machine; ratios are relative to the autoencoder decode, the
floor any latent method pays.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from fmboost import DEFAULT_MODEL
from fmboost.data.images import load_image, resize, to_tensor
from fmboost.pipelines.upscale import FMBoostPipeline, pad_to_multiple


sys.path.insert(0, str(Path(__file__).parent))
from timing import device_label, print_ratios, save_ratios, seconds  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--image", default="examples/astronaut.png")
    p.add_argument("--size", type=int, default=256, help="low-res input side in pixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    pipe = FMBoostPipeline.from_pretrained(args.model, device=args.device)
    image = resize(load_image(args.image), (args.size, args.size))
    s = pipe.config.scale
    x = pad_to_multiple(to_tensor(image)[None].to(pipe.device), pipe.pad_multiple)
    x_cond = pipe.upsample(pipe.autoencoder.encode(x))
    rows = [("bicubic", lambda: resize(image, (args.size * s, args.size * s))),
            ("decode (autoencoder alone)", lambda: pipe.autoencoder.decode(x_cond)),
            ("x0 (encode + upsample + decode, no flow)", lambda: pipe(image, method="x0"))]
    rows += [(f"cfm euler NFE {n}", lambda n=n: pipe(image, steps=n)) for n in (1, 4, 8)]
    times = {name: seconds(fn, args.repeats) for name, fn in rows}
    print(f"{args.size}² → {args.size * s}², {device_label(args.device)}, mean of {args.repeats} after a warm-up")
    print_ratios(times, "decode (autoencoder alone)")
    settings = {k: v for k, v in vars(args).items() if k != "device"}
    save_ratios(f"upscale_{args.size}px", times, "decode (autoencoder alone)", args.device, **settings)


if __name__ == "__main__":
    main()
