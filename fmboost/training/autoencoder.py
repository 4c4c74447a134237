"""`fmboost train-autoencoder`: trains fmboost's own small `AutoencoderKL` on photos (the embedded latent space).

The LDM first stage without its GAN/LPIPS terms (their weights cannot be downloaded here): L1 reconstruction, an L1
term on image gradients that keeps edges and fine texture from being averaged away, and a tiny KL term. Colour
augmentation (hue rotation, saturation, brightness) shows it colours that photo sets rarely hold, such as purple
and magenta, which it otherwise shifts. Every `holdout_every`-th photo is held back for validation: the PSNR
logged there is what recipes are tuned on, never the reporting sets.

Checkpoints are safetensors (model, optimizer, RNG) plus a JSON state in OUT/checkpoint, written by the CFM
trainer's protocol (training/checkpoints.py: a temporary folder, its files' record in complete.json, renamed into
place), so a run killed at any moment resumes from the last one exactly as if it had never stopped, and a damaged one
is refused rather than trained on. SIGTERM and Ctrl-C stop it as they stop `fmboost train` (training/stopping.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from fmboost.autoencoders.vae import Autoencoder, small_autoencoder_config
from fmboost.data.files import recover_old, write_atomic
from fmboost.data.photos import center_crops, load_photos, sample_crops, split_photos
from fmboost.errors import InputError, MissingError
from fmboost.training.checkpoints import checkpoint_problem, write_verified
from fmboost.training.config import read_settings
from fmboost.training.precision import resolve_bf16
from fmboost.training.stopping import stop_signals, stopped


@dataclass
class AutoencoderConfig:
    data: list[str] = field(default_factory=list)  # photo folders
    out: str = "runs/autoencoder"
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # downsampling 2**(levels − 1)
    latent_channels: int = 16
    layers_per_block: int = 1
    init_logvar: float | None = -8.0    # start the posterior's log-variance here (see `initialise`)
    zero_init_residual: bool = True     # every res-block starts as the identity
    steps: int = 5000
    warmup: int = 200
    batch_size: int = 8
    crop: int = 96
    lr: float = 5e-4
    min_lr_ratio: float = 0.1           # cosine decay ends at lr × this
    kl_weight: float = 1e-6
    gradient_weight: float = 0.0        # L1 on horizontal and vertical differences of the image
    color_weight: float = 0.0           # L1 on 8×8 block means: the colour of each region (see `reconstruction_loss`)
    color_augment: float = 0.0          # probability that a crop gets a random hue rotation, saturation, brightness
    holdout_every: int = 10             # every n-th photo of each folder is kept for validation (0: none)
    val_every: int = 500                # steps between validation PSNRs (0: never)
    val_crop: int = 256
    bf16: bool = False                  # a request: honoured only where the device computes bf16 natively
    threads: int | None = None
    seed: int = 0
    checkpoint_every: int = 200
    init: str | None = None             # start from these weights (a checkpoint folder or a saved autoencoder)
    max_minutes: float | None = None    # stop (resumably) after this long

    @classmethod
    def load(cls, path: str | None = None, **overrides) -> "AutoencoderConfig":
        values = read_settings(path) if path else {}
        values.pop("trained_steps", None)  # written into training.json by a finished run
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InputError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("data"):
            raise InputError("no photo folders: give --data or `data:` in the config")
        return cls(**values)


# --- loss ----------------------------------------------------------------------------------------------------------

def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def reconstruction_loss(vae, x: torch.Tensor, kl_weight: float, gradient_weight: float,
                        color_weight: float = 0.0) -> tuple[torch.Tensor, float]:
    """L1(D(z), x) + λ_∇·L1(∇D(z), ∇x) + λ_c·L1(pool₈ D(z), pool₈ x) + λ_KL·KL(q(z|x) ‖ N(0, I)) per pixel; returns
    (loss, the L1 term).

    Why the block-mean term: natural photos vary least along the green–magenta axis (G − (R + B)/2), so a small
    autoencoder learns that axis last and, trained on per-pixel L1 alone, predicted G from R and B for thousands of
    steps (purple came out blue). In a per-pixel L1 a region's colour offset is outvoted by the signs of its
    high-frequency errors; averaged over 8×8 blocks those cancel and the offset gets the whole gradient."""
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample.float()
    l1 = (recon - x).abs().mean()
    loss = l1 + kl_weight * posterior.kl().mean() / x[0].numel()
    if gradient_weight:
        loss = loss + gradient_weight * sum((a - b).abs().mean() for a, b in zip(image_gradients(recon),
                                                                                 image_gradients(x)))
    if color_weight:
        loss = loss + color_weight * block_mean_l1(recon, x)
    return loss, l1.item()


def block_mean_l1(a: torch.Tensor, b: torch.Tensor, block: int = 8) -> torch.Tensor:
    """L1 between the two images' means over `block`×`block` blocks: blind to errors that average out within a
    block, the whole error for a block's colour offset."""
    return (F.avg_pool2d(a, block) - F.avg_pool2d(b, block)).abs().mean()


