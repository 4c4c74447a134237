"""SDXL and FLUX.1 → twice their size: "base at its size + CFM ×2 + decode" against "base at twice the size +
decode", and the CFM stage against the decode → resize → encode round trip, all timed in one run.

    python benchmarks/ldm_families.py --small                                  # smoke run: shrunken nets, seconds
    python benchmarks/ldm_families.py --family sdxl,flux --device cuda --dtype bf16 --nfe 1,4,8 --repeats 5

(SD1.5 is `benchmarks/ldm_speed.py`.) Timing needs the architectures, not trained weights: the SDXL U-Net and VAE
(stabilityai/stable-diffusion-xl-base-1.0), the FLUX.1-dev transformer and VAE (black-forest-labs/FLUX.1-dev) and
the CFM `general` U-Net on 4 or 16 latent channels are built from the configs written below with random weights;
nothing is downloaded. Each component is timed on its own and the pipelines are summed from those figures:

- direct:  base steps × denoiser step at 2·SIZE + VAE decode at 2·SIZE
- boosted: base steps × denoiser step at SIZE + round trip (decode SIZE, bicubic ×2, encode 2·SIZE: the PSU that
  makes CFM's x0) + CFM (NFE × one U-Net call) + VAE decode at 2·SIZE

The text encoders are left out: they run once per image, the same in both pipelines (FLUX's T5-XXL alone has
4.7 B parameters). SDXL's U-Net runs at batch 2 (classifier-free guidance); FLUX.1-dev at batch 1 (its guidance is
an input of the transformer) with 512 text tokens in its joint attention. `--small` shrinks every network and the
sizes (64 px → 128 px) to check the script in seconds on a CPU; its figures say nothing about the real models.
Raw figures go to results/bench/NAME.json with the machine, date, command and git commit.

FLUX by blocks (`--flux-blocks`, the default on a CPU without --small): FLUX.1-dev's transformer is 11.9 B
parameters, 48 GB in fp32, more than a CPU machine's memory. Its blocks are independent and all of one width, so
its step is a sum: the real-width transformer is built three times, with (double, single) blocks = (0, 0), (1, 0)
and (0, 1), one at a time, each timed at both sizes, and the full step is

    T(0,0) + 19·(T(1,0) − T(0,0)) + 38·(T(0,1) − T(0,0))        (extrapolate_blocks; 19 and 38 from the config)

T(0,0) is the embedders, the final norm and projection. Those step rows are marked extrapolated (* in the
table) and the raw file keeps the three timings and block counts under `flux_blocks` to recompute them.
`--no-flux-blocks` builds the whole transformer; `--small --flux-blocks` runs block mode on the small config.

    OMP_NUM_THREADS=2 python benchmarks/ldm_families.py --family sdxl,flux --size 512 --clock wall   # CPU table

On a CPU use the wall clock when torch has more than one thread: `--clock cpu` is the process's CPU time summed
over its threads (core-seconds, including OpenMP's spin-waiting), not the time a call takes. The wall clock needs
an otherwise idle machine: on busy cores two OpenMP threads wait on each other and every figure grows many times
over (on a shared machine use OMP_NUM_THREADS=1 and the default cpu clock instead).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import device_label, pick_clock, seconds  # noqa: E402

from fmboost.evaluation.provenance import run_meta, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# stable-diffusion-xl-base-1.0 unet/config.json (2.6 B parameters); attention_head_dim is diffusers' name for the
# number of heads (64 channels each)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0)
SDXL_UNET_SMALL = dict(SDXL_UNET, block_out_channels=(32, 64, 128), transformer_layers_per_block=(1, 1, 2),
                       attention_head_dim=(1, 2, 4), cross_attention_dim=64, addition_time_embed_dim=8,
                       projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=8, layers_per_block=1)
# stable-diffusion-xl-base-1.0 vae/config.json (84 M parameters; SD's architecture, its own weights and scaling)
SDXL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.13025)
# FLUX.1-dev transformer/config.json (11.9 B parameters) and vae/config.json (84 M; 16 channels, shifted)
FLUX_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_TRANSFORMER_SMALL = dict(FLUX_TRANSFORMER, num_layers=1, num_single_layers=2, attention_head_dim=32,
                              num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32,
                              axes_dims_rope=(8, 12, 12))
FLUX_VAE = dict(SDXL_VAE, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                use_post_quant_conv=False)
SMALL_VAE = dict(block_out_channels=(16, 32, 32, 32), norm_num_groups=8, layers_per_block=1)
FAMILIES = {
    # name: denoiser, its config (full, small), VAE config, latent channels, base size, base steps, text tokens/dim
    "sdxl": dict(label="SDXL", unet=True, net=(SDXL_UNET, SDXL_UNET_SMALL), vae=SDXL_VAE, channels=4, size=1024,
                 steps=25, text=(77, 2048)),
    "flux": dict(label="FLUX.1-dev", unet=False, net=(FLUX_TRANSFORMER, FLUX_TRANSFORMER_SMALL), vae=FLUX_VAE,
                 channels=16, size=1024, steps=28, text=(512, 4096)),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_denoiser(family: str, small: bool, device: str, dtype: torch.dtype, **layers):
    """The denoiser of `family` with random weights; `layers` overrides its config (FLUX's block counts)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel
    from diffusers.utils import logging as dlogging

    spec = FAMILIES[family]
    dlogging.set_verbosity_error()  # not the "modules kept in float32" note on every cast of random weights
    torch.manual_seed(0)
    net = (UNet2DConditionModel if spec["unet"] else FluxTransformer2DModel)(**{**spec["net"][small], **layers})
    return net.eval().requires_grad_(False).to(device, dtype)


def build(family: str, small: bool, device: str, dtype: torch.dtype, denoiser: bool = True):
    """(denoiser or None, Autoencoder, FMBoostPipeline) of `family` with random weights."""
    from diffusers import AutoencoderKL

    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.models.presets import build_model
    from fmboost.pipelines.upscale import FMBoostPipeline

    spec = FAMILIES[family]
    net = build_denoiser(family, small, device, dtype) if denoiser else None
    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderKL(**{**spec["vae"], **(SMALL_VAE if small else {})}))
    cfm = build_model("tiny" if small else "general", latent_channels=spec["channels"])
    cfm = cfm.eval().requires_grad_(False).to(device, dtype)
    vae.to(device, dtype)
    return net, vae, FMBoostPipeline(vae, cfm)


