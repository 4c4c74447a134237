"""`fmboost upscale IN... [-o OUT]`: images or folders ×2 (or any scale or size) through the flow, or a baseline.

The work itself is in pipelines/batch.py (jobs, reading, writing with alpha/ICC/EXIF), pipelines/scaling.py (passes
of the model and the final resize) and pipelines/tiling.py (seamless tiles).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fmboost.cli.common import EXIT_USAGE, UserError, check_source, load_pipeline, pick_device
from fmboost.data.sources import read_model_config
from fmboost.flow.names import SOLVER_CHOICES
from fmboost.pipelines.methods import COLOR_FIXES, METHODS

EXIT_SOME_FAILED = 1
EXIT_CODES = """exit codes:
  0  every image written (or skipped: its output exists and was found by walking a folder)
  1  some images failed (listed at the end); the others were written
  2  a usage error or a bad file named on the command line (nothing written), or every image failed
     (none written, none skipped)"""


def add_parser(subparsers) -> None:
    up = subparsers.add_parser(
        "upscale", help="upscale images or folders ×2 (or any scale or size)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Upscale images: encode, upsample the latent, transport it with the CFM flow in a few ODE "
                    "steps, decode. Runs offline on the embedded default model.\nAlpha, ICC profile and EXIF are "
                    "kept (EXIF orientation is applied to the pixels and reset).",
        epilog=EXIT_CODES)
    up.add_argument("inputs", nargs="+", metavar="IN", help="image files (png, jpg, webp, tiff, ...) or folders")
    up.add_argument("-o", "--output", help="output file (one input) or folder; default: NAME_x2.png beside each "
                                           "file, FOLDER_x2/ beside each folder")
    up.add_argument("-r", "--recursive", action="store_true",
                    help="walk the sub-folders of folder inputs and keep their structure in the output")
    up.add_argument("--model", default="default",
                    help="model folder, hub id, or an embedded model: default (clean photos) or real (degraded, "
                         "real-world photos: blur, noise, JPEG); default: default")
    up.add_argument("--scale", type=float, default=None,
                    help="output scale, any factor (3, 1.5, ...): the ×2 model runs as often as needed, then one "
                         "Lanczos resize to the exact size; default: the model's own factor")
    up.add_argument("--size", help="exact output size WIDTHxHEIGHT (e.g. 1920x1080), or WIDTHx / xHEIGHT to keep "
                                   "the aspect ratio; instead of --scale")
    up.add_argument("--format", default="png", choices=["png", "jpg", "webp", "tiff", "same"],
                    help="output format when -o is not a file name (default png; same: the input's)")
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
    up.add_argument("--seed", type=int, default=0,
                    help="seed of the noise augmentation of x0 (default 0). The embedded models start from the "
                         "clean x0 (τ = 0), so for them --seed changes nothing")
    up.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                    help="auto: cuda, else mps, else cpu")
    up.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                    help="compute precision (autocast; default fp32). fp16 is refused on the CPU; bf16 on a CPU "
                         "without AVX-512 BF16/AMX falls back to fp32 with a notice")
    up.add_argument("--tile", action="store_true",
                    help="seamless tiles: the whole upscale per overlapping tile, feather-blended; memory stays "
                         "bounded whatever the image size (needed above the pixel limit)")
    up.add_argument("--tile-size", type=int, default=None, metavar="PX",
                    help="tile side in input pixels (implies --tile; default: as large as half the free memory "
                         "allows, 128..1024)")
    up.add_argument("--max-pixels", type=int, default=None,
                    help="largest image (width × height) a model pass accepts without --tile (default 1048576)")
    up.add_argument("--overwrite", action="store_true",
                    help="replace existing outputs (else: an error for files named here, skipped for files found "
                         "in folders)")
    up.set_defaults(func=cmd_upscale)


def known_scale(model: str) -> int | None:
    """The model's factor, read from its folder without loading it (nor torch); None for a hub id: load it to know."""
    config = read_model_config(model)
    return None if config is None else int(config.get("scale", 2))


def over_limit(args, max_pixels: int):
    """`check` for open_image: refuses an image the first model pass cannot take untiled, before decoding."""
    def check(im):
        from fmboost.data.images import ImageError

        if im.width * im.height > max_pixels and not args.tile:
            raise ImageError(f"{im.filename or 'image'}: {im.width}×{im.height} is over the limit of {max_pixels} "
                             f"pixels; add --tile (or raise --max-pixels)")
    return check


