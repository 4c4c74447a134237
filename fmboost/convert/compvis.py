"""Model folders from checkpoints of the paper's own code, CompVis/fm-boosting (`fmboost convert-compvis`).

Its trainer (a Lightning module) saves `state_dict` with the flow network under `model.net.*`, its EMA copy under
`ema_model.ema_model.net.*`, the first stage (SD's KL autoencoder, LDM layout) under `first_stage.*` and the noise
schedule's ᾱ table under `diffusion.alpha_bar_t`; its YAML config holds the network's shape and how x0 and the
condition were made. This module maps all of that onto fmboost's pieces:

- the network → models/efficient_unet.py (the same maths; `reference_names` pairs the parameters);
- x0 → the folder's settings: `upsampling` (psu, bilinear, nearest), `psu_resize: bilinear` (the reference's PSU),
  `tau` = noising_step with `noise_schedule: shifted-cosine` (its ForwardDiffusion), `objective` cfm, or naive-fm
  when it started from noise;
- the first stage → a diffusers AutoencoderKL (converted from the LDM layout, or the one given) whose
  scaling_factor is the config's scale_factor;
- where it came from → `converted_from` in fmboost.json.

Checkpoints are read as plain data only: `torch.load(weights_only=True)`, after a static look at the globals the
pickle names. The config objects Lightning pickles into `hyper_parameters` (omegaconf's, typing's) are stood in for
by an inert class that runs none of their code; any other global (os.system, builtins.eval, …) is refused before
anything is unpickled.
"""
from __future__ import annotations

import os
from pathlib import Path

from fmboost.data.files import sha256
from fmboost.errors import InputError

REFERENCE = "CompVis/fm-boosting"
ONLINE, EMA = "model.net.", "ema_model.ema_model.net."
FIRST_STAGE_PREFIXES = ("first_stage.", "first_stage_model.")

# Globals that only configuration objects name; loading replaces each with `Opaque`, so none of their code runs.
DATA_ONLY_MODULES = ("omegaconf.", "typing.", "pathlib.", "pytorch_lightning.", "lightning.", "lightning_fabric.",
                     "numpy.")
DATA_ONLY_BUILTINS = {f"builtins.{t}" for t in ("dict", "list", "tuple", "set", "int", "float", "str", "bool",
                                                "bytes", "object", "NoneType")}

# The reference's first stage when its config gives no ddconfig (fmboost/kl_autoencoder.py there): SD's VAE.
LDM_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0, attn_type="vanilla")

# EfficientUNet's arguments in the reference → fmboost's, with the reference's defaults (None: required).
NET_ARGS = {"in_channels": ("in_channels", None), "model_channels": ("channels", None),
            "out_channels": ("latent_channels", None), "num_res_blocks": ("num_res_blocks", None),
            "attention_resolutions": ("attention_ds", None), "dropout": ("dropout", 0.0),
            "channel_mult": ("channel_mult", (1, 2, 3, 4)), "conv_resample": ("conv_resample", True),
            "dim_head": ("head_channels", 64), "num_heads": ("heads", 4),
            "use_linear_attn": ("linear_attention", True), "use_scale_shift_norm": ("scale_shift", True),
            "pool_factor": ("pool_factor", -1)}
RES_NAMES = {"norm0": "in_layers.0", "conv0": "in_layers.2", "affine": "emb_layers.1", "norm1": "out_layers.0",
             "conv1": "out_layers.3", "skip": "skip_connection"}
ATTN_NAMES = {"norm": "norm", "qkv": "qkv", "proj": "proj_out"}
UPSAMPLINGS = ("psu", "bilinear", "nearest")  # the reference's modes fmboost has


class ConversionError(InputError):
    """The checkpoint, config or autoencoder cannot make a model folder; the message says why, in one line."""


