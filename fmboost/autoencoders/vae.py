"""One wrapper over `diffusers.AutoencoderKL`: the Stable Diffusion VAEs and fmboost's own small default.

Latents are always handled *scaled* (z = (E(x) − shift) · scaling_factor), as in the latent diffusion models,
so the flow sees roughly unit-variance inputs whatever the autoencoder.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from diffusers import AutoencoderKL

from fmboost.autoencoders.lean_resnet import use_lean_resnets
from fmboost.autoencoders.subpixel import use_subpixel_upsampling
from fmboost.data.files import normal_modes
from fmboost.data.sources import EMBEDDED_MODELS, hub_kwargs, looks_like_hub_id, not_fetched, resolve_autoencoder
from fmboost.errors import MissingError


def small_autoencoder_config(block_out_channels=(32, 64, 128), latent_channels: int = 4) -> dict:
    """Config of fmboost's embedded autoencoder: downsampling factor 2**(len(block_out_channels) − 1)."""
    n = len(block_out_channels)
    return dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * n,
                up_block_types=["UpDecoderBlock2D"] * n, block_out_channels=list(block_out_channels),
                layers_per_block=1, latent_channels=latent_channels, norm_num_groups=8,
                mid_block_add_attention=False, sample_size=256, scaling_factor=1.0)


class Autoencoder:
    """Encodes images in [-1, 1] to scaled latents and back."""

    def __init__(self, vae: AutoencoderKL):
        self.vae = vae.eval().requires_grad_(False)
        use_subpixel_upsampling(vae.decoder)  # the same decoder, its ×2 steps at the low resolution (subpixel.py)
        use_lean_resnets(vae)  # the same res-blocks, without a division by 1 and copies (lean_resnet.py)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, subfolder: str | None = None, **kwargs):
        """A local folder, a hub id (`stabilityai/sd-vae-ft-mse`) or a hub id with its subfolder
        (`stable-diffusion-v1-5/stable-diffusion-v1-5/vae`, `stabilityai/stable-diffusion-xl-base-1.0/vae`), or
        an embedded model's name (`default`) or any fmboost model folder: its autoencoder."""
        name = resolve_autoencoder(name_or_path)
        if os.path.isdir(name):
            try:
                return cls(AutoencoderKL.from_pretrained(name, subfolder=subfolder, **kwargs))
            except OSError as e:
                raise MissingError(f"{name_or_path}: cannot load an AutoencoderKL from this folder (give an "
                                   f"AutoencoderKL folder or an fmboost model folder): "
                                   f"{str(e).splitlines()[0]}") from None
        if not looks_like_hub_id(name):
            raise MissingError(f"{name_or_path}: no such folder (nor an embedded model's name: "
                               f"{', '.join(EMBEDDED_MODELS)})")
        parts = name.split("/")
        if subfolder is None and len(parts) > 2:
            name, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
        try:
            return cls(AutoencoderKL.from_pretrained(name, subfolder=subfolder, **hub_kwargs(), **kwargs))
        except Exception as e:  # offline, unknown id, gated: one line, never thirty seconds of retries
            raise not_fetched(name_or_path, e) from None

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.vae.save_pretrained(path, safe_serialization=True)
        normal_modes(path)  # safetensors writes owner-only files

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def to(self, device=None, dtype=None) -> "Autoencoder":
        if (device is not None and torch.device(device) != self.device) or (dtype not in (None, self.dtype)):
            self.vae.to(device=device, dtype=dtype)
        return self

    @contextmanager
    def _tiling(self, tile: bool, tile_size: int):
        """diffusers' overlapping tiles with blended seams keep 2048 px images within memory."""
        if not tile:
            yield
            return
        self.vae.enable_tiling()
        self.vae.tile_sample_min_size = tile_size
        self.vae.tile_latent_min_size = tile_size // self.downsample_factor
        try:
            yield
        finally:
            self.vae.disable_tiling()

    @torch.no_grad()
    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
               tile: bool = False, tile_size: int = 512) -> torch.Tensor:
        """Posterior mean by default: deterministic latents make training pairs and outputs reproducible."""
        with self._tiling(tile, tile_size):
            dist = self.vae.encode(x.to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).float()

    def decode_with_grad(self, z: torch.Tensor) -> torch.Tensor:
        """Pixels from scaled latents, differentiable in z (the weights stay frozen) and not clamped, so that a
        loss on them reaches the flow everywhere: training's pixel term (flow/objective.py)."""
        return self.vae.decode(z / self.scaling_factor + self.shift_factor).sample

    @torch.no_grad()
    def decode(self, z: torch.Tensor, tile: bool = False, tile_size: int = 512, clamp: bool = True) -> torch.Tensor:
        """Pixels in [-1, 1]; `clamp=False` keeps the decoder's overshoot (the reference's PSU does)."""
        z = (z / self.scaling_factor + self.shift_factor).to(self.device, self.dtype)
        with self._tiling(tile, tile_size):
            x = self.vae.decode(z).sample.float()
        return x.clamp(-1, 1) if clamp else x
