"""`fmboost train`: the CFM U-Net (or a baseline objective) on prepared shards."""
from __future__ import annotations

import sys
from pathlib import Path

from fmboost.cli.common import UserError, env_int
from fmboost.models.presets import PRESETS
from fmboost.pipelines.methods import MODEL_METHODS


def add_parser(subparsers) -> None:
    tr = subparsers.add_parser("train", help="train a CFM model on prepared latents",
                        description="Train the CFM U-Net on shards from `fmboost prepare`. The flags override the "
                                    "config file, which is optional. Writes OUT/model (for --model), checkpoints, "
                                    "log.csv, TensorBoard logs and sample grids.")
    tr.add_argument("--config", help="YAML or JSON file of training settings (see recipes/)")
    tr.add_argument("--data", help="folder made by `fmboost prepare`")
    tr.add_argument("--preset", choices=list(PRESETS))
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
