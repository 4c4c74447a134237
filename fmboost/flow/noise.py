"""Noise augmentation of the flow's starting point x0 with the cosine variance-preserving schedule."""
from __future__ import annotations

import math

import torch

from fmboost.models.unet import NUM_TRAIN_STEPS


def cosine_alpha_bar(step: float, num_steps: int = NUM_TRAIN_STEPS, s: float = 0.008) -> float:
    """ᾱ(τ) of Nichol & Dhariwal's cosine schedule, normalised so that ᾱ(0) = 1."""
    f = lambda u: math.cos((u / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    return f(step) / f(0)


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (so a CPU generator reproduces on any device), moved to x's."""
    eps = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
    return eps.to(x.device, x.dtype)


def rand(n: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(0, 1) of size n, drawn like `randn_like`."""
    return torch.rand(n, generator=generator, device=generator.device if generator else x.device).to(x.device)


def noise_augment(x0: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x0 ← √ᾱ(τ)·x0 + √(1−ᾱ(τ))·ε. τ = 0 leaves x0 untouched; only x0 is augmented, never x_cond."""
    if tau <= 0:
        return x0
    a = cosine_alpha_bar(tau)
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * randn_like(x0, generator)
