"""Upscaling method names: the objectives a model folder may hold, and the baselines that need no flow. No torch
here: the command line's choices come from this file."""
from fmboost.flow.names import OBJECTIVE_NAMES

# Model methods run the network a model folder holds (its `objective` must match); the others need none.
MODEL_METHODS = OBJECTIVE_NAMES
BASELINES = ("x0", "bicubic", "lanczos")
PIXEL_BASELINES = ("bicubic", "lanczos")  # resized in pixel space: no model, no padding
METHODS = (*MODEL_METHODS, *BASELINES)
# `model` stands for the objective the model folder was trained with (cfm, naive-fm, ...).
ANY_METHOD = ("model", *METHODS)
COLOR_FIXES = ("none", "wavelet", "adain", "luma")
