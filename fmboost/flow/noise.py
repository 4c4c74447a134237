"""Noise augmentation of the flow's starting point x0 with the cosine variance-preserving schedule."""
from __future__ import annotations

import math

import torch

NUM_TRAIN_STEPS = 1000


def cosine_alpha_bar(step: float, num_steps: int = NUM_TRAIN_STEPS, s: float = 0.008) -> float:
    """ᾱ(τ) of Nichol & Dhariwal's cosine schedule, normalised so that ᾱ(0) = 1."""
    f = lambda u: math.cos((u / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    return f(step) / f(0)


def noise_augment(x0: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x0 ← √ᾱ(τ)·x0 + √(1−ᾱ(τ))·ε. τ = 0 leaves x0 untouched; only x0 is augmented, never x_cond."""
    if tau <= 0:
        return x0
    a = cosine_alpha_bar(tau)
    eps = torch.randn(x0.shape, generator=generator, device=generator.device if generator else x0.device)
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * eps.to(x0.device, x0.dtype)
