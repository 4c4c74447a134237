"""One process or many, through accelerate: the accelerator, the share of the batch, and what FSDP needs so that
checkpoints and exports hold whole tensors (gathered from every process's shard, and scattered back on resume)."""
from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from fmboost.errors import InputError
from fmboost.training.config import TrainConfig
from fmboost.training.precision import resolve_bf16


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    if cfg.distributed not in ("ddp", "fsdp"):
        raise InputError(f"distributed {cfg.distributed!r}: choose ddp or fsdp")
    fsdp = None
    if cfg.distributed == "fsdp":
        from accelerate import FullyShardedDataParallelPlugin

        # FSDP2 (DTensor parameters, which the EMA, checkpoint and export code gather and scatter); blocks of 10 M
        # parameters or more get their own all-gather, so the `general` preset never holds all its weights at once.
        fsdp = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="size_based_wrap",
                                              min_num_params=10 ** 7)
    # Without CUDA, accelerate joins torchrun's processes (gloo) only when told it runs on CPUs.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", 1)) > 1
    bf16 = resolve_bf16(cfg.bf16, "cuda" if torch.cuda.is_available() else "cpu")  # fp32 where bf16 is emulated
    accelerator = Accelerator(cpu=cpu, mixed_precision="bf16" if bf16 else "no", fsdp_plugin=fsdp,
                              dynamo_backend="inductor" if cfg.compile else "no")
    if sharded(accelerator) and accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise InputError("FSDP from the launcher's config (FSDP1) is not supported: leave it out of the accelerate "
                         "config and set `distributed: fsdp` in the training config (FSDP2)")
    return accelerator


def per_process_batch(cfg: TrainConfig, processes: int) -> int:
    if cfg.grad_accum < 1 or cfg.batch_size % (processes * cfg.grad_accum):
        raise InputError(f"batch_size {cfg.batch_size} is the global batch: it must be a multiple of "
                         f"{processes} process(es) × grad_accum {cfg.grad_accum}")
    return cfg.batch_size // (processes * cfg.grad_accum)


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


def agree(accelerator, loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
    """The mean loss over processes and whether any wants to stop, in one collective: all then decide the same
    at the same step (one process raising or stopping alone would leave the others waiting forever)."""
    both = torch.stack([loss.detach().float(), torch.tensor(float(stop), device=loss.device)])
    both = accelerator.reduce(both, "sum")
    return both[0].item() / accelerator.num_processes, bool(both[1].item())
