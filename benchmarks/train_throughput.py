"""Training throughput of the CFM U-Net: samples/s of an optimiser step under each speed option of `fmboost train`,
relative to fp32 eager, all measured in this one run on this machine.

    python benchmarks/train_throughput.py                                 # tiny preset on the CPU: a few minutes
    python benchmarks/train_throughput.py --preset faces --device cuda    # and --preset general
    python benchmarks/train_throughput.py --options "fp32 eager,bf16"     # some of the options only

A step is what one process of `fmboost train` does per batch: the CFM loss under autocast, backward, gradient
clipping, AdamW and the EMA update, on random latents of the given size (speed depends on the architecture, not on
weights or data). One device, so samples/s is per GPU; several GPUs add DDP's gradient all-reduce.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

from fmboost.flow.objectives import loss_for
from fmboost.models.presets import build_model
from fmboost.training.train import make_optimizer, to_device, update_ema

sys.path.insert(0, str(Path(__file__).parent))
from timing import RESULTS, device_label, pick_clock, save_results, seconds  # noqa: E402

# name: the config keys it turns on (bf16, channels_last, compile; fused is fused_adamw)
OPTIONS = {
    "fp32 eager": {},
    "bf16": {"bf16": True},
    "channels_last": {"channels_last": True},
    "fused AdamW": {"fused": True},
    "torch.compile": {"compile": True},
    "bf16 + channels_last": {"bf16": True, "channels_last": True},
    "all four": {"bf16": True, "channels_last": True, "fused": True, "compile": True},
}
LATENT = {"tiny": 32, "faces": 64, "general": 64}  # tiny: 128 px crops, factor-4 VAE; paper presets: 512 px, SD VAE


def training_step(preset: str, latent: int, batch: int, device: str, bf16=False, channels_last=False, fused=False,
                  compile=False):
    torch.manual_seed(0)
    model = build_model(preset, 4).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), 1e-4, 0.0, fused)
    ema = {name: p.detach().clone().float() for name, p in model.named_parameters()}
    net = torch.compile(model) if compile else model
    loss_fn = loss_for("cfm")
    x1, x_cond = (to_device(torch.randn(batch, 4, latent, latent), device, channels_last) for _ in range(2))
    generator = torch.Generator().manual_seed(0)

    def step():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net, x1, x_cond, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        update_ema(ema, model, 0.999)
    return step, sum(p.numel() for p in model.parameters())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=list(LATENT))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, help="samples per step (default 16 on the CPU, 32 on a GPU)")
    p.add_argument("--latent", type=int, help="latent side (default: tiny 32, faces and general 64)")
    p.add_argument("--repeats", type=int, help="timed steps per option (default 5 on the CPU, 20 on a GPU)")
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated, from: " + ", ".join(OPTIONS))
    p.add_argument("--clock", choices=["wall", "cpu"],
                   help="cpu: this process's CPU time, which other jobs on a shared machine do not inflate "
                        "(default with one CPU thread); wall otherwise")
    p.add_argument("--json", type=Path,
                   help="raw results file (default: results/bench/train_throughput_DEVICE.json; with --preset other "
                        "than tiny, train_throughput_DEVICE_PRESET.json)")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")  # diffusers'
    cuda = args.device.startswith("cuda")
    batch, latent = args.batch or (32 if cuda else 16), args.latent or LATENT[args.preset]
    repeats = args.repeats or (20 if cuda else 5)
    clock_name, clock = pick_clock(args.clock, cuda)
    names = [n.strip() for n in args.options.split(",")]
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        p.error(f"unknown option(s) {', '.join(unknown)}; choose from {', '.join(OPTIONS)}")

    print(f"{args.preset} preset, batch {batch} of 4×{latent}×{latent} latents, {device_label(args.device)}, "
          f"{clock_name} clock, mean of {repeats} steps after 2 warm-up steps")
    print(f"{'option':22s} {'samples/s':>10s} {'× ' + names[0]:>{len(names[0]) + 4}s}", flush=True)
    rates, params, options = {}, 0, []
    for name in names:  # each row printed as measured: a run cut short still leaves its figures
        try:
            step, params = training_step(args.preset, latent, batch, args.device, **OPTIONS[name])
            rates[name] = batch / seconds(step, repeats, warmup=2, clock=clock)
        except Exception as e:  # e.g. torch.compile without a C++ compiler: report it, measure the rest
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
            options.append({"name": name, "samples_per_s": None, "error": error})
            print(f"{name:22s} failed: {error}", flush=True)
            continue
        options.append({"name": name, "samples_per_s": rates[name]})
        ratio = rates[name] / rates[names[0]] if names[0] in rates else float("nan")
        print(f"{name:22s} {rates[name]:10.2f} {ratio:{len(names[0]) + 4}.2f}", flush=True)
    print(f"U-Net: {params / 1e6:.1f} M parameters")
    kind = "cuda" if cuda else "cpu"
    out = args.json or RESULTS / f"train_throughput_{kind}{'' if args.preset == 'tiny' else '_' + args.preset}.json"
    settings = {"preset": args.preset, "batch": batch, "latent": latent, "latent_channels": 4, "repeats": repeats,
                "clock": clock_name, "device": args.device}
    save_results(out, args.device, settings=settings, parameters_m=params / 1e6, options=options)
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
