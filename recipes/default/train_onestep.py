"""Fine-tunes the default model's flow for its one-step sampling (fmboost/training/onestep.py) and installs it.

    python recipes/default/train_onestep.py ../shared/data/train ../shared/data/train_hr \
        [--model fmboost/weights/default] [--out runs/onestep] [--steps 1500] [--max-minutes 60] [--resume] [--install]

Resumable: run it again with --resume (in later sessions too) until it reaches --steps. --install copies OUT/cfm
over MODEL/cfm once the run is at --steps (earlier with --install-now); the autoencoder is unchanged. The sampling
settings, the NFE among them, are then chosen again by recipes/default/tune.py. Every 10th photo of each folder is
held back, as for the flow, so tuning on them stays fair.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from fmboost.training.onestep import OneStepConfig, train_one_step
from fmboost.training.part import run_recipe

TUNABLE = ("steps", "batch", "crop", "pairs", "warmup", "checkpoint_every", "seed", "lr", "ema_decay", "keep_weight",
           "keep_tau_min", "keep_tau_max", "keep_t0_share")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="folders of training photos")
    p.add_argument("--model", default="fmboost/weights/default", help="the model folder (its autoencoder stays frozen)")
    p.add_argument("--out", default="runs/onestep")
    defaults = OneStepConfig(model="", photos=(), out="")
    for name in TUNABLE:
        value = getattr(defaults, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast, even where the CPU has bf16 units")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--install", action="store_true", help="copy OUT/cfm over MODEL/cfm at the end")
    p.add_argument("--install-now", action="store_true", help="--install even before --steps is reached")
    args = p.parse_args(argv)
    cfg = dataclasses.replace(defaults, model=args.model, photos=tuple(args.photos), out=args.out, bf16=not args.fp32,
                              max_minutes=args.max_minutes, **{name: getattr(args, name) for name in TUNABLE})
    return run_recipe("train_onestep", lambda: train_one_step(cfg, resume=args.resume), "one_step_steps",
                      Path(args.model) / "cfm", cfg.steps, args.install, args.install_now)


if __name__ == "__main__":
    sys.exit(main())
