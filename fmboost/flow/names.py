"""The objectives' and upsamplings' names, and which solvers each objective runs, without torch (see
solvers/names.py): flow/objectives.py holds the objectives themselves and takes its names from here."""
from fmboost.solvers.names import SOLVER_NAMES

# Objective → the solvers its sampler accepts: ODE solvers for the flows, diffusers' schedulers for the diffusion
# baseline (an ODE solver's name, the default `euler` of every command, runs the deterministic DDIM), none for the
# one-step regressions.
OBJECTIVE_SOLVERS = {
    "cfm": SOLVER_NAMES,
    "naive-fm": SOLVER_NAMES,
    "diffusion": ("ddim", "ddpm"),
    "regression-l1": (),
    "regression-l2": (),
}
OBJECTIVE_NAMES = tuple(OBJECTIVE_SOLVERS)
# Every solver name some objective accepts (the choices of `fmboost upscale --solver`).
SOLVER_CHOICES = tuple(dict.fromkeys(s for solvers in OBJECTIVE_SOLVERS.values() for s in solvers))
UPSAMPLING = ("pixel", "psu", "bilinear", "nearest")
