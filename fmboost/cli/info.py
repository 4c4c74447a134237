"""`fmboost info [MODEL]`: a model folder's settings, autoencoder and parameter counts.

A local folder is described from its JSON files and the safetensors headers (shapes only), without torch, so the
command answers at once; a hub id is loaded as `upscale` would load it.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from fmboost.cli.common import load_pipeline
from fmboost.data.sources import read_model_config, resolve_autoencoder, resolve_model


def add_parser(subparsers) -> None:
    info = subparsers.add_parser("info", help="describe a model folder",
                          description="Print a model's settings, autoencoder and parameter counts.")
    info.add_argument("model", nargs="?", default="default", help="model folder, hub id, default or real")
    info.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    described = describe_folder(args.model) if read_model_config(args.model) else None
    print(json.dumps(described or describe_loaded(args.model), indent=2, default=str))
    return 0


def describe_folder(model: str) -> dict | None:
    """The description from the files alone; None when the weights are not plain safetensors folders."""
    config, folder = read_model_config(model), Path(resolve_model(model))
    ae, cfm = Path(resolve_autoencoder(model)), folder / "cfm"
    ae_config = read_json(ae / "config.json")
    ae_params, cfm_params = parameters(ae), parameters(cfm) if cfm.is_dir() else 0
    if ae_config is None or ae_params is None or cfm_params is None:
        return None
    return {"model": str(model), **config,
            "autoencoder": {"parameters": ae_params,
                            "downsample_factor": 2 ** (len(ae_config["block_out_channels"]) - 1),
                            "latent_channels": ae_config["latent_channels"],
                            "scaling_factor": float(ae_config.get("scaling_factor", 1.0))},
            "cfm": {"parameters": cfm_params, **read_json(cfm / "config.json")} if cfm.is_dir() else None}


def describe_loaded(model: str) -> dict:
    pipe = load_pipeline(model, "cpu")
    count = lambda m: sum(p.numel() for p in m.parameters())
    ae = pipe.autoencoder
    return {"model": str(model), **pipe.config,
            "autoencoder": {"parameters": count(ae.vae), "downsample_factor": ae.downsample_factor,
                            "latent_channels": ae.latent_channels, "scaling_factor": ae.scaling_factor},
            "cfm": None if pipe.model is None else {"parameters": count(pipe.model), **dict(pipe.model.config)}}


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def parameters(folder: Path) -> int | None:
    """Parameters in a folder's *.safetensors files, from their headers (an 8-byte length, then JSON with each
    tensor's shape); None when there are none (pickled weights: describe_loaded counts those)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with open(file, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        total += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return total
