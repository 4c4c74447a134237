"""`fmboost info [MODEL] [--json]`: a model folder's settings, autoencoder and parameter counts.

A local folder is described from its JSON files and the safetensors headers (shapes only), without torch, so the
command answers at once; a hub id is loaded as `upscale` would load it.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from fmboost.cli.common import find_model, load_pipeline
from fmboost.data.files import WEIGHTS_NAME, sha256
from fmboost.data.sources import EMBEDDED_MODELS, resolve_autoencoder


def add_parser(subparsers) -> None:
    info = subparsers.add_parser("info", help="describe a model folder",
                                 description="Print a model's settings (those `upscale` uses when no flag says "
                                             "otherwise), its autoencoder and parameter counts.")
    info.add_argument("model", nargs="?", default="default", metavar="MODEL",
                      help="model folder, hub id, or an embedded model: default or real (default: default)")
    info.add_argument("--json", action="store_true", help="print the description as JSON, for scripts")
    info.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    source = find_model(args.model, flag="MODEL")
    described = describe_folder(source) if source.config is not None else None
    described = described or describe_loaded(source)
    print(json.dumps(described, indent=2, default=str) if args.json else as_text(described))
    return 0


def public(config: dict) -> dict:
    """A network's diffusers config as its class (`network`) and shape, without the bookkeeping
    (`_diffusers_version`, `_name_or_path`: the last says where the weights were loaded from, not what they are)."""
    shape = {k: v for k, v in config.items() if not k.startswith("_")}
    return {"network": config["_class_name"], **shape} if "_class_name" in config else shape


def describe_folder(source) -> dict | None:
    """The description from the files alone; None when the weights are not plain safetensors folders."""
    folder = Path(source.where)
    ae, cfm = Path(resolve_autoencoder(folder)), folder / "cfm"
    ae_config = read_json(ae / "config.json")
    ae_params, cfm_params = parameters(ae), parameters(cfm) if cfm.is_dir() else 0
    if ae_config is None or ae_params is None or cfm_params is None:
        return None
    return {"model": source.name, "folder": str(folder), **source.config.to_dict(),
            "autoencoder": {"parameters": ae_params,
                            "downsample_factor": 2 ** (len(ae_config["block_out_channels"]) - 1),
                            "latent_channels": ae_config["latent_channels"],
                            "scaling_factor": float(ae_config.get("scaling_factor", 1.0))},
            "cfm": {"parameters": cfm_params, **public(read_json(cfm / "config.json"))} if cfm.is_dir() else None,
            "temporal": temporal_of(folder), "decoder": decoder_of(folder, ae),
            "one_step": one_step_of(cfm), "fine_tuned_from": fine_tuned_from(folder)}


def first_pass_of(made: dict) -> int | None:
    """The factor whose first pass a run's pairs trained (`fmboost prepare --cascade`), None for plain pairs."""
    data = made.get("data") or {}
    return data.get("scale", 2) * data["cascade"] if data.get("cascade", 1) > 1 else None


def fine_tuned_from(folder: Path) -> dict | None:
    """A flow fine-tuned from another model's (training.json's init_sha256, training/train.py): its steps, its init,
    whether that init (or an embedded model) still holds the flow it started from, and the earlier rounds when the
    init was itself a fine-tune (init_record: `earlier`, oldest first, and the embedded model the first started
    from)."""
    made = read_json(folder / "training.json") or {}
    if not made.get("init_sha256"):
        return None
    init = (made.get("config") or {}).get("init")
    digest = lambda where: sha256(where / WEIGHTS_NAME) if (where / WEIGHTS_NAME).is_file() else None
    embedded = {digest(other / "cfm"): name for name, other in EMBEDDED_MODELS.items()}  # each flow hashed once
    embedded.pop(None, None)
    where = Path(str(init)) if init else None
    if where is not None and (where / "cfm").is_dir():
        where = where / "cfm"
    rounds, record, first_init = [], made.get("init_record"), None
    while record:
        rounds.insert(0, {"steps": record.get("steps"), "first_pass_of": first_pass_of(record)})
        first_init, record = record.get("init_sha256"), record.get("init_record")
    return {"steps": made.get("steps"), "init": init, "embedded": embedded.get(made["init_sha256"]),
            "init_unchanged": bool(where and digest(where) == made["init_sha256"]),
            "first_pass_of": first_pass_of(made), "earlier": rounds, "first_from": embedded.get(first_init)}


