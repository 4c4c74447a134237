"""The training objectives, one class each: the loss the network learns from, and the sampler that maps x_cond to
the high-res latent with the trained network, returning (x1, NFE). To add an objective, add a class here, list
it in OBJECTIVES and its solvers in flow/names.py (the command line's choices, read without torch); the trainer,
the pipeline, evaluation and serve ask it what they need.

- cfm: coupling flow matching from the noise-augmented x_cond (its equations: flow/objective.py).
- naive-fm: flow matching from Gaussian noise, x0 ~ N(0, I), conditioned on the upsampled low-res latent.
- diffusion: v-prediction (as Stable Diffusion's ×4 upscaler) under the cosine schedule over NUM_TRAIN_STEPS steps,
  sampled with diffusers' DDIM or DDPM from the last training step ("trailing" timesteps).
- regression-l1 / regression-l2: one forward pass predicts x1 from the upsampled low-res latent.

A sampler's `net(x, t)` is the network with x_cond bound; `callback(nfe)` is called after every evaluation of it.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fmboost.flow.noise import NOISE_SCHEDULES, NUM_TRAIN_STEPS, noise_augment, rand, randn_like
from fmboost.flow.objective import cfm_loss, cfm_path
from fmboost.flow.names import OBJECTIVE_SOLVERS
from fmboost.solvers.names import EVALS_PER_STEP
from fmboost.solvers.ode import solve


class CFM:
    """Coupling flow matching: x0 is x_cond itself, noise-augmented at step τ in training and sampling alike."""

    solvers = OBJECTIVE_SOLVERS["cfm"]
    stepped = True  # the sample's cost follows `steps`

    def __init__(self, sigma_min: float = 0.0, tau: float = 400, noise_schedule: str = "cosine", pixel_loss=None):
        self.sigma_min, self.tau, self.noise_schedule = sigma_min, tau, noise_schedule
        self.pixel_loss = pixel_loss

    def x0(self, x_cond: torch.Tensor, generator=None) -> torch.Tensor:
        return noise_augment(x_cond, self.tau, generator, self.noise_schedule)

    def loss(self, model, x1, x_cond, generator=None) -> torch.Tensor:
        return cfm_loss(model, x1, x_cond, self.sigma_min, self.tau, generator, pixel_loss=self.pixel_loss,
                        noise_schedule=self.noise_schedule)

    def sample(self, net, x_cond, steps: int = 4, solver: str = "euler", generator=None, callback=None,
               disable=True):
        return solve(net, self.x0(x_cond, generator), steps, solver, callback=callback, disable=disable)

    def nfe(self, steps: int, solver: str) -> int | None:
        """Network evaluations a sample takes; None where the solver decides (adaptive dopri5)."""
        per_step = EVALS_PER_STEP.get(solver)
        return None if per_step is None else steps * per_step


class NaiveFM(CFM):
    """Flow matching from Gaussian noise: the same path and ODE solvers, another x0."""

    def x0(self, x_cond: torch.Tensor, generator=None) -> torch.Tensor:
        return randn_like(x_cond, generator)

    def loss(self, model, x1, x_cond, generator=None) -> torch.Tensor:
        x0 = randn_like(x1, generator)
        t = rand(x1.shape[0], x1, generator)
        x_t, u_t = cfm_path(x0, x1, t, self.sigma_min)
        return (model(x_t, t, x_cond) - u_t).square().mean()


DIFFUSION_PREDICTION = "v"  # written into a diffusion model's fmboost.json: ε-models of old must not load as v


def diffusion_scheduler(kind: str = "ddpm"):
    """The cosine schedule ends at ᾱ ≈ 2e-9, so the sampler starts from pure noise at the last step ("trailing"; the
    default "leading" spacing starts 4 steps at t = 750, where the model never saw pure noise). v-prediction, not ε:
    from ε̂ the sampler's x̂1 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ multiplies the network's error by 1/√ᾱ (34 at t = 980), and an
    ε-model of 750 steps gave worse samples in 50 DDIM steps than in 4; from v̂, x̂1 = √ᾱ·x_t − √(1−ᾱ)·v̂ never
    amplifies it (Salimans & Ho 2022; Lin et al. 2024)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    return cls(num_train_timesteps=NUM_TRAIN_STEPS, beta_schedule="squaredcos_cap_v2",
               prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False)


