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

    up = sub.add_parser("upscale", help="upscale images ×2 (or the model's scale)",
                        description="Upscale images: encode, upsample the latent (PSU), transport it with the CFM "
                                    "flow in a few ODE steps, decode. Runs offline on the embedded default model.")
    up.add_argument("inputs", nargs="+", metavar="IN", help="image files (png, jpg, webp, ...)")
    up.add_argument("-o", "--output", help="output file (one input) or folder (several); default: NAME_x2.png beside "
                                           "each input")
    up.add_argument("--model", default="default",
                    help="model folder, hub id, or an embedded model: default (clean photos) or real (degraded, "
                         "real-world photos: blur, noise, JPEG); default: default")
    up.add_argument("--steps", type=int, default=4, help="ODE steps (default 4; NFE = steps × evals per step)")
    up.add_argument("--solver", default="euler", choices=["euler", "midpoint", "heun", "rk4", "dopri5", "ddim", "ddpm"],
                    help="ODE solver (flows) or diffusers scheduler (diffusion baseline); default euler")
    up.add_argument("--method", default="cfm", choices=list(METHODS),
                    help="cfm: the flow; x0: decode the upsampled latent without the flow; bicubic/lanczos: "
                         "resize in pixel space; naive-fm, diffusion, regression-l1/l2: baselines trained with "
                         "`objective:` in the training config (the model's objective must match)")
    up.add_argument("--seed", type=int, default=0, help="seed of the noise augmentation of x0 (default 0)")
    up.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    up.add_argument("--tile", action="store_true", help="tiled encode/decode: needed above the pixel limit")
    up.add_argument("--max-pixels", type=int, default=None,
                    help="largest input (width × height) accepted without --tile (default 1048576)")
    up.add_argument("--overwrite", action="store_true", help="replace existing output files")
    up.set_defaults(func=cmd_upscale)

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

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
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


def output_paths(inputs: list[str], output: str | None, scale: int) -> list[Path]:
    if output is None:
        return [Path(i).with_name(f"{Path(i).stem}_x{scale}.png") for i in inputs]
    out = Path(output)
    if len(inputs) == 1 and out.suffix:
        return [out]
    return [out / f"{Path(i).stem}_x{scale}.png" for i in inputs]


def cmd_upscale(args) -> int:
    from tqdm.auto import tqdm

    from fmboost.data.images import DEFAULT_MAX_PIXELS, load_image, save_image_atomic

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
    device = pick_device(args.device)
    pipe = None if args.method in ("bicubic", "lanczos") and resolve_model(args.model) == str(DEFAULT_MODEL) else \
        load_pipeline(args.model, device)
    scale = pipe.config["scale"] if pipe else 2
    outs = output_paths(args.inputs, args.output, scale)
    for o, i in zip(outs, args.inputs):
        if o.exists() and not args.overwrite:
            raise UserError(f"{o} exists (from {i}); use --overwrite or -o")
    for path, im, out in tqdm(list(zip(args.inputs, images, outs)), desc="upscale", unit="img",
                              disable=len(images) < 2):
        t0 = time.time()
        if pipe is None:
            from fmboost.data.images import resize
            result = resize(im, (im.width * scale, im.height * scale), args.method)
        else:
            result = pipe(im, steps=args.steps, solver=args.solver, method=args.method, seed=args.seed,
                          tile=args.tile)
        save_image_atomic(result, out)
        print(f"{path} -> {out} ({result.width}×{result.height}, {time.time() - t0:.1f} s)")
    return 0


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
