"""What the command modules share: the user-error type, device picking, model resolving, pipeline loading."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from fmboost import DEFAULT_MODEL
from fmboost.data.sources import looks_like_hub_id, resolve_model  # noqa: F401  (the commands' resolvers)


EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for; the message is shown as it is."""


def run(args) -> int:
    """Runs a parsed command: a user's mistake ends in one line on stderr and exit code 2, never a traceback.
    (ImageError is a ValueError: nothing is imported here that a quick command would not need.)"""
    quiet_libraries()
    try:
        return args.func(args) or 0
    except (UserError, FileNotFoundError, ValueError) as e:
        print(f"fmboost {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def quiet_libraries() -> None:
    """diffusers' and transformers' warnings are for developers; they read these variables when first imported
    (importing them here would cost every command seconds, `--method bicubic` and `info` included)."""
    import warnings

    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "diffusers" in sys.modules:  # already imported (tests, `python -m` with a library loaded first)
        from diffusers.utils import logging as dlogging

        dlogging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def pick_device(name: str) -> str:
    """`auto`, `cpu` or `cuda` as given to --device; a missing GPU is the user's mistake, said in one line. On the
    CPU, torch gets as many threads as there are idle cores (models/device.py: cpu_threads)."""
    from fmboost.models.device import cpu_threads, resolve_device

    try:
        device = resolve_device(name)
    except ValueError as e:
        raise UserError(f"--device {e}") from None
    if device == "cpu":
        import torch

        torch.set_num_threads(cpu_threads())
    return device


def env_int(*names: str, default: int) -> int:
    """The first of these environment variables that is set (launchers such as torchrun and srun set them)."""
    return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)


def load_pipeline(model: str, device: str, flag: str = "--model"):
    from fmboost.data.sources import MODEL_CONFIG

    check_source(model, flag)
    from fmboost.pipelines.upscale import FMBoostPipeline

    model = resolve_model(model)
    if Path(model).parent == DEFAULT_MODEL.parent and not (Path(model) / MODEL_CONFIG).exists():
        raise UserError(f"the embedded model is missing from {model}; reinstall fmboost or pass {flag}")
    if not Path(model).exists() and not looks_like_hub_id(model):
        raise UserError(f"{flag} {model}: no such folder")
    with flag_errors(flag):
        return FMBoostPipeline.from_pretrained(model, device=device)


def check_source(name: str | None, flag: str) -> None:
    """Fails now, in one line, when `name` is a hub id that cannot be had offline: before torch is imported."""
    from fmboost.data.sources import check_fetchable

    if name:
        with flag_errors(flag):
            check_fetchable(name)


@contextlib.contextmanager
def flag_errors(flag: str):
    """A model, autoencoder or base that the hub could not give, worded for the flag that named it (the lower
    layers name no flags), the same way in every command."""
    from fmboost.data.sources import HubUnreachable

    try:
        yield
    except HubUnreachable as e:
        raise UserError(e.for_flag(flag)) from None