def denoiser_call(family: str, net, side: int, small: bool, device: str, dtype: torch.dtype):
    """One denoising step's call at `side` pixels, with the inputs the diffusers pipeline would give it."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)
    h = side // 8
    tokens, dim = (16, net.config.get("cross_attention_dim") or net.config.joint_attention_dim) if small \
        else FAMILIES[family]["text"]
    if family == "sdxl":  # prompt and negative prompt: classifier-free guidance doubles the batch
        pooled = net.config.projection_class_embeddings_input_dim - 6 * net.config.addition_time_embed_dim
        added = {"text_embeds": rand(2, pooled), "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * 2,
                                                                          device=device, dtype=dtype)}
        z, t, context = rand(2, 4, h, h), torch.tensor(500, device=device), rand(2, tokens, dim)
        return lambda: net(z, t, context, added_cond_kwargs=added)
    from diffusers import FluxPipeline

    img_ids = FluxPipeline._prepare_latent_image_ids(1, h // 2, h // 2, device, dtype)
    z, context, pooled = rand(1, (h // 2) ** 2, 64), rand(1, tokens, dim), rand(1, net.config.pooled_projection_dim)
    t, guidance = torch.tensor([0.5], device=device, dtype=dtype), torch.tensor([3.5], device=device, dtype=dtype)
    txt_ids = torch.zeros(tokens, 3, device=device, dtype=dtype)
    return lambda: net(hidden_states=z, timestep=t, guidance=guidance, pooled_projections=pooled,
                       encoder_hidden_states=context, txt_ids=txt_ids, img_ids=img_ids)


def count(m) -> float:
    return sum(p.numel() for p in m.parameters()) / 1e6


def extrapolate_blocks(t00: float, t10: float, t01: float, n_double: int, n_single: int) -> float:
    """A FLUX transformer with n_double double-stream and n_single single-stream blocks, from the same
    transformer with (0, 0), (1, 0) and (0, 1) blocks: the blocks run one after another, each of one width, so
    each adds its own cost (seconds or parameters) to the embedders' and output layer's."""
    return t00 + n_double * (t10 - t00) + n_single * (t01 - t00)


VARIANTS = {"t00": (0, 0), "t10": (1, 0), "t01": (0, 1)}  # (num_layers, num_single_layers) of each build


def flux_by_blocks(args, sides: tuple[int, int], time_it) -> dict:
    """The three block variants of FLUX's transformer, each built, timed at both sides and freed before the
    next (one double block is 1.4 GB in fp32), and the full step extrapolated from them at each side."""
    full = FAMILIES["flux"]["net"][args.small]
    n_double, n_single = full["num_layers"], full["num_single_layers"]
    seconds_at, params = {side: {} for side in sides}, {}
    print("\n| FLUX transformer by blocks (double, single) | side | seconds |\n|---|---:|---:|", flush=True)
    for key, (double, single) in VARIANTS.items():
        net = build_denoiser("flux", args.small, args.device, DTYPES[args.dtype], num_layers=double,
                             num_single_layers=single)
        params[key] = count(net)
        for side in sides:
            seconds_at[side][key] = time_it(denoiser_call("flux", net, side, args.small, args.device,
                                                          DTYPES[args.dtype]))()
            print(f"| ({double}, {single}) | {side}² | {seconds_at[side][key]:.3f} |", flush=True)
        del net
        gc.collect()  # the next variant is built only once this one's weights are gone
    return {"n_double": n_double, "n_single": n_single, "variants": {k: list(v) for k, v in VARIANTS.items()},
            "formula": "t00 + n_double * (t10 - t00) + n_single * (t01 - t00)",
            "parameters_m": {**params, "full": extrapolate_blocks(params["t00"], params["t10"], params["t01"],
                                                                  n_double, n_single)},
            "seconds": {str(side): {**t, "step": extrapolate_blocks(t["t00"], t["t10"], t["t01"], n_double,
                                                                    n_single)} for side, t in seconds_at.items()}}


def measure(family: str, args, time_it) -> dict:
    spec, small = FAMILIES[family], args.small
    lo = args.size or (64 if small else spec["size"])
    hi, steps = 2 * lo, args.base_steps or spec["steps"]
    blocks_mode = family == "flux" and args.flux_blocks
    print(f"\n## {spec['label']}{' (small)' if small else ''}: {lo}² + CFM ×2 against {hi}²", flush=True)
    # By blocks, the steps are timed first: each variant is freed before the VAE and CFM are built
    blocks = flux_by_blocks(args, (lo, hi), time_it) if blocks_mode else None
    t0 = time.perf_counter()
    net, vae, cfm = build(family, small, args.device, DTYPES[args.dtype], denoiser=not blocks_mode)
    params = {"denoiser": blocks["parameters_m"]["full"] if blocks else count(net), "vae": count(vae.vae),
              "cfm": count(cfm.model)}
    print(f"\n{'denoiser (summed from its blocks) ' if blocks else 'built denoiser '}{params['denoiser']:.1f} M, "
          f"VAE {params['vae']:.1f} M, CFM {params['cfm']:.1f} M parameters, built in "
          f"{time.perf_counter() - t0:.0f} s (random weights)\n\n| component | seconds |\n|---|---:|", flush=True)
    g = torch.Generator().manual_seed(0)
    z_lo = torch.randn(1, spec["channels"], lo // 8, lo // 8, generator=g).to(args.device, DTYPES[args.dtype])
    x_cond = cfm.upsample(z_lo)
    components = {}

    def row(key, label, value, extrapolated=False):  # printed as measured: a run cut short keeps its figures
        components[key] = {"label": label, "seconds": value() if callable(value) else value,
                           "extrapolated": extrapolated}
        print(f"| {label}{' *' if extrapolated else ''} | {components[key]['seconds']:.3f} |", flush=True)

    batch = "batch 2" if spec["unet"] else "batch 1"
    step = lambda side: (blocks["seconds"][str(side)]["step"] if blocks else
                         time_it(denoiser_call(family, net, side, small, args.device, DTYPES[args.dtype])))
    row("step_lo", f"denoiser step {lo}² ({batch})", step(lo), extrapolated=bool(blocks))
    row("round_trip", f"decode {lo}², bicubic ×2, encode {hi}² (PSU)", time_it(lambda: cfm.upsample(z_lo)))
    measured = {n: time_it(lambda n=n: cfm.flow(x_cond, steps=n))() for n in args.nfe}
    per_nfe = min(t / n for n, t in measured.items())
    for n in sorted({1, 4, 8} | set(args.nfe)):
        row(f"cfm_nfe{n}", f"CFM, NFE {n} ({lo // 8}² → {hi // 8}² latent)", measured.get(n, n * per_nfe),
            extrapolated=n not in measured)
    row("vae_decode", f"VAE decode {hi}²", time_it(lambda: vae.decode(x_cond)))
    row("step_hi", f"denoiser step {hi}² ({batch})", step(hi), extrapolated=bool(blocks))
    pipelines, versus = totals(components, steps, lo, hi)
    print(f"\n| pipeline, {steps} base steps | seconds | speed-up vs base at {hi}² |\n|---|---:|---:|")
    for p in pipelines:
        print(f"| {p['label']} | {p['seconds']:.2f} | {p['speedup']:.2f} |")
    print("\n| the ×2 stage | seconds | × the decode → resize → encode round trip |\n|---|---:|---:|")
    for v in versus:
        print(f"| {v['label']} | {v['seconds']:.3f} | {v['ratio']:.2f} |")
    return {"label": spec["label"], "small": small, "base_size": lo, "output_size": hi, "base_steps": steps,
            "parameters_m": params, "components": components, "pipelines": pipelines, "cfm_vs_round_trip": versus,
            **({"flux_blocks": blocks} if blocks else {})}


def totals(components: dict, steps: int, lo: int, hi: int) -> tuple[list[dict], list[dict]]:
    """The two pipelines as sums of their parts, and the ×2 stage against the round trip (one formula, here)."""
    c = {k: v["seconds"] for k, v in components.items()}
    direct = steps * c["step_hi"] + c["vae_decode"]
    pipelines = [{"label": f"base {hi}² + decode", "nfe": None, "seconds": direct, "speedup": 1.0}]
    versus = []
    for n in (1, 4, 8):
        stage = c["round_trip"] + c[f"cfm_nfe{n}"]
        boosted = steps * c["step_lo"] + stage + c["vae_decode"]
        pipelines.append({"label": f"base {lo}² + CFM ×2 (NFE {n}) + decode", "nfe": n, "seconds": boosted,
                          "speedup": direct / boosted})
        versus += [{"label": f"CFM flow alone, NFE {n}", "nfe": n, "seconds": c[f"cfm_nfe{n}"],
                    "ratio": c[f"cfm_nfe{n}"] / c["round_trip"]},
                   {"label": f"round trip + CFM flow, NFE {n} (what fmboost runs)", "nfe": n, "seconds": stage,
                    "ratio": stage / c["round_trip"]}]
    return pipelines, versus


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="sdxl,flux", help="comma-separated: sdxl, flux (default both)")
    p.add_argument("--small", action="store_true", help="shrunken networks at 64 px → 128 px: a smoke run")
    p.add_argument("--size", type=int, help="base resolution in pixels (default: 1024, the training size; 64 "
                                            "with --small); CFM ×2 gives twice this")
    p.add_argument("--base-steps", type=int, help="default: SDXL 25, FLUX.1-dev 28 (fmboost generate's)")
    p.add_argument("--nfe", default=None, help="CFM NFEs to time (default: 1 on cpu, 1,4,8 on cuda)")
    p.add_argument("--repeats", type=int, default=None, help="default: 1 on cpu, 5 on cuda")
    p.add_argument("--warmup", type=int, default=None, help="default: 0 on cpu, 2 on cuda")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    p.add_argument("--clock", choices=["wall", "cpu"], default=None,
                   help="cpu: this process's CPU time (default on a CPU with one thread); wall: elapsed time")
    p.add_argument("--flux-blocks", action=argparse.BooleanOptionalAction, default=None,
                   help="time FLUX's transformer with 0 and 1 blocks of each kind and extrapolate its step, "
                        "never building the whole of it (default: on a CPU without --small)")
    p.add_argument("--name", help="results/bench/NAME.json (default: ldm_families_DEVICE_DTYPE[_small])")
    args = p.parse_args(argv)
    families = [f.strip() for f in args.family.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        p.error(f"--family {args.family}: choose from {', '.join(FAMILIES)}")
    cuda = args.device.startswith("cuda")
    if args.flux_blocks is None:  # the whole transformer is 48 GB in fp32: more than a CPU machine holds
        args.flux_blocks = args.device == "cpu" and not args.small
    args.nfe = [int(n) for n in (args.nfe or ("1,4,8" if cuda else "1")).split(",")]
    repeats = args.repeats or (5 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (2 if cuda else 0)
    clock_name, clock = pick_clock(args.clock, cuda)
    print(f"{device_label(args.device)}, {args.dtype}; {clock_name} clock, mean of {repeats} after {warmup} "
          f"warm-up call(s)", flush=True)
    meta = run_meta(args.device)  # taken when the measurement starts (commit, dirty tree, load)
    time_it = lambda fn: lambda: seconds(torch.no_grad()(fn), repeats, warmup, clock)
    results = {f: measure(f, args, time_it) for f in families}
    name = args.name or f"ldm_families_{'cuda' if cuda else 'cpu'}_{args.dtype}{'_small' if args.small else ''}"
    out = ROOT / "results" / "bench" / f"{name}.json"
    write_json(out, {"meta": meta, "settings": {"clock": clock_name, "repeats": repeats, "warmup": warmup,
                                                "dtype": args.dtype, "device": device_label(args.device),
                                                "flux_blocks": args.flux_blocks},
                     "families": results})
    print(f"\nraw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
