"""`fmboost upscale clip.mp4 [-o out.mp4]`: the video path of the upscale command (cli/upscale.py parses the flags).

Everything that can be refused is checked before the model loads, and nothing is written when it is: a clip that
cannot be decoded, has no frames or a variable frame rate (data/video.probe), an output size the codec cannot take
(odd sides in H.264's yuv420p), a frame over the pixel limit without --tile, an existing output. The work itself is
in pipelines/video.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

from fmboost.cli.common import UserError, find_model, load_pipeline, pick_device
from fmboost.data.video import CODECS, VIDEO_SUFFIXES, check_output_size, probe

VIDEO_METHODS = ("cfm", "x0", "bicubic")
KEEP_CONTAINER = {".mp4", ".mov", ".mkv", ".m4v"}  # a default output keeps these; others (webm, gif, avi) → mp4


def output_for(args, source: Path, tag: str) -> tuple[Path, bool]:
    """(the output, whether it is a folder of PNG frames)."""
    if args.format not in (None, "png"):
        raise UserError(f"--format {args.format}: a video is written as a video, or as PNG frames with --format png")
    if args.format == "png":
        return (Path(args.output) if args.output else source.with_name(f"{source.stem}_{tag}")), True
    suffix = source.suffix.lower() if source.suffix.lower() in KEEP_CONTAINER else ".mp4"
    if args.output is None:
        return source.with_name(f"{source.stem}_{tag}{suffix}"), False
    out = Path(args.output)
    if out.is_dir():
        return out / f"{source.stem}_{tag}{suffix}", False
    if out.suffix.lower() not in CODECS:
        raise UserError(f"-o {out}: name a video file ({', '.join(sorted(CODECS))}), a folder, or write frames "
                        f"with --format png")
    return out, False


def check_inputs(args) -> Path:
    if len(args.inputs) > 1:
        raise UserError("give one video per run (a video cannot be upscaled with other inputs)")
    if args.method not in VIDEO_METHODS:
        raise UserError(f"--method {args.method}: a video takes {', '.join(VIDEO_METHODS)}")
    if args.recursive:
        raise UserError("-r walks folders of images; it does not apply to a video")
    if not 0 <= args.crf <= 51:
        raise UserError(f"--crf must be between 0 and 51, got {args.crf}")
    source = Path(args.inputs[0])
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{source}: give one video per run")
    return source


def check_pixels(args, info, passes: int, multiple: int, scale: int, max_pixels: int) -> None:
    from fmboost.pipelines import budget

    try:
        budget.plan(info.width, info.height, multiple, passes, scale, max_pixels=None if args.tile else max_pixels)
    except budget.OverBudget as e:
        raise UserError(f"{info.path}: each frame {e}; add --tile (or raise --max-pixels)") from None


def cmd_video(args, size) -> int:
    import time

    from tqdm.auto import tqdm

    from fmboost.data.images import DEFAULT_MAX_PIXELS
    from fmboost.pipelines import scaling

    source = check_inputs(args)
    info = probe(source)
    model = find_model(args.model)
    model_scale = model.config.scale if model.config else 2
    target = scaling.target_size(info.width, info.height, args.scale or (None if size else model_scale), size)
    output, frames_dir = output_for(args, source, scaling.size_tag(args.scale, size, model_scale))
    if not frames_dir:
        check_output_size(output, *target)
    if output.exists() and not (args.overwrite or (args.resume and frames_dir)):
        raise UserError(f"{output} exists; use --overwrite, --resume (a folder of frames) or another -o")
    passes = 1 if args.method == "bicubic" else scaling.model_passes(info.width, info.height, target, model_scale)
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    # Unpadded now (the padding is the network's, known once loaded): refuses only what is over the limit anyway.
    check_pixels(args, info, passes, 1, model_scale, max_pixels)

    device = pick_device(args.device)
    run, aligned = make_run(args, model, device, model_scale, info, passes, max_pixels)
    from fmboost.pipelines.video import CONTEXT, VideoPlan, upscale_video, window_for

    context = CONTEXT if aligned else 0
    plan = VideoPlan(info, output, frames_dir, target, passes, args.resume, args.crf,
                     window_for(info.width, info.height, max_pixels, context), context)
    t0 = time.time()
    try:
        with tqdm(total=info.frames, desc="upscale", unit="frame", disable=None) as bar:
            upscale_video(plan, run, bar.update)
    except KeyboardInterrupt:
        if args.resume:
            print("fmboost upscale: the finished frames are kept; the same command continues from them",
                  file=sys.stderr)
        raise
    mode = "aligned" if aligned else ("per frame" if args.method == "cfm" else args.method)
    print(f"{source} -> {output} ({info.frames} frames, {target[0]}×{target[1]}, {mode}, "
          f"{time.time() - t0:.1f} s)", flush=True)
    return 0


def make_run(args, model, device: str, model_scale: int, info, passes: int, max_pixels: int):
    """(run: F×3×h×w → F×3×(h·s)×(w·s) in [-1, 1], whether the temporal layers are used)."""
    import torch

    if args.method == "bicubic":
        from fmboost.pipelines.video import pixel_run

        return pixel_run(model_scale, "bicubic"), False
    from fmboost.pipelines.precision import resolve_dtype

    dtype, notice = resolve_dtype(args.dtype, device)
    if notice:
        print(f"fmboost upscale: {notice}", file=sys.stderr)
    pipe = load_pipeline(model, device)
    check_pixels(args, info, passes, pipe.pad_multiple, model_scale, max_pixels)
    aligned = args.method == "cfm" and not args.per_frame and pipe.aligned
    if args.method == "cfm" and not args.per_frame and not pipe.aligned:
        print("fmboost upscale: this model has no temporal layers (temporal/): upscaling frame by frame",
              file=sys.stderr)

    def run(x):
        with torch.autocast(pipe.device.type, dtype=dtype, enabled=dtype not in (None, torch.float32)):
            return pipe.upscale_clip(x, aligned=aligned, steps=args.steps, solver=args.solver, seed=args.seed,
                                     color_fix=args.color_fix, tile=args.tile, tile_size=args.tile_size,
                                     method=args.method, tau=args.tau)
    return run, aligned