class Opaque:
    """Stands in for a class a checkpoint's pickle names (a config object): takes whatever it is given, keeps it,
    and does nothing else."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def data_only(name: str) -> bool:
    return name.startswith(DATA_ONLY_MODULES) or name in DATA_ONLY_BUILTINS


def load_plain(path: str | os.PathLike) -> dict:
    """A checkpoint's contents as plain data (see the module docstring); ConversionError if it cannot be."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as e:
            raise ConversionError(f"{path}: not a safetensors file ({first_line(e)})") from None
    try:
        named = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint: the weights_only load below refuses any global by itself
        named = []
    code = [g for g in named if not data_only(g)]
    if code:
        raise ConversionError(f"{path}: its pickle would call {', '.join(sorted(code)[:3])}; refusing it (fmboost "
                              f"reads checkpoints as plain data only)")
    try:
        with torch.serialization.safe_globals([(Opaque, g) for g in named]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(f"{path}: cannot be read as plain data ({first_line(e)})") from None


def first_line(e: Exception) -> str:
    """The informative line of an exception (torch's unpickling errors put it after a paragraph of advice)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "global" in line:
            return line
    return lines[0] if lines else type(e).__name__


def tensors_of(ckpt) -> dict:
    """The tensors of a Lightning checkpoint's `state_dict`, or of a bare state dict."""
    import torch

    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        return {}
    return {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}


# ---------------------------------------------------------------------------------------------------- the config

def read_config(path: str | os.PathLike) -> dict:
    """The trainer's params from the reference's YAML, with `fm` (FlowModel's) and `net` (EfficientUNet's)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"--config {path}: no such file")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConversionError(f"--config {path}: not YAML ({first_line(e)})") from None
    try:
        model = config["model"]
        trainer, fm = dict(model.get("params") or {}), config["model"]["params"]["fm_cfg"]
        net = fm["params"]["net_cfg"]
    except (KeyError, TypeError):
        raise ConversionError(f"--config {path}: not a config of {REFERENCE}'s trainer (no "
                              f"model.params.fm_cfg.params.net_cfg)") from None
    for what, target, name in (("model", model, "TrainerFMBoost"), ("fm_cfg", fm, "FlowModel"),
                               ("net_cfg", net, "EfficientUNet")):
        if not str(target.get("target", "")).endswith(name):
            raise ConversionError(f"--config {path}: {what}.target is {target.get('target')!r}; fmboost converts "
                                  f"{name} only")
    trainer["fm"], trainer["net"] = dict(fm.get("params") or {}), dict(net.get("params") or {})
    trainer["fm"].pop("net_cfg", None)
    return trainer


def network_kwargs(net: dict) -> dict:
    """EfficientUNet's arguments, fmboost's names, from the reference's."""
    unknown = sorted(set(net) - set(NET_ARGS))
    if unknown:
        raise ConversionError(f"config: net_cfg has {', '.join(unknown)}, which {REFERENCE}'s EfficientUNet does "
                              f"not take")
    kwargs = {}
    for theirs, (ours, default) in NET_ARGS.items():
        if theirs not in net and default is None:
            raise ConversionError(f"config: net_cfg.params.{theirs} is missing")
        kwargs[ours] = net.get(theirs, default)
    for name in ("in_channels", "channels", "latent_channels", "num_res_blocks", "head_channels", "heads",
                 "pool_factor"):
        if not isinstance(kwargs[name], int) or isinstance(kwargs[name], bool):
            raise ConversionError(f"config: net_cfg {name} is {kwargs[name]!r}, not a whole number")
    for name in ("channel_mult", "attention_ds"):
        value = kwargs[name]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise ConversionError(f"config: net_cfg {name} is {value!r}, not a list of whole numbers")
        kwargs[name] = tuple(value)
    kwargs["pool_factor"] = max(kwargs["pool_factor"], 1)
    return kwargs


def folder_settings(trainer: dict, scale: int | None) -> dict:
    """fmboost.json's settings for what the trainer did to make x0 and the condition."""
    if trainer.get("ca_context"):
        raise ConversionError("config: ca_context is on; the reference never implemented cross-attention "
                              "conditioning, and fmboost has none")
    if trainer["fm"].get("schedule", "linear") != "linear":
        raise ConversionError(f"config: fm_cfg schedule {trainer['fm']['schedule']!r}; fmboost's flows follow the "
                              f"linear path only")
    mode = trainer.get("upsampling_mode", "bilinear")
    if mode not in UPSAMPLINGS:
        raise ConversionError(f"config: upsampling_mode {mode!r}; fmboost has {', '.join(UPSAMPLINGS)}")
    from_noise = bool(trainer.get("start_from_noise", False))
    context = bool(trainer.get("concat_context", False)) or from_noise
    if context and (trainer.get("upsampling_mode_context") or mode) != mode:
        raise ConversionError(f"config: the context is upsampled with {trainer['upsampling_mode_context']!r}, x0 "
                              f"with {mode!r}; fmboost conditions on x0's own upsampling")
    net = trainer["net"]
    if net.get("in_channels") != (2 if context else 1) * net.get("out_channels", 0):
        raise ConversionError(f"config: net_cfg in_channels {net.get('in_channels')} with out_channels "
                              f"{net.get('out_channels')} does not fit concat_context={context}")
    if scale is None:
        low, high = trainer.get("low_res_size"), trainer.get("high_res_size")
        if not (isinstance(low, int) and isinstance(high, int) and low > 0 and high % low == 0):
            raise ConversionError(f"config: cannot tell the scale from low_res_size {low!r} and high_res_size "
                                  f"{high!r}; pass --scale")
        scale = high // low
    if scale < 2:
        raise ConversionError(f"scale {scale}: a model folder upsamples by 2 or more")
    step = trainer.get("noising_step", -1)
    if not isinstance(step, int) or isinstance(step, bool) or not (step <= 0 or 1 < step < 1000):
        raise ConversionError(f"config: noising_step {step!r} is not -1 or a step in 2…999")
    return dict(scale=scale, upsampling=mode, tau=0 if from_noise else max(step, 0), sigma_min=0.0,
                objective="naive-fm" if from_noise else "cfm", noise_schedule="shifted-cosine",
                psu_resize="bilinear", color_fix="none")


# ------------------------------------------------------------------------------------------------- the network

def reference_names(net) -> dict:
    """fmboost's module path → the reference's, for every EfficientUNet module that holds parameters."""
    from fmboost.models.efficient_unet import Stem

    names = {"emb0": "time_embed.0", "emb1": "time_embed.2", "patch": "pool.down_conv",
             "unpatch": "un_pool.up_conv", "out_norm": "out.0", "out_conv": "out.2"}

    def level(ours: str, theirs: str, block) -> None:
        names.update({f"{ours}.res.{a}": f"{theirs}.0.{b}" for a, b in RES_NAMES.items()})
        if block.attn is not None:
            names.update({f"{ours}.attn.{a}": f"{theirs}.1.{b}" for a, b in ATTN_NAMES.items()})
        if block.up is not None:
            names[f"{ours}.up"] = f"{theirs}.{2 if block.attn is not None else 1}.conv"

    for i, block in enumerate(net.enc):
        if isinstance(block, Stem):  # the first convolution, or a downsampling's (`op`)
            names[f"enc.{i}.layer"] = f"input_blocks.{i}.0" + ("" if i == 0 else ".op")
        else:
            level(f"enc.{i}", f"input_blocks.{i}", block)
    level("mid", "middle_block", net.mid)
    names.update({f"mid_out.{a}": f"middle_block.2.{b}" for a, b in RES_NAMES.items()})
    for i, block in enumerate(net.dec):
        level(f"dec.{i}", f"output_blocks.{i}", block)
    return names


def convert_network(state: dict, prefix: str, kwargs: dict, source: str):
    """An EfficientUNet of shape `kwargs` holding the weights under `prefix`; ConversionError when they differ."""
    from fmboost.models.efficient_unet import EfficientUNet

    try:
        net = EfficientUNet(**kwargs)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise ConversionError(f"config: the network it describes cannot be built ({first_line(e)})") from None
    names = reference_names(net)
    ours = net.state_dict()
    pairs = {k: f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}" for k in ours}
    theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = [r for r in pairs.values() if r not in theirs]
    unexpected = sorted(set(theirs) - set(pairs.values()))
    reshaped = [(r, tuple(theirs[r].shape), tuple(ours[k].shape)) for k, r in pairs.items()
                if r in theirs and theirs[r].shape != ours[k].shape]
    if missing or unexpected or reshaped:
        said = [f"{len(missing)} missing (e.g. {prefix}{missing[0]})" if missing else "",
                f"{len(unexpected)} unexpected (e.g. {prefix}{unexpected[0]})" if unexpected else "",
                (f"{len(reshaped)} of another shape (e.g. {prefix}{reshaped[0][0]}: {reshaped[0][1]} in the "
                 f"checkpoint, {reshaped[0][2]} in the config)") if reshaped else ""]
        raise ConversionError(f"{source}: its weights do not fit the network the config describes: "
                              f"{'; '.join(s for s in said if s)}")
    net.load_state_dict({k: theirs[r].float() for k, r in pairs.items()})
    return net.eval()


def pick_weights(state: dict, weights: str, source: str) -> tuple[str, str]:
    """(prefix, what to tell the user): the EMA weights when present (unless `weights` says online)."""
    has_ema, has_online = (any(k.startswith(p) for k in state) for p in (EMA, ONLINE))
    if not (has_ema or has_online):
        raise ConversionError(f"{source}: not a checkpoint of {REFERENCE}'s trainer (no {ONLINE}* or {EMA}* "
                              f"weights)")
    if weights == "ema" and not has_ema:
        raise ConversionError(f"{source}: has no EMA weights ({EMA}*); pass --weights online")
    if weights == "online" and not has_online:
        raise ConversionError(f"{source}: has no online weights ({ONLINE}*); pass --weights ema")
    if weights == "online" or not has_ema:
        return ONLINE, f"online ({ONLINE}*)" + ("" if has_ema else ": the checkpoint has no EMA")
    step = state.get("ema_model.step")
    updates = int(step) if step is not None and step.numel() == 1 else None
    warm = state.get("ema_model.initted")
    note = (", still in warm-up: a copy of the online weights" if warm is not None and warm.numel() == 1
            and not bool(warm) else "")
    return EMA, f"EMA ({EMA}*{f', {updates} updates' if updates is not None else ''}{note})"


def check_noise_table(state: dict, source: str) -> None:
    """The checkpoint's own ᾱ table (ForwardDiffusion's buffer), when saved, must be the schedule fmboost applies."""
    from fmboost.flow.noise import shifted_cosine_alpha_bar

    table = state.get("diffusion.alpha_bar_t")
    if table is None:
        return
    ours = [shifted_cosine_alpha_bar(i, len(table)) for i in range(len(table))]
    if len(table) != 1000 or max(abs(float(a) - b) for a, b in zip(table.tolist(), ours)) > 1e-6:
        raise ConversionError(f"{source}: its noise schedule (diffusion.alpha_bar_t) is not the reference's shifted "
                              f"cosine at 64 px over 1000 steps, the one fmboost applies")


# --------------------------------------------------------------------------------------------- the autoencoder

def ldm_vae_config(trainer: dict) -> tuple[dict, dict]:
    """(the reference's ddconfig, the diffusers AutoencoderKL config that holds the same network)."""
    params = dict((trainer.get("first_stage_cfg") or {}).get("params") or {})
    dd = {**LDM_DDCONFIG, **dict(params.get("ddconfig") or {})}
    embed_dim = params.get("embed_dim", 4)
    if not dd.get("double_z", True) or dd.get("attn_type", "vanilla") != "vanilla" or dd.get("attn_resolutions") \
            or params.get("use_null_attention") or dd.get("use_null_attention") or dd.get("tanh_out") \
            or dd.get("natten_kernel_size", -1) > -1 or embed_dim != dd["z_channels"]:
        raise ConversionError("config: its first stage is not a plain KL autoencoder (double_z, vanilla attention "
                              "in the middle only, embed_dim = z_channels), which diffusers' AutoencoderKL holds")
    n = len(dd["ch_mult"])
    return dd, dict(sample_size=dd["resolution"], in_channels=dd["in_channels"], out_channels=dd["out_ch"],
                    down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
                    block_out_channels=[dd["ch"] * m for m in dd["ch_mult"]], latent_channels=dd["z_channels"],
                    layers_per_block=dd["num_res_blocks"])


def ldm_autoencoder(state: dict, trainer: dict, scaling_factor: float, source: str):
    """fmboost's Autoencoder from an LDM-layout state dict (encoder.*, decoder.*, quant_conv.*, post_quant_conv.*),
    converted with diffusers' own key map."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from fmboost.autoencoders.vae import Autoencoder

    for prefix in FIRST_STAGE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not any(k.startswith("encoder.") for k in state):
        raise ConversionError(f"{source}: no LDM autoencoder weights in it (encoder.*, decoder.*)")
    _, config = ldm_vae_config(trainer)
    config["scaling_factor"] = scaling_factor
    vae = AutoencoderKL(**config)
    try:
        converted = convert_ldm_vae_checkpoint(state, config)
        missing, unexpected = vae.load_state_dict(converted, strict=False)
    except (KeyError, RuntimeError, ValueError) as e:
        raise ConversionError(f"{source}: its autoencoder weights do not fit the config's first stage "
                              f"({first_line(e)})") from None
    if missing or unexpected:
        raise ConversionError(f"{source}: its autoencoder weights do not fit the config's first stage "
                              f"({len(missing)} missing, e.g. {(missing or ['-'])[0]}; {len(unexpected)} unexpected)")
    return Autoencoder(vae)


def autoencoder_for(vae: str | None, state: dict, trainer: dict, source: str):
    """(fmboost's Autoencoder, how it was had): --vae (an AutoencoderKL folder or hub id, or an LDM-layout
    checkpoint such as the reference's sd_ae.ckpt), else the checkpoint's own first stage."""
    from fmboost.autoencoders.vae import Autoencoder

    factor = float(trainer.get("scale_factor", 1.0))
    if vae is None:
        if not any(k.startswith(FIRST_STAGE_PREFIXES) for k in state):
            raise ConversionError(f"{source}: holds no first stage (first_stage.*); pass --vae")
        return ldm_autoencoder(state, trainer, factor, source), "the checkpoint's first stage (LDM layout, converted)"
    if Path(vae).is_file():
        return (ldm_autoencoder(tensors_of(load_plain(vae)), trainer, factor, f"--vae {vae}"),
                f"{vae} (LDM layout, converted)")
    autoencoder = Autoencoder.from_pretrained(vae)
    how = str(vae)
    if autoencoder.shift_factor or abs(autoencoder.scaling_factor - factor) > 1e-9:
        # The network saw latents × the config's scale_factor: that, not the VAE's own, must scale them.
        how += f" (scaling_factor {autoencoder.scaling_factor:g} → the config's {factor:g})"
        autoencoder.vae.register_to_config(scaling_factor=factor, shift_factor=None)
    return autoencoder, how


# --------------------------------------------------------------------------------------------------- all of it

def convert(checkpoint: str | os.PathLike, config: str | os.PathLike, out: str | os.PathLike,
            vae: str | None = None, weights: str = "auto", scale: int | None = None) -> list[str]:
    """Writes the model folder `out` (whole, or not at all); returns what was used, one line each."""
    from fmboost.data.files import write_atomic
    from fmboost.pipelines.upscale import FMBoostPipeline

    checkpoint, config = Path(checkpoint), Path(config)
    trainer = read_config(config)
    kwargs = network_kwargs(trainer["net"])
    settings = folder_settings(trainer, scale)
    ckpt = load_plain(checkpoint)
    state = tensors_of(ckpt)
    prefix, which = pick_weights(state, weights, str(checkpoint))
    check_noise_table(state, str(checkpoint))
    net = convert_network(state, prefix, kwargs, str(checkpoint))
    autoencoder, how = autoencoder_for(vae, state, trainer, str(checkpoint))
    if autoencoder.latent_channels != kwargs["latent_channels"]:
        raise ConversionError(f"the autoencoder has {autoencoder.latent_channels} latent channels, the network "
                              f"{kwargs['latent_channels']}")
    step = ckpt.get("global_step") if isinstance(ckpt, dict) else None
    settings["converted_from"] = dict(
        code=REFERENCE, checkpoint=str(checkpoint.resolve()), checkpoint_sha256=sha256(checkpoint),
        config=str(config.resolve()), config_sha256=sha256(config), weights=which,
        global_step=step if isinstance(step, int) else None, autoencoder=how,
        sigma_min=float(trainer["fm"].get("sigma_min", 0.0)))
    pipe = FMBoostPipeline(autoencoder, net, **settings)
    write_atomic(out, pipe.save_pretrained)
    return [f"weights: {which}", f"autoencoder: {how}",
            f"x0: {settings['upsampling']} ×{settings['scale']}, " + (
                "Gaussian noise (naive-fm)" if settings["objective"] == "naive-fm" else
                f"noise-augmented at τ = {settings['tau']} (shifted cosine)"),
            f"wrote {out}"]
