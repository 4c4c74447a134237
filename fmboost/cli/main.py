"""The `fmboost` command. User mistakes end in one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import import_module
from pathlib import Path

from fmboost import DEFAULT_MODEL, EMBEDDED_MODELS
from fmboost.pipelines.methods import METHODS, MODEL_METHODS

EXIT_USAGE = 2
# Further subcommands, one module each in fmboost/cli/ with `add_parser(subparsers)` (sets `func`).
COMMAND_MODULES: tuple[str, ...] = ("eval", "degrade", "generate", "serve")


class UserError(Exception):
    """A mistake in what the user asked for; the message is shown as it is."""


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    from fmboost.data.images import ImageError

    try:
        return args.func(args) or 0
    except (UserError, ImageError, FileNotFoundError, ValueError) as e:
        print(f"fmboost {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fmboost",
        description="Boost images and latent diffusion outputs to high resolution with coupling flow matching (CFM).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # --- upscale parser (issue 14: folders, any scale, alpha/ICC/EXIF, seamless tiles, precision, exit codes) ---
    up = sub.add_parser("upscale", help="upscale images or folders ×2 (or any scale or size)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Upscale images: encode, upsample the latent (PSU), transport it with the CFM "
                                    "flow in a few ODE steps, decode. Runs offline on the embedded default model.\n"
                                    "Alpha, ICC profile and EXIF are kept (EXIF orientation is applied to the "
                                    "pixels and reset).",
                        epilog=UPSCALE_EXIT_CODES)
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
    up.add_argument("--solver", default="euler", choices=["euler", "midpoint", "heun", "rk4", "dopri5", "ddim", "ddpm"],
                    help="ODE solver (flows) or diffusers scheduler (diffusion baseline); default euler")
    up.add_argument("--method", default="cfm", choices=list(METHODS),
                    help="cfm: the flow; x0: decode the upsampled latent without the flow; bicubic/lanczos: "
                         "resize in pixel space; naive-fm, diffusion, regression-l1/l2: baselines trained with "
                         "`objective:` in the training config (the model's objective must match)")
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
    # --- end of upscale parser ---

    pr = sub.add_parser("prepare", help="encode photos into training shards of latent pairs",
                        description="Crop photos, encode high-res crops (x1) and their bicubic downscales (z_lr), "
                                    "upsample z_lr (x_cond), and write safetensors shards with a manifest. "
                                    "Resumable: run it again to continue. Under torchrun or srun each process "
                                    "makes its own share of the shards; the last to finish writes manifest.json.")
    pr.add_argument("images_dirs", nargs="*", metavar="IMAGES_DIR", help="folder(s) of photos (searched recursively)")
    pr.add_argument("--out", help="output folder for shards and manifest.json")
    pr.add_argument("--vae", help="autoencoder: hub id (e.g. stabilityai/sd-vae-ft-mse) or folder")
    pr.add_argument("--size", type=int, default=256, help="high-res crop size in pixels (default 256)")
    pr.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    pr.add_argument("--upsampling", default="psu", choices=["psu", "bilinear", "nearest"])
    pr.add_argument("--crops-per-image", type=int, default=4)
    pr.add_argument("--images-per-shard", type=int, default=64,
                    help="photos per shard (default 64): the unit that processes split and training streams")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--degradation", default="none", choices=["none", "realesrgan"],
                    help="low-res crops: bicubic (none) or Real-ESRGAN's random blur, resize, noise and JPEG")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.add_argument("--rank", type=int, default=env_int("RANK", "SLURM_PROCID", default=0),
                    help="this process's share of the shards (default: $RANK or $SLURM_PROCID, else 0)")
    pr.add_argument("--world-size", type=int, default=env_int("WORLD_SIZE", "SLURM_STEP_NUM_TASKS", default=1),
                    help="number of processes sharing the work (default: $WORLD_SIZE or srun's "
                         "$SLURM_STEP_NUM_TASKS, else 1)")
    pr.add_argument("--merge", metavar="DIR",
                    help="only write DIR/manifest.json from the per-rank manifests of a finished sharded run")
    pr.add_argument("--from", dest="source", metavar="SHARDS",
                    help="derive shards from prepared ones with another --upsampling: same crops and targets, "
                         "x_cond recomputed from their z_lr (no photos or --vae needed)")
    pr.set_defaults(func=cmd_prepare)

    tr = sub.add_parser("train", help="train a CFM model on prepared latents",
                        description="Train the CFM U-Net on shards from `fmboost prepare`. The flags override the "
                                    "config file, which is optional. Writes OUT/model (for --model), checkpoints, "
                                    "log.csv, TensorBoard logs and sample grids.")
    tr.add_argument("--config", help="YAML or JSON file of training settings (see recipes/)")
    tr.add_argument("--data", help="folder made by `fmboost prepare`")
    tr.add_argument("--preset", choices=["tiny", "faces", "general"])
    tr.add_argument("--objective", choices=list(MODEL_METHODS),
                    help="cfm (default) or one of the paper's baselines, same U-Net and data")
    tr.add_argument("--init", metavar="MODEL_DIR",
                    help="fine-tune: start from this model's CFM weights (e.g. the embedded default)")
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--batch-size", type=int, help="the global batch of a step, summed over all processes")
    tr.add_argument("--lr", type=float)
    tr.add_argument("--tau", type=float, help="noise-augmentation step of x0 (0..1000, 0 = off)")
    tr.add_argument("--out", help="output folder")
    tr.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast")
    tr.add_argument("--max-minutes", type=float, help="stop cleanly after this long (resume later)")
    tr.add_argument("--resume", nargs="?", const="auto", choices=["auto"],
                    help="continue from the newest complete checkpoint in OUT/checkpoints (damaged ones are "
                         "skipped; none: start at step 0)")
    tr.set_defaults(func=cmd_train)

    info = sub.add_parser("info", help="describe a model folder",
                          description="Print a model's settings, autoencoder and parameter counts.")
    info.add_argument("model", nargs="?", default="default", help="model folder, hub id, default or real")
    info.set_defaults(func=cmd_info)
    for name in COMMAND_MODULES:
        import_module(f"fmboost.cli.{name}").add_parser(sub)
    return p


def quiet_libraries() -> None:
    import warnings

    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def pick_device(name: str) -> str:
    import torch

    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "mps" and not mps:
        raise UserError("--device mps: no Apple MPS device is available (macOS with Apple silicon only)")
    return name


def env_int(*names: str, default: int) -> int:
    """The first of these environment variables that is set (launchers such as torchrun and srun set them)."""
    return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)


def resolve_model(model: str) -> str:
    """An embedded model's name (`default`, `real`) means its folder, unless a local folder has that name."""
    return str(EMBEDDED_MODELS[model]) if model in EMBEDDED_MODELS and not Path(model).exists() else model