def check_work(pipe, args, size: tuple[int, int], passes: int, max_pixels: int) -> None:
    """Refuses an image whose padded size on some pass is over the limit, untiled: the size the model will
    process, not the file's (a 1 × 1,048,576 strip is 8 MP to a model padding to 8). Before any model work."""
    from fmboost.data.images import ImageError
    from fmboost.pipelines import budget
    from fmboost.pipelines.methods import PIXEL_BASELINES

    multiple = 1 if args.method in PIXEL_BASELINES else pipe.pad_multiple
    try:
        budget.plan(*size, multiple, passes, pipe.config["scale"], max_pixels=None if args.tile else max_pixels)
    except budget.OverBudget as e:
        raise ImageError(f"{e}; add --tile (or raise --max-pixels)") from None


def cmd_upscale(args) -> int:
    from tqdm.auto import tqdm

    from fmboost.data.images import DEFAULT_MAX_PIXELS, ImageError, open_image, resize
    from fmboost.pipelines import batch, scaling

    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.scale is not None and (args.size or args.scale <= 0):
        raise UserError("--scale must be above 0, and not given with --size")
    try:
        size = scaling.parse_size(args.size) if args.size else None
    except ValueError as e:
        raise UserError(f"--size: {e}") from None
    args.tile = args.tile or args.tile_size is not None
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    check = over_limit(args, max_pixels)
    model_scale = known_scale(args.model)
    # A pixel-space baseline never loads the model (nor torch) when its scale can be read from the folder.
    model_free = args.method in ("bicubic", "lanczos") and model_scale is not None
    pipe = device = dtype = None
    if not model_free:
        check_source(args.model, "--model")  # a hub id that cannot be had fails here, before torch is imported
        from fmboost.pipelines.precision import resolve_dtype

        device = pick_device(args.device)
        dtype, notice = resolve_dtype(args.dtype, device)
        if notice:
            print(f"fmboost upscale: {notice}", file=sys.stderr)
        if model_scale is None:
            pipe = load_pipeline(args.model, device)
            model_scale = pipe.config["scale"]
    jobs = batch.plan_jobs(args.inputs, args.output, scaling.size_tag(args.scale, size, model_scale), args.format,
                           args.recursive)
    # Files named on the command line are checked before any work, so a typo or an existing output costs nothing.
    for job in (j for j in jobs if j.named):
        open_image(job.source, check=check, decode=False)
        if job.output.exists() and not args.overwrite:
            raise UserError(f"{job.output} exists (from {job.source}); use --overwrite or -o")
    todo = [j for j in jobs if j.named or args.overwrite or not j.output.exists()]
    if not jobs:
        raise UserError(f"no images in {', '.join(args.inputs)}" + ("" if args.recursive else " (-r: sub-folders)"))
    if pipe is None and not model_free and todo:
        pipe = load_pipeline(args.model, device)

    def run(image):  # bars (on a terminal) for the long inner loops: tiles, and dopri5's unknown step count
        return pipe(image, steps=args.steps, solver=args.solver, method=args.method, seed=args.seed, tile=args.tile,
                    tile_size=args.tile_size, dtype=dtype, color_fix=args.color_fix,
                    disable=None if args.tile or args.solver == "dopri5" else True)

    failures = []
    for job in tqdm(todo, desc="upscale", unit="img", disable=True if len(todo) < 2 else None):
        t0 = time.time()
        try:
            image = batch.read(job.source, check)
            target = scaling.target_size(*image.size, args.scale or (None if size else model_scale), size)
            if model_free:
                result = batch.upscale_file(job, image, target, 1, lambda im: resize(im, target, args.method))
            else:
                passes = scaling.model_passes(*image.size, target, model_scale)
                check_work(pipe, args, image.size, passes, max_pixels)
                result = batch.upscale_file(job, image, target, passes, run)
        except (ImageError, ValueError, OSError, MemoryError) as e:
            failures.append(f"{job.source}: {e}" if str(job.source) not in str(e) else str(e))
            tqdm.write(f"fmboost upscale: error: {failures[-1]}", file=sys.stderr)
            continue
        tqdm.write(f"{job.source} -> {job.output} ({result.width}×{result.height}, {time.time() - t0:.1f} s)")
    return report_batch(len(jobs) - len(todo), len(todo), failures)


def report_batch(skipped: int, tried: int, failures: list[str]) -> int:
    """The batch's last words: what was skipped and what failed; the exit code (see EXIT_CODES)."""
    if skipped:
        print(f"skipped {skipped} image(s) whose output exists (--overwrite to redo them)")
    if not failures:
        return 0
    if tried > 1:
        print(f"fmboost upscale: {len(failures)} of {tried} image(s) failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
    return EXIT_USAGE if len(failures) == tried and not skipped else EXIT_SOME_FAILED
