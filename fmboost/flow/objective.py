"""The coupling flow matching objective (and the path it regresses on).

x_t = (1 − (1 − σ_min)·t)·x0 + t·x1,   u_t = x1 − (1 − σ_min)·x0,   L = ‖v_θ(x_t, t | x_cond) − u_t‖²
with x0 the noise-augmented upsampled low-res latent and x_cond the same latent, clean.
"""
from __future__ import annotations

import torch

from fmboost.flow.noise import noise_augment, rand


def cfm_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float):
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    x_t = (1 - (1 - sigma_min) * t) * x0 + t * x1
    u_t = x1 - (1 - sigma_min) * x0
    return x_t, u_t


def cfm_loss(model, x1: torch.Tensor, x_cond: torch.Tensor, sigma_min: float = 0.0, tau: float = 400,
             generator: torch.Generator | None = None, noise_schedule: str = "cosine") -> torch.Tensor:
    x0 = noise_augment(x_cond, tau, generator, noise_schedule)
    t = rand(x1.shape[0], x1, generator)
    x_t, u_t = cfm_path(x0, x1, t, sigma_min)
    return (model(x_t, t, x_cond) - u_t).square().mean()
