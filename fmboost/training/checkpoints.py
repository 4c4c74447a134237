"""The verified-checkpoint protocol of `fmboost train`.

Rank 0 writes OUT/checkpoints/step_NNNNNNN into a temporary folder, closed by complete.json (sizes and sha256 of
its files), then renamed into place; only the newest `keep_checkpoints` stay. A folder whose files do not match
its record is skipped on resume. Earlier versions' single OUT/checkpoint folder (no record) is still read.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file, save_file

from fmboost.data.files import remove, sha256, write_atomic
from fmboost.errors import InputError
from fmboost.training.config import TrainConfig
from fmboost.training.distributed import full_tensors, like, sharded

COMPLETE = "complete.json"
OLD_LAYOUT = ("checkpoint", "checkpoint.old")  # the single checkpoint folder of earlier versions, still read


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
            raise InputError(f"{out} already holds checkpoints of a run: add --resume to continue it, or choose "
                             f"another --out")
        return None
    found = [newest_checkpoint(out) if accelerator.is_main_process else None]
    if accelerator.is_main_process and found[0] is None:
        print(f"fmboost train: no complete checkpoint in {out}: starting at step 0", file=sys.stderr)
    return broadcast_object_list(found)[0]


def write_verified(folder: Path, step: int, write, tmp: Path | None = None) -> Path:
    """The protocol both trainers write checkpoints with: `write(TMP)` fills a new temporary folder, complete.json
    records the size and sha256 of each of its files, and the folder is renamed into place (data/files.py)."""
    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        write(tmp)
        files = {f.name: {"bytes": f.stat().st_size, "sha256": sha256(f)} for f in sorted(tmp.iterdir())}
        # Written last: without it, or with files that no longer match it, the folder is not a checkpoint.
        (tmp / COMPLETE).write_text(json.dumps({"step": step, "files": files}, indent=2))

    return write_atomic(folder, fill, tmp=tmp)


def write_checkpoint(out: Path, step: int, tensors: dict, state: dict, cfg: TrainConfig) -> Path:
    root = out / "checkpoints"

    def write(tmp: Path) -> None:
        for name, values in tensors.items():
            save_file(values, str(tmp / f"{name}.safetensors"))
        torch.save(state, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    # A stale folder of this step, from a run not resumed from it, is replaced.
    final = write_verified(root / f"step_{step:07d}", step, write, tmp=root / f".tmp_step_{step:07d}")
    prune(root, step, cfg.keep_checkpoints)
    return final


def prune(root: Path, newest: int, keep: int) -> None:
    """Keeps the `keep` newest checkpoints up to step `newest`. Later ones belong to a run that was not continued
    from them (corrupt, or abandoned); temporary folders are what a crash left."""
    folders = [f for f in checkpoint_folders(root.parent) if f.parent == root]
    kept = [f for f in folders if int(f.name[5:]) <= newest][:max(1, keep)]
    for f in folders + list(root.glob(".tmp_step_*")):
        if f not in kept:
            remove(f)


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
