"""`fmboost prepare IMAGES_DIR... --out DIR --vae VAE`: photos → training shards of latent pairs."""
from __future__ import annotations

from pathlib import Path

from fmboost.cli.common import UserError, add_device_flag, check_source, env_int, flag_errors, pick_device
from fmboost.flow.names import UPSAMPLING


def add_parser(subparsers) -> None:
    pr = subparsers.add_parser("prepare", help="encode photos into training shards of latent pairs",
                        description="Crop photos, encode high-res crops (x1) and their bicubic downscales (z_lr), "
                                    "upsample z_lr (x_cond), and write safetensors shards with a manifest. "
                                    "Resumable: run it again to continue. Under torchrun or srun each process "
                                    "makes its own share of the shards; the last to finish writes manifest.json.")
    pr.add_argument("images_dirs", nargs="*", metavar="IMAGES_DIR", help="folder(s) of photos (searched recursively)")
    pr.add_argument("--out", help="output folder for shards and manifest.json")
    pr.add_argument("--vae", help="autoencoder: `default` (the embedded one, that the embedded models upscale "
                                  "with), a model folder (its autoencoder/), an AutoencoderKL folder, or a hub id "
                                  "with an optional subfolder (stabilityai/sd-vae-ft-mse, "
                                  "stable-diffusion-v1-5/stable-diffusion-v1-5/vae)")
    pr.add_argument("--size", type=int, default=256, help="high-res crop size in pixels (default 256)")
    pr.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    pr.add_argument("--upsampling", default="psu", choices=UPSAMPLING,
                    help="how x_cond (the flow's x0 and condition) is made from the low-res crop: psu (decode, "
                         "bicubic-enlarge, encode; the default), bilinear or nearest (resize the latent), pixel "
                         "(encode the bicubic-enlarged low-res pixels)")
    pr.add_argument("--crops-per-image", type=int, default=4,
                    help="random crops taken from each photo (default 4)")
    pr.add_argument("--images-per-shard", type=int, default=64,
                    help="photos per shard (default 64): the unit that processes split and training streams")
    pr.add_argument("--seed", type=int, default=0, help="seed of the crops and degradations (default 0)")
    pr.add_argument("--holdout-every", type=int, default=0, metavar="N",
                    help="leave every N-th photo of each folder out (0, the default: none), to tune on photos the "
                         "model never trained on; `fmboost train-autoencoder` holds back the same ones")
    pr.add_argument("--degradation", default="none", choices=["none", "realesrgan"],
                    help="low-res crops: bicubic (none) or Real-ESRGAN's random blur, resize, noise and JPEG")
    pr.add_argument("--cascade", type=int, default=1, metavar="C",
                    help="pairs for the first ×--scale pass of a ×(scale·C) upscale (e.g. --scale 2 --cascade 2 for "
                         "the first pass of --scale 4): crops C times --size, targets their clean bicubic ↓C, low-res "
                         "crops ↓(scale·C) with --degradation; the model then hands a clean image to the next pass "
                         "(default 1: plain pairs)")
    add_device_flag(pr)
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


def cmd_prepare(args) -> int:
    if args.merge:
        from fmboost.training.prepare import merge

        m = merge(args.merge)
        print(f"{m['count']} training pairs in {args.merge} ({len(m['shards'])} shards merged)")
        return 0
    if args.source:
        if args.images_dirs or not args.out:
            raise UserError("--from SHARDS takes --out and --upsampling, not photo folders")
        from fmboost.training.prepare import reupsample

        m = reupsample(args.source, args.out, args.upsampling, device=pick_device(args.device))
        print(f"{m['count']} training pairs in {args.out} ({args.upsampling} upsampling of {args.source})")
        return 0
    if not args.images_dirs or not args.out or not args.vae:
        raise UserError("give IMAGES_DIR(s), --out and --vae (or --merge DIR)")
    for folder in args.images_dirs:
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: no such folder")
    check_source(args.vae, "--vae")  # a hub id that cannot be had fails now, before torch is imported
    from fmboost.training.prepare import prepare

    device = pick_device(args.device)
    if device == "cuda" and args.world_size > 1:  # one GPU per process on a node
        device = f"cuda:{env_int('LOCAL_RANK', 'SLURM_LOCALID', default=0)}"
    with flag_errors("--vae"):
        m = prepare(args.images_dirs, args.out, args.vae, size=args.size, scale=args.scale,
                    upsampling=args.upsampling, crops_per_image=args.crops_per_image,
                    images_per_shard=args.images_per_shard, seed=args.seed, device=device,
                    degradation=args.degradation, rank=args.rank, world_size=args.world_size,
                    holdout_every=args.holdout_every, cascade=args.cascade)
    share = f" (rank {args.rank} of {args.world_size})" if args.world_size > 1 else ""
    print(f"{m['count']} training pairs in {args.out}{share}; {len(m['skipped'])} image(s) skipped")
    for s in m["skipped"]:
        print(f"  skipped {s}")
    return 0
