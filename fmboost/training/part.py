"""Training one part of a model beside the rest, frozen: the temporal layers (temporal.py), the decoder
(decoder.py) and the flow's first step (onestep.py). They share one loop (`fit`): the same schedule, the same
verified checkpoints (training/checkpoints.write_verified) and the same installation into a model folder."""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from fmboost.data.files import write_atomic
from fmboost.data.images import resize, to_pil, to_tensor
from fmboost.data.photos import load_photos, split_photos
from fmboost.errors import FmboostError, InputError
from fmboost.training.checkpoints import newest_checkpoint, prune, write_verified
from fmboost.training.stopping import TrainingStopped, stop_signals, stopped


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


def fit(module: torch.nn.Module, state: Callable[[], dict[str, torch.Tensor]], loss_at: Callable[[int], torch.Tensor],
        export: Callable[[dict, int], None], cfg, out: Path, found: Path | None, name: str,
        ema_warmup: bool = False) -> int:
    """Trains the parameters of `module` that require gradients on `loss_at(step)` from step 0 or from the
    checkpoint `found` to cfg.steps: AdamW on `learning_rate`, gradients clipped to 1, an EMA (cfg.ema_decay) of
    `state()` (the trained part's tensors, saved as NAME and ema), a checkpoint and `export(ema, step)` every
    cfg.checkpoint_every steps and at the end (a finished run resumed exports once more). Stops cleanly (and
    resumably) after cfg.max_minutes or on SIGTERM / SIGINT. Returns the step it reached. `ema_warmup`: the EMA's
    decay grows as (1 + step) / (10 + step) up to cfg.ema_decay, so that a short run's EMA does not lag at the
    start."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema = {k: v.detach().clone() for k, v in state().items()}
    step = 0
    if found is not None:
        saved, step = load_checkpoint(found, (name, "ema"), opt)
        loaded = module.load_state_dict(saved[name], strict=False)  # the decoder's part is not the whole module
        if loaded.unexpected_keys or set(state()) & set(loaded.missing_keys):
            raise RuntimeError(f"{found}: {name}.safetensors does not hold this run's {name} "
                               f"({len(loaded.unexpected_keys)} unknown, {len(loaded.missing_keys)} missing tensors)")
        ema = saved["ema"]
        print(f"resumed from {found} (step {step})", flush=True)
        if step >= cfg.steps:  # finished already: export again (with this code's record of it) and stop
            export(ema, step)
            return step
    module.train()
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes is not None else math.inf
    t0, losses = time.time(), []
    with stop_signals() as received:
        while step < cfg.steps:
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            loss = loss_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            decay = min(cfg.ema_decay, (1 + step) / (10 + step)) if ema_warmup else cfg.ema_decay
            with torch.no_grad():
                for k, v in state().items():
                    ema[k].lerp_(v.detach(), 1 - decay)
            losses.append(loss.item())
            if step % 10 == 0:
                rate = (time.time() - t0) / len(losses)
                print(f"step {step}/{cfg.steps} loss {sum(losses[-10:]) / 10:.5f} ({rate:.2f} s/step)", flush=True)
            stop = bool(received) or time.time() > deadline
            if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
                save_checkpoint(out, step, {name: state(), "ema": ema}, opt, cfg)
                export(ema, step)
            if received:
                raise stopped(received[0], step, out / "checkpoints" / f"step_{step:07d}", "--resume")
            if stop:
                print(f"stopped after --max-minutes at step {step}; continue with --resume", file=sys.stderr)
                break
    return step


@torch.no_grad()
def upscale_pairs(out: Path, cfg, scale: int, make: Callable[[torch.Tensor, torch.Tensor], dict]) -> dict:
    """OUT/pairs.safetensors, made once (seeded) and read back after: `cfg.pairs` crops of `cfg.crop` px from the
    held-in training photos (cfg.photos less every cfg.holdout_every-th), flipped and turned at random, each as
    x (uint8) and its bicubic ↓scale x_lr (fp16, [-1, 1]), with what `make(x_lr, x)` adds (x in [-1, 1])."""
    pairs_file = out / "pairs.safetensors"
    if pairs_file.is_file():
        return load_file(str(pairs_file))
    train, _ = split_photos(list(cfg.photos), cfg.holdout_every)
    rng, c = random.Random(cfg.seed), cfg.crop
    photos = [p for p in load_photos(train, cfg.max_photo_side) if min(p.shape[1:]) >= c]
    if not photos:
        raise InputError(f"no training photos of at least {c} px in {', '.join(cfg.photos)}")
    made: dict[str, list] = {}
    for i in range(cfg.pairs):
        photo = photos[rng.randrange(len(photos))]
        top, left = rng.randrange(photo.shape[1] - c + 1), rng.randrange(photo.shape[2] - c + 1)
        x = photo[:, top:top + c, left:left + c]
        x = torch.rot90(x.flip(2) if rng.random() < 0.5 else x, rng.randrange(4), (1, 2)).contiguous()
        x_lr = to_tensor(resize(to_pil(x.float() / 127.5 - 1), (c // scale, c // scale)))[None]
        pair = {**make(x_lr, x[None].float() / 127.5 - 1), "x_lr": x_lr[0].half(), "x": x}
        for k, v in pair.items():
            made.setdefault(k, []).append(v)
        if (i + 1) % 500 == 0:
            print(f"pairs {i + 1}/{cfg.pairs}", flush=True)
    pairs = {k: torch.stack(v) for k, v in made.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(pairs_file, lambda tmp: save_file(pairs, str(tmp)))
    return pairs


def export_part(folder: Path, save: Callable[[Path], None], made: dict) -> Path:
    """`folder` written atomically: what `save(tmp)` writes, and training.json saying how it was made."""
    def write(tmp: Path) -> None:
        save(tmp)
        (tmp / "training.json").write_text(json.dumps(made, indent=2))

    return write_atomic(folder, write, tmp=folder.with_name(folder.name + ".tmp"))


def run_recipe(name: str, train: Callable[[], Path], steps_key: str, into: Path, goal: int, install_it: bool,
               early: bool) -> int:
    """The end every part's recipe shares: `train()`, a user's error as one line and exit code 2 (a stop signal:
    its message and code), then the made folder installed over `into` when asked (see `install`)."""
    try:
        made = train()
    except TrainingStopped as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except FmboostError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    if install_it or early:
        steps = json.loads((made / "training.json").read_text())[steps_key]
        print(install(made, into, steps, goal, early=early))
    return 0
