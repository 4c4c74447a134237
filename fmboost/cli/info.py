"""`fmboost info [MODEL]`: a model folder's settings, autoencoder and parameter counts."""
from __future__ import annotations

import json

from fmboost.cli.common import load_pipeline


def add_parser(subparsers) -> None:
    info = subparsers.add_parser("info", help="describe a model folder",
                          description="Print a model's settings, autoencoder and parameter counts.")
    info.add_argument("model", nargs="?", default="default", help="model folder, hub id, default or real")
    info.set_defaults(func=cmd_info)


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
