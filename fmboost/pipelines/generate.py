"""Text → high resolution: a diffusers base makes a low-res latent, CFM boosts it ×2 (×4 by cascading two ×2
stages), and the base's VAE decodes.

The base runs with `output_type="latent"`. diffusers then returns the denoised latents as the U-Net sees them,
*scaled*: z · scaling_factor (the SD pipelines decode `latents / vae.config.scaling_factor`; SD3 also removes
`shift_factor`). That is the space fmboost's `Autoencoder` and CFM models work in, so the latents pass from the
base to the flow unchanged; rescaling them again would feed the flow latents 5.5× too small for SD1.5. What differs
between SD1.x/2.x, SDXL, SD3 and FLUX (FLUX's packed latents, sizes, defaults) is in pipelines/bases.py.
"""
from __future__ import annotations

import importlib.util
import math
import os

import torch
from PIL import Image

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.images import to_pil
from fmboost.data.sources import hub_kwargs, not_fetched
from fmboost.errors import InputError
from fmboost.pipelines import bases
from fmboost.pipelines.bases import GenerateInputError
from fmboost.pipelines.attention import attention_scaling
from fmboost.pipelines.upscale import FMBoostPipeline

# Stages whose output is above this many pixels decode tiled (2048² needs it; 1024² fits in memory).
TILE_ABOVE_PIXELS = 1024 * 1024
DEFAULT_BASE_SIDE = 512  # a base whose denoiser does not say its training size draws at SD1.5's


def load_base(name: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.float32, lcm_lora: str | None = None):
    """Any diffusers text-to-image pipeline with a VAE: a local folder (with model_index.json) or a hub id."""
    from diffusers import DiffusionPipeline

    name = str(name)
    if os.path.isdir(name) and not os.path.exists(os.path.join(name, "model_index.json")):
        raise GenerateInputError("base", f"{name}: not a diffusers pipeline folder (no model_index.json)")
    try:
        base = DiffusionPipeline.from_pretrained(name, torch_dtype=dtype, **({} if os.path.isdir(name) else
                                                                             hub_kwargs()))
    except Exception as e:  # OSError when offline or unknown; hub validation errors for odd names
        if os.path.isdir(name):
            raise GenerateInputError("base", f"{name}: cannot load this pipeline folder: "
                                             f"{str(e).splitlines()[0]}") from None
        raise not_fetched(name, e) from None
    if getattr(base, "vae", None) is None:
        raise GenerateInputError("base", f"{name}: {type(base).__name__} has no VAE; fmboost needs a latent "
                                         f"diffusion model")
    if getattr(base.vae.config, "latents_mean", None) is not None:  # SDXL-style per-channel normalisation
        raise GenerateInputError("base", f"{name}: its VAE normalises latents per channel (latents_mean/std), "
                                         f"which fmboost's autoencoder does not; such bases are not supported yet")
    bases.check_lcm_lora(base, lcm_lora)
    if lcm_lora:
        add_lcm_lora(base, lcm_lora)
    base.set_progress_bar_config(disable=True)
    return base.to(device)


def add_lcm_lora(base, lcm_lora: str) -> None:
    """LCM-LoRA distils the base to ~4 steps: load, fuse (no LoRA overhead per step), switch to LCMScheduler."""
    from diffusers import LCMScheduler

    try:
        base.load_lora_weights(lcm_lora, **({} if os.path.exists(lcm_lora) else hub_kwargs()))
    except ValueError as e:  # also what diffusers raises when peft, its LoRA backend, is missing
        hint = "" if importlib.util.find_spec("peft") else " (pip install peft)"
        raise GenerateInputError("lcm_lora", f"{lcm_lora}: {str(e).splitlines()[0]}{hint}") from None
    except OSError:
        raise GenerateInputError("lcm_lora", f"{lcm_lora}: no such file or folder, and it could not be downloaded "
                                             f"(offline?); pass a local folder or .safetensors file") from None
    base.fuse_lora()
    base.unload_lora_weights()  # the fused weights stay; the adapter layers go, so a step costs what it did
    base.scheduler = LCMScheduler.from_config(base.scheduler.config)


def describe(ae: Autoencoder) -> str:
    return (f"{ae.latent_channels} latent channels, ×{ae.downsample_factor} downsampling, scaling factor "
            f"{ae.scaling_factor:g}" + (f", shift {ae.shift_factor:g}" if ae.shift_factor else ""))


