"""The coupling flow matching objective (and the path it regresses on).

x_t = (1 − (1 − σ_min)·t)·x0 + t·x1,   u_t = x1 − (1 − σ_min)·x0,   L = ‖v_θ(x_t, t | x_cond) − u_t‖²
with x0 the noise-augmented upsampled low-res latent and x_cond the same latent, clean.

Optionally (`pixel_weight` > 0) L gains λ·|D(x̂1) − D(x1)|₁, the decoded one-step estimate x̂1 = x_t + (1 − t)·v_θ −
σ_min·x0 against the decoded target: the latent error is not the error a photo's PSNR sees (the decoder weighs latent
directions unequally), and this term lets the frozen decoder say which ones matter.
"""
from __future__ import annotations

import torch

from fmboost.flow.noise import noise_augment, rand


def cfm_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float):
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    x_t = (1 - (1 - sigma_min) * t) * x0 + t * x1
    u_t = x1 - (1 - sigma_min) * x0
    return x_t, u_t


def one_step_x1(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, sigma_min: float):
    """Where x_t lands at t = 1 if it keeps velocity v: x_t + (1 − t)·v − σ_min·x0 (x1 itself when v = u_t)."""
    return x_t + (1 - t.view(-1, *([1] * (x_t.dim() - 1)))) * v - sigma_min * x0


class DecodedL1:
    """λ·|D(x̂1) − D(x1)|₁ through a frozen decoder (the target decoded without gradients)."""

    def __init__(self, autoencoder, weight: float):
        self.autoencoder, self.weight = autoencoder, weight

    def __call__(self, x1_hat: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # unclamped like the estimate, so that the exact x1 costs exactly nothing
            target = self.autoencoder.decode_with_grad(x1)
        return self.weight * (self.autoencoder.decode_with_grad(x1_hat) - target).abs().mean()


def cfm_loss(model, x1: torch.Tensor, x_cond: torch.Tensor, sigma_min: float = 0.0, tau: float = 400,
             generator: torch.Generator | None = None, pixel_loss=None,
             noise_schedule: str = "cosine") -> torch.Tensor:
    x0 = noise_augment(x_cond, tau, generator, noise_schedule)
    t = rand(x1.shape[0], x1, generator)
    x_t, u_t = cfm_path(x0, x1, t, sigma_min)
    v = model(x_t, t, x_cond)
    loss = (v - u_t).square().mean()
    if pixel_loss is not None:
        loss = loss + pixel_loss(one_step_x1(x_t, v, t, x0, sigma_min), x1)
    return loss