def fine_tune_rounds(start: dict) -> str:
    """fine_tuned_from's rounds in words: "600 steps from the embedded `default`'s flow, then 600 steps on pairs
    for the first pass of ×4"; one round names its init as it is now."""
    steps = lambda r: f"{r['steps']:,} step{'s' if r['steps'] != 1 else ''}" + (
        f" on pairs for the first pass of ×{r['first_pass_of']}" if r["first_pass_of"] else "")
    if start["earlier"]:
        first = (f"the embedded `{start['first_from']}`'s flow" if start["first_from"] else "a flow not here")
        rounds = start["earlier"] + [start]
        return f"{steps(rounds[0])} from {first}, " + ", ".join(f"then {steps(r)}" for r in rounds[1:])
    source = (f"the embedded `{start['embedded']}`'s flow" if start["embedded"] else
              f"the flow in {start['init']}" if start["init_unchanged"] else
              f"the flow {start['init']} held then (it holds another now)")
    return f"{steps(start)} from {source}"


def one_step_of(cfm: Path) -> dict | None:
    """A flow fine-tuned for one Euler step (training/onestep.py): its steps, and its round, one per flow in its
    lineage (each round starts from the last one's flow)."""
    made = read_json(cfm / "training.json") or {}
    if not made.get("one_step_steps"):
        return None
    return {"steps": made["one_step_steps"], "round": len(made.get("lineage") or [None])}


def fits(made: dict, folder: Path) -> bool | None:
    """Whether a part trained beside a frozen image flow (its training.json's flow_sha256) fits the flow in cfm/;
    None when either is not recorded."""
    flow = folder / "cfm" / WEIGHTS_NAME
    return None if not made.get("flow_sha256") or not flow.is_file() else made["flow_sha256"] == sha256(flow)


def decoder_of(folder: Path, ae: Path) -> dict | None:
    """A decoder fine-tuned on the flow's outputs (training/decoder.py), if the autoencoder's training.json says so.
    It fits the flow it was fine-tuned on, and a flow fine-tuned afterwards through it (training/onestep.py, or
    training/train.py with the pixel term)."""
    made = read_json(ae / "training.json") or {}
    if "decoder_steps" not in made:
        return None
    fitted = fits(made, folder)
    # the flow's own record (a one-step fine-tune) or the model's (a fine-tune with the pixel term): trained through
    # this decoder
    through = [(read_json(where) or {}).get("autoencoder_sha256") for where in
               (folder / "cfm" / "training.json", folder / "training.json")]
    weights = ae / WEIGHTS_NAME
    if fitted is False and any(through) and weights.is_file():
        fitted = sha256(weights) in through
    return {"fine_tuned_steps": made["decoder_steps"], "fits_flow": fitted}


def temporal_of(folder: Path) -> dict | None:
    """The video model's temporal layers (temporal/), if the folder has them."""
    temporal = folder / "temporal"
    if not temporal.is_dir():
        return None
    made = read_json(temporal / "training.json") or {}
    # Trained beside a frozen image flow: with another flow in cfm/ they no longer fit, unless cfm/ holds that flow
    # fine-tuned for one step (training/onestep.py), which keeps its features (docs/video.md measures the pair).
    flow_made = read_json(folder / "cfm" / "training.json") or {}
    ancestors = flow_made.get("lineage") or [flow_made.get("started_from_sha256")]
    parent = bool(made.get("flow_sha256")) and made["flow_sha256"] in ancestors
    return {"parameters": parameters(temporal), **public(read_json(temporal / "config.json") or {}),
            "trained_steps": made.get("steps"), "fits_flow": fits(made, folder), "beside_parent_flow": parent}


