"""What the command modules share: the user-error type, the flags every command defines alike (--device, --solver,
--steps), device picking, finding and loading models."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fmboost import DEFAULT_MODEL
from fmboost.data.model_config import CONFIG_FILE, ModelConfig, is_model_folder
from fmboost.data.sources import looks_like_hub_id, resolve_model  # noqa: F401  (the commands' resolvers)
from fmboost.errors import FmboostError
from fmboost.flow.names import SOLVER_CHOICES

EXIT_USAGE = 2
DEVICES = ("auto", "cpu", "cuda", "mps")

# The commands' name for fmboost's one user-error type (fmboost/errors.py).
UserError = FmboostError


def run(args) -> int:
    """Runs a parsed command: a user's mistake (an FmboostError, from any layer) ends in one line on stderr and exit
    code 2; anything else is a bug and keeps its traceback. Nothing is imported here that a quick command would not
    need."""
    quiet_libraries()
    try:
        return args.func(args) or 0
    except FmboostError as e:
        print(f"fmboost {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def check_steps(steps: int | None, flag: str = "--steps") -> None:
    if steps is not None and steps < 1:
        raise UserError(f"{flag} must be at least 1, got {steps}")


def add_device_flag(parser) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto (the default): cuda, else mps, else cpu")


def add_solver_flag(parser, what: str = "ODE solver (flows) or diffusers scheduler (diffusion baseline)") -> None:
    parser.add_argument("--solver", choices=SOLVER_CHOICES,
                        help=f"{what}; default: the model's own (`fmboost info` shows it; {ModelConfig.solver} unless "
                             f"its {CONFIG_FILE} says)")


def add_steps_flag(parser, what: str = "ODE steps") -> None:
    """Not given: None, and the model's config decides (check_steps refuses what is under 1)."""
    parser.add_argument("--steps", type=int,
                        help=f"{what} (NFE = steps × evals per step); default: the model's own (`fmboost info` "
                             f"shows it; {ModelConfig.steps} unless its {CONFIG_FILE} says)")


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
    """`auto`, `cpu`, `cuda` or `mps` as given to --device; a missing GPU is the user's mistake, said in one line.
    On the CPU, torch gets threads by how many cores other processes keep busy (models/device.py: cpu_threads)."""
    from fmboost.models.device import cpu_threads, resolve_device

    try:
        device = resolve_device(name)
    except FmboostError as e:
        raise UserError(f"--device {e}") from None
    if device == "cpu":
        import torch

        torch.set_num_threads(cpu_threads())
    return device


def env_int(*names: str, default: int) -> int:
    """The first of these environment variables that is set (launchers such as torchrun and srun set them)."""
    return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)


@dataclass(frozen=True)
class ModelSource:
    """A model as a command found it, before torch is imported: the name resolved once, and a local folder's
    settings read once (None for a hub id, whose settings come with its download)."""
    name: str                  # as the user gave it
    where: str                 # a model folder or a hub id
    config: ModelConfig | None
    flag: str = "--model"


def find_model(name: str, flag: str = "--model") -> ModelSource:
    """Where `name` (a folder, `default`/`real`, a hub id) is and what it says of itself; a mistake is one line
    that names the flag, and an unreachable hub id fails now, in seconds, not after torch and diffusers load."""
    where = resolve_model(name)
    if Path(where).parent == DEFAULT_MODEL.parent and not is_model_folder(where):
        raise UserError(f"the embedded model is missing from {where}; reinstall fmboost or pass {flag}")
    if Path(where).is_dir():
        if not is_model_folder(where):
            raise UserError(f"{flag} {name}: not an fmboost model folder (no {CONFIG_FILE})")
        return ModelSource(str(name), where, ModelConfig.read(where), flag)
    if not looks_like_hub_id(where):
        raise UserError(f"{flag} {name}: no such folder")
    check_source(where, flag)
    return ModelSource(str(name), where, None, flag)


def load_pipeline(model: str | ModelSource, device: str, flag: str = "--model"):
    """The model's pipeline on `device`: a local folder from the config already read, a hub id downloaded."""
    source = model if isinstance(model, ModelSource) else find_model(model, flag)
    from fmboost.pipelines.upscale import FMBoostPipeline

    with flag_errors(source.flag):
        if source.config is not None:
            return FMBoostPipeline.load(Path(source.where), source.config, device=device)
        return FMBoostPipeline.from_pretrained(source.where, device=device)


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
