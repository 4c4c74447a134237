"""A model folder's settings, owned in one place: `ModelConfig`, read once from its fmboost.json.

Every setting that travels with the weights lives here, with the value a folder gets when its fmboost.json leaves
it out: how the model was trained (scale, upsampling, τ, σ_min, objective, what a diffusion network predicts) and
how it samples best when the user does not say (steps, solver, colour fix). The command line, the pipelines, eval
and serve ask a model's config for these defaults instead of writing their own. No torch here: a command knows what
it will load before it pays for the import.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fmboost.errors import InputError

CONFIG_FILE = "fmboost.json"  # marks a model folder (FMBoostPipeline.save_pretrained)
FORMAT = "fmboost"            # the tag save_pretrained writes; not a setting


@dataclass(frozen=True)
class ModelConfig:
    scale: int = 2                    # the factor one pass upscales by
    upsampling: str = "psu"           # how x0 is made from the low-res input (flow/upsampling.py)
    psu_resize: str = "bicubic"       # the pixel resize inside PSU (the reference code's models: bilinear)
    tau: float = 400                  # noise-augmentation step of x0 at sampling (0: start from the clean x0)
    sigma_min: float = 0.0
    noise_schedule: str = "cosine"    # of τ's noise augmentation (the reference code's models: shifted-cosine)
    objective: str = "cfm"            # what the network was trained for (flow/objectives.py)
    color_fix: str = "none"           # none | wavelet | adain | luma: colours from the input (pipelines/colorfix.py)
    back_projection: int = 0          # iterations making the output shrink back to the input (pipelines/consistency.py)
    steps: int = 4                    # ODE steps when the user gives none
    solver: str = "euler"             # ODE solver when the user gives none
    autoencoder: str = "autoencoder"  # the folder's autoencoder/ subfolder, or a hub id
    prediction: str | None = None     # what a diffusion network predicts (see pipelines/upscale.check_prediction)
    # The model of the passes after this one's first, when one pass is not enough (×4 of a ×2 model): an embedded
    # model (`default`), a folder (relative to this one, or absolute), or bicubic/lanczos; None: this model again.
    # `real` names `default`: its first pass removes the degradation, so the next input is clean (pipelines/cascade.py).
    next_model: str | None = None
    extra: dict = field(default_factory=dict, compare=False)  # settings of newer versions, kept as they are

    def __post_init__(self):
        if self.next_model is not None and (not isinstance(self.next_model, str) or not self.next_model.strip()):
            raise InputError(f"model setting next_model must name a model (or bicubic, lanczos), got "
                             f"{self.next_model!r}")
        for name, least in (("scale", 1), ("steps", 1), ("back_projection", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError(f"model setting {name} must be a whole number of at least {least}, got {value!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Known settings by name; the `format` tag is dropped; anything else is kept in `extra`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in values.items() if k != "format"}
        extra = {**values.pop("extra", {}), **{k: v for k, v in values.items() if k not in names}}
        return cls(**{k: v for k, v in values.items() if k in names}, extra=extra)

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "ModelConfig":
        """The one parser of fmboost.json: a damaged file is one line that names it."""
        path = Path(folder) / CONFIG_FILE
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:  # truncated, not JSON, not UTF-8
            raise InputError(f"{path}: not a valid model config ({str(e).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise InputError(f"{path}: not a valid model config (expected a JSON object of settings)")
        try:
            return cls.from_dict(values)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        except TypeError as e:
            raise InputError(f"{path}: not a valid model config ({e})") from None

    def replace(self, **changes) -> "ModelConfig":
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        """Every setting by name (None ones left out), `extra` merged in: what fmboost.json holds."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**{k: v for k, v in values.items() if v is not None}, **self.extra}

    def write(self, folder: str | os.PathLike) -> None:
        """fmboost.json; the autoencoder is named only when it is not the folder's own autoencoder/."""
        values = self.to_dict()
        if values["autoencoder"] == ModelConfig.autoencoder:
            del values["autoencoder"]
        (Path(folder) / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **values}, indent=2) + "\n")

    # Read as a mapping too: `pipe.config["scale"]` was the way before this class, and JSON-minded callers remain.
    def __getitem__(self, name: str):
        values = self.to_dict()
        if name not in values:
            raise KeyError(name)
        return values[name]

    def get(self, name: str, default=None):
        return self.to_dict().get(name, default)


def is_model_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()
