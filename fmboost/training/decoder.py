"""Fine-tuning a model's decoder on its own flow's outputs, the flow and the encoder frozen.

The autoencoder was trained to reconstruct photos from their own latents, D(E(x)) ≈ x; an upscale decodes the flow's
estimate x̂1 instead, which misses some of E(x). The decoder is the only part of an upscale that runs at the output's
resolution, so it is where the missing detail can still be drawn. Here it learns D(x̂1) ≈ x on pairs made as an
upscale makes them: a crop x of a training photo (flipped and turned at random), its bicubic ↓scale x_lr, and
x̂1 = flow(E(bicubic ↑scale(x_lr))) at the model's own steps and τ; the loss is the upscale's output against the
photo, |colour_fix(D(x̂1), x_lr) − x|₁ (+ λ∇ on image gradients), so what the colour fix takes from the input is not
asked of the decoder. Nothing changes at inference: same network, same cost.

The pairs are made once (seeded) and kept in OUT/pairs.safetensors. Resumable like `fmboost train`: OUT/checkpoints/
step_N written by training/checkpoints.write_verified (the decoder's weights, their EMA, optimizer, step); batch k
is drawn by a generator seeded by (seed, k). SIGTERM/SIGINT finish the step, checkpoint and stop. OUT/autoencoder
holds the autoencoder with the EMA decoder (a model's autoencoder/ folder) and the digest of the flow it fits.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fmboost.data.files import WEIGHTS_NAME, sha256
from fmboost.data.sources import resolve_model
from fmboost.errors import InputError
from fmboost.training.autoencoder import image_gradients
from fmboost.training.part import checkpoint_to_resume, export_part, fit, upscale_pairs


@dataclass
class DecoderConfig:
    model: str                   # the model folder: its flow and encoder stay frozen
    photos: tuple[str, ...]      # folders of training photos
    out: str
    holdout_every: int = 10      # the default's split: every 10th photo is never trained on
    crop: int = 128              # high-res crop side
    pairs: int = 4000            # (x̂1, x_lr, x) pairs, made once
    batch: int = 8
    steps: int = 3000
    lr: float = 1e-4
    warmup: int = 50
    ema_decay: float = 0.99
    gradient_weight: float = 0.0
    max_photo_side: int = 1024
    seed: int = 0
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    max_minutes: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def trainable(vae) -> list[torch.nn.Parameter]:
    """The decoder and the convolution before it: what turns a latent into pixels."""
    return list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())


def decoder_state(vae) -> dict[str, torch.Tensor]:
    """The trainable part's tensors, under the autoencoder's own names."""
    return {k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}


def flow_output(pipe):
    """The pairs' latent: x̂1, the model's own sample from x_lr at its own steps and τ (fp16)."""
    return lambda x_lr, x: {"x1_hat": pipe.flow(pipe.condition(x_lr))[0][0].half()}


def decoder_loss(autoencoder, x1_hat, x_lr, x, color_fix: str, gradient_weight: float = 0.0,
                 back_projection: int = 0) -> torch.Tensor:
    """|match_input(D(x̂1), x_lr) − x|₁ + λ∇·|∇(…) − ∇x|₁: the upscale's own output (colour fix, then
    back-projections, as FMBoostPipeline.finish makes it) against the photo."""
    from fmboost.pipelines.consistency import match_input

    out = match_input(autoencoder.decode_with_grad(x1_hat), x_lr, color_fix, back_projection)
    loss = (out - x).abs().mean()
    if gradient_weight:
        loss = loss + gradient_weight * sum((a - b).abs().mean() for a, b in zip(image_gradients(out),
                                                                                  image_gradients(x)))
    return loss


def batch(pairs: dict[str, torch.Tensor], cfg: DecoderConfig, step: int):
    g = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    i = torch.randint(len(pairs["x"]), (cfg.batch,), generator=g)
    return pairs["x1_hat"][i].float(), pairs["x_lr"][i].float(), pairs["x"][i].float() / 127.5 - 1


def export(out: Path, autoencoder, ema: dict, cfg: DecoderConfig, step: int, finish: dict) -> Path:
    """OUT/autoencoder: the model's autoencoder with the EMA decoder, the digest of the flow it was fitted to, and
    how its loss finished the output (the model's own colour fix and back-projections)."""
    vae = autoencoder.vae
    trained = decoder_state(vae)
    with torch.no_grad():
        current = {k: v.detach().clone() for k, v in trained.items()}
        vae.load_state_dict(ema, strict=False)
    flow = Path(resolve_model(cfg.model)) / "cfm" / WEIGHTS_NAME
    made = {"decoder_steps": step, "config": cfg.to_dict(), **finish,
            "flow_sha256": sha256(flow) if flow.is_file() else None}
    source = Path(resolve_model(cfg.model)) / "autoencoder" / "training.json"
    if source.is_file():  # how the encoder (unchanged) was made stays with it
        made["autoencoder"] = json.loads(source.read_text())
    try:
        return export_part(out / "autoencoder", autoencoder.save_pretrained, made)
    finally:
        vae.load_state_dict(current, strict=False)


def train_decoder(cfg: DecoderConfig, resume: bool = False) -> Path:
    from fmboost.pipelines.upscale import FMBoostPipeline

    out = Path(cfg.out)
    pipe = FMBoostPipeline.from_pretrained(cfg.model)
    if pipe.model is None:
        raise InputError(f"{cfg.model}: no network (cfm/) whose outputs the decoder could learn")
    vae = pipe.autoencoder.vae
    pipe.model.eval().requires_grad_(False)
    vae.eval().requires_grad_(False)
    found = checkpoint_to_resume(out, resume)
    pairs = upscale_pairs(out, cfg, pipe.config.scale, flow_output(pipe))
    for p in trainable(vae):
        p.requires_grad_(True)
    fix, back = pipe.config.color_fix, pipe.config.back_projection
    fit(vae, lambda: decoder_state(vae),
        lambda step: decoder_loss(pipe.autoencoder, *batch(pairs, cfg, step), fix, cfg.gradient_weight, back),
        lambda ema, step: export(out, pipe.autoencoder, ema, cfg, step, {"color_fix": fix, "back_projection": back}),
        cfg, out, found, "decoder")
    return out / "autoencoder"
