"""Text → 1024²: "SD1.5 at 512² + CFM ×2 + decode" against "SD1.5 at 1024² + decode", timed in one run.

    python benchmarks/ldm_speed.py                          # CPU, real SD1.5 sizes (heavy: minutes per 1024² step)
    python benchmarks/ldm_speed.py --quick                  # CPU, half the sizes (256² vs 512²), a few minutes
    python benchmarks/ldm_speed.py --device cuda --dtype bf16 --nfe 1,4,8 --repeats 5 [--compile]

SDXL and FLUX.1 (their U-Net / MM-DiT and VAEs, the same comparison plus CFM against the round trip):
benchmarks/ldm_families.py.

Timing needs the architectures, not trained weights: SD1.5's UNet, VAE and CLIP text encoder and the CFM
`general` U-Net are built from the configs written below with random weights; nothing is downloaded. Each
component is timed on its own (per UNet step, per CFM NFE) and the totals for `--base-steps` steps are summed
from those figures. The UNet runs at batch 2, as with classifier-free guidance. CFM NFEs not in --nfe are
extrapolated linearly from the measured ones (Euler: one network call per NFE); they are marked with *.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import RESULTS, device_label, pick_clock, save_results, seconds  # noqa: E402

# stable-diffusion-v1-5 unet/config.json (860 M parameters)
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0)
# stable-diffusion-v1-5 vae/config.json (84 M parameters; factor 8)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=512, scaling_factor=0.18215)
# CLIP ViT-L/14 text tower, SD1.5's text_encoder/config.json (123 M parameters)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build(device: str, dtype: torch.dtype, compile_: bool):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.models.presets import build_model
    from fmboost.pipelines.upscale import FMBoostPipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval().requires_grad_(False).to(device, dtype)
    text = CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).eval().requires_grad_(False).to(device, dtype)
    vae = Autoencoder(AutoencoderKL(**SD15_VAE)).to(device, dtype)
    cfm = FMBoostPipeline(vae, build_model("general").eval().requires_grad_(False).to(device, dtype))
    if compile_:
        unet, cfm.model = torch.compile(unet), torch.compile(cfm.model)
    return unet, text, vae, cfm


def count(m) -> float:
    return sum(p.numel() for p in m.parameters()) / 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="half the sizes (256² vs 512²), one repeat, NFE 1 only")
    p.add_argument("--size", type=int, default=512, help="base resolution in pixels; CFM ×2 gives twice this")
    p.add_argument("--base-steps", type=int, default=25)
    p.add_argument("--nfe", default=None, help="CFM NFEs to time (default: 1 on cpu, 1,4,8 on cuda)")
    p.add_argument("--repeats", type=int, default=None, help="default: 1 on cpu, 5 on cuda")
    p.add_argument("--warmup", type=int, default=None, help="default: 0 on cpu (seconds per call dwarf it), 2 on cuda")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet and the CFM network")
    p.add_argument("--clock", choices=["wall", "cpu"], default=None,
                   help="cpu: CPU time of this process, which other jobs on a shared machine do not inflate "
                        "(default on a CPU with one thread); wall: elapsed time (default otherwise)")
    p.add_argument("--json", type=Path, help="raw results file (default: results/bench/ldm_speed_DEVICE[_quick].json)")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    lo = 256 if args.quick else args.size
    hi = 2 * lo
    repeats = args.repeats or (5 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (2 if cuda else 0)
    nfes = [int(n) for n in (args.nfe or ("1,4,8" if cuda else "1")).split(",")]
    dtype, dev = DTYPES[args.dtype], args.device
    clock_name, clock = pick_clock(args.clock, cuda)
    print(f"{device_label(dev)}, {args.dtype}{', torch.compile' if args.compile else ''}; {clock_name} clock, "
          f"mean of {repeats} after {warmup} warm-up call(s)", flush=True)

    t0 = time.perf_counter()
    unet, text, vae, cfm = build(dev, dtype, args.compile)
    print(f"built SD1.5 UNet {count(unet):.0f} M, VAE {count(vae.vae):.0f} M, CLIP text {count(text):.0f} M, "
          f"CFM general {count(cfm.model):.0f} M in {time.perf_counter() - t0:.0f} s (random weights)")

    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(dev, dtype)
    tokens = torch.randint(0, SD15_TEXT["vocab_size"], (2, 77), generator=g).to(dev)
    context = rand(2, 77, 768)  # prompt and negative prompt: classifier-free guidance doubles the batch
    z_lo, z_hi = rand(2, 4, lo // 8, lo // 8), rand(2, 4, hi // 8, hi // 8)
    step_t = torch.tensor(500, device=dev)
    x_cond = rand(1, 4, hi // 8, hi // 8)
    components = {}  # key: {label, seconds, extrapolated}

    def row(key, label, fn, extrapolated=False):  # printed as measured: a run cut short still leaves its figures
        components[key] = {"label": label, "seconds": fn() if callable(fn) else fn, "extrapolated": extrapolated}
        print(f"| {label}{' *' if extrapolated else ''} | {components[key]['seconds']:.3f} |", flush=True)

    time_it = lambda fn: lambda: seconds(torch.no_grad()(fn), repeats, warmup, clock)
    print("\n| component | seconds |\n|---|---:|")
    row("text", "text encoder (batch 2)", time_it(lambda: text(tokens)))
    row("unet_lo", f"UNet step {lo}² (batch 2)", time_it(lambda: unet(z_lo, step_t, context)))
    measured = {n: time_it(lambda n=n: cfm.flow(x_cond, steps=n))() for n in nfes}
    per_nfe = min(t / n for n, t in measured.items())
    for n in sorted({1, 4, 8} | set(nfes)):
        row(f"cfm_nfe{n}", f"CFM general, NFE {n} ({lo // 8}² → {hi // 8}² latent)", measured.get(n, n * per_nfe),
            extrapolated=n not in measured)
    row("unet_hi", f"UNet step {hi}² (batch 2)", time_it(lambda: unet(z_hi, step_t, context)))
    row("psu", f"PSU ×2: decode {lo}², bicubic ×2, encode {hi}²", time_it(lambda: cfm.upsample(z_lo[:1])))
    row("vae_decode", f"VAE decode {hi}²", time_it(lambda: vae.decode(x_cond)))
    pipelines = totals(components, args.base_steps, lo, hi)
    print(f"\n| pipeline, {args.base_steps} base steps | seconds | speed-up vs base at {hi}² |\n|---|---:|---:|")
    for p in pipelines:
        print(f"| {p['label']} | {p['seconds']:.1f} | {p['speedup']:.2f} |")
    settings = {"base_size": lo, "output_size": hi, "base_steps": args.base_steps, "dtype": args.dtype,
                "compile": args.compile, "clock": clock_name, "repeats": repeats, "warmup": warmup,
                "nfe_measured": nfes, "quick": args.quick}
    params = {"sd15_unet": count(unet), "sd15_vae": count(vae.vae), "clip_text": count(text),
              "cfm_general": count(cfm.model)}
    out = args.json or default_json(args, cuda)
    save_results(out, dev, settings=settings, parameters_m=params, components=components, pipelines=pipelines)
    print(f"raw results: {out}")


def totals(components: dict, base_steps: int, lo: int, hi: int) -> list[dict]:
    """The two pipelines as sums of their parts (one formula, here; the docs render what it wrote)."""
    c = {k: v["seconds"] for k, v in components.items()}
    direct = c["text"] + base_steps * c["unet_hi"] + c["vae_decode"]
    rows = [{"label": f"base {hi}² + decode", "nfe": None, "seconds": direct, "speedup": 1.0}]
    for n in (1, 4, 8):
        boosted = c["text"] + base_steps * c["unet_lo"] + c["psu"] + c[f"cfm_nfe{n}"] + c["vae_decode"]
        rows.append({"label": f"base {lo}² + CFM ×2 (NFE {n}) + decode", "nfe": n, "seconds": boosted,
                     "speedup": direct / boosted})
    return rows


def default_json(args, cuda: bool) -> Path:
    kind = "cuda" if cuda else "cpu"
    return RESULTS / f"ldm_speed_{kind}{'_quick' if args.quick else ''}.json"


if __name__ == "__main__":
    main()
