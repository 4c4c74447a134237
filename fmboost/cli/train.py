"""`fmboost train`: the CFM U-Net (or a baseline objective) on prepared shards."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from fmboost.cli.common import UserError, env_int
from fmboost.data.sources import resolve_model
from fmboost.models.presets import PRESETS
from fmboost.pipelines.methods import MODEL_METHODS
from fmboost.training.config import TrainConfig

# The settings' defaults, shown in --help: the flags themselves default to "not given", so that they override a
# config file only when the user sets them.
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def add_parser(subparsers) -> None:
    tr = subparsers.add_parser("train", help="train a CFM model on prepared latents",
                        description="Train the CFM U-Net on shards from `fmboost prepare`. The flags override the "
                                    "config file, which is optional (every setting and its default: "
                                    "fmboost/training/config.py). Writes OUT/model (for --model), checkpoints, "
                                    "log.csv, TensorBoard logs and sample grids.")
    d = lambda name: f"(default: {DEFAULTS[name]})"
    tr.add_argument("--config", help="YAML or JSON file of training settings (see recipes/)")
    tr.add_argument("--data", help="folder made by `fmboost prepare`")
    tr.add_argument("--preset", choices=list(PRESETS), help=f"U-Net size {d('preset')}")
    tr.add_argument("--objective", choices=list(MODEL_METHODS),
                    help=f"cfm or one of the paper's baselines, same U-Net and data {d('objective')}")
    tr.add_argument("--init", metavar="MODEL",
                    help="fine-tune: start from this model's CFM weights: a model folder or an embedded model "
                         "(default, real)")
    tr.add_argument("--max-steps", type=int, help=f"optimiser steps {d('max_steps')}")
    tr.add_argument("--warmup-steps", type=int,
                    help=f"linear learning-rate warm-up {d('warmup_steps')}; keep it well under --max-steps")
    tr.add_argument("--batch-size", type=int,
                    help=f"the global batch of a step, summed over all processes {d('batch_size')}")
    tr.add_argument("--lr", type=float, help=f"peak learning rate of AdamW {d('lr')}")
    tr.add_argument("--tau", type=float, help=f"noise-augmentation step of x0 (0..1000, 0 = off) {d('tau')}")
    tr.add_argument("--out", help=f"output folder {d('out')}")
    tr.add_argument("--bf16", action="store_true", default=None, help=f"bf16 autocast {d('bf16')}")
    tr.add_argument("--max-minutes", type=float, help="stop cleanly after this long (resume later) (default: no limit)")
    tr.add_argument("--resume", nargs="?", const="auto", choices=["auto"],
                    help="continue from the newest complete checkpoint in OUT/checkpoints (damaged ones are "
                         "skipped; none: start at step 0)")
    tr.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from fmboost.training.train import TrainingDiverged, TrainingStopped, train

    if args.config and not Path(args.config).exists():
        raise UserError(f"--config {args.config}: no such file")
    init = Path(resolve_model(args.init)) if args.init else None
    if init and not ((init / "cfm").is_dir() or (init / "config.json").is_file()):
        raise UserError(f"--init {args.init}: not a model folder (no cfm/) nor an embedded model (default, real)")
    cfg = TrainConfig.load(args.config, data=args.data, preset=args.preset, objective=args.objective,
                           max_steps=args.max_steps, warmup_steps=args.warmup_steps, batch_size=args.batch_size,
                           lr=args.lr, tau=args.tau, init=args.init, out=args.out, bf16=args.bf16,
                           max_minutes=args.max_minutes)
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
