"""`fmboost upscale IN... [-o OUT]`: images ×2 (the model's scale) through the flow, or a baseline."""
from __future__ import annotations

import time
from pathlib import Path

from fmboost.cli.common import UserError, check_source, load_pipeline, pick_device
from fmboost.data.sources import read_model_config
from fmboost.flow.names import SOLVER_CHOICES
from fmboost.pipelines.methods import COLOR_FIXES, METHODS


def add_parser(subparsers) -> None:
    up = subparsers.add_parser("upscale", help="upscale images ×2 (or the model's scale)",
                        description="Upscale images: encode, upsample the latent (PSU), transport it with the CFM "
                                    "flow in a few ODE steps, decode. Runs offline on the embedded default model.")
    up.add_argument("inputs", nargs="+", metavar="IN", help="image files (png, jpg, webp, ...)")
    up.add_argument("-o", "--output", help="output file (one input) or folder (several); default: NAME_x2.png beside "
                                           "each input")
    up.add_argument("--model", default="default",
                    help="model folder, hub id, or an embedded model: default (clean photos) or real (degraded, "
                         "real-world photos: blur, noise, JPEG); default: default")
    up.add_argument("--steps", type=int, default=4, help="ODE steps (default 4; NFE = steps × evals per step)")
    up.add_argument("--solver", default="euler", choices=SOLVER_CHOICES,
                    help="ODE solver (flows) or diffusers scheduler (diffusion baseline); default euler")
    up.add_argument("--method", default="cfm", choices=list(METHODS),
                    help="cfm: the flow; x0: decode the upsampled latent without the flow; bicubic/lanczos: "
                         "resize in pixel space; naive-fm, diffusion, regression-l1/l2: baselines trained with "
                         "`objective:` in the training config (the model's objective must match)")
    up.add_argument("--color-fix", choices=COLOR_FIXES,
                    help="take the colours from the input: wavelet (keep the output's fine detail, the input's "
                         "coarser bands) or adain (match each channel's mean and spread), as diffusion upscalers "
                         "do; default: the model's own setting (fmboost info shows it)")
    up.add_argument("--seed", type=int, default=0, help="seed of the noise augmentation of x0 (default 0)")
    up.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    up.add_argument("--tile", action="store_true", help="tiled encode/decode: needed above the pixel limit")
    up.add_argument("--max-pixels", type=int, default=None,
                    help="largest input (width × height) accepted without --tile (default 1048576)")
    up.add_argument("--overwrite", action="store_true", help="replace existing output files")
    up.set_defaults(func=cmd_upscale)


def pixel_scale(model: str) -> int | None:
    """The scale of a pixel-space baseline: the model's, read from its folder without loading it (nor torch)."""
    config = read_model_config(model)
    return None if config is None else int(config["scale"])


def output_paths(inputs: list[str], output: str | None, scale: int) -> list[Path]:
    if output is None:
        return [Path(i).with_name(f"{Path(i).stem}_x{scale}.png") for i in inputs]
    out = Path(output)
    if len(inputs) == 1 and out.suffix:
        return [out]
    return [out / f"{Path(i).stem}_x{scale}.png" for i in inputs]


def cmd_upscale(args) -> int:
    from tqdm.auto import tqdm

    from fmboost.data.images import DEFAULT_MAX_PIXELS, load_image, resize_by, save_image_atomic

    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    # Read and check every input before loading the model, so a bad one fails fast and writes nothing.
    images = []
    for path in args.inputs:
        im = load_image(path)
        if im.width * im.height > max_pixels and not args.tile:
            raise UserError(f"{path}: {im.width}×{im.height} is over the limit of {max_pixels} pixels; "
                            f"add --tile (or raise --max-pixels)")
        images.append(im)
    pipe, scale = None, pixel_scale(args.model) if args.method in ("bicubic", "lanczos") else None
    if scale is None:  # the model runs (or its scale is only known once loaded: a hub id)
        check_source(args.model, "--model")  # before torch is imported (pick_device)
        pipe = load_pipeline(args.model, pick_device(args.device))
        scale = pipe.config["scale"]
    outs = output_paths(args.inputs, args.output, scale)
    for o, i in zip(outs, args.inputs):
        if o.exists() and not args.overwrite:
            raise UserError(f"{o} exists (from {i}); use --overwrite or -o")
    for path, im, out in tqdm(list(zip(args.inputs, images, outs)), desc="upscale", unit="img",
                              disable=len(images) < 2):
        t0 = time.time()
        if pipe is None:
            result = resize_by(im, scale, args.method)
        else:
            result = pipe(im, steps=args.steps, solver=args.solver, method=args.method, seed=args.seed,
                          tile=args.tile, color_fix=args.color_fix)
        save_image_atomic(result, out)
        print(f"{path} -> {out} ({result.width}×{result.height}, {time.time() - t0:.1f} s)")
    return 0
