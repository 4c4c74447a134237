"""`fmboost train`: the CFM training loop on precomputed latents, built on accelerate (one process, DDP or FSDP).

The same command runs alone or under `accelerate launch` / `torchrun`: every process reads its own shards of the
stream (fmboost/data/stream.py), and `batch_size` is the global batch of an optimiser step. Each step consumes a
fixed number of pairs per process and draws its noise from a generator seeded by (seed, process, step), so the
step count alone restores the data position: a checkpoint holds model, EMA, optimizer, scheduler and step, and
N steps equal N/2 steps + resume + N/2 steps. Rank 0 writes checkpoints to OUT/checkpoints/step_NNNNNNN: into a
temporary folder, closed by complete.json (sizes and sha256 of its files), then renamed into place.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fmboost.data.stream import first_pairs, pair_batches, read_manifest, seeded
from fmboost.flow.objectives import loss_for
from fmboost.models.presets import build_model
from fmboost.training.config import TrainConfig

COMPLETE = "complete.json"
OLD_LAYOUT = ("checkpoint", "checkpoint.old")  # the single checkpoint folder of earlier versions, still read
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LR_SCALING = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


class TrainingDiverged(RuntimeError):
    pass


class TrainingStopped(Exception):
    """SIGTERM or SIGINT arrived: the step in flight was finished and checkpointed."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's "ended by this signal", so scripts do not carry on


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


def effective_lr(cfg: TrainConfig) -> float:
    """`lr` moved from the global batch it was tuned for (reference_batch) to batch_size by the lr_scaling rule."""
    if cfg.lr_scaling not in LR_SCALING:
        raise ValueError(f"lr_scaling {cfg.lr_scaling!r}: choose one of {', '.join(LR_SCALING)}")
    return cfg.lr * LR_SCALING[cfg.lr_scaling](cfg.batch_size / cfg.reference_batch)


def per_process_batch(cfg: TrainConfig, processes: int) -> int:
    if cfg.grad_accum < 1 or cfg.batch_size % (processes * cfg.grad_accum):
        raise ValueError(f"batch_size {cfg.batch_size} is the global batch: it must be a multiple of "
                         f"{processes} process(es) × grad_accum {cfg.grad_accum}")
    return cfg.batch_size // (processes * cfg.grad_accum)


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


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    if cfg.distributed not in ("ddp", "fsdp"):
        raise ValueError(f"distributed {cfg.distributed!r}: choose ddp or fsdp")
    fsdp = None
    if cfg.distributed == "fsdp":
        from accelerate import FullyShardedDataParallelPlugin

        # FSDP2 (DTensor parameters, which the EMA and checkpoint code below gather and scatter); blocks of 10 M
        # parameters or more get their own all-gather, so the `general` preset never holds all its weights at once.
        fsdp = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="size_based_wrap",
                                              min_num_params=10 ** 7)
    # Without CUDA, accelerate joins torchrun's processes (gloo) only when told it runs on CPUs.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", 1)) > 1
    accelerator = Accelerator(cpu=cpu, mixed_precision="bf16" if cfg.bf16 else "no", fsdp_plugin=fsdp,
                              dynamo_backend="inductor" if cfg.compile else "no")
    if sharded(accelerator) and accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise ValueError("FSDP from the launcher's config (FSDP1) is not supported: leave it out of the accelerate "
                         "config and set `distributed: fsdp` in the training config (FSDP2)")
    return accelerator


def make_optimizer(params, lr: float, weight_decay: float, fused: bool) -> torch.optim.AdamW:
    # fused: one kernel for all parameters instead of a few per tensor (None lets torch pick foreach).
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)


def sharded(accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def full_tensors(tensors: dict) -> dict:
    """Whole CPU tensors. Under FSDP the DTensor shards are gathered: a collective, every process must call it."""
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu().contiguous()
            for k, v in tensors.items()}


def like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`full` laid out as `ref`: this process's shard of it under FSDP, else on ref's device in ref's memory format."""
    if hasattr(ref, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(ref.device), ref.device_mesh, ref.placements)
    return torch.empty_like(ref, dtype=full.dtype).copy_(full)


@torch.no_grad()
def update_ema(ema: dict, model, decay: float) -> None:
    for name, p in model.named_parameters():
        ema[name].lerp_(p.detach().float(), 1 - decay)


