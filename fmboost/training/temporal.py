"""Training the temporal layers of a video model (models/temporal.py), the image model frozen (Video LDM, Sec. 3.1).

Clips come from the training photos (data/clips.py: a virtual camera pans, zooms and turns; bicubic ↓2 per frame,
the default's degradation); x0 = E(bicubic×2(LR)) as the default is trained (pixel upsampling), x1 = E(HR). The loss
is the image model's own: CFM on x_t = (1−t)·x0 + t·x1 with one t per clip (every frame of a clip at the same point
of the path, as inference runs them), x0 noise-augmented by τ, plus λ·|D(x̂1) − D(x1)|₁ (flow/objective.py). A share
of the clips (`t0_share`) is put at t = 0: the default samples in one Euler step, so t = 0 is the only point of the
path its temporal layers ever see at inference, and uniform t alone would spend most of a short run elsewhere. Only
the temporal layers have gradients; the image network and the autoencoder are frozen (requires_grad False).

Resumable like `fmboost train`: OUT/checkpoints/step_N written by training/checkpoints.write_verified (layers, their
EMA, optimizer, step); the clips of step k come from a generator seeded by (seed, k), so a resumed run draws the
same clips as an uninterrupted one. SIGTERM/SIGINT finish the step, checkpoint and stop. OUT/temporal holds the EMA
layers, the folder a model's temporal/ is (the recipe copies it there).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fmboost.data.clips import sample_clips
from fmboost.data.files import WEIGHTS_NAME, sha256
from fmboost.data.photos import load_photos, split_photos
from fmboost.data.sources import resolve_model
from fmboost.errors import InputError
from fmboost.flow.noise import noise_augment
from fmboost.flow.objective import cfm_path, one_step_x1
from fmboost.models.temporal import TemporalLayers, TemporalResNet
from fmboost.training.part import checkpoint_to_resume, export_part, fit


@dataclass
class TemporalConfig:
    model: str                   # the image model folder (frozen)
    photos: tuple[str, ...]      # folders of training photos
    out: str
    holdout_every: int = 10      # the default's split: every 10th photo is never trained on
    size: int = 64               # high-res crop side (the default's prepare --size)
    frames: int = 5
    clips: int = 4               # clips per step
    steps: int = 2000
    lr: float = 5e-4
    warmup: int = 50
    ema_decay: float = 0.999
    tau: float = 100             # the default recipe's noise augmentation of x0 (recipes/default/cfm.yaml)
    sigma_min: float = 0.0
    pixel_weight: float = 1.0    # the default recipe's decoded L1
    temporal_weight: float = 0.0  # λ_T of the decoded temporal term (decoded_terms)
    hidden: int = 32
    every: int = 2               # a temporal layer after every second block (models/temporal.py)
    t0_share: float = 0.5
    max_photo_side: int = 512
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    max_minutes: float | None = None
    init: str | None = None      # temporal layers (a temporal/ folder) to start from: a later stage of training

    def to_dict(self) -> dict:
        return asdict(self)


def decoded_terms(autoencoder, x1_hat, x1, frames: int, cfg: TemporalConfig):
    """λ·|D(x̂1) − D(x1)|₁ (the image model's pixel term) + λ_T·|Δ D(x̂1) − Δ D(x1)|₁, Δ the change from one frame
    of a clip to the next: the temporal term weighs exactly the part of the error that changes between frames
    (flicker), which the per-frame term counts no more than the rest; the true motion is in both Δs and cancels."""
    pred = autoencoder.decode_with_grad(x1_hat)
    with torch.no_grad():
        target = autoencoder.decode_with_grad(x1)
    loss = cfg.pixel_weight * (pred - target).abs().mean()
    if cfg.temporal_weight > 0 and frames > 1:
        clip = lambda x: x.view(-1, frames, *x.shape[1:])
        loss = loss + cfg.temporal_weight * (clip(pred).diff(dim=1) - clip(target).diff(dim=1)).abs().mean()
    return loss


def clip_loss(net: TemporalResNet, x1, x_cond, frames: int, cfg: TemporalConfig, generator, autoencoder=None):
    """The image model's CFM loss on whole clips: one t per clip, shared by its frames; with `autoencoder`, the
    decoded terms (decoded_terms)."""
    x0 = noise_augment(x_cond, cfg.tau, generator)
    n = x1.shape[0] // frames
    t = torch.rand(n, generator=generator) * (torch.rand(n, generator=generator) >= cfg.t0_share)
    t = t.repeat_interleave(frames)
    x_t, u_t = cfm_path(x0, x1, t, cfg.sigma_min)
    v = net(x_t, t, x_cond, frames)
    loss = (v - u_t).square().mean()
    if autoencoder is not None:
        loss = loss + decoded_terms(autoencoder, one_step_x1(x_t, v, t, x0, cfg.sigma_min), x1, frames, cfg)
    return loss


def start_from(layers: TemporalLayers, folder: str) -> None:
    """Loads trained temporal layers (a temporal/ folder) into `layers`, which must have their shape (or a sparser
    stage of it)."""
    try:
        trained = TemporalLayers.from_pretrained(folder)
        if trained.config.every != layers.config.every:  # a later stage with more layers keeps the trained ones
            trained = trained.denser(layers.config.every)
        layers.load_state_dict(trained.state_dict())
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"--init {folder}: not temporal layers of this shape ({str(e).splitlines()[0]})") from None


@torch.no_grad()
def batch(pipe, photos, cfg: TemporalConfig, step: int):
    rng = random.Random(f"{cfg.seed}:{step}")
    hr, lr = sample_clips(photos, cfg.clips, cfg.size, cfg.frames, pipe.config.scale, rng)
    return pipe.autoencoder.encode(hr), pipe.condition(lr)


def export(out: Path, layers: TemporalLayers, ema: dict, cfg: TemporalConfig, step: int) -> Path:
    """OUT/temporal: the EMA layers as a folder a model's temporal/ can be (with how they were made)."""
    template = TemporalLayers(**layers.config)
    template.load_state_dict(ema)

    # The layers fit the frozen image flow they were trained beside: its digest says which one.
    flow = Path(resolve_model(cfg.model)) / "cfm" / WEIGHTS_NAME
    made = {"steps": step, "config": cfg.to_dict(), "flow_sha256": sha256(flow) if flow.is_file() else None}
    return export_part(out / "temporal", lambda tmp: template.save_pretrained(tmp, safe_serialization=True), made)


def train_temporal(cfg: TemporalConfig, resume: bool = False) -> Path:
    from fmboost.pipelines.upscale import FMBoostPipeline

    out = Path(cfg.out)
    pipe = FMBoostPipeline.from_pretrained(cfg.model)
    if pipe.model is None:
        raise InputError(f"{cfg.model}: no network (cfm/) to add temporal layers to")
    for module in (pipe.model, pipe.autoencoder.vae):
        module.eval().requires_grad_(False)
    layers = TemporalLayers.for_network(pipe.model, cfg.hidden, every=cfg.every)
    net = TemporalResNet(pipe.model, layers)
    found = checkpoint_to_resume(out, resume)
    if found is None and cfg.init:
        start_from(layers, cfg.init)  # fit's EMA starts from these weights
    train, _ = split_photos(list(cfg.photos), cfg.holdout_every)
    photos = [p for p in load_photos(train, cfg.max_photo_side) if min(p.shape[1:]) > cfg.size * 2]
    if not photos:
        raise InputError(f"no training photos larger than {cfg.size * 2} px in {', '.join(cfg.photos)}")
    decoder = pipe.autoencoder if cfg.pixel_weight > 0 or cfg.temporal_weight > 0 else None

    def loss_at(step: int) -> torch.Tensor:
        x1, x_cond = batch(pipe, photos, cfg, step)
        return clip_loss(net, x1, x_cond, cfg.frames, cfg, torch.Generator().manual_seed(cfg.seed * 7919 + step),
                         decoder)

    fit(layers, layers.state_dict, loss_at, lambda ema, step: export(out, layers, ema, cfg, step), cfg, out, found,
        "temporal", ema_warmup=True)
    return out / "temporal"
