"""Several passes of ×s models for one large factor (×4 from ×2): the first model's, then its `next_model`'s.

A model made for degraded photos (`real`) cleans up as it upscales, so the input of its second pass is a clean
photo: the model made for clean photos (`default`) suits it better than `real` again, which would treat the clean
image as degraded (results/real4/cascade.json measured this). A model folder says so in its fmboost.json
(`"next_model": "default"`); a folder that says nothing runs itself every pass, as before. `bicubic`/`lanczos` as
the next model: a pixel resize instead of a model pass.
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from fmboost.data.images import resize_by
from fmboost.data.model_config import ModelConfig
from fmboost.data.sources import resolve_model
from fmboost.errors import InputError

PIXEL_PASSES = ("bicubic", "lanczos")
MAX_CHAIN = 4  # models named one after another (scaling.MAX_PASSES passes at most, so never more are used)


def next_location(folder: str | Path | None, config: ModelConfig) -> str | None:
    """Where the model of the next pass is (a folder, a hub id, or bicubic/lanczos); None: the same model again."""
    name = config.next_model
    if name is None or name in PIXEL_PASSES:
        return name
    if folder is not None and not Path(name).is_absolute() and (Path(folder) / name).is_dir():
        return str(Path(folder) / name)
    return resolve_model(name)


def passes_for(factor: int, model_scale: int) -> int:
    """How many ×model_scale passes make exactly ×factor (eval compares with the photo, so no resize after)."""
    passes = round(math.log(factor, model_scale)) if factor > 1 else 0
    if passes < 1 or model_scale ** passes != factor:
        raise InputError(f"--scale {factor} is not a power of the model's ×{model_scale} (×{model_scale}, "
                         f"×{model_scale ** 2}, ...)")
    return passes


class Cascade:
    """The pipeline of each pass: pass i runs `stage(i)`, the last stage named repeating. Stages after the first are
    loaded when first needed (a ×2 upscale never loads the next model)."""

    def __init__(self, pipe, folder: str | Path | None = None, device=None, loader=None):
        self.stages = [pipe]
        self.folders = [str(folder) if folder is not None else None]
        self.device = device if device is not None else pipe.device
        self.loader = loader  # location, device → pipeline (tests pass their own)

    @property
    def config(self) -> ModelConfig:
        return self.stages[0].config

    @property
    def pad_multiple(self) -> int:
        return self.stages[0].pad_multiple

    def stage(self, i: int):
        """The pipeline (or bicubic/lanczos) of pass i."""
        while len(self.stages) <= i and len(self.stages) < MAX_CHAIN:
            last = self.stages[-1]
            if isinstance(last, str):
                break
            where = next_location(self.folders[-1], last.config)
            if where is None:
                break
            self.stages.append(where if where in PIXEL_PASSES else self.load(where))
            self.folders.append(None if where in PIXEL_PASSES else where)
        return self.stages[min(i, len(self.stages) - 1)]

    def load(self, where: str):
        if self.loader is not None:
            pipe = self.loader(where, self.device)
        else:
            from fmboost.pipelines.upscale import FMBoostPipeline

            pipe = FMBoostPipeline.from_pretrained(where, device=self.device)
        if pipe.config.scale != self.config.scale:
            raise InputError(f"next_model {where} upscales ×{pipe.config.scale}, but the first model ×"
                             f"{self.config.scale}; a cascade needs models of one factor")
        return pipe

    def names(self, passes: int) -> list[str]:
        """What runs each pass, for records and messages: a folder's name, or bicubic/lanczos."""
        out = []
        for i in range(passes):
            self.stage(i)
            j = min(i, len(self.stages) - 1)
            out.append(self.stages[j] if isinstance(self.stages[j], str) else Path(self.folders[j] or "model").name)
        return out

    def run_pass(self, i: int, image: Image.Image, **kwargs) -> tuple[Image.Image, int]:
        """(pass i of `image`, its network evaluations); `kwargs` go to FMBoostPipeline.upscale. A pixel stage
        resizes by the first model's factor."""
        stage = self.stage(i)
        if isinstance(stage, str):
            return resize_by(image, self.config.scale, stage), 0
        return stage.upscale(image, **kwargs)

    def upscale(self, image: Image.Image, passes: int = 1, **kwargs) -> tuple[Image.Image, int]:
        """(`image` after `passes` passes, the network evaluations of all of them)."""
        nfe = 0
        for i in range(passes):
            image, n = self.run_pass(i, image, **kwargs)
            nfe += n
        return image, nfe

    def runs(self, **kwargs) -> list:
        """One function image → image per stage, for scaling.upscale_to (pass i uses the i-th, the last
        repeating); the next model loads when its pass first runs."""
        return [lambda im, i=i: self.run_pass(i, im, **kwargs)[0] for i in range(MAX_CHAIN)]


class FixedPasses:
    """A Cascade with its number of passes fixed: `upscale(image, ...)` like one pipeline's (fmboost eval's ×4 of a
    ×2 model)."""

    def __init__(self, cascade: Cascade, passes: int):
        self.cascade, self.passes = cascade, passes

    @property
    def config(self) -> ModelConfig:
        return self.cascade.config

    def upscale(self, image: Image.Image, **kwargs) -> tuple[Image.Image, int]:
        return self.cascade.upscale(image, self.passes, **kwargs)
