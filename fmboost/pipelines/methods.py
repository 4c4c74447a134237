"""Upscaling method names (kept free of heavy imports, for the command line's --help)."""

# Model methods run the network a model folder holds (its `objective` must match); the others need none.
MODEL_METHODS = ("cfm", "naive-fm", "diffusion", "regression-l1", "regression-l2")
METHODS = (*MODEL_METHODS, "x0", "bicubic", "lanczos")
# `model` stands for the objective the model folder was trained with (cfm, naive-fm, ...).
ANY_METHOD = ("model", *METHODS)
