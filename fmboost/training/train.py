"""`fmboost train`: the CFM training loop on precomputed latents, built on accelerate (one process, DDP or FSDP).

The same command runs alone or under `accelerate launch` / `torchrun`: every process reads its own shards of the
stream (fmboost/data/stream.py), and `batch_size` is the global batch of an optimiser step. Each step consumes a
fixed number of pairs per process and draws its noise from a generator seeded by (seed, process, step), so the
step count alone restores the data position: a checkpoint holds model, EMA, optimizer, scheduler and step, and
N steps equal N/2 steps + resume + N/2 steps. Checkpoints: training/checkpoints.py; OUT/model and sample grids:
training/export.py; processes and FSDP: training/distributed.py.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from fmboost.data.files import write_atomic
from fmboost.data.stream import pair_batches, read_manifest, seeded
from fmboost.errors import InputError, MissingError
from fmboost.flow.objectives import loss_for
from fmboost.models.presets import build_model
from fmboost.training.checkpoints import checkpoint_folders, restore, resume_folder, save_checkpoint
from fmboost.training.config import TrainConfig
from fmboost.training.distributed import agree, make_accelerator, per_process_batch, sharded
from fmboost.training.export import check_export_settings, export_ema
from fmboost.training.stopping import TrainingStopped, stop_signals, stopped  # noqa: F401  (re-exported)

LR_SCALING = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


class TrainingDiverged(RuntimeError):
    pass



def lr_lambda(warmup_steps: int, max_steps: int, decay: str = "none"):
    if decay not in ("none", "cosine"):
        raise InputError(f"lr_decay {decay!r}: choose none or cosine")

    def factor(step):
        warm = min(1.0, (step + 1) / max(1, warmup_steps))
        if decay == "none" or step < warmup_steps:
            return warm
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def warmup_note(warmup_steps: int, max_steps: int, lr: float) -> str | None:
    """A line when the linear warm-up takes more than half the run, so a short run barely trains; None otherwise.
    The warm-up is kept as set rather than shortened behind the user's back: runs stay reproducible from their
    config, and resuming a longer run later keeps the same schedule."""
    if warmup_steps <= max_steps / 2:
        return None
    reached = lr * min(1.0, max_steps / max(1, warmup_steps))
    return (f"the warm-up ({warmup_steps} steps) is longer than half of this {max_steps}-step run: the learning rate "
            f"only reaches {reached:.2g} of {lr:.2g}; lower it with --warmup-steps (or warmup_steps in the config)")


def describe_run(processes: int, distributed: str, device: str, mixed_precision: str) -> str:
    """`1 process, CPU, fp32` or `8 processes (MULTI_GPU), CUDA, bf16`: how a run is spread, in words."""
    spread = "1 process" if processes == 1 else f"{processes} processes ({distributed})"
    return f"{spread}, {device.upper()}, {'fp32' if mixed_precision == 'no' else mixed_precision}"


def effective_lr(cfg: TrainConfig) -> float:
    """`lr` moved from the global batch it was tuned for (reference_batch) to batch_size by the lr_scaling rule."""
    if cfg.lr_scaling not in LR_SCALING:
        raise InputError(f"lr_scaling {cfg.lr_scaling!r}: choose one of {', '.join(LR_SCALING)}")
    return cfg.lr * LR_SCALING[cfg.lr_scaling](cfg.batch_size / cfg.reference_batch)


def init_folder(cfg: TrainConfig) -> Path:
    """The folder cfg.init names: a model folder (an embedded one for `default`, `real`) or a bare network's."""
    from fmboost.data.sources import resolve_model

    return Path(resolve_model(cfg.init))


def init_flow(cfg: TrainConfig) -> Path:
    """The folder of the flow a fine-tune starts from: cfg.init's cfm/ (or cfg.init itself, a bare network)."""
    folder = init_folder(cfg)
    return folder / "cfm" if (folder / "cfm").is_dir() else folder


def init_record(cfg: TrainConfig, out: Path) -> dict | None:
    """How the init's flow was made when it was itself fine-tuned (its training.json's steps, data, init digest and
    own init_record), for the export's training.json, so a chain of fine-tunes names every round. Kept in
    OUT/init_record.json when the run starts, as init.sha256 is."""
    if not cfg.init:
        return None
    kept = out / "init_record.json"
    if not kept.is_file():
        source = init_folder(cfg) / "training.json"
        made = json.loads(source.read_text()) if source.is_file() else {}
        keys = ("steps", "data", "init_sha256", "init_record")
        record = {k: made[k] for k in keys if k in made} if made.get("init_sha256") else {}
        write_atomic(kept, lambda tmp: tmp.write_text(json.dumps(record)))
    return json.loads(kept.read_text()) or None


