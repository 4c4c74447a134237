"""What the command modules share: the user-error type, device picking, model resolving, pipeline loading."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from fmboost import DEFAULT_MODEL, EMBEDDED_MODELS


EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for; the message is shown as it is."""


def run(args) -> int:
    """Runs a parsed command: a user's mistake ends in one line on stderr and exit code 2, never a traceback."""
    quiet_libraries()
    from fmboost.data.images import ImageError

    try:
        return args.func(args) or 0
    except (UserError, ImageError, FileNotFoundError, ValueError) as e:
        print(f"fmboost {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def quiet_libraries() -> None:
    import warnings

    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def pick_device(name: str) -> str:
    """`auto`, `cpu` or `cuda` as given to --device; a missing GPU is the user's mistake, said in one line."""
    from fmboost.models.device import resolve_device

    try:
        return resolve_device(name)
    except ValueError as e:
        raise UserError(f"--device {e}") from None


def env_int(*names: str, default: int) -> int:
    """The first of these environment variables that is set (launchers such as torchrun and srun set them)."""
    return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)


def resolve_model(model: str) -> str:
    """An embedded model's name (`default`, `real`) means its folder, unless a local folder has that name."""
    return str(EMBEDDED_MODELS[model]) if model in EMBEDDED_MODELS and not Path(model).exists() else model


def load_pipeline(model: str, device: str):
    from fmboost.pipelines.upscale import CONFIG_NAME, FMBoostPipeline

    model = resolve_model(model)
    if Path(model).parent == DEFAULT_MODEL.parent and not (Path(model) / CONFIG_NAME).exists():
        raise UserError(f"the embedded model is missing from {model}; reinstall fmboost or pass --model")
    if not Path(model).exists() and not looks_like_hub_id(model):
        raise UserError(f"--model {model}: no such folder")
    return FMBoostPipeline.from_pretrained(model, device=device)


def looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith((".", "/"))
