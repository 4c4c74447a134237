"""Fine-tuning a model's flow for the one Euler step it samples with, the decoder and the encoder frozen.

A CFM network learns the velocity at every t of the path from a noise-augmented x0 (τ in training), but a fast
upscale spends one network evaluation at one point only: t = 0, from the clean x0 = x_cond (sampling τ 0), where the
Euler step lands on x̂1 = x0 + v_θ(x0, 0 | x_cond) (solvers/ode.sample_euler with one step). Here that step learns
the photo itself, as the decoder fine-tune (decoder.py) does: the loss is the upscale's own output against the photo,
|match_input(D(x̂1), x_lr) − x|₁, through the frozen decoder, the model's colour fix and back-projections.

From noisier starts the network is held to what it was (`keep_weight`): from x0 noise-augmented at
τ ∈ [`keep_tau_min`, `keep_tau_max`], at t = 0 (or, for a share `1 − keep_t0_share`, at t drawn as in training), the
student's velocity regresses the frozen network's, ‖v_θ − v_teacher‖². Without that term the documented detail
setting (sampling τ 200, one step) fell far below bicubic in a design run: the clean start and the noisy ones are
one network.

The pairs are made once (seeded) and kept in OUT/pairs.safetensors: a crop x of a training photo (flipped and turned
at random), its bicubic ↓scale x_lr, x_cond = the model's condition of x_lr and x1 = E(x). Resumable like the
decoder fine-tune (part.fit); OUT/teacher keeps the flow it started from. OUT/cfm holds the EMA network, a model's
cfm/ folder, with how it was made.
"""
from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fmboost.data.files import WEIGHTS_NAME, sha256, write_atomic
from fmboost.data.sources import resolve_model
from fmboost.errors import InputError
from fmboost.flow.noise import noise_augment
from fmboost.flow.objective import cfm_path
from fmboost.models.networks import load_network
from fmboost.training.part import checkpoint_to_resume, export_part, fit, upscale_pairs
from fmboost.training.precision import resolve_bf16


@dataclass
class OneStepConfig:
    model: str                   # the model folder: its flow is fine-tuned, its autoencoder stays frozen
    photos: tuple[str, ...]      # folders of training photos
    out: str
    holdout_every: int = 10      # the default's split: every 10th photo is never trained on
    crop: int = 128              # high-res crop side
    pairs: int = 2000            # (x_cond, x1, x_lr, x) pairs, made once
    batch: int = 8
    steps: int = 1500
    lr: float = 1e-4
    warmup: int = 50
    ema_decay: float = 0.99
    keep_weight: float = 1.0     # the regression onto the frozen network away from the clean start
    keep_tau_min: float = 50
    keep_tau_max: float = 300    # beyond the documented detail setting (τ 200)
    keep_t0_share: float = 1.0   # of the keep term's t, the share at 0: the only t a one-step sample sees
    bf16: bool = True            # a request: fp32 where the CPU has no native bf16 (training/precision.py)
    max_photo_side: int = 1024
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    max_minutes: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def latents(pipe):
    """The pairs' latents: x_cond, the model's condition of x_lr, and x1 = E(x) (fp16)."""
    return lambda x_lr, x: {"x_cond": pipe.condition(x_lr)[0].half(), "x1": pipe.autoencoder.encode(x)[0].half()}


def batch(pairs: dict[str, torch.Tensor], cfg: OneStepConfig, step: int):
    """(x_cond, x1, x_lr, x) of step `step`, and the generator its noise and t come from: both seeded by the step,
    so a resumed run draws what an uninterrupted one would."""
    g = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    i = torch.randint(len(pairs["x"]), (cfg.batch,), generator=g)
    data = (pairs["x_cond"][i].float(), pairs["x1"][i].float(), pairs["x_lr"][i].float(),
            pairs["x"][i].float() / 127.5 - 1)
    return data, g


def one_step_loss(model, autoencoder, x_cond, x_lr, x, color_fix: str, back_projection: int = 0) -> torch.Tensor:
    """|match_input(D(x̂1), x_lr) − x|₁ with x̂1 = x_cond + v(x_cond, 0): one Euler step from the clean start."""
    from fmboost.pipelines.consistency import match_input

    x1_hat = x_cond + model(x_cond, torch.zeros(x_cond.shape[0], device=x_cond.device), x_cond)
    decoded = autoencoder.decode_with_grad(x1_hat).float()
    with torch.autocast(decoded.device.type, enabled=False):  # the resizes have no bf16 kernels
        return (match_input(decoded, x_lr, color_fix, back_projection) - x).abs().mean()


