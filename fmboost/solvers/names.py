"""The solvers' names and costs, without torch: the command line's choices are built before any work starts, and
`fmboost upscale --method bicubic` or `fmboost info` should never pay for importing torch."""

# Network evaluations a step of each fixed-step solver costs; the adaptive dopri5 decides its own.
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
SOLVER_NAMES = (*EVALS_PER_STEP, "dopri5")
