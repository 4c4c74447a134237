"""Trains the default model's temporal layers (fmboost/training/temporal.py) and installs them as its temporal/.

    python recipes/video/train_temporal.py ../shared/data/train ../shared/data/train_hr \
        [--model fmboost/weights/default] [--out runs/video] [--steps 2000] [--max-minutes 60] [--resume] [--install]

Resumable: run it again with --resume (in later sessions too) until it reaches --steps. --install copies OUT/temporal
into MODEL/temporal once the run is at --steps (earlier with --install-now), which `fmboost upscale clip.mp4` then
loads; `--per-frame` turns it off. Every 10th photo of each folder is held back, as for the image model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmboost.training.part import run_recipe
from fmboost.training.temporal import TemporalConfig, train_temporal


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="folders of training photos")
    p.add_argument("--model", default="fmboost/weights/default", help="the image model folder (frozen)")
    p.add_argument("--out", default="runs/video")
    defaults = TemporalConfig(model="", photos=(), out="")
    for name in ("steps", "clips", "frames", "size", "hidden", "every", "checkpoint_every", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("lr", "tau", "pixel_weight", "temporal_weight", "ema_decay", "t0_share"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--init", help="temporal layers (a temporal/ folder) to start from, for a later stage")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--install", action="store_true", help="copy OUT/temporal into MODEL/temporal at the end")
    p.add_argument("--install-now", action="store_true", help="--install even before --steps is reached")
    args = p.parse_args(argv)
    cfg = TemporalConfig(model=args.model, photos=tuple(args.photos), out=args.out, steps=args.steps,
                         clips=args.clips, frames=args.frames, size=args.size, hidden=args.hidden, every=args.every,
                         t0_share=args.t0_share, temporal_weight=args.temporal_weight,
                         checkpoint_every=args.checkpoint_every, seed=args.seed, lr=args.lr, tau=args.tau,
                         pixel_weight=args.pixel_weight, ema_decay=args.ema_decay, max_minutes=args.max_minutes,
                         init=args.init)
    return run_recipe("train_temporal", lambda: train_temporal(cfg, resume=args.resume), "steps",
                      Path(args.model) / "temporal", cfg.steps, args.install, args.install_now)


if __name__ == "__main__":
    sys.exit(main())
