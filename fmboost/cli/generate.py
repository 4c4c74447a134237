"""`fmboost generate`: text → 1024² (2048²) with a diffusers base at 512² and CFM ×2 (×4).

User mistakes raise an FmboostError (fmboost/errors.py) with a one-line message, which main turns into exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

from fmboost.cli.common import (UserError, add_device_flag, add_solver_flag, add_steps_flag, check_source, find_model,
                                flag_errors, load_pipeline, pick_device)
from fmboost.data.files import slug
from fmboost.errors import InputError, MissingError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def add_parser(subparsers) -> None:
    g = subparsers.add_parser(
        "generate", help="text → high resolution: a latent diffusion base, then CFM ×2 (×4)",
        description="Sample a low-res latent with a diffusers text-to-image pipeline (--base, a folder or hub id; "
                    "output_type=latent; SD1.x/2.x, SDXL, SD3/SD3.5, FLUX.1), boost it with CFM model(s) trained on "
                    "the base's own VAE (--model), and decode with the base's VAE (tiled above 1024²). --scale 4 "
                    "cascades two ×2 stages.")
    g.add_argument("prompt", nargs="*", help="one or more prompts (or --prompts FILE)")
    g.add_argument("--prompts", metavar="FILE", help="text file, one prompt a line (# comments, blank lines skipped)")
    g.add_argument("--base", required=True, help="diffusers pipeline folder or hub id, e.g. "
                                                 "stable-diffusion-v1-5/stable-diffusion-v1-5, "
                                                 "stabilityai/stable-diffusion-xl-base-1.0, "
                                                 "black-forest-labs/FLUX.1-schnell")
    g.add_argument("--model", required=True, action="append", metavar="CFM_DIR",
                   help="CFM model folder or hub id trained on the base's VAE; repeat --model for a cascade of "
                        "stages, or give one, repeated for --scale 4 (the embedded default and real work on their "
                        "own autoencoder's latents only)")
    g.add_argument("--lcm-lora", metavar="ID", help="LCM-LoRA to fuse into a U-Net base (e.g. "
                                                    "latent-consistency/lcm-lora-sdv1-5 or lcm-lora-sdxl; needs peft)")
    g.add_argument("--base-steps", type=int,
                   help="denoising steps of the base (default: SD1.x/2.x and SDXL 25, SD3 and FLUX.1-dev 28; 4 with "
                        "--lcm-lora or FLUX.1-schnell; 1 for SD/SDXL-Turbo, 4 for SD3.5 Large Turbo)")
    g.add_argument("--guidance", type=float,
                   help="guidance scale (default: SD1.x/2.x 7, SDXL 5, SD3 7, FLUX.1-dev 3.5; 1 with --lcm-lora; 0 "
                        "for distilled bases)")
    g.add_argument("--base-size", help="base resolution in pixels, N or WxH (default: the base's training size: "
                                       "512 for SD1.5, 1024 for SDXL, SD3, FLUX)")
    g.add_argument("--scale", type=int, help="total upscaling: 2, or 4 = two ×2 stages (default: the models')")
    add_steps_flag(g, "ODE steps of each CFM stage")
    add_solver_flag(g, "ODE solver of each CFM stage")
    g.add_argument("--method", default="cfm", choices=["cfm", "x0", "base"],
                   help="cfm: the flow; x0: the PSU-upsampled latent without the flow; base: the base's own "
                        "latent decoded at base size (baselines)")
    g.add_argument("--seed", type=int, default=0, help="seed of prompt i is SEED + i (default 0)")
    g.add_argument("--negative", help="negative prompt (not for FLUX.1, whose guidance is distilled)")
    g.add_argument("--attention-scaling", action="store_true",
                   help="scale the base's self-attention logits by log(n)/log(m) when --base-size differs from "
                        "its training resolution. U-Net bases only (SD1.x/2.x, SDXL): SD3 and FLUX attend over "
                        "image and text tokens jointly, which this does not rescale, so it is refused for them")
    g.add_argument("--tile", action=argparse.BooleanOptionalAction, default=None,
                   help="tiled decoding (default: only above 1024² pixels)")
    add_device_flag(g)
    g.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                   help="of the base (default: fp16 on cuda, fp32 on cpu); CFM runs in fp32")
    g.add_argument("-o", "--output", default=".",
                   help="output file (one prompt, ending in .png/.jpg/.webp) or folder (default: .)")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.set_defaults(func=cmd_generate)


def parse_size(text: str) -> tuple[int, int]:
    """`512` or `768x512` (width x height) → (width, height)."""
    try:
        parts = [int(p) for p in str(text).lower().replace("×", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise InputError(f"--base-size {text}: expected N or WxH in pixels, e.g. 512 or 768x512")
    return (parts[0], parts[-1])


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt a line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"--prompts {path}: no such file")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise InputError(f"--prompts {path}: no prompts in the file (one a line)")
    return prompts


def output_paths(prompts: list[str], output: str, seed: int, method: str = "cfm") -> list[Path]:
    out = Path(output)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        if len(prompts) > 1:
            raise InputError(f"-o {output}: several prompts need an output folder, not a file")
        return [out]
    tag = "" if method == "cfm" else f"_{method}"
    return [out / f"{i:03d}_{slug(p)}_s{seed + i}{tag}.png" for i, p in enumerate(prompts)]


def cmd_generate(args) -> int:
    prompts = list(args.prompt) + (read_prompts(args.prompts) if args.prompts else [])
    if not prompts:
        raise InputError("no prompt: give one or more PROMPT arguments or --prompts FILE")
    for name, value in (("--steps", args.steps), ("--base-steps", args.base_steps)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    if args.scale is not None and args.scale < 1:
        raise InputError(f"--scale must be at least 1, got {args.scale}")
    size = parse_size(args.base_size) if args.base_size else None
    # Check outputs before loading gigabytes of weights, so a clash fails fast and writes nothing.
    outs = output_paths(prompts, args.output, args.seed, args.method)
    for o in outs:
        if o.exists() and not args.overwrite:
            raise InputError(f"{o} exists; use --overwrite or another -o")
    check_source(args.base, "--base")  # a hub id that cannot be had fails now, before torch is imported
    sources = [find_model(model) for model in args.model]  # likewise, and a folder's config read once
    import torch
    from tqdm.auto import tqdm

    from fmboost.data.images import save_image_atomic
    from fmboost.pipelines.bases import check_attention_scaling, check_negative_prompt, load_dtype, sampling_defaults
    from fmboost.pipelines.generate import BoostedLatentDiffusionPipeline, load_base

    device = pick_device(args.device)
    quiet_loading()
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype in DTYPES else load_dtype(args.base, device)
    t0 = time.time()
    with worded_errors():
        stages = []
        for source in sources:  # the cheap checks first: a typo costs no base load
            with worded_errors("--model"):
                stages.append(load_pipeline(source, device))
        with worded_errors("--base"):
            base = load_base(args.base, device, dtype, args.lcm_lora)
        pipe = BoostedLatentDiffusionPipeline(base, stages, str(args.base), list(args.model))
        print(f"loaded {args.base} and {len(args.model)} CFM model(s) in {time.time() - t0:.1f} s")
        base_steps, guidance = sampling_defaults(pipe.base, args.base, args.lcm_lora)  # per family (bases.py)
        base_steps = args.base_steps or base_steps
        guidance = guidance if args.guidance is None else args.guidance
        print(f"base: {type(pipe.base).__name__}, {type(pipe.base.scheduler).__name__}, {base_steps} steps, "
              f"guidance {guidance:g}")
        if args.attention_scaling:  # refused before any progress bar starts, in one line
            check_attention_scaling(pipe.base)
        if args.negative:  # likewise (FLUX.1 takes none)
            check_negative_prompt(pipe.base)
        for i, (prompt, out) in enumerate(zip(prompts, outs)):
            t0 = time.time()
            total = pipe.work(base_steps, args.scale, args.steps, args.solver, args.method)
            # One bar a prompt on stderr (base steps, then the flow's evaluations); it is gone before the line
            # about the finished image is printed, so several prompts never print over each other. Each step
            # takes long enough to be drawn (mininterval=0): the last one too, before the bar is cleared.
            with tqdm(total=total, desc=f"prompt {i + 1}/{len(prompts)}", unit="step", leave=False, miniters=1,
                      mininterval=0) as bar:
                image = pipe(prompt, negative_prompt=args.negative, base_steps=base_steps, guidance=guidance,
                             base_size=size, scale=args.scale, steps=args.steps, solver=args.solver,
                             seed=args.seed + i, attention_scale=args.attention_scaling, tile=args.tile,
                             method=args.method, callback=lambda *_: bar.update(1))
            save_image_atomic(image, out)
            print(f"{prompt!r} -> {out} ({image.width}×{image.height}, {time.time() - t0:.1f} s)", flush=True)
    return 0


# What a pipeline's refusal is about → the flag that set it (pipelines/generate.py names no flags).
FLAGS = {"base": "--base", "lcm_lora": "--lcm-lora", "scale": "--scale", "base_size": "--base-size",
         "negative": "--negative:", "attention_scale": "--attention-scaling:"}


@contextlib.contextmanager
def worded_errors(flag: str | None = None):
    """Words the pipelines' plain refusals for this command: the flag first, as a user would fix it."""
    from fmboost.pipelines.generate import GenerateInputError

    try:
        with flag_errors(flag or "--base"):
            yield
    except GenerateInputError as e:
        raise UserError(f"{FLAGS[e.part]} {e}") from None
    except FileNotFoundError as e:
        raise UserError(f"{flag} {e}" if flag else str(e)) from None


def quiet_loading() -> None:
    """Loading from a folder takes seconds; its per-component bars would bury a one-line error."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    dlogging.disable_progress_bar()
    tlogging.disable_progress_bar()
    tlogging.set_verbosity_error()