@torch.no_grad()
def validation_psnr(vae, crops: list[torch.Tensor]) -> float:
    """Mean PSNR (dB, 8-bit rounded RGB) of D(E(x)) over the held-back crops, with the posterior mean."""
    was_training = vae.training
    vae.eval()
    values = []
    for x in crops:
        r = vae.decode(vae.encode(x[None]).latent_dist.mean).sample.clamp(-1, 1)
        r = torch.round((r + 1) * 127.5) / 127.5 - 1
        values.append(10 * math.log10(4.0 / float(((r[0] - x) ** 2).mean().clamp_min(1e-12))))
    vae.train(was_training)
    return float(np.mean(values))


@torch.no_grad()
def latent_scaling_factor(vae, photos: list[torch.Tensor], size: int = 128, n: int = 64) -> float:
    """1 / std of the latents, the rule the LDM paper used to set SD's 0.18215."""
    size = min(size, *(min(p.shape[1:]) for p in photos)) // 8 * 8
    z = vae.encode(sample_crops(photos, n, size, random.Random(0))).latent_dist.mean
    return float(1.0 / z.std())


def initialise(vae, cfg: AutoencoderConfig) -> None:
    """Start near a working autoencoder. At diffusers' default init the posterior's log-variance is ≈ 0, so the
    decoder first sees latents buried in unit noise and spends its early steps learning to silence it; starting at
    `init_logvar` gave +2.3 dB after 250 steps (f2, 8 channels). Zero-initialised res-blocks pass their input on
    unchanged until they have learnt something, as in Goyal et al. (2017)."""
    from diffusers.models.resnet import ResnetBlock2D

    with torch.no_grad():
        if cfg.init_logvar is not None and vae.quant_conv is not None:
            vae.quant_conv.weight[cfg.latent_channels:] = 0
            vae.quant_conv.bias[cfg.latent_channels:] = cfg.init_logvar
        if cfg.zero_init_residual:
            for block in vae.modules():
                if isinstance(block, ResnetBlock2D):
                    block.conv2.weight.zero_()
                    block.conv2.bias.zero_()


# --- checkpoints ---------------------------------------------------------------------------------------------------

def save_checkpoint(folder: Path, vae, opt, step: int, rng: random.Random) -> None:
    """model.safetensors, optimizer.safetensors and state.json, verified and renamed into place together by the CFM
    trainer's protocol (training/checkpoints.py); the previous checkpoint stays whole until the new one is."""
    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, tmp / "model.safetensors")
        opt_state = opt.state_dict()
        tensors = {f"{i}.{k}": v for i, s in opt_state["state"].items() for k, v in s.items()}
        tensors["torch_rng"] = torch.get_rng_state()
        save_file(tensors, tmp / "optimizer.safetensors")
        version, internal, gauss = rng.getstate()
        state = dict(step=step, param_groups=opt_state["param_groups"], py_rng=[version, list(internal), gauss])
        (tmp / "state.json").write_text(json.dumps(state))

    write_verified(folder, step, write, tmp=folder.with_name(folder.name + ".tmp"))


def check_checkpoint(folder: Path) -> None:
    """Refuses to resume from a checkpoint whose files do not match its record (complete.json): starting over
    would throw the run away, so the user decides. Checkpoints written before the record existed pass."""
    problem = checkpoint_problem(folder)
    if problem:
        raise InputError(f"{folder}: damaged checkpoint ({problem}); move it away to start over, or restore it")


def load_checkpoint(folder: Path, vae, opt, rng: random.Random) -> int:
    vae.load_state_dict(load_file(folder / "model.safetensors"))
    tensors = load_file(folder / "optimizer.safetensors")
    torch.set_rng_state(tensors.pop("torch_rng"))
    state = json.loads((folder / "state.json").read_text())
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        per_param.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    version, internal, gauss = state["py_rng"]
    rng.setstate((version, tuple(internal), gauss))
    return int(state["step"])