def load_pipeline(model: str, device: str):
    from fmboost.pipelines.upscale import CONFIG_NAME, FMBoostPipeline

    model = resolve_model(model)
    if Path(model).parent == DEFAULT_MODEL.parent and not (Path(model) / CONFIG_NAME).exists():
        raise UserError(f"the embedded model is missing from {model}; reinstall fmboost or pass --model")
    if not Path(model).exists() and not looks_like_hub_id(model):
        raise UserError(f"--model {model}: no such folder")
    return FMBoostPipeline.from_pretrained(model, device=device)


def looks_like_hub_id(name: str) -> bool:
    import re

    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith((".", "/"))


# --- upscale (issue 14): the handler; the work itself is in pipelines/batch.py, scaling.py, tiling.py ---
EXIT_SOME_FAILED = 1
UPSCALE_EXIT_CODES = """exit codes:
  0  every image written (or skipped: its output exists and was found by walking a folder)
  1  some images failed (listed at the end); the others were written
  2  a usage error or a bad file named on the command line (nothing written), or every image failed
     (none written, none skipped)"""


def known_scale(model: str) -> int | None:
    """The model's factor from its fmboost.json without loading it (None for a hub id: load it to know)."""
    config = Path(resolve_model(model)) / "fmboost.json"
    return int(json.loads(config.read_text()).get("scale", 2)) if config.is_file() else None


def over_limit(args, max_pixels: int):
    """`check` for open_image: refuses an image the first model pass cannot take untiled, before decoding."""
    def check(im):
        from fmboost.data.images import ImageError

        if im.width * im.height > max_pixels and not args.tile:
            raise ImageError(f"{im.filename or 'image'}: {im.width}×{im.height} is over the limit of {max_pixels} "
                             f"pixels; add --tile (or raise --max-pixels)")
    return check


def cmd_upscale(args) -> int:
    from tqdm.auto import tqdm

    from fmboost.data.images import DEFAULT_MAX_PIXELS, ImageError, open_image, resize
    from fmboost.pipelines import batch, scaling
    from fmboost.pipelines.precision import resolve_dtype

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
    model_free = args.method in ("bicubic", "lanczos") and resolve_model(args.model) == str(DEFAULT_MODEL)
    device = pick_device(args.device)
    dtype, notice = resolve_dtype(args.dtype, device)
    if notice:
        print(f"fmboost upscale: {notice}", file=sys.stderr)
    model_scale = 2 if model_free else known_scale(args.model)
    pipe = None if model_free or model_scale is not None else load_pipeline(args.model, device)
    model_scale = model_scale or pipe.config["scale"]
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
                    tile_size=args.tile_size, dtype=dtype,
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
                largest = scaling.largest_pass_input(*image.size, passes, model_scale)
                if largest[0] * largest[1] > max_pixels and not args.tile:
                    raise ImageError(f"{job.source}: {passes} ×{model_scale} passes reach {largest[0]}×{largest[1]}, "
                                     f"over the limit of {max_pixels} pixels; add --tile (or raise --max-pixels)")
                result = batch.upscale_file(job, image, target, passes, run)
        except (ImageError, ValueError, OSError, MemoryError) as e:
            failures.append(f"{job.source}: {e}" if str(job.source) not in str(e) else str(e))
            tqdm.write(f"fmboost upscale: error: {failures[-1]}", file=sys.stderr)
            continue
        tqdm.write(f"{job.source} -> {job.output} ({result.width}×{result.height}, {time.time() - t0:.1f} s)")
    return report_batch(len(jobs) - len(todo), len(todo), failures)


