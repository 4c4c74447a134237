"""`fmboost train`: the CFM training loop on precomputed latents, built on accelerate.

Checkpoints hold model, EMA, optimizer, scheduler, data/noise RNG and step, so that training N steps equals
N/2 steps + resume + N/2 steps. They are written to a temporary folder and renamed into place.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fmboost.data.prepare import load_shards
from fmboost.flow.baselines import loss_for
from fmboost.models.presets import build_model
from fmboost.training.config import TrainConfig


class TrainingDiverged(RuntimeError):
    pass


def lr_lambda(warmup_steps: int, max_steps: int, decay: str = "none"):
    if decay not in ("none", "cosine"):
        raise ValueError(f"lr_decay {decay!r}: choose none or cosine")

    def factor(step):
        warm = min(1.0, (step + 1) / max(1, warmup_steps))
        if decay == "none" or step < warmup_steps:
            return warm
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def initial_model(cfg: TrainConfig, latent_channels: int):
    """The preset's fresh U-Net, or, to fine-tune, the CFM weights of an exported model folder."""
    if not cfg.init:
        return build_model(cfg.preset, latent_channels, **cfg.model)
    from fmboost.models.unet import CFMUNet

    folder = Path(cfg.init)
    folder = folder / "cfm" if (folder / "cfm").is_dir() else folder
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"init: {cfg.init} is not a model folder (no cfm/config.json)")
    model = CFMUNet.from_pretrained(folder)
    if model.config.latent_channels != latent_channels:
        raise ValueError(f"init: {cfg.init} has {model.config.latent_channels} latent channels, "
                         f"the data {latent_channels}")
    return model


@torch.no_grad()
def update_ema(ema, model, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach().float(), 1 - decay)


def save_checkpoint(out: Path, model, ema, opt, sched, generator, step: int, cfg: TrainConfig) -> None:
    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "step": step}, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    # Swap in two renames; if we die between them, `checkpoint.old` is still a complete checkpoint.
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, model, ema, opt, sched, generator) -> int:
    folder = next((f for f in (out / "checkpoint", out / "checkpoint.old") if (f / "state.pt").exists()), None)
    if folder is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {out}")
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    ema.load_state_dict(load_file(str(folder / "ema.safetensors")))
    state = torch.load(folder / "state.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def export_pipeline(out: Path, ema, manifest: dict, cfg: TrainConfig, step: int):
    """Writes out/model, a folder `FMBoostPipeline.from_pretrained` (and `fmboost upscale --model`) reads."""
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline(Autoencoder.from_pretrained(manifest["vae"]), ema, scale=manifest["scale"],
                           upsampling=manifest["upsampling"], sigma_min=cfg.sigma_min,
                           tau=cfg.tau if cfg.sample_tau is None else cfg.sample_tau,
                           objective=cfg.objective)
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    # How the weights were made travels with them: settings, steps reached, data.
    data = {k: manifest[k] for k in ("vae", "size", "scale", "upsampling", "count", "images_dirs") if k in manifest}
    (tmp / "training.json").write_text(json.dumps({"steps": step, "config": cfg.to_dict(), "data": data}, indent=2))
    shutil.rmtree(out / "model", ignore_errors=True)
    os.replace(tmp, out / "model")
    return pipe


@torch.no_grad()
def save_sample_grid(path: Path, pipe, data: dict, n: int = 4) -> None:
    """Rows: x0 decoded (the starting point), the CFM result at 4 Euler steps, the ground truth x1."""
    from fmboost.data.images import save_image_atomic, to_pil

    x_cond, x1 = data["x_cond"][:n].to(pipe.device), data["x1"][:n].to(pipe.device)
    pred, _ = pipe.flow(x_cond, steps=4)
    rows = [pipe.autoencoder.decode(z) for z in (x_cond, pred, x1)]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    save_image_atomic(to_pil(grid), path)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    if not cfg.data:
        raise ValueError("no training data: give --data SHARDS_DIR (made by `fmboost prepare`) or `data:` in the config")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no")
    data, manifest = load_shards(cfg.data)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, manifest["latent_channels"])
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps, cfg.max_steps, cfg.lr_decay))
    # One generator draws batches, t and the augmentation noise: restoring it makes resumed runs exact.
    generator = torch.Generator().manual_seed(cfg.seed + accelerator.process_index)
    loss_fn = loss_for(cfg.objective, cfg.sigma_min, cfg.tau)
    step = load_checkpoint(out, model, ema, opt, sched, generator) if resume else 0
    model, opt, sched = accelerator.prepare(model, opt, sched)
    ema.to(accelerator.device)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    log_file = open(out / "log.csv", "a" if resume else "w", newline="")
    log = csv.writer(log_file)
    if not resume:
        log.writerow(["step", "loss", "lr", "seconds"])
    writer = tensorboard_writer(out / "tb") if accelerator.is_main_process else None
    n, t0 = data["x1"].shape[0], time.time()
    deadline = t0 + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", disable=not accelerator.is_main_process)
    model.train()
    while step < cfg.max_steps and time.time() < deadline:
        idx = torch.randint(n, (cfg.batch_size,), generator=generator)
        x1, x_cond = data["x1"][idx].to(accelerator.device), data["x_cond"][idx].to(accelerator.device)
        with accelerator.autocast():
            loss = loss_fn(model, x1, x_cond, generator)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {step + 1}; the last good checkpoint is "
                                   f"in {out / 'checkpoint'} (try a lower lr or --bf16 off)")
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        # Short warm-up of the EMA decay, so early checkpoints are not dominated by the random init.
        update_ema(ema, accelerator.unwrap_model(model), min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log.writerow([step, f"{loss.item():.6f}", f"{sched.get_last_lr()[0]:.3g}", f"{time.time() - t0:.1f}"])
            log_file.flush()
            if writer:
                writer.add_scalar("loss", loss.item(), step)
        if accelerator.is_main_process and step % cfg.checkpoint_every == 0:
            save_checkpoint(out, accelerator.unwrap_model(model), ema, opt, sched, generator, step, cfg)
        if accelerator.is_main_process and cfg.sample_every and step % cfg.sample_every == 0:
            pipe = export_pipeline(out, ema, manifest, cfg, step)
            save_sample_grid(out / "samples" / f"step_{step:07d}.png", pipe, data)
    bar.close()
    log_file.close()
    if accelerator.is_main_process:
        save_checkpoint(out, accelerator.unwrap_model(model), ema, opt, sched, generator, step, cfg)
        export_pipeline(out, ema, manifest, cfg, step)
        if writer:
            writer.close()
    return out / "model"


def tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: the CSV log always exists
        return None
    return SummaryWriter(str(folder))
