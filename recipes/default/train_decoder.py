"""Fine-tunes the default model's decoder on its flow's outputs (fmboost/training/decoder.py) and installs it.

    python recipes/default/train_decoder.py ../shared/data/train ../shared/data/train_hr \
        [--model fmboost/weights/default] [--out runs/decoder] [--steps 2000] [--max-minutes 60] [--resume] [--install]

Resumable: run it again with --resume (in later sessions too) until it reaches --steps. --install copies
OUT/autoencoder into MODEL/autoencoder once the run is at --steps (earlier with --install-now): the encoder is the
model's own, unchanged, and the decoder the fine-tuned one. Every 10th photo of each folder is held back, as for the
flow, so the held-back learning curves (recipes/default/design/curves.py) stay fair.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmboost.training.decoder import DecoderConfig, train_decoder
from fmboost.training.part import run_recipe


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="folders of training photos")
    p.add_argument("--model", default="fmboost/weights/default", help="the model folder (its flow stays frozen)")
    p.add_argument("--out", default="runs/decoder")
    defaults = DecoderConfig(model="", photos=(), out="")
    for name in ("steps", "batch", "crop", "pairs", "warmup", "checkpoint_every", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("lr", "ema_decay", "gradient_weight"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--install", action="store_true", help="copy OUT/autoencoder into MODEL/autoencoder at the end")
    p.add_argument("--install-now", action="store_true", help="--install even before --steps is reached")
    args = p.parse_args(argv)
    cfg = DecoderConfig(model=args.model, photos=tuple(args.photos), out=args.out, steps=args.steps,
                        batch=args.batch, crop=args.crop, pairs=args.pairs, warmup=args.warmup,
                        checkpoint_every=args.checkpoint_every, seed=args.seed, lr=args.lr,
                        ema_decay=args.ema_decay, gradient_weight=args.gradient_weight,
                        max_minutes=args.max_minutes)
    return run_recipe("train_decoder", lambda: train_decoder(cfg, resume=args.resume), "decoder_steps",
                      Path(args.model) / "autoencoder", cfg.steps, args.install, args.install_now)


if __name__ == "__main__":
    sys.exit(main())
