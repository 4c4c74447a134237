"""The text-to-image families a diffusers base can belong to, and the little that differs between them.

fmboost boosts the base's latent with a CFM model trained on the base's VAE; everything else is the base's own
business. What still differs per family:

- **where the latent is**: SD1.x/2.x and SDXL return B×4×H×W, SD3 B×16×H×W, FLUX B×(H/2·W/2)×64: 2×2 patches of
  its 16 channels packed into tokens, which are unpacked here before the flow (`unpack_latents`; `pack_latents` is
  the inverse, for handing a latent back to a FLUX transformer). Every family returns latents already scaled *and
  shifted*, z = (E(x) − shift_factor)·scaling_factor (SD3 and FLUX have a shift), the space fmboost's
  `Autoencoder` works in, so nothing is rescaled here;
- **the sizes it draws at**: its training resolution and the multiple width and height must be of;
- **its sampling defaults**: steps and guidance, and for distilled bases (SDXL-Turbo, FLUX.1-schnell, SD3.5 Large
  Turbo) the few steps without guidance they were distilled for (`sampling_defaults` documents the rule);
- **attention scaling**: it rescales a U-Net's *self*-attention, whose softmax runs over image tokens only. SD3 and
  FLUX are MM-DiTs: image and text tokens share one joint softmax (FLUX adds rotary embeddings), which
  `ScaledAttnProcessor` does not compute, so `--attention-scaling` is refused for them (they also adapt to the
  resolution by shifting their noise schedule instead);
- **LCM-LoRA**: exists for the U-Net families (latent-consistency/lcm-lora-sdv1-5, lcm-lora-sdxl); SD3 and FLUX are
  flow-matching models whose few-step versions are distilled bases instead.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fmboost.errors import InputError


class GenerateInputError(InputError):
    """A request this base and these stages cannot run. `part` says what it is about (base, lcm_lora, scale,
    base_size, negative, attention_scale), so the command line and the web page word it in their own terms; the
    message names no flag."""

    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    steps: int                      # base steps when the user sets none
    guidance: float                 # guidance scale when the user sets none
    turbo_steps: int = 4            # steps of the family's "turbo" distillation (model cards), without guidance
    packed: bool = False            # latents come back as 2×2-packed tokens (FLUX)
    joint_attention: bool = False   # MM-DiT: image and text tokens in one softmax; our scaling does not apply
    lcm_lora: bool = False          # an LCM-LoRA exists for this family
    cuda_dtype: torch.dtype = torch.float16


FAMILIES = {
    # Steps and guidance: the defaults fmboost had for SD1.5, and the values of the model cards (SDXL 5, SD3 7 at
    # 28 steps, FLUX.1-dev 3.5 at 28 steps); SD-Turbo/SDXL-Turbo sample in 1 step, SD3.5 Large Turbo in 4.
    "sd": Family("sd", "SD1.x/2.x", 25, 7.0, turbo_steps=1, lcm_lora=True),
    "sdxl": Family("sdxl", "SDXL", 25, 5.0, turbo_steps=1, lcm_lora=True),
    "sd3": Family("sd3", "SD3/SD3.5", 28, 7.0, joint_attention=True),
    # FLUX in fp16 overflows; its weights are published in bf16.
    "flux": Family("flux", "FLUX.1", 28, 3.5, packed=True, joint_attention=True, cuda_dtype=torch.bfloat16),
}
OTHER = Family("other", "a base of another family", 25, 7.0)
PIPELINE_FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl",
                     "StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux"}
# FLUX.1-schnell is timestep-distilled: 4 steps, no guidance (its transformer has no guidance embedding).
FLUX_SCHNELL_STEPS = 4


def denoiser(base) -> torch.nn.Module | None:
    """The network the base runs every step: `unet` (SD, SDXL) or `transformer` (SD3, FLUX)."""
    for name in ("unet", "transformer"):
        net = getattr(base, name, None)
        if net is not None:
            return net
    return None


def family_of(base) -> Family:
    """From the denoiser's class (and SDXL's micro-conditioning), not the pipeline's: img2img and other pipeline
    classes of a family share its denoiser."""
    net = denoiser(base)
    kind = type(net).__name__
    if kind.startswith("Flux"):
        return FAMILIES["flux"]
    if kind.startswith("SD3"):
        return FAMILIES["sd3"]
    if kind == "UNet2DConditionModel":
        return FAMILIES["sdxl" if net.config.get("addition_embed_type") == "text_time" else "sd"]
    return OTHER


def load_dtype(name: str | os.PathLike, device: str) -> torch.dtype:
    """The dtype to load a base in, before it is loaded: fp32 on a CPU; on a GPU fp16, bf16 for FLUX, told by the
    folder's model_index.json or, for a hub id, by its name (no request to the hub before the load itself)."""
    if not str(device).startswith("cuda"):
        return torch.float32
    index = Path(name) / "model_index.json"
    try:
        cls = json.loads(index.read_text()).get("_class_name", "") if index.is_file() else ""
    except (OSError, ValueError):  # a broken file: load_base reports it in one line
        cls = ""
    flux = PIPELINE_FAMILIES.get(cls) == "flux" or (not cls and "flux" in str(name).lower())
    return FAMILIES["flux" if flux else "sd"].cuda_dtype


