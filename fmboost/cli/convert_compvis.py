"""`fmboost convert-compvis CKPT --config CONFIG.yaml [--vae VAE] --out DIR`: a model folder from a checkpoint of the
paper's own training code (CompVis/fm-boosting); see fmboost/convert/compvis.py for what maps onto what."""
from __future__ import annotations

from pathlib import Path

from fmboost.cli.common import UserError, check_source


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-compvis", help="make a model folder from a CompVis/fm-boosting checkpoint",
        description="Convert a checkpoint of the paper's training code (CompVis/fm-boosting's Lightning trainer) "
                    "into an fmboost model folder for upscale, generate --model, eval, serve and info. The EMA "
                    "weights are used when the checkpoint has them. The checkpoint is read as plain data only "
                    "(torch.load weights_only); one whose pickle would call code is refused.")
    p.add_argument("checkpoint", help="the trainer's .ckpt (state_dict with model.net.*, ema_model.ema_model.net.*)")
    p.add_argument("--config", required=True, help="the YAML the model was trained with")
    p.add_argument("--vae", help="AutoencoderKL folder or hub id (e.g. stabilityai/sd-vae-ft-mse), or an LDM-layout "
                                 "checkpoint such as the reference's sd_ae.ckpt; default: the checkpoint's own "
                                 "first stage")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--weights", choices=("auto", "ema", "online"), default="auto",
                   help="auto: EMA when present, else the online weights")
    p.add_argument("--scale", type=int, help="upsampling factor (default: high_res_size / low_res_size of the "
                                             "config)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    out = Path(args.out)
    if out.exists() and not (args.overwrite and out.is_dir()):
        raise UserError(f"--out {out} exists" + ("; pass --overwrite to replace it" if out.is_dir() else ""))
    if args.vae and not Path(args.vae).exists():
        check_source(args.vae, "--vae")
    from fmboost.convert.compvis import convert

    for line in convert(args.checkpoint, args.config, out, args.vae, args.weights, args.scale):
        print(line)
    return 0