def describe_loaded(source) -> dict:
    pipe = load_pipeline(source, "cpu")
    count = lambda m: sum(p.numel() for p in m.parameters())
    ae = pipe.autoencoder
    return {"model": source.name, "folder": source.where, **pipe.config.to_dict(),
            "autoencoder": {"parameters": count(ae.vae), "downsample_factor": ae.downsample_factor,
                            "latent_channels": ae.latent_channels, "scaling_factor": ae.scaling_factor},
            "cfm": None if pipe.model is None else {"parameters": count(pipe.model), **public(dict(pipe.model.config))},
            "temporal": None if pipe.temporal is None else {"parameters": count(pipe.temporal),
                                                            **public(dict(pipe.temporal.config))}}


def as_text(d: dict) -> str:
    """The description for a person: what the model does, how it samples by default, what it is made of."""
    embedded = next((name for name, folder in EMBEDDED_MODELS.items() if str(folder) == d["folder"]), None)
    where = f"the embedded `{embedded}` ({d['folder']})" if embedded else d["folder"]
    ae, cfm = d["autoencoder"], d["cfm"]
    lines = [
        f"model        {where}" if embedded or d["model"] == d["folder"] else f"model        {d['model']} ({where})",
        f"upscales     ×{d['scale']}, trained as {d['objective']}, x0 by {d['upsampling']} upsampling, "
        f"sampling τ {d['tau']:g}, σ_min {d['sigma_min']:g}",
        f"defaults     {d['steps']} step(s) of {d['solver']}, colour fix {d['color_fix']} (flags override them)"
        + (f"; back-projected onto the input {d['back_projection']}×" if d.get("back_projection") else ""),
        f"beyond ×{d['scale']}    passes after the first by {d.get('next_model') or 'this model again'}"
        + (" (its next_model)" if d.get("next_model") else ""),
        f"autoencoder  {ae['parameters']:,} parameters, ×{ae['downsample_factor']} downsampling, "
        f"{ae['latent_channels']} latent channels, scaling factor {ae['scaling_factor']:.4g}",
    ]
    decoder = d.get("decoder")
    if decoder:
        lines.append(f"             its decoder fine-tuned {decoder['fine_tuned_steps']:,} steps on the flow's outputs"
                     + (" (of another flow than this cfm/)" if decoder["fits_flow"] is False else ""))
    if cfm is None:
        lines.append("network      none (no cfm/): only the methods x0, bicubic and lanczos run")
    else:
        shape = ", ".join(f"{k} {v}" for k, v in cfm.items() if k not in ("parameters", "network"))
        lines.append(f"network      {cfm.get('network', 'a network')}, {cfm['parameters']:,} parameters ({shape})")
        start = d.get("fine_tuned_from")
        if start:
            lines.append(f"             fine-tuned {fine_tune_rounds(start)}")
        one = d.get("one_step")
        if one:
            lines.append(f"             fine-tuned for one Euler step from the clean x0: {one['steps']:,} step"
                         + ("s" if one["steps"] != 1 else "")
                         + (f", round {one['round']} (each from the last round's flow)" if one["round"] > 1 else ""))
    temporal = d.get("temporal")
    if temporal is None:
        lines.append("video        frame by frame (no temporal layers, temporal/)")
    else:
        steps = temporal.get("trained_steps")
        every = temporal.get("every", 1)
        lines.append(f"video        temporal layers, {temporal['parameters'] or 0:,} parameters, one after every "
                     + (f"{every} blocks" if every > 1 else "block") + (f", trained {steps} steps" if steps else "") +
                     " (--per-frame leaves them out)")
        if temporal.get("fits_flow") is False and temporal.get("beside_parent_flow"):
            lines.append("             trained beside the flow this cfm/ was fine-tuned from (for one step)")
        elif temporal.get("fits_flow") is False:
            lines.append("             trained beside another flow than this cfm/: retrain them "
                         "(recipes/video/make_temporal.sh) or use --per-frame")
    return "\n".join(lines)


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