# ---------------------------------------------------------------- checkpoints

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_folders(out: Path) -> list[Path]:
    """Checkpoint folders, newest first: OUT/checkpoints/step_N by N, then an earlier version's OUT/checkpoint."""
    steps = [f for f in (out / "checkpoints").glob("step_*") if re.fullmatch(r"step_\d+", f.name)]
    return sorted(steps, key=lambda f: int(f.name[5:]), reverse=True) + \
        [out / name for name in OLD_LAYOUT if (out / name / "state.pt").exists()]


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` is not a complete checkpoint (None if it is): its files must match complete.json's record."""
    if not (folder / COMPLETE).exists():
        # Earlier versions renamed their single folder into place whole, without a record.
        return None if folder.name in OLD_LAYOUT else f"incomplete (no {COMPLETE})"
    try:
        files = json.loads((folder / COMPLETE).read_text())["files"]
    except (ValueError, KeyError) as e:
        return f"unreadable {COMPLETE} ({e})"
    for name, want in files.items():
        path = folder / name
        if not path.exists():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} is truncated or altered ({path.stat().st_size} bytes, {want['bytes']} recorded)"
        if sha256(path) != want["sha256"]:
            return f"{name} does not match its recorded sha256"
    return None


def newest_checkpoint(out: Path) -> Path | None:
    for folder in checkpoint_folders(out):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        print(f"fmboost train: skipping checkpoint {folder}: {problem}", file=sys.stderr, flush=True)
    return None


def resume_folder(accelerator, out: Path, resume) -> Path | None:
    """The checkpoint to continue from: with --resume the newest complete one, chosen by rank 0 for every rank."""
    if not resume:
        if checkpoint_folders(out):
            raise ValueError(f"{out} already holds checkpoints of a run: add --resume to continue it, or choose "
                             f"another --out")
        return None
    found = [newest_checkpoint(out) if accelerator.is_main_process else None]
    if accelerator.is_main_process and found[0] is None:
        print(f"fmboost train: no complete checkpoint in {out}: starting at step 0", file=sys.stderr)
    return broadcast_object_list(found)[0]


def write_checkpoint(out: Path, step: int, tensors: dict, state: dict, cfg: TrainConfig) -> Path:
    root = out / "checkpoints"
    final, tmp = root / f"step_{step:07d}", root / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, values in tensors.items():
        save_file(values, str(tmp / f"{name}.safetensors"))
    torch.save(state, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    files = {f.name: {"bytes": f.stat().st_size, "sha256": sha256(f)} for f in sorted(tmp.iterdir())}
    # Written last: without it, or with files that no longer match it, the folder is not a checkpoint.
    (tmp / COMPLETE).write_text(json.dumps({"step": step, "files": files}, indent=2))
    shutil.rmtree(final, ignore_errors=True)  # a stale folder of this step, from a run not resumed from it
    os.replace(tmp, final)
    prune(root, step, cfg.keep_checkpoints)
    return final


def prune(root: Path, newest: int, keep: int) -> None:
    """Keeps the `keep` newest checkpoints up to step `newest`. Later ones belong to a run that was not continued
    from them (corrupt, or abandoned); temporary folders are what a crash left."""
    folders = [f for f in checkpoint_folders(root.parent) if f.parent == root]
    kept = [f for f in folders if int(f.name[5:]) <= newest][:max(1, keep)]
    for f in folders + list(root.glob(".tmp_step_*")):
        if f not in kept:
            shutil.rmtree(f, ignore_errors=True)


def save_checkpoint(accelerator, out: Path, net, ema: dict, opt, sched, step: int, cfg: TrainConfig):
    """Rank 0 writes the checkpoint; under FSDP every process first hands over its shards."""
    if not (accelerator.is_main_process or sharded(accelerator)):
        return None
    model = full_tensors(net.state_dict())
    optimizer = opt.state_dict()
    optimizer["state"] = {i: full_tensors(s) for i, s in optimizer["state"].items()}
    tensors = {"model": model, "ema": {**model, **full_tensors(ema)}}
    state = {"optimizer": optimizer, "scheduler": sched.state_dict(), "step": step}
    return write_checkpoint(out, step, tensors, state, cfg) if accelerator.is_main_process else None


def restore(folder: Path, net, ema: dict, opt, sched) -> int:
    """EMA, optimizer and scheduler from `folder` (the model weights were loaded before accelerate wrapped it)."""
    full = load_file(str(folder / "ema.safetensors"))
    for name, p in net.named_parameters():
        ema[name] = like(full[name].float(), p)
    state = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
    opt.load_state_dict(state["optimizer"])
    for p, values in opt.optimizer.state.items():
        for k, v in values.items():
            if torch.is_tensor(v) and v.dim():
                values[k] = like(v, p)
    sched.load_state_dict(state["scheduler"])
    return int(state["step"])


# ---------------------------------------------------------------- the loop

@contextlib.contextmanager
def stop_signals():
    """Collects SIGTERM/SIGINT instead of dying, for the loop to finish its step, checkpoint and stop. Launchers
    (torchrun, Slurm) pass signals on to every process, some twice: later ones are collected too."""
    received = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return
    old = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def agree(accelerator, loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
    """The mean loss over processes and whether any wants to stop, in one collective: all then decide the same
    at the same step (one process raising or stopping alone would leave the others waiting forever)."""
    both = torch.stack([loss.detach().float(), torch.tensor(float(stop), device=loss.device)])
    both = accelerator.reduce(both, "sum")
    return both[0].item() / accelerator.num_processes, bool(both[1].item())


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


def export_ema(accelerator, out: Path, template, ema: dict, manifest: dict, cfg: TrainConfig, step: int,
               grid: Path | None = None) -> None:
    """The EMA weights as OUT/model, and a sample grid if asked: rank 0, in `template`, which waits on the CPU in
    between (under FSDP every process first hands over its shards)."""
    if not (accelerator.is_main_process or sharded(accelerator)):
        return
    weights = full_tensors(ema)
    if not accelerator.is_main_process:
        return
    template.load_state_dict({**template.state_dict(), **weights})
    pipe = export_pipeline(out, template, manifest, cfg, step)
    if grid:  # on the training device, autoencoder and all, then back
        save_sample_grid(grid, pipe.to(accelerator.device), first_pairs(cfg.data, 4))
        pipe.to("cpu")


@torch.no_grad()
def save_sample_grid(path: Path, pipe, data: dict, n: int = 4) -> None:
    """Rows: x0 decoded (the starting point), the CFM result at 4 Euler steps, the ground truth x1."""
    from fmboost.data.images import save_image_atomic, to_pil

    x_cond, x1 = data["x_cond"][:n].to(pipe.device), data["x1"][:n].to(pipe.device)
    pred, _ = pipe.flow(x_cond, steps=4)
    rows = [pipe.autoencoder.decode(z) for z in (x_cond, pred, x1)]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    save_image_atomic(to_pil(grid), path)


def announce(accelerator, out: Path, cfg: TrainConfig, per_process: int, lr: float, step: int) -> None:
    """What this run worked out from the config and the launcher: printed, and kept in OUT/config.json."""
    n = accelerator.num_processes
    effective = {"processes": n, "distributed": accelerator.distributed_type.value, "global_batch": cfg.batch_size,
                 "per_process_batch": per_process, "grad_accum": cfg.grad_accum, "lr": lr,
                 "lr_scaling": cfg.lr_scaling, "mixed_precision": accelerator.mixed_precision, "start_step": step}
    print(f"fmboost train: {n} process(es) ({effective['distributed']}), global batch {cfg.batch_size} = "
          f"{per_process} per process × {cfg.grad_accum} accumulation × {n}; lr {lr:.4g} (lr_scaling "
          f"{cfg.lr_scaling}); mixed precision {accelerator.mixed_precision}; from step {step}", flush=True)
    if cfg.distributed == "fsdp" and not sharded(accelerator):
        print("fmboost train: distributed: fsdp needs several GPUs; running without it", flush=True)
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "effective": effective}, indent=2))


def train(cfg: TrainConfig, resume: bool | str = False) -> Path:
    """Trains, or with `resume` (True or "auto") continues from the newest complete checkpoint in cfg.out."""
    if not cfg.data:
        raise ValueError("no training data: give --data SHARDS_DIR (made by `fmboost prepare`) or `data:` in the config")
    out = Path(cfg.out)
    accelerator = make_accelerator(cfg)
    rank, main = accelerator.process_index, accelerator.is_main_process
    per_process, lr = per_process_batch(cfg, accelerator.num_processes), effective_lr(cfg)
    manifest = read_manifest(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    folder = resume_folder(accelerator, out, resume)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, manifest["latent_channels"])
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
    loss_fn = loss_for(cfg.objective, cfg.sigma_min, cfg.tau)
    t0 = time.time()
    deadline = t0 + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", disable=not main)
    model.train()
    with stop_signals() as received:
        while step < cfg.max_steps:
            # The noise of a step depends on (seed, process, step) alone: a resumed run draws what it would have.
            loss = accumulate(accelerator, model, batches, loss_fn, seeded(cfg.seed, 1, rank, step), cfg)
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
            name = signal.Signals(received[0]).name
            raise TrainingStopped(received[0], f"stopped by {name} at step {step}; checkpoint in "
                                               f"{out / 'checkpoints' / f'step_{step:07d}'} (continue with "
                                               f"--resume auto)")
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