def latent_space_mismatch(ae: Autoencoder, base_ae: Autoencoder) -> str | None:
    """Why latents of `base_ae` are not latents of `ae`, or None when they are.

    The encoder (and the scaling) defines the latent space; decoders may differ (sd-vae-ft-mse fine-tuned only
    SD's decoder, so a CFM model trained on its latents fits SD1.5). Weights are compared in the coarser of the
    two dtypes, so an fp16 base matches the fp32 autoencoder it was converted from.
    """
    if describe(ae) != describe(base_ae):
        return f"{describe(ae)} vs {describe(base_ae)}"
    ours, theirs = ae.vae.state_dict(), base_ae.vae.state_dict()
    keys = sorted(k for k in ours if k.startswith(("encoder.", "quant_conv.")))
    if keys != sorted(k for k in theirs if k.startswith(("encoder.", "quant_conv."))):
        return "encoders of different architectures"
    for k in keys:
        a, b = ours[k], theirs[k]
        low = a.dtype if a.element_size() <= b.element_size() else b.dtype
        if a.shape != b.shape or not torch.equal(a.to(b.device, low), b.to(low)):
            return f"same shape ({describe(ae)}) but different encoder weights ({k})"
    return None


def check_latent_space(stage: FMBoostPipeline, base_ae: Autoencoder, model_name: str, base_name: str) -> None:
    """A CFM model only transports latents of the autoencoder it was trained on."""
    why = latent_space_mismatch(stage.autoencoder, base_ae)
    if why:
        raise InputError(f"CFM model {model_name} and base {base_name} work in different latent spaces: {why}. "
                         f"Train a CFM model on the base's VAE (fmboost prepare --vae {base_name}/vae ...)")


def cascade(stages: list[FMBoostPipeline], scale: int | None) -> list[FMBoostPipeline]:
    """Stages whose scales multiply to `scale`: the given models in order, or one model repeated (×2 twice = ×4)."""
    scales = [s.config.scale for s in stages]
    if scale is None or math.prod(scales) == scale:
        return stages
    if len(stages) == 1 and scales[0] > 1:
        k = round(math.log(scale, scales[0]))
        if k >= 1 and scales[0] ** k == scale:
            return stages * k
    raise GenerateInputError("scale", f"{scale} cannot be reached with model scale(s) "
                                      f"{' × '.join(map(str, scales))}")


