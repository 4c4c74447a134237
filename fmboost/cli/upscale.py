"""`fmboost upscale IN... [-o OUT]`: images or folders ×2 (or any scale or size) through the flow, or a baseline.

The work itself is in pipelines/batch.py (jobs, reading, writing with alpha/ICC/EXIF), pipelines/scaling.py (passes
of the model and the final resize) and pipelines/tiling.py (seamless tiles).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fmboost.cli.common import (EXIT_USAGE, UserError, add_device_flag, add_solver_flag, add_steps_flag, check_steps,
                                find_model, load_pipeline, pick_device)
from fmboost.data.video import DEFAULT_CRF, is_video
from fmboost.pipelines.methods import COLOR_FIXES, METHODS

EXIT_SOME_FAILED = 1
# The largest sampling τ: the noise schedules have 1,000 steps, and at step 999 x0 is pure noise.
MAX_TAU = 999
# The smallest --tile-size: below it a tile is mostly overlap (pipelines/tiling.default_overlap) and padding.
MIN_TILE_SIZE = 32
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
    up.add_argument("inputs", nargs="+", metavar="IN",
                    help="image files (png, jpg, webp, tiff, ...) or folders; or one video (mp4, mov, mkv, webm, gif)")
    up.add_argument("-o", "--output", help="output file (one input) or folder; default: NAME_x2.png beside each "
                                           "file, FOLDER_x2/ beside each folder")
    up.add_argument("-r", "--recursive", action="store_true",
                    help="walk the sub-folders of folder inputs and keep their structure in the output")
    up.add_argument("--model", default="default",
                    help="model folder, hub id, or an embedded model: default (clean photos) or real (degraded, "
                         "real-world photos: blur, noise, JPEG); default: default")
    up.add_argument("--scale", type=float, default=None,
                    help="output scale, any factor (3, 1.5, ...): the ×2 model runs as often as needed (after the "
                         "first pass, the model its fmboost.json names as next_model: `real` hands over to "
                         "`default`), then one Lanczos resize to the exact size; default: the model's own factor")
    up.add_argument("--size", help="exact output size WIDTHxHEIGHT (e.g. 1920x1080), or WIDTHx / xHEIGHT to keep "
                                   "the aspect ratio; instead of --scale")
    up.add_argument("--format", default=None, choices=["png", "jpg", "webp", "tiff", "same"],
                    help="output format when -o is not a file name (default png; same: the input's). For a video: "
                         "png writes its frames as DIR/000001.png… (-o DIR; default NAME_x2/ beside it)")
    add_steps_flag(up)
    add_solver_flag(up)
    up.add_argument("--method", default="cfm", choices=list(METHODS),
                    help="cfm: the flow; x0: decode the upsampled latent without the flow; bicubic/lanczos: "
                         "resize in pixel space; naive-fm, diffusion, regression-l1/l2: baselines trained with "
                         "`objective:` in the training config (the model's objective must match)")
    up.add_argument("--color-fix", choices=COLOR_FIXES,
                    help="take the colours from the input: wavelet (keep the output's fine detail, the input's "
                         "coarser bands), adain (match each channel's mean and spread), as diffusion upscalers "
                         "do, or luma (wavelet for brightness, the input's own colour resized); default: the "
                         "model's own setting (fmboost info shows it)")
    up.add_argument("--tau", type=float, default=None, metavar="T",
                    help=f"sampling τ, 0 to {MAX_TAU:g}: start the flow from x0 noised to diffusion step T, like the "
                         "noise augmentation of training. Higher: more generated detail (lower NIQE), less fidelity "
                         "(lower PSNR); docs/default_model.md measures the trade. Default: the model's own "
                         "(fmboost info; 0, the clean x0, for the embedded models, whose detail setting is "
                         "--tau 200 --steps 1)")
    up.add_argument("--seed", type=int, default=0,
                    help="seed of the noise augmentation of x0 (default 0); changes nothing at τ = 0, the "
                         "embedded models' own setting")
    add_device_flag(up)
    up.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                    help="compute precision (autocast). auto (the default): bf16 where the hardware computes it "
                         "natively (a CPU with AVX-512 BF16 or AMX, a CUDA GPU with bf16), else fp32; fp32 gives "
                         "the same output on every machine. fp16 is refused on the CPU; bf16 on a CPU without "
                         "AVX-512 BF16/AMX falls back to fp32 with a notice")
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
    video = up.add_argument_group("video", "a video input (mp4, mov, mkv, webm, gif) is written as a video with "
                                           "every frame, its frame rate and time base, and its audio copied unchanged; "
                                           "H.264 (mp4 unless -o names .mov, .mkv, .webm or .gif)")
    video.add_argument("--crf", type=int, default=DEFAULT_CRF,
                       help=f"H.264 quality, 0 (lossless) to 51; lower is better and larger (default {DEFAULT_CRF})")
    video.add_argument("--per-frame", action="store_true",
                       help="upscale each frame alone, without the model's temporal layers (which keep detail "
                            "from flickering between frames)")
    video.add_argument("--resume", action="store_true",
                       help="keep finished frames (in -o DIR with --format png, else in .NAME.frames/ beside the "
                            "video, encoded at the end) and skip them when run again after an interruption")
    up.set_defaults(func=cmd_upscale)


def over_limit(args, max_pixels: int):
    """`check` for open_image: refuses an image the first model pass cannot take untiled, before decoding."""
    def check(im):
        from fmboost.data.images import ImageError

        if im.width * im.height > max_pixels and not args.tile:
            raise ImageError(f"{im.filename or 'image'}: {im.width}×{im.height} is over the limit of {max_pixels} "
                             f"pixels; add --tile (or raise --max-pixels)")
    return check


def check_flags(args):
    """The flags' own mistakes, before any file is looked at; returns the --size asked for (or None)."""
    from fmboost.pipelines import scaling

    check_steps(args.steps)
    if args.scale is not None and (args.size or args.scale <= 0):
        raise UserError("--scale must be above 0, and not given with --size")
    if args.tile_size is not None and args.tile_size < MIN_TILE_SIZE:
        raise UserError(f"--tile-size must be at least {MIN_TILE_SIZE} input pixels, got {args.tile_size} "
                        f"(neighbouring tiles overlap by an eighth of a tile, at least a few pixels)")
    if args.tau is not None and not 0 <= args.tau <= MAX_TAU:
        raise UserError(f"--tau must be between 0 and {MAX_TAU:g} (a diffusion step), got {args.tau:g}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UserError(f"--max-pixels must be positive, got {args.max_pixels}")
    try:
        return scaling.parse_size(args.size) if args.size else None
    except ValueError as e:
        raise UserError(f"--size {e}") from None


def plan(args, size, model_scale: int, check) -> list:
    """The jobs, with the files named on the command line checked before any work (and before torch is imported),
    so a typo or an existing output costs nothing."""
    from fmboost.data.images import IMAGE_SUFFIXES, open_image
    from fmboost.pipelines import batch, scaling

    several = len(args.inputs) > 1 or Path(args.inputs[0]).is_dir()
    if args.output and several and Path(args.output).suffix.lower() in IMAGE_SUFFIXES | {".jpeg"} \
            and not Path(args.output).is_dir():
        raise UserError(f"-o {args.output} names one image file, but these inputs make several images: give -o "
                        f"FOLDER (a name without an image suffix), or one input per run")
    jobs = batch.plan_jobs(args.inputs, args.output, scaling.size_tag(args.scale, size, model_scale),
                           args.format or "png", args.recursive)
    for job in (j for j in jobs if j.named):
        open_image(job.source, check=check, decode=False)
        if job.output.exists() and not args.overwrite:
            other = "another -o" if args.output else "-o"
            raise UserError(f"{job.output} exists (from {job.source}); use --overwrite or {other}")
    if not jobs:
        raise UserError(f"no images in {', '.join(args.inputs)}" + ("" if args.recursive else " (-r: sub-folders)"))
    return jobs


def check_work(pipe, args, size: tuple[int, int], passes: int, max_pixels: int) -> None:
    """Refuses an image whose padded size on some pass is over the limit, untiled: the size the model will
    process, not the file's (a 1 × 1,048,576 strip is 8 MP to a model padding to 8). Before any model work."""
    from fmboost.data.images import ImageError
    from fmboost.pipelines import budget
    from fmboost.pipelines.methods import PIXEL_BASELINES

    multiple = 1 if args.method in PIXEL_BASELINES else pipe.pad_multiple
    try:
        budget.plan(*size, multiple, passes, pipe.config.scale, max_pixels=None if args.tile else max_pixels)
    except budget.OverBudget as e:
        raise ImageError(f"{e}; add --tile (or raise --max-pixels)") from None


def cmd_upscale(args) -> int:
    from tqdm.auto import tqdm

    from fmboost.data.images import DEFAULT_MAX_PIXELS, ImageError, resize
    from fmboost.pipelines import batch, scaling
    from fmboost.pipelines.cascade import Cascade

    size = check_flags(args)
    args.tile = args.tile or args.tile_size is not None
    if any(is_video(name) for name in args.inputs):
        from fmboost.cli.video import cmd_video

        return cmd_video(args, size)
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    check = over_limit(args, max_pixels)
    source = find_model(args.model)  # resolved and its fmboost.json read once, before torch is imported
    model_scale = source.config.scale if source.config else None  # a hub id says once loaded
    own_steps = source.config.steps if source.config else None
    own_tau = source.config.tau if source.config else None
    steps = args.steps or own_steps
    if args.tau and steps and steps > 1 and own_tau == 0:
        # A model tuned on the clean x0 (the embedded ones) was never tuned for a noised start: from there its
        # later steps drift (docs/default_model.md, the tuning table's τ 200 rows); one step is the detail setting.
        print(f"fmboost upscale: notice: {steps} steps from x0 noised to τ {args.tau:g} can drift far from the "
              f"photo; this model's detail setting is one step (--tau {args.tau:g} --steps 1)", file=sys.stderr)
    # A pixel-space baseline never loads the model (nor torch) when its scale can be read from the folder.
    model_free = args.method in ("bicubic", "lanczos") and model_scale is not None
    jobs = plan(args, size, model_scale, check) if model_scale is not None else None
    pipe = device = dtype = None
    if not model_free:
        from fmboost.pipelines.precision import resolve_dtype

        device = pick_device(args.device)
        dtype, notice = resolve_dtype(args.dtype, device)
        if notice:
            print(f"fmboost upscale: {notice}", file=sys.stderr)
        if model_scale is None:
            pipe = load_pipeline(source, device)
            model_scale = pipe.config.scale
    jobs = jobs if jobs is not None else plan(args, size, model_scale, check)
    todo = [j for j in jobs if j.named or args.overwrite or not j.output.exists()]
    if pipe is None and not model_free and todo:
        pipe = load_pipeline(source, device)

    # One function per pass: the model's, then its next_model's (`real` → `default` for ×4; pipelines/cascade.py).
    # Bars (on a terminal) for the long inner loops: tiles, and dopri5's unknown step count.
    run = None if pipe is None else Cascade(pipe, source.where, device).runs(
        steps=args.steps, solver=args.solver, method=args.method, seed=args.seed, tile=args.tile,
        tile_size=args.tile_size, dtype=dtype, color_fix=args.color_fix, tau=args.tau,
        disable=None if args.tile or (args.solver or pipe.config.solver) == "dopri5" else True)

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
    return report_batch(len(jobs), len(jobs) - len(todo), failures)


def report_batch(total: int, skipped: int, failures: list[str]) -> int:
    """The run's last words: how many images were written, skipped and failed, each failure listed again when
    there were several images (its line may have scrolled away); the exit code (see EXIT_CODES)."""
    written = total - skipped - len(failures)
    counts = [f"{written} of {total} image(s) written"]
    if skipped:
        counts.append(f"skipped {skipped} whose output exists (--overwrite to redo them)")
    if failures:
        counts.append(f"{len(failures)} failed")
    print("; ".join(counts), flush=True)
    if failures and total > 1:
        print(f"fmboost upscale: {len(failures)} of {total} image(s) failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
    if not failures:
        return 0
    return EXIT_USAGE if not written and not skipped else EXIT_SOME_FAILED