def report_batch(skipped: int, tried: int, failures: list[str]) -> int:
    """The batch's last words: what was skipped and what failed; the exit code (see UPSCALE_EXIT_CODES)."""
    if skipped:
        print(f"skipped {skipped} image(s) whose output exists (--overwrite to redo them)")
    if not failures:
        return 0
    if tried > 1:
        print(f"fmboost upscale: {len(failures)} of {tried} image(s) failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
    return EXIT_USAGE if len(failures) == tried and not skipped else EXIT_SOME_FAILED
# --- end of upscale ---


def cmd_prepare(args) -> int:
    from fmboost.data.prepare import merge, prepare, reupsample

    if args.merge:
        m = merge(args.merge)
        print(f"{m['count']} training pairs in {args.merge} ({len(m['shards'])} shards merged)")
        return 0
    if args.source:
        if args.images_dirs or not args.out:
            raise UserError("--from SHARDS takes --out and --upsampling, not photo folders")
        m = reupsample(args.source, args.out, args.upsampling, device=pick_device(args.device))
        print(f"{m['count']} training pairs in {args.out} ({args.upsampling} upsampling of {args.source})")
        return 0
    if not args.images_dirs or not args.out or not args.vae:
        raise UserError("give IMAGES_DIR(s), --out and --vae (or --merge DIR)")
    for folder in args.images_dirs:
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: no such folder")
    device = pick_device(args.device)
    if device == "cuda" and args.world_size > 1:  # one GPU per process on a node
        device = f"cuda:{env_int('LOCAL_RANK', 'SLURM_LOCALID', default=0)}"
    m = prepare(args.images_dirs, args.out, args.vae, size=args.size, scale=args.scale, upsampling=args.upsampling,
                crops_per_image=args.crops_per_image, images_per_shard=args.images_per_shard, seed=args.seed,
                device=device, degradation=args.degradation, rank=args.rank, world_size=args.world_size)
    share = f" (rank {args.rank} of {args.world_size})" if args.world_size > 1 else ""
    print(f"{m['count']} training pairs in {args.out}{share}; {len(m['skipped'])} image(s) skipped")
    for s in m["skipped"]:
        print(f"  skipped {s}")
    return 0


def cmd_train(args) -> int:
    from fmboost.training.config import TrainConfig
    from fmboost.training.train import TrainingDiverged, TrainingStopped, train

    if args.config and not Path(args.config).exists():
        raise UserError(f"--config {args.config}: no such file")
    if args.init and not Path(args.init).is_dir():
        raise UserError(f"--init {args.init}: no such model folder")
    cfg = TrainConfig.load(args.config, data=args.data, preset=args.preset, objective=args.objective,
                           max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, tau=args.tau,
                           init=args.init, out=args.out, bf16=args.bf16, max_minutes=args.max_minutes)
    say = print if env_int("RANK", default=0) == 0 else (lambda *a, **kw: None)  # one process speaks for all
    try:
        model_dir = train(cfg, resume=args.resume)
    except TrainingDiverged as e:
        say(f"fmboost train: {e}", file=sys.stderr)
        return 1
    except TrainingStopped as e:
        say(f"fmboost train: {e}", file=sys.stderr)
        return e.exit_code
    say(f"model written to {model_dir} (use: fmboost upscale IMAGE --model {model_dir})")
    return 0


def cmd_info(args) -> int:
    pipe = load_pipeline(args.model, "cpu")
    count = lambda m: sum(p.numel() for p in m.parameters())
    ae = pipe.autoencoder
    print(json.dumps({
        "model": str(args.model), **pipe.config,
        "autoencoder": {"parameters": count(ae.vae), "downsample_factor": ae.downsample_factor,
                        "latent_channels": ae.latent_channels, "scaling_factor": ae.scaling_factor},
        "cfm": None if pipe.model is None else {"parameters": count(pipe.model), **dict(pipe.model.config)},
    }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
