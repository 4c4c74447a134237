"""`fmboost train-autoencoder --config FILE`: train fmboost's own small AutoencoderKL on folders of photos.

Registered by fmboost/cli/main.py; user mistakes raise an FmboostError (fmboost/errors.py) with a one-line message,
which main turns into exit code 2.
"""
from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-autoencoder", help="train the small latent autoencoder (the embedded models' latent space)",
        description="Train a diffusers AutoencoderKL on random crops of photos: L1 + image-gradient L1 + a tiny KL "
                    "term, optional colour augmentation; every n-th photo is held back and its PSNR logged. "
                    "Writes OUT/autoencoder (usable as `fmboost prepare --vae`), OUT/log.csv and a safetensors "
                    "checkpoint in OUT/checkpoint: run the same command again to resume exactly where it stopped "
                    "(also after Ctrl-C or SIGTERM). See recipes/default/autoencoder.yaml.")
    p.add_argument("--config", help="YAML or JSON file of settings (fmboost/training/autoencoder.py lists them all)")
    p.add_argument("--data", nargs="+", metavar="DIR", help="photo folders (override the config)")
    p.add_argument("--out", help="output folder (override the config)")
    p.add_argument("--steps", type=int, help="total optimiser steps (override the config)")
    p.add_argument("--max-minutes", type=float, help="stop after this long, resumably (run again to continue)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--init", metavar="DIR", help="start from these weights: a checkpoint or autoencoder folder")
    p.set_defaults(func=cmd_train_autoencoder)


def cmd_train_autoencoder(args) -> int:
    from fmboost.training.autoencoder import AutoencoderConfig, train
    from fmboost.training.stopping import TrainingStopped

    cfg = AutoencoderConfig.load(args.config, data=args.data, out=args.out, steps=args.steps,
                                 max_minutes=args.max_minutes, threads=args.threads, init=args.init)
    try:
        train(cfg)
    except TrainingStopped as e:
        print(f"fmboost train-autoencoder: {e}", file=sys.stderr)
        return e.exit_code
    return 0