def initial_model(cfg: TrainConfig, latent_channels: int):
    """The preset's fresh U-Net, or, to fine-tune, the CFM weights of an exported model folder."""
    if not cfg.init:
        return build_model(cfg.preset, latent_channels, **cfg.model)
    folder = init_flow(cfg)
    if not (folder / "config.json").exists():
        raise MissingError(f"init: {cfg.init} is not a model folder (no cfm/config.json)")
    from fmboost.models.networks import load_network, network_name

    # Converted from the reference code: its noise schedule and PSU differ from what fmboost would train with.
    if network_name(folder) == "EfficientUNet":
        raise InputError(f"init: {cfg.init} holds a {network_name(folder)} network; fmboost fine-tunes its own "
                         f"networks only")
    model = load_network(folder)
    if model.config.latent_channels != latent_channels:
        raise InputError(f"init: {cfg.init} has {model.config.latent_channels} latent channels, "
                         f"the data {latent_channels}")
    return model


def init_digest(cfg: TrainConfig, out: Path) -> str | None:
    """The sha256 of the flow a fine-tune starts from (cfg.init's cfm weights), for its training.json: written to
    OUT/init.sha256 when the run starts, so that a run resumed after the init folder changed still names the flow it
    really started from."""
    if not cfg.init:
        return None
    kept = out / "init.sha256"
    if kept.is_file():
        return kept.read_text().strip()
    from fmboost.data.files import WEIGHTS_NAME, sha256

    weights = init_flow(cfg) / WEIGHTS_NAME
    digest = sha256(weights) if weights.is_file() else None
    if digest:
        write_atomic(kept, lambda tmp: tmp.write_text(digest + "\n"))  # a run killed here never keeps half of it
    return digest


def pixel_term(cfg: TrainConfig, manifest: dict, device):
    """The decoder-space term of the loss (cfg.pixel_weight > 0), through the shards' own autoencoder."""
    if not cfg.pixel_weight:
        return None
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.flow.objective import DecodedL1

    return DecodedL1(Autoencoder.from_pretrained(manifest["vae"]).to(device), cfg.pixel_weight)


def make_optimizer(params, lr: float, weight_decay: float, fused: bool) -> torch.optim.AdamW:
    # fused: one kernel for all parameters instead of a few per tensor (None lets torch pick foreach).
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)


@torch.no_grad()
def update_ema(ema: dict, model, decay: float) -> None:
    for name, p in model.named_parameters():
        ema[name].lerp_(p.detach().float(), 1 - decay)


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def accumulate(accelerator, model, batches, loss_fn, generator, cfg: TrainConfig) -> torch.Tensor:
    """Forward and backward over grad_accum micro-batches; gradients cross processes after the last one only."""
    total = 0.0
    for i in range(cfg.grad_accum):
        batch = next(batches)
        x1, x_cond = (to_device(batch[k], accelerator.device, cfg.channels_last) for k in ("x1", "x_cond"))
        with contextlib.nullcontext() if i == cfg.grad_accum - 1 else accelerator.no_sync(model):
            with accelerator.autocast():
                loss = loss_fn(model, x1, x_cond, generator) / cfg.grad_accum
            accelerator.backward(loss)
        total = total + loss.detach()
    return total


def open_log(path: Path, step: int):
    """log.csv, cut back to `step` on resume: the steps logged after that checkpoint are done again."""
    rows = list(csv.reader(path.open(newline=""))) if step and path.exists() else []
    rows = rows[:1] + [r for r in rows[1:] if int(r[0]) <= step] if rows else [["step", "loss", "lr", "seconds"]]
    f = path.open("w", newline="")
    log = csv.writer(f)
    log.writerows(rows)
    return f, log


def announce(accelerator, out: Path, cfg: TrainConfig, per_process: int, lr: float, step: int) -> None:
    """What this run worked out from the config and the launcher: printed, and kept in OUT/config.json."""
    n = accelerator.num_processes
    effective = {"processes": n, "distributed": accelerator.distributed_type.value, "global_batch": cfg.batch_size,
                 "per_process_batch": per_process, "grad_accum": cfg.grad_accum, "lr": lr,
                 "lr_scaling": cfg.lr_scaling, "mixed_precision": accelerator.mixed_precision, "start_step": step}
    run = describe_run(n, effective["distributed"], accelerator.device.type, accelerator.mixed_precision)
    print(f"fmboost train: {run}; "
          f"global batch {cfg.batch_size} = {per_process} per process × {cfg.grad_accum} accumulation × {n}; "
          f"lr {lr:.4g} (lr_scaling {cfg.lr_scaling}); from step {step}", flush=True)
    note = warmup_note(cfg.warmup_steps, cfg.max_steps, lr)
    if note:
        print(f"fmboost train: warning: {note}", flush=True)
    if cfg.distributed == "fsdp" and not sharded(accelerator):
        print("fmboost train: distributed: fsdp needs several GPUs; running without it", flush=True)
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "effective": effective}, indent=2))


