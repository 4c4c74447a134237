"""Upscaling method names: the objectives a model folder may hold, and the baselines that need no flow."""
from fmboost.flow.objectives import OBJECTIVES

# Model methods run the network a model folder holds (its `objective` must match); the others need none.
MODEL_METHODS = tuple(OBJECTIVES)
METHODS = (*MODEL_METHODS, "x0", "bicubic", "lanczos")
# `model` stands for the objective the model folder was trained with (cfm, naive-fm, ...).
ANY_METHOD = ("model", *METHODS)
