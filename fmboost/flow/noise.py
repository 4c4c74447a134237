"""Noise augmentation of the flow's starting point x0 with a cosine variance-preserving schedule.

Two cosine schedules, both ᾱ ≈ cos²(π/2 · τ/T), named in a model folder's `noise_schedule`:
- `cosine` (fmboost's): Nichol & Dhariwal's, ᾱ(τ) = f(τ)/f(0), f(τ) = cos²((τ/T + s)/(1 + s) · π/2), s = 0.008.
- `shifted-cosine` (the paper's code, CompVis/fm-boosting's ForwardDiffusion): ᾱ = sigmoid(λ) with the log-SNR
  λ(u) = −2·log(tan(π·u/2) + 10⁻⁵) + 2·log(64/size), on the grid u = τ/(T − 1); that code always builds it at
  size 64, so the shift is 0. Models converted from it are augmented with it (tests/test_parity.py shows how far
  the two are apart at τ = 400).
"""
from __future__ import annotations

import math

import torch

from fmboost.models.unet import NUM_TRAIN_STEPS

NOISE_SCHEDULES = ("cosine", "shifted-cosine")


def cosine_alpha_bar(step: float, num_steps: int = NUM_TRAIN_STEPS, s: float = 0.008) -> float:
    """ᾱ(τ) of Nichol & Dhariwal's cosine schedule, normalised so that ᾱ(0) = 1."""
    f = lambda u: math.cos((u / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    return f(step) / f(0)


def shifted_cosine_alpha_bar(step: float, num_steps: int = NUM_TRAIN_STEPS, size: int = 64,
                             ref_size: int = 64) -> float:
    """ᾱ(τ) of the reference's ForwardDiffusion: sigmoid of the shifted cosine log-SNR at u = τ/(T − 1)."""
    u = step / (num_steps - 1)
    log_snr = -2 * math.log(math.tan(math.pi * u / 2) + 1e-5) + 2 * math.log(ref_size / size)
    return 1 / (1 + math.exp(-log_snr))


def alpha_bar(step: float, schedule: str = "cosine") -> float:
    if schedule == "cosine":
        return cosine_alpha_bar(step)
    if schedule == "shifted-cosine":
        return shifted_cosine_alpha_bar(step)
    raise ValueError(f"unknown noise schedule {schedule!r}; choose one of {', '.join(NOISE_SCHEDULES)}")


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (so a CPU generator reproduces on any device), moved to x's."""
    eps = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
    return eps.to(x.device, x.dtype)


def rand(n: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(0, 1) of size n, drawn like `randn_like`."""
    return torch.rand(n, generator=generator, device=generator.device if generator else x.device).to(x.device)


def noise_augment(x0: torch.Tensor, tau: float, generator: torch.Generator | None = None,
                  schedule: str = "cosine") -> torch.Tensor:
    """x0 ← √ᾱ(τ)·x0 + √(1−ᾱ(τ))·ε. τ = 0 leaves x0 untouched; only x0 is augmented, never x_cond."""
    if tau <= 0:
        return x0
    a = alpha_bar(tau, schedule)
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * randn_like(x0, generator)