def sampling_defaults(base, name: str | os.PathLike, lcm_lora: str | None = None) -> tuple[int, float]:
    """Base steps and guidance scale when the user sets none. The rule, first match:

    1. an LCM-LoRA was fused: 4 steps, guidance 1 (LCMScheduler; the LoRA distils classifier-free guidance in);
    2. a FLUX transformer without a guidance embedding (FLUX.1-schnell): 4 steps, guidance 0;
    3. a base whose hub id or folder name contains "turbo" (SD-Turbo, SDXL-Turbo: 1 step; SD3.5 Large Turbo:
       4 steps): guidance 0;
    4. the family's defaults (FAMILIES).
    The scheduler is always the base's own (distilled bases ship theirs: SDXL-Turbo's Euler-ancestral with
    trailing timesteps, FLUX.1-schnell's flow matching without resolution shift).
    """
    family = family_of(base)
    if lcm_lora:
        return 4, 1.0
    if family.name == "flux" and not denoiser(base).config.get("guidance_embeds", True):
        return FLUX_SCHNELL_STEPS, 0.0
    if "turbo" in Path(str(name).rstrip("/")).name.lower():
        return family.turbo_steps, 0.0
    return family.steps, family.guidance


def call_kwargs(base, negative_prompt: str | None) -> dict:
    """Family-specific arguments of the base's __call__."""
    family, kwargs = family_of(base), {}
    if negative_prompt:
        check_negative_prompt(base)
        kwargs["negative_prompt"] = negative_prompt
    if family.name == "flux" and not denoiser(base).config.get("guidance_embeds", True):
        kwargs["max_sequence_length"] = 256  # FLUX.1-schnell's T5 context (its model card)
    return kwargs


def check_negative_prompt(base) -> None:
    if family_of(base).name == "flux":  # FluxPipeline would drop it silently unless true CFG is switched on
        raise GenerateInputError("negative", "a negative prompt is not for FLUX.1: its guidance is distilled into "
                                             "the transformer")


def check_lcm_lora(base, lcm_lora: str | None) -> None:
    family = family_of(base)
    if lcm_lora and not family.lcm_lora and family is not OTHER:
        raise GenerateInputError("lcm_lora", f"{lcm_lora}: LCM-LoRA is for U-Net bases (SD1.x/2.x, SDXL); "
                                             f"{family.label} samples with flow matching: use a distilled base "
                                             f"(FLUX.1-schnell, SD3.5 Large Turbo)")


def check_attention_scaling(base) -> None:
    """Attention scaling rescales self-attention over image tokens; an MM-DiT has none on its own (see above)."""
    family, net = family_of(base), denoiser(base)
    if family.joint_attention or (family is OTHER and type(net).__name__ != "UNet2DConditionModel"):
        kind = "joint image-text attention" if family.joint_attention else "not a U-Net"
        raise GenerateInputError("attention_scale", f"attention scaling applies to U-Net self-attention (SD1.x/2.x, "
                                                    f"SDXL); {family.label} is a transformer whose attention fmboost "
                                                    f"does not rescale ({kind})")


def train_pixels(base, downsample_factor: int) -> int | None:
    """Pixels per side the base was trained at: the denoiser's sample_size (SD1.5 64, SDXL and SD3 128 latents)
    or the pipeline's default_sample_size (FLUX: 128), times the VAE's factor."""
    size = getattr(getattr(denoiser(base), "config", None), "sample_size", None)
    size = size if isinstance(size, int) else getattr(base, "default_sample_size", None)
    return size * downsample_factor if isinstance(size, int) else None


def size_multiple(base, downsample_factor: int) -> int:
    """Width and height must be multiples of this: a U-Net halves the latent at each level but the last, an
    MM-DiT cuts it into patch_size² patches (SD3: 2), FLUX packs 2×2 latents into one token."""
    net, family = denoiser(base), family_of(base)
    if family.packed:
        return downsample_factor * 2
    blocks = getattr(net.config, "block_out_channels", None) if net is not None else None
    if blocks:
        return downsample_factor * 2 ** (len(blocks) - 1)
    return downsample_factor * int(getattr(getattr(net, "config", None), "patch_size", None) or 1)


def unpack_latents(z: torch.Tensor, width: int, height: int, downsample_factor: int) -> torch.Tensor:
    """FLUX's tokens B × (h/2·w/2) × 4C back to B × C × h × w (each token is a 2×2 patch of C channels),
    as FluxPipeline._unpack_latents does before decoding."""
    b, _, c4 = z.shape
    h, w = 2 * (height // (downsample_factor * 2)), 2 * (width // (downsample_factor * 2))
    z = z.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return z.reshape(b, c4 // 4, h, w)


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """The inverse of `unpack_latents`: B × C × h × w → B × (h/2·w/2) × 4C, what a FLUX transformer takes."""
    b, c, h, w = z.shape
    z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return z.reshape(b, (h // 2) * (w // 2), c * 4)


def flow_latents(base, z, width: int, height: int, downsample_factor: int):
    """The base's output as B×C×H×W latents for the flow: FLUX's packed tokens are unpacked; others pass as they
    are."""
    if family_of(base).packed and torch.is_tensor(z) and z.ndim == 3:
        return unpack_latents(z, width, height, downsample_factor)
    return z