def train(cfg: TrainConfig, resume: bool | str = False) -> Path:
    """Trains, or with `resume` (True or "auto") continues from the newest complete checkpoint in cfg.out."""
    if not cfg.data:
        raise InputError("no training data: give --data SHARDS_DIR (made by `fmboost prepare`) or `data:` in the config")
    check_export_settings(cfg)
    out = Path(cfg.out)
    accelerator = make_accelerator(cfg)
    if accelerator.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every step has the same shapes: pick the fastest kernels once
    rank, main = accelerator.process_index, accelerator.is_main_process
    per_process, lr = per_process_batch(cfg, accelerator.num_processes), effective_lr(cfg)
    manifest = read_manifest(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    folder = resume_folder(accelerator, out, resume)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, manifest["latent_channels"])
    if main:  # the flow a fine-tune started from, recorded with the export (export.export_pipeline)
        manifest = {**manifest, "init_sha256": init_digest(cfg, out), "init_record": init_record(cfg, out)}
    # The architecture, on rank 0, that the EMA weights are exported in.
    template = copy.deepcopy(model).requires_grad_(False) if main else None
    if folder:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), lr, cfg.weight_decay,
                         cfg.fused_adamw and accelerator.device.type == "cuda")
    # Not given to accelerate, which would step it once per process: the schedule counts optimiser steps.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps, cfg.max_steps, cfg.lr_decay))
    model, opt = accelerator.prepare(model, opt)
    net = accelerator.unwrap_model(model, keep_torch_compile=False)
    ema = {name: p.detach().clone().float() for name, p in net.named_parameters()}
    step = restore(folder, net, ema, opt, sched) if folder else 0
    saved = step if folder else None
    if main:
        announce(accelerator, out, cfg, per_process, lr, step)
        log_file, log = open_log(out / "log.csv", step)
        writer = tensorboard_writer(out / "tb")
    batches = pair_batches(cfg.data, per_process, cfg.seed, rank, accelerator.num_processes,
                           start=step * per_process * cfg.grad_accum, cache_mb=cfg.data_cache_mb)
    loss_fn = loss_for(cfg.objective, cfg.sigma_min, cfg.tau,
                       pixel_loss=pixel_term(cfg, manifest, accelerator.device))
    t0 = time.time()
    deadline = t0 + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", disable=not main)
    model.train()
    with stop_signals() as received:
        while step < cfg.max_steps:
            # The noise of a step depends on (seed, process, step) alone: a resumed run draws what it would have.
            # It is drawn on the training device: on a GPU, drawing it on the CPU took as long as the step itself.
            noise = seeded(cfg.seed, 1, rank, step, device=accelerator.device)
            loss = accumulate(accelerator, model, batches, loss_fn, noise, cfg)
            loss, stop = agree(accelerator, loss, bool(received) or time.time() > deadline)
            if not math.isfinite(loss):
                last = next(iter(checkpoint_folders(out)), "not written yet")
                raise TrainingDiverged(f"loss became {loss} at step {step + 1}; the last good checkpoint is {last} "
                                       f"(try a lower lr or --bf16 off)")
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            # Short warm-up of the EMA decay, so early checkpoints are not dominated by the random init.
            update_ema(ema, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
            step += 1
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == cfg.max_steps):
                bar.set_postfix(loss=f"{loss:.4f}")
                log.writerow([step, f"{loss:.6f}", f"{sched.get_last_lr()[0]:.3g}", f"{time.time() - t0:.1f}"])
                log_file.flush()
                if writer:
                    writer.add_scalar("loss", loss, step)
            if step % cfg.checkpoint_every == 0:
                save_checkpoint(accelerator, out, net, ema, opt, sched, step, cfg)
                saved = step
            if cfg.sample_every and step % cfg.sample_every == 0:
                export_ema(accelerator, out, template, ema, manifest, cfg, step,
                           grid=out / "samples" / f"step_{step:07d}.png")
            if stop:
                break
        bar.close()
        if main:
            log_file.close()
            if writer:
                writer.close()
        if saved != step:
            save_checkpoint(accelerator, out, net, ema, opt, sched, step, cfg)
        if received and step < cfg.max_steps:
            accelerator.wait_for_everyone()
            raise stopped(received[0], step, out / "checkpoints" / f"step_{step:07d}", "--resume auto")
    export_ema(accelerator, out, template, ema, manifest, cfg, step)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out / "model"


def tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: the CSV log always exists
        return None
    return SummaryWriter(str(folder))
