"""Text to image in `fmboost serve`: one diffusers base, loaded once, in front of the served CFM models.

Only models that transport the base's own latents (same encoder, same scaling; see pipelines/generate.py) and
whose U-Net takes the boosted latent's size are offered; the others stay upscale-only.
"""
from __future__ import annotations

from PIL import Image

from fmboost.pipelines.generate import BoostedLatentDiffusionPipeline, latent_space_mismatch


class TextToImage:
    """`base` (diffusers, with a VAE) → the chosen CFM model ×scale; returns the base's picture and the result."""

    def __init__(self, base, pipelines: dict, base_name: str, base_steps: int, guidance: float,
                 size: tuple[int, int] | None = None):
        self.pipe = BoostedLatentDiffusionPipeline(base, [], base_name)
        self.name, self.base_steps, self.guidance = base_name, base_steps, guidance
        self.size = size or self.pipe.default_size  # the base's own resolution, as `fmboost generate` draws
        self.unfit = {name: why for name, pipe in pipelines.items() if (why := self.misfit(pipe))}
        self.models = {name: pipe for name, pipe in pipelines.items() if name not in self.unfit}

    def misfit(self, stage) -> str | None:
        """Why `stage` cannot boost this base's latents, or None when it can."""
        if stage.model is None:
            return "it has no flow (cfm/)"
        why = latent_space_mismatch(stage.autoencoder, self.pipe.decoder)
        if why:
            return f"it works in another latent space ({why})"
        try:
            self.pipe.check_size(*self.size, [stage])
        except ValueError as e:
            return f"base size {e}"
        return None

    def info(self) -> dict:
        return dict(base=self.name, models=list(self.models), base_steps=self.base_steps, width=self.size[0],
                    height=self.size[1])

    def __call__(self, model: str, prompt: str, negative_prompt: str = "", base_steps: int = 25,
                 steps: int | None = None, solver: str | None = None, seed: int = 0,
                 callback=None) -> tuple[Image.Image, Image.Image]:
        """(the base's low-res picture, the boosted one); the flow's noise follows the seed as in `generate`.
        `callback` follows each base step and each evaluation of the flow's network."""
        z = self.pipe.base_latents(prompt, negative_prompt or None, base_steps, self.guidance, *self.size, seed=seed,
                                   callback=callback)
        boosted = self.pipe.boost(z, [self.models[model]], steps, solver, seed, callback=callback)
        return self.pipe.decode(z), self.pipe.decode(boosted)
