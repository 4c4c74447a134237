"""CPU cost of one network evaluation of the CFM U-Net presets at the latent sizes of a ×2 upscale, next to the
autoencoders' encode and decode at the output size: what `models/presets.py` and the default recipe chose from.

    OMP_NUM_THREADS=1 python benchmarks/unet_cost.py [--out results/bench/unet_cost_cpu.json]

One thread, CPU time (other jobs on a shared machine do not inflate it), random weights, batch 1.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from fmboost.autoencoders.vae import small_autoencoder_config
from fmboost.evaluation.provenance import run_meta
from fmboost.models.presets import build_model
from timing import seconds

# (what, latent channels, latent side, preset): a 512² photo ×2 is a 1024² output; factor 4 → 256², factor 2 → 512².
NETWORKS = [("factor 4, 4 ch", 4, 256, "tiny"), ("factor 2, 8 ch", 8, 512, "tiny"), ("factor 2, 8 ch", 8, 512, "small")]
AUTOENCODERS = [("factor 4, 4 ch", (32, 64, 128), 4), ("factor 2, 8 ch", (32, 64), 8)]


@torch.no_grad()
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/bench/unet_cost_cpu.json")
    p.add_argument("--output-side", type=int, default=1024, help="side of the ×2 output image (default 1024)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, ch, side, preset in NETWORKS:
        side = side * args.output_side // 1024
        net = build_model(preset, latent_channels=ch).eval()
        x = torch.randn(1, ch, side, side)
        s = seconds(lambda: net(x, torch.zeros(1), x), repeats=1, clock=time.process_time)
        rows.append(dict(part="cfm network, one evaluation", latent=label, preset=preset, latent_side=side,
                         parameters=sum(q.numel() for q in net.parameters()), cpu_seconds=s))
        print(rows[-1])
    for label, widths, ch in AUTOENCODERS:
        vae = AutoencoderKL(**small_autoencoder_config(widths, ch)).eval()
        image = torch.randn(1, 3, args.output_side, args.output_side)
        z = vae.encode(image).latent_dist.mean
        for part, fn in (("encode", lambda: vae.encode(image).latent_dist.mean), ("decode", lambda: vae.decode(z))):
            rows.append(dict(part=f"autoencoder {part}", latent=label, widths=list(widths), image_side=args.output_side,
                             cpu_seconds=seconds(fn, repeats=1, clock=time.process_time)))
            print(rows[-1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": run_meta("cpu"), "settings": {"threads": 1, "clock": "cpu", "batch": 1},
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
