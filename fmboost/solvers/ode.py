"""ODE solvers for dx/dt = v(x, t) from t = 0 to 1, k-diffusion style: one short flat function each.

`velocity(x, t)` takes a batch and a scalar time tensor. Each fixed-step solver takes the time grid `ts`
(from `time_grid`) and returns x at ts[-1]; wrap `velocity` in `CountNFE` to read how many evaluations it took
(and to be called back after each one).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm, trange

from fmboost.data.model_config import ModelConfig
from fmboost.errors import InputError
from fmboost.solvers.names import EVALS_PER_STEP  # noqa: F401  (re-exported)


class CountNFE:
    """Counts the number of function evaluations (NFE) a solver spends; `callback(nfe)` follows each one."""

    def __init__(self, velocity, callback=None):
        self.velocity, self.callback, self.nfe = velocity, callback, 0

    def __call__(self, x, t):
        v = self.velocity(x, t)
        self.nfe += 1
        if self.callback is not None:
            self.callback(self.nfe)
        return v


def time_grid(steps: int, device=None, dtype=torch.float32) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=dtype)


@torch.no_grad()
def sample_euler(velocity, x, ts, disable=None):
    for i in trange(len(ts) - 1, disable=disable, desc="euler"):
        x = x + (ts[i + 1] - ts[i]) * velocity(x, ts[i])
    return x


@torch.no_grad()
def sample_midpoint(velocity, x, ts, disable=None):
    for i in trange(len(ts) - 1, disable=disable, desc="midpoint"):
        h = ts[i + 1] - ts[i]
        x_mid = x + h / 2 * velocity(x, ts[i])
        x = x + h * velocity(x_mid, ts[i] + h / 2)
    return x


@torch.no_grad()
def sample_heun(velocity, x, ts, disable=None):
    for i in trange(len(ts) - 1, disable=disable, desc="heun"):
        h = ts[i + 1] - ts[i]
        d = velocity(x, ts[i])
        x_euler = x + h * d
        x = x + h / 2 * (d + velocity(x_euler, ts[i + 1]))
    return x


@torch.no_grad()
def sample_rk4(velocity, x, ts, disable=None):
    for i in trange(len(ts) - 1, disable=disable, desc="rk4"):
        h, t = ts[i + 1] - ts[i], ts[i]
        k1 = velocity(x, t)
        k2 = velocity(x + h / 2 * k1, t + h / 2)
        k3 = velocity(x + h / 2 * k2, t + h / 2)
        k4 = velocity(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@torch.no_grad()
def sample_dopri5(velocity, x, ts=None, rtol: float = 1e-3, atol: float = 1e-3, disable=None):
    """Adaptive Dormand–Prince through torchdiffeq; only the end points of `ts` are used."""
    from torchdiffeq import odeint

    ends = torch.tensor([0.0, 1.0], device=x.device) if ts is None else ts[[0, -1]]
    # The bar follows the time the solver has reached (0 → 1): the number of steps is not known beforehand.
    with tqdm(total=1.0, disable=disable, desc="dopri5", bar_format="{l_bar}{bar}| t={n:.2f} [{elapsed}]") as bar:
        def tracked(t, y):
            bar.update(max(0.0, float(t) - bar.n))
            return velocity(y, t)
        x = odeint(tracked, x, ends, method="dopri5", rtol=rtol, atol=atol)[-1]
        bar.update(1.0 - bar.n)
    return x


SOLVERS = {"euler": sample_euler, "midpoint": sample_midpoint, "heun": sample_heun, "rk4": sample_rk4,
           "dopri5": sample_dopri5}


def solve(velocity, x, steps: int = ModelConfig.steps, solver: str = ModelConfig.solver, disable=None, callback=None):
    """Integrates from t=0 to 1 and returns (x1, NFE). For dopri5 `steps` is ignored: the tolerances decide.
    `callback(nfe)` is called after every evaluation of `velocity` (a progress bar's hook)."""
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    counted = CountNFE(velocity, callback)
    x = SOLVERS[solver](counted, x, time_grid(steps, x.device, x.dtype), disable=disable)
    return x, counted.nfe
