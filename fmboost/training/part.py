"""Training one part of a model beside the rest, frozen: the temporal layers (temporal.py) and the decoder
(decoder.py). Both use the same schedule, the same verified checkpoints (training/checkpoints.write_verified) and
the same installation into a model folder."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fmboost.data.files import write_atomic
from fmboost.errors import InputError
from fmboost.training.checkpoints import newest_checkpoint, prune, write_verified


def learning_rate(cfg, step: int) -> float:
    """Linear warmup over cfg.warmup steps, then cosine to zero at cfg.steps (the default recipe's schedule)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))))


def checkpoint_to_resume(out: Path, resume: bool) -> Path | None:
    """With `resume`, the newest complete checkpoint of OUT (None: start afresh); without, None, and OUT must not
    hold checkpoints already (a second run there would mix two)."""
    if not resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*")):
        raise InputError(f"{out} already holds checkpoints: add --resume to continue, or choose another --out")
    return newest_checkpoint(out) if resume else None


def save_checkpoint(out: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], opt, cfg) -> None:
    """OUT/checkpoints/step_N: each of `tensors` as NAME.safetensors, the optimizer and the step (state.pt) and the
    config; the newest cfg.keep_checkpoints stay."""
    def write(tmp: Path) -> None:
        for name, state in tensors.items():
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        torch.save({"optimizer": opt.state_dict(), "step": step}, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    root = out / "checkpoints"
    write_verified(root / f"step_{step:07d}", step, write, tmp=root / f".tmp_step_{step:07d}")
    prune(root, step, cfg.keep_checkpoints)


def load_checkpoint(folder: Path, names: tuple[str, ...], opt) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
    """What save_checkpoint wrote: the named tensors and the step; the optimizer's state is loaded into `opt`."""
    state = torch.load(folder / "state.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    return {name: load_file(str(folder / f"{name}.safetensors")) for name in names}, int(state["step"])


def install(made: Path, into: Path, reached: int, goal: int, early: bool = False) -> str:
    """Copies the exported part `made` over `into` (atomically) once its run reached `goal` steps (any time with
    `early`); returns what was done, for the recipe to print."""
    if reached < goal and not early:
        return f"at step {reached} of {goal}: not installed (run again with --resume)"
    write_atomic(into, lambda tmp: shutil.copytree(made, tmp))
    return f"installed {made} (step {reached}) as {into}"