def keep_loss(model, teacher, x_cond, x1, cfg: OneStepConfig, generator) -> torch.Tensor:
    """‖v_θ(x_t, t) − v_teacher(x_t, t)‖² from x0 noised at one τ of [keep_tau_min, keep_tau_max]; a share
    keep_t0_share of the t at 0, the rest uniform."""
    n = x_cond.shape[0]
    tau = cfg.keep_tau_min + (cfg.keep_tau_max - cfg.keep_tau_min) * float(torch.rand((), generator=generator))
    x0 = noise_augment(x_cond, tau, generator)
    t = torch.rand(n, generator=generator) * (torch.rand(n, generator=generator) >= cfg.keep_t0_share)
    x_t, _ = cfm_path(x0, x1, t, 0.0)
    with torch.no_grad():
        want = teacher(x_t, t, x_cond)
    return (model(x_t, t, x_cond).float() - want.float()).square().mean()


def start_flow(out: Path, cfg: OneStepConfig) -> Path:
    """The flow the run started from: OUT/teacher, a copy of the model's cfm/ made when the run starts, so that an
    --install (which replaces the model's cfm/) cannot change the keep term's teacher under a resumed run. Runs
    begun before the copy was made read the model's cfm/."""
    kept = out / "teacher"
    return kept if (kept / WEIGHTS_NAME).is_file() else Path(resolve_model(cfg.model)) / "cfm"


def lineage(start: Path) -> list[str]:
    """The digests of the flows this run descends from, the one it started from first: a flow fine-tuned for one
    step more than once still fits the parts (temporal layers) trained beside any of them (cli/info.py)."""
    made = {}
    if (start / "training.json").is_file():
        made = json.loads((start / "training.json").read_text())
    before = made.get("lineage") or ([made["started_from_sha256"]] if made.get("started_from_sha256") else [])
    return [sha256(start / WEIGHTS_NAME)] + before


def export(out: Path, model, ema: dict, cfg: OneStepConfig, step: int) -> Path:
    """OUT/cfm: the EMA network as a model's cfm/ folder, with how it was made and the digest of the flow it
    started from."""
    student = copy.deepcopy(model)
    student.load_state_dict(ema)
    folder = Path(resolve_model(cfg.model))
    # the flow it started from, and the autoencoder it was trained through (so the decoder fits it: cli/info.py)
    ancestors = lineage(start_flow(out, cfg))
    made = {"one_step_steps": step, "config": cfg.to_dict(), "started_from_sha256": ancestors[0],
            "lineage": ancestors, "autoencoder_sha256": sha256(folder / "autoencoder" / WEIGHTS_NAME)}
    return export_part(out / "cfm", lambda tmp: student.save_pretrained(tmp, safe_serialization=True), made)


def train_one_step(cfg: OneStepConfig, resume: bool = False) -> Path:
    from fmboost.pipelines.upscale import FMBoostPipeline

    out = Path(cfg.out)
    pipe = FMBoostPipeline.from_pretrained(cfg.model).channels_last(False)  # training: as the flow was trained
    if pipe.model is None:
        raise InputError(f"{cfg.model}: no network (cfm/) to fine-tune")
    if pipe.config.objective != "cfm":
        raise InputError(f"{cfg.model}: a {pipe.config.objective} model; the one-step fine-tune is for cfm models")
    found = checkpoint_to_resume(out, resume)
    pairs = upscale_pairs(out, cfg, pipe.config.scale, latents(pipe))
    pipe.autoencoder.vae.eval().requires_grad_(False)
    if found is None:
        write_atomic(out / "teacher", lambda tmp: shutil.copytree(Path(resolve_model(cfg.model)) / "cfm", tmp))
    teacher = load_network(start_flow(out, cfg)).eval().requires_grad_(False)
    model = pipe.model.requires_grad_(True)
    fix, back = pipe.config.color_fix, pipe.config.back_projection
    bf16 = resolve_bf16(cfg.bf16)

    def loss_at(step: int) -> torch.Tensor:
        (x_cond, x1, x_lr, x), g = batch(pairs, cfg, step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = one_step_loss(model, pipe.autoencoder, x_cond, x_lr, x, fix, back)
            if cfg.keep_weight > 0:
                loss = loss + cfg.keep_weight * keep_loss(model, teacher, x_cond, x1, cfg, g)
        return loss

    fit(model, model.state_dict, loss_at, lambda ema, step: export(out, model, ema, cfg, step), cfg, out, found,
        "cfm")
    return out / "cfm"