def convert_legacy_checkpoint(out: Path, vae, opt, rng: random.Random) -> None:
    """Once: a run started by the old trainer (`checkpoint.pt`, pickled by us) becomes a safetensors checkpoint."""
    legacy = out / "checkpoint.pt"
    state = torch.load(legacy, weights_only=False)  # our own trainer's file; never loaded again after this
    vae.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    rng.setstate(state["py_rng"])
    torch.set_rng_state(state["torch_rng"])
    save_checkpoint(out / "checkpoint", vae, opt, state["step"], rng)
    legacy.rename(legacy.with_suffix(".pt.converted"))
    print(f"converted {legacy} (step {state['step']}) to {out / 'checkpoint'}", file=sys.stderr)


def load_init(path: str, vae) -> None:
    p = Path(path)
    for candidate in (p / "model.safetensors", p / "checkpoint" / "model.safetensors",
                      p / "diffusion_pytorch_model.safetensors", p / "autoencoder" / "diffusion_pytorch_model.safetensors"):
        if candidate.is_file():
            vae.load_state_dict(load_file(candidate))
            return
    raise MissingError(f"{path}: no autoencoder weights (a checkpoint folder or a saved autoencoder)")


# --- the loop ------------------------------------------------------------------------------------------------------

def lr_at(cfg: AutoencoderConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from lr to lr × min_lr_ratio at `steps`."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def train(cfg: AutoencoderConfig) -> Path:
    """Trains (or resumes) to `cfg.steps`, or until `max_minutes`; saves OUT/autoencoder and returns its path."""
    from diffusers import AutoencoderKL

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    train_files, held_files = split_photos(cfg.data, cfg.holdout_every)
    photos = [p for p in load_photos(train_files) if min(p.shape[1:]) >= cfg.crop]
    if not photos:
        raise InputError(f"no photo in {', '.join(cfg.data)} is at least {cfg.crop} px a side (the crop size)")
    val = center_crops(load_photos(held_files), cfg.val_crop) if cfg.val_every else []
    print(f"{len(photos)} training photos (with half-size copies), {len(val)} held back", file=sys.stderr)

    config = small_autoencoder_config(cfg.block_out_channels, cfg.latent_channels)
    vae = AutoencoderKL(**{**config, "layers_per_block": cfg.layers_per_block})
    initialise(vae, cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ckpt, step = out / "checkpoint", 0
    recover_old(ckpt)  # killed between the renames of save_checkpoint
    if not ckpt.exists() and (out / "checkpoint.pt").exists():
        convert_legacy_checkpoint(out, vae, opt, rng)
    if ckpt.exists():
        check_checkpoint(ckpt)
        step = load_checkpoint(ckpt, vae, opt, rng)
        print(f"resumed at step {step}", file=sys.stderr)
    elif cfg.init:
        load_init(cfg.init, vae)
        print(f"initialised from {cfg.init}", file=sys.stderr)
    bf16 = resolve_bf16(cfg.bf16, "cpu")
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    log = open(out / "log.csv", "a")
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    bar = tqdm(total=cfg.steps, initial=step, desc="autoencoder", file=sys.stderr)
    t0 = time.time()
    with stop_signals() as received:  # SIGTERM or Ctrl-C: finish the step, checkpoint, export, stop
        while step < cfg.steps and time.time() < deadline and not received:
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step)
            x = sample_crops(photos, cfg.batch_size, cfg.crop, rng, cfg.color_augment)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, l1 = reconstruction_loss(vae, x, cfg.kl_weight, cfg.gradient_weight, cfg.color_weight)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; the last checkpoint is kept")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(l1=f"{l1:.4f}")
            psnr = validation_psnr(vae, val) if val and step % cfg.val_every == 0 else None
            log.write(f"{step},{loss.item():.6f},{l1:.6f},{'' if psnr is None else f'{psnr:.3f}'},"
                      f"{time.time() - t0:.1f}\n")
            if psnr is not None:
                bar.write(f"step {step}: held-back PSNR {psnr:.2f} dB")
            if step % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt, vae, opt, step, rng)
                log.flush()
        bar.close()
        log.close()
        save_checkpoint(ckpt, vae, opt, step, rng)
        folder = export(vae, cfg, photos, step, out)
    if received and step < cfg.steps:
        raise stopped(received[0], step, ckpt, "the same command")
    return folder


def export(vae, cfg: AutoencoderConfig, photos: list[torch.Tensor], step: int, out: Path) -> Path:
    """OUT/autoencoder: a diffusers AutoencoderKL folder with its latent scaling factor and training.json."""
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, photos))
    folder = out / "autoencoder"

    def write(tmp: Path) -> None:
        Autoencoder(vae).save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps({**dataclasses.asdict(cfg), "trained_steps": step}, indent=2))

    write_atomic(folder, write, tmp=out / "autoencoder.tmp")
    print(f"saved {folder} at step {step} (scaling_factor {vae.config.scaling_factor:.4f})", file=sys.stderr)
    return folder
