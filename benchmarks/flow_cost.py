"""What each flow design costs at inference on the CPU, beside the autoencoder it runs between: the speed side of
issue 28's trade-off between capacity (fidelity) and time.

    OMP_NUM_THREADS=1 python benchmarks/flow_cost.py [--sizes 256,512] [--repeats 2]

For each flow recipe (its network built from the config, random weights: the cost does not depend on them) and each
input side: one network evaluation (NFE 1, the default's) on the ×2 latent of that input, and the default
autoencoder's encode (x0 = E(bicubic×2 of the input)) and decode of the ×2 output. One thread, this process's CPU
time (other jobs on a shared machine inflate it little), after a warm-up. Also each network's parameters and
multiply-adds per latent pixel (counted from its convolutions; the t embedding's linear layers run once an image). Writes
results/bench/flow_cost_cpu.json; `python experiments/report.py` renders it into docs/default_model.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from fmboost.models.presets import build_model
from fmboost.pipelines.upscale import FMBoostPipeline
from fmboost.training.config import TrainConfig
from timing import RESULTS, save_results, seconds

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = {  # name: the recipe that trains it
    "default (shipped)": "recipes/default/cfm.yaml",
    "patch": "recipes/default/design/s2d.yaml",
    "patch, wide": "recipes/default/design/s2d_wide.yaml",  # the network of cfm_gpu_patch.yaml too
    "GPU large": "recipes/default/cfm_gpu.yaml",
}


def macs_per_pixel(net: nn.Module, channels: int, side: int = 32) -> float:
    """Multiply-adds of one evaluation per latent pixel, from forward hooks on the convolutions (the linear layers
    of the t embedding run once an image, not per pixel)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        k = module.weight[0].numel()  # in/groups × kernel taps, per output value
        total += k * output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d)]
    x = torch.zeros(1, channels, side, side)
    with torch.no_grad():
        net(x, torch.zeros(1), x)
    for h in hooks:
        h.remove()
    return total / side ** 2


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512", help="input sides (px); the ×2 latent has the input's side")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pipe = FMBoostPipeline.from_pretrained("default")
    vae, ch = pipe.autoencoder, pipe.model.config.latent_channels
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        x_lr = torch.rand(1, 3, size, size) * 2 - 1
        x0 = pipe.condition(x_lr)
        rows.append(dict(part="encode", input_side=size, cpu_seconds=seconds(
            lambda: pipe.condition(x_lr), args.repeats, clock=time.process_time)))
        rows.append(dict(part="decode", input_side=size, cpu_seconds=seconds(
            lambda: vae.decode(x0), args.repeats, clock=time.process_time)))
        print(rows[-2], rows[-1], flush=True)
    for name, recipe in DESIGNS.items():
        cfg = TrainConfig.load(str(ROOT / recipe))
        net = build_model(cfg.preset, ch, **cfg.model).eval().to(memory_format=torch.channels_last)  # as the pipeline
        info = dict(design=name, recipe=recipe, model=dict(cfg.model), preset=cfg.preset,
                    parameters=sum(q.numel() for q in net.parameters()), macs_per_latent_pixel=macs_per_pixel(net, ch))
        for size in sizes:
            z = torch.randn(1, ch, size, size).contiguous(memory_format=torch.channels_last)
            t = seconds(lambda: net(z, torch.zeros(1), z), args.repeats, clock=time.process_time)
            rows.append(dict(part="flow", input_side=size, cpu_seconds=t, **info))
            print(rows[-1], flush=True)
    path = save_results(RESULTS / "flow_cost_cpu.json", "cpu", settings=dict(threads=1, clock="cpu", batch=1,
                        sizes=sizes, repeats=args.repeats, autoencoder="default"), rows=rows)
    print(f"raw results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
