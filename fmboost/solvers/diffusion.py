"""Sampling the diffusion baseline with diffusers' DDIM (deterministic) or DDPM (ancestral) scheduler."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fmboost.flow.baselines import NUM_TRAIN_TIMESTEPS, diffusion_scheduler
from fmboost.flow.noise import randn_like


@torch.no_grad()
def sample_diffusion(eps_model, x_cond, steps: int = 50, kind: str = "ddim", generator=None, disable=None):
    """Starts from N(0, I) and denoises in `steps` scheduler steps; returns (x, NFE)."""
    scheduler = diffusion_scheduler(kind)
    scheduler.set_timesteps(steps)
    x = randn_like(x_cond, generator) * scheduler.init_noise_sigma
    for t in tqdm(scheduler.timesteps, disable=disable, desc=kind):
        eps = eps_model(x, (t.float() / NUM_TRAIN_TIMESTEPS).to(x.device))
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x, len(scheduler.timesteps)
