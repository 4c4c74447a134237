"""The paper's baselines, trained with the same U-Net, data and loop as CFM.

- naive-fm: flow matching from Gaussian noise, x0 ~ N(0, I), conditioned on the upsampled low-res latent.
- diffusion: ε-prediction under the cosine schedule over 1000 steps (diffusers' scheduler), same conditioning.
- regression-l1 / regression-l2: one forward pass predicts x1 from the upsampled low-res latent.
"""
from __future__ import annotations

import torch

from fmboost.flow.noise import rand, randn_like
from fmboost.flow.objective import cfm_path
from fmboost.pipelines.methods import MODEL_METHODS as OBJECTIVES

NUM_TRAIN_TIMESTEPS = 1000


def naive_fm_loss(model, x1, x_cond, sigma_min: float = 0.0, generator=None):
    x0 = randn_like(x1, generator)
    t = rand(x1.shape[0], x1, generator)
    x_t, u_t = cfm_path(x0, x1, t, sigma_min)
    return (model(x_t, t, x_cond) - u_t).square().mean()


def diffusion_scheduler(kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    return cls(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2",
               prediction_type="epsilon", clip_sample=False)


def diffusion_loss(model, x1, x_cond, scheduler, generator=None):
    eps = randn_like(x1, generator)
    steps = (rand(x1.shape[0], x1, generator) * NUM_TRAIN_TIMESTEPS).long().clamp(max=NUM_TRAIN_TIMESTEPS - 1)
    x_noisy = scheduler.add_noise(x1, eps, steps.cpu()).to(x1.dtype)
    # The U-Net's time input is in [0, 1]; integer steps are divided by 1000 to match.
    return (model(x_noisy, steps.float() / NUM_TRAIN_TIMESTEPS, x_cond) - eps).square().mean()


def regression_loss(model, x1, x_cond, p: int = 2):
    pred = model(x_cond, torch.zeros(x1.shape[0], device=x1.device), x_cond)
    return (pred - x1).abs().pow(p).mean()


def loss_for(objective: str, sigma_min: float = 0.0, tau: float = 400):
    """The training loss of `objective` as one function (model, x1, x_cond, generator) → scalar."""
    from fmboost.flow.objective import cfm_loss

    if objective == "cfm":
        return lambda m, x1, c, g: cfm_loss(m, x1, c, sigma_min, tau, g)
    if objective == "naive-fm":
        return lambda m, x1, c, g: naive_fm_loss(m, x1, c, sigma_min, g)
    if objective == "diffusion":
        scheduler = diffusion_scheduler()
        return lambda m, x1, c, g: diffusion_loss(m, x1, c, scheduler, g)
    if objective in ("regression-l1", "regression-l2"):
        p = int(objective[-1])
        return lambda m, x1, c, g: regression_loss(m, x1, c, p)
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