@torch.no_grad()
def sample_diffusion(v_model, x_cond, steps: int = 50, kind: str = "ddim", generator=None, disable=None,
                     callback=None):
    """Starts from N(0, I) and denoises in `steps` scheduler steps; returns (x, NFE)."""
    scheduler = diffusion_scheduler(kind)
    scheduler.set_timesteps(steps)
    x = randn_like(x_cond, generator) * scheduler.init_noise_sigma
    for i, t in enumerate(tqdm(scheduler.timesteps, disable=disable, desc=kind)):
        v = v_model(x, (t.float() / NUM_TRAIN_STEPS).to(x.device))
        if callback is not None:
            callback(i + 1)
        x = scheduler.step(v, t, x, generator=generator).prev_sample
    return x, len(scheduler.timesteps)


class Diffusion:
    """v-prediction, v = √ᾱ·ε − √(1−ᾱ)·x1; the U-Net's time input is in [0, 1], so integer steps are divided by
    NUM_TRAIN_STEPS."""

    # diffusers' schedulers in place of ODE solvers, which make no sense for a denoiser: an ODE solver's name
    # (the default `euler` of every command) runs the deterministic DDIM.
    solvers = OBJECTIVE_SOLVERS["diffusion"]
    stepped = True

    def __init__(self):
        self.scheduler = diffusion_scheduler()

    def loss(self, model, x1, x_cond, generator=None) -> torch.Tensor:
        eps = randn_like(x1, generator)
        steps = (rand(x1.shape[0], x1, generator) * NUM_TRAIN_STEPS).long().clamp(max=NUM_TRAIN_STEPS - 1)
        x_noisy = self.scheduler.add_noise(x1, eps, steps.cpu()).to(x1.dtype)
        v = self.scheduler.get_velocity(x1, eps, steps.cpu()).to(x1.dtype)
        return (model(x_noisy, steps.float() / NUM_TRAIN_STEPS, x_cond) - v).square().mean()

    def sample(self, net, x_cond, steps: int = 50, solver: str = "ddim", generator=None, callback=None,
               disable=True):
        kind = solver if solver in self.solvers else "ddim"
        return sample_diffusion(net, x_cond, steps, kind, generator, disable, callback)

    def nfe(self, steps: int, solver: str) -> int:
        return steps


class Regression:
    """One forward pass from x_cond (at t = 0) to x1, trained with the L1 (p = 1) or L2 (p = 2) error."""

    solvers = OBJECTIVE_SOLVERS["regression-l2"]  # none: the step count and solver are ignored
    stepped = False

    def __init__(self, p: int = 2):
        self.p = p

    def loss(self, model, x1, x_cond, generator=None) -> torch.Tensor:
        pred = model(x_cond, torch.zeros(x1.shape[0], device=x1.device), x_cond)
        return (pred - x1).abs().pow(self.p).mean()

    def sample(self, net, x_cond, steps: int = 1, solver: str = "euler", generator=None, callback=None,
               disable=True):
        x1 = net(x_cond, torch.zeros((), device=x_cond.device))
        if callback is not None:
            callback(1)
        return x1, 1

    def nfe(self, steps: int, solver: str) -> int:
        return 1


OBJECTIVES = {
    "cfm": lambda sigma_min, tau, schedule: CFM(sigma_min, tau, schedule),
    "naive-fm": lambda sigma_min, tau, schedule: NaiveFM(sigma_min, tau, schedule),
    "diffusion": lambda sigma_min, tau, schedule: Diffusion(),
    "regression-l1": lambda sigma_min, tau, schedule: Regression(p=1),
    "regression-l2": lambda sigma_min, tau, schedule: Regression(p=2),
}


def get_objective(name: str, sigma_min: float = 0.0, tau: float = 400, noise_schedule: str = "cosine"):
    """The objective called `name` (a model folder's `objective`), with the path's σ_min, CFM's τ and the schedule
    that noise-augments x0 (flow/noise.py)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    if noise_schedule not in NOISE_SCHEDULES:
        raise ValueError(f"unknown noise schedule {noise_schedule!r}; choose one of {', '.join(NOISE_SCHEDULES)}")
    return OBJECTIVES[name](sigma_min, tau, noise_schedule)


def loss_for(name: str, sigma_min: float = 0.0, tau: float = 400, noise_schedule: str = "cosine", pixel_loss=None):
    """The training loss of objective `name` as one function (model, x1, x_cond, generator) → scalar;
    `pixel_loss` (cfm only: objective.DecodedL1) adds a term on the decoded one-step estimate."""
    objective = get_objective(name, sigma_min, tau, noise_schedule)
    if pixel_loss is not None:
        if not isinstance(objective, CFM) or isinstance(objective, NaiveFM):
            raise ValueError(f"pixel_weight: only the cfm objective has a pixel term, not {name}")
        objective.pixel_loss = pixel_loss
    return objective.loss