class BoostedLatentDiffusionPipeline:
    """base (diffusers, output_type="latent") → CFM stage(s) → the base's VAE decodes."""

    def __init__(self, base, stages: list[FMBoostPipeline], base_name: str = "base", model_names=None):
        self.base, self.stages, self.base_name = base, stages, base_name
        # The base's VAE decodes the final latent, in fp32 where diffusers would upcast it (fp16 overflows).
        vae_dtype = torch.float32 if base.vae.dtype == torch.float16 and base.vae.config.get("force_upcast") \
            else base.vae.dtype
        self.decoder = Autoencoder(base.vae).to(dtype=vae_dtype)
        names = model_names or [f"stage {i + 1}" for i in range(len(stages))]
        for stage, name in zip(stages, names):
            check_latent_space(stage, self.decoder, name, base_name)

    @classmethod
    def from_pretrained(cls, base: str, models: list[str] | str, device="cpu", dtype=torch.float32,
                        lcm_lora: str | None = None) -> "BoostedLatentDiffusionPipeline":
        models = [models] if isinstance(models, (str, os.PathLike)) else list(models)
        stages = [FMBoostPipeline.from_pretrained(m, device=device) for m in models]  # cheap checks first
        return cls(load_base(base, device, dtype, lcm_lora), stages, str(base), [str(m) for m in models])

    @property
    def denoiser(self):
        """The base's denoising network: a U-Net (SD1.x/2.x, SDXL) or a transformer (SD3, FLUX)."""
        return bases.denoiser(self.base)

    @property
    def train_pixels(self) -> int | None:
        """Pixels per side the base was trained at (SD1.5: 64 latents × 8 = 512; SDXL, SD3, FLUX: 1024)."""
        return bases.train_pixels(self.base, self.decoder.downsample_factor)

    @property
    def default_size(self) -> tuple[int, int]:
        """(width, height) the base draws at unless told: its training size, where it draws best. `fmboost
        generate` and `fmboost serve` both start from it."""
        side = self.train_pixels or DEFAULT_BASE_SIDE
        return side, side

    def check_size(self, width: int, height: int, stages: list[FMBoostPipeline]) -> None:
        f = self.decoder.downsample_factor
        m = bases.size_multiple(self.base, f)
        if width % m or height % m:
            raise GenerateInputError("base_size", f"{width}x{height}: width and height must be multiples of {m} "
                                                  f"for this base")
        sides = (width // f, height // f)
        for i, stage in enumerate(stages):
            sides = tuple(s * stage.config.scale for s in sides)
            if stage.model is not None and any(s % stage.model.size_multiple for s in sides):
                raise GenerateInputError("base_size", f"{width}x{height}: stage {i + 1}'s latent, "
                                                      f"{sides[0]}×{sides[1]}, must have sides that are multiples "
                                                      f"of {stage.model.size_multiple} for its U-Net")

    @torch.no_grad()
    def base_latents(self, prompt: str, negative_prompt: str | None = None, base_steps: int = 25,
                     guidance: float = 7.0, width: int = 512, height: int = 512, seed: int = 0,
                     attention_scale: bool = False, callback=None) -> torch.Tensor:
        """The base's latent, already scaled by its VAE's scaling factor (see the module docstring).
        `callback(step)` follows each of the base's denoising steps."""
        kwargs = bases.call_kwargs(self.base, negative_prompt)
        if callback is not None:
            kwargs["callback_on_step_end"] = lambda base, i, t, tensors: (callback(i + 1), tensors)[1]
        net = self.denoiser
        if attention_scale:
            bases.check_attention_scaling(self.base)
        ratio = width * height / self.train_pixels ** 2 if self.train_pixels else 1.0
        # A CPU generator draws the same noise on every device, so a seed gives the same image on CPU and GPU.
        with attention_scaling(net, ratio, enabled=attention_scale and net is not None):
            z = self.base(prompt=prompt, num_inference_steps=base_steps, guidance_scale=guidance, width=width,
                          height=height, generator=torch.Generator().manual_seed(seed), output_type="latent",
                          **kwargs).images
        z = bases.flow_latents(self.base, z, width, height, self.decoder.downsample_factor)  # FLUX: unpacked
        if not torch.is_tensor(z) or z.ndim != 4 or z.shape[1] != self.decoder.latent_channels:
            raise InputError(f"the base returned latents of shape {tuple(getattr(z, 'shape', ()))}; fmboost needs "
                             f"B×{self.decoder.latent_channels}×H×W")
        return z.float()

    @torch.no_grad()
    def boost(self, z: torch.Tensor, stages: list[FMBoostPipeline], steps: int | None = None, solver: str | None = None,
              seed: int = 0, tile: bool | None = None, method: str = "cfm", callback=None) -> torch.Tensor:
        """Each stage: upsample (PSU with its own autoencoder, as in training), then the flow (or x0 alone).
        `callback(nfe)` follows every evaluation of a stage's network."""
        for i, stage in enumerate(stages):
            pixels = z.shape[-2] * z.shape[-1] * (stage.config.scale * self.decoder.downsample_factor) ** 2
            x_cond = stage.upsample(z.to(stage.device), tile=auto_tile(tile, pixels))
            z = x_cond if method == "x0" else stage.flow(x_cond, steps, solver, seed + i, callback=callback)[0]
        return z

    @torch.no_grad()
    def decode(self, z: torch.Tensor, tile: bool | None = None) -> Image.Image:
        pixels = z.shape[-2] * z.shape[-1] * self.decoder.downsample_factor ** 2
        return to_pil(self.decoder.decode(z, tile=auto_tile(tile, pixels))[0])

    @torch.no_grad()
    def __call__(self, prompt: str, negative_prompt: str | None = None, base_steps: int | None = None,
                 guidance: float | None = None, base_size: int | tuple[int, int] | None = None,
                 scale: int | None = None, steps: int | None = None, solver: str | None = None, seed: int = 0,
                 attention_scale: bool = False, tile: bool | None = None, method: str = "cfm",
                 callback=None) -> Image.Image:
        """One image. `method="x0"` skips the flow (PSU-upsampled latent only: the baseline); "base" decodes the
        base's own latent. `base_size`: N (square) or (width, height); None: `default_size` (the base's training
        size). `base_steps`, `guidance` None: the base's defaults (pipelines/bases.py). `tile=None` tiles only
        above 1024² pixels. `callback` follows each base step and each evaluation of a flow's network."""
        if method not in ("cfm", "x0", "base"):
            raise InputError(f"unknown method {method!r}; choose one of cfm, x0, base")
        base_size = self.default_size if base_size is None else base_size
        width, height = (int(base_size),) * 2 if isinstance(base_size, (int, str)) else base_size
        lcm = type(self.base.scheduler).__name__ == "LCMScheduler"  # an LCM-LoRA was fused (add_lcm_lora)
        default_steps, default_guidance = bases.sampling_defaults(self.base, self.base_name, "fused" if lcm else None)
        base_steps = base_steps or default_steps
        guidance = default_guidance if guidance is None else guidance
        stages = cascade(self.stages, scale)
        self.check_size(width, height, stages)
        z = self.base_latents(prompt, negative_prompt, base_steps, guidance, width, height, seed, attention_scale,
                              callback=callback)
        if method != "base":
            z = self.boost(z, stages, steps, solver, seed, tile, method, callback=callback)
        return self.decode(z, tile)

    def work(self, base_steps: int, scale: int | None = None, steps: int | None = None, solver: str | None = None,
             method: str = "cfm") -> int | None:
        """How many times `__call__` calls its callback: base steps plus each stage's network evaluations (what its
        objective says they cost); None where a solver decides (dopri5)."""
        if method != "cfm":
            return base_steps
        flows = [stage.objective.nfe(steps or stage.config.steps, solver or stage.config.solver)
                 for stage in cascade(self.stages, scale)]
        return None if None in flows else base_steps + sum(flows)


def auto_tile(tile: bool | None, pixels: int) -> bool:
    return pixels > TILE_ABOVE_PIXELS if tile is None else tile
