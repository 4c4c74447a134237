"""FMBoostPipeline: image → latent → upsampled latent x0 → CFM flow → decoded image at ×scale."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.images import resize, to_pil, to_tensor
from fmboost.flow.noise import noise_augment, randn_like
from fmboost.flow.upsampling import upsample_latent
from fmboost.models.unet import CFMUNet
from fmboost.pipelines.methods import METHODS, MODEL_METHODS  # noqa: F401  (re-exported)
from fmboost.pipelines.tiling import auto_tile_size, available_memory, tiled_upscale
from fmboost.solvers.diffusion import sample_diffusion
from fmboost.solvers.ode import solve

CONFIG_NAME = "fmboost.json"


class FMBoostPipeline:
    def __init__(self, autoencoder: Autoencoder, model: CFMUNet | None, scale: int = 2, upsampling: str = "psu",
                 tau: float = 400, sigma_min: float = 0.0, objective: str = "cfm", **extra):
        self.autoencoder, self.model = autoencoder, model
        self.config = dict(scale=scale, upsampling=upsampling, tau=tau, sigma_min=sigma_min, objective=objective,
                           **extra)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "FMBoostPipeline":
        """A folder written by `save_pretrained` (or a hub id of one): fmboost.json, autoencoder/, cfm/."""
        path = Path(path)
        if not path.is_dir():
            from huggingface_hub import snapshot_download
            try:
                path = Path(snapshot_download(str(path)))
            except Exception as e:  # offline, unknown repo, no access: one line, not a stack of HTTP errors
                raise FileNotFoundError(f"{path}: no such folder, and it could not be fetched from the hub "
                                        f"({type(e).__name__})") from None
        if not (path / CONFIG_NAME).exists():
            raise FileNotFoundError(f"{path} is not an fmboost model folder (no {CONFIG_NAME})")
        config = json.loads((path / CONFIG_NAME).read_text())
        config.pop("format", None)
        autoencoder = config.pop("autoencoder", "autoencoder")
        local = path / autoencoder
        autoencoder = Autoencoder.from_pretrained(local if local.is_dir() else autoencoder)
        model = CFMUNet.from_pretrained(path / "cfm").eval() if (path / "cfm").is_dir() else None
        return cls(autoencoder, model, **config).to(device)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.autoencoder.save_pretrained(path / "autoencoder")
        if self.model is not None:
            self.model.save_pretrained(path / "cfm", safe_serialization=True)
        (path / CONFIG_NAME).write_text(json.dumps({"format": "fmboost", **self.config}, indent=2) + "\n")

    def to(self, device) -> "FMBoostPipeline":
        self.autoencoder.to(device)
        if self.model is not None:
            self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.autoencoder.device

    @property
    def pad_multiple(self) -> int:
        """Low-res pixel sizes must map to whole latents, and the high-res latent must suit the U-Net."""
        f, s = self.autoencoder.downsample_factor, self.config["scale"]
        unet = self.model.size_multiple if self.model is not None else 1
        return math.lcm(f, f * unet // math.gcd(f * unet, s))

    @torch.no_grad()
    def upsample(self, z_lr: torch.Tensor, tile: bool = False) -> torch.Tensor:
        return upsample_latent(z_lr, self.config["scale"], self.config["upsampling"], self.autoencoder, tile)

    @torch.no_grad()
    def flow(self, x_cond: torch.Tensor, steps: int = 4, solver: str = "euler", seed: int = 0, disable=True):
        """Maps x_cond to the high-res latent with the model's objective; returns (x1, NFE)."""
        if self.model is None:
            raise ValueError("this model folder has no network (cfm/); only --method x0/bicubic/lanczos work")
        objective = self.config["objective"]
        generator = torch.Generator().manual_seed(seed)
        net = lambda x, t: self.model(x, t, x_cond)
        if objective.startswith("regression"):
            return net(x_cond, torch.zeros((), device=x_cond.device)), 1
        if objective == "diffusion":
            # "ddim" / "ddpm" in place of an ODE solver name; ODE solvers make no sense for ε-prediction.
            kind = solver if solver in ("ddim", "ddpm") else "ddim"
            return sample_diffusion(net, x_cond, steps, kind, generator, disable)
        if objective == "naive-fm":
            x0 = randn_like(x_cond, generator)
        else:
            x0 = noise_augment(x_cond, self.config["tau"], generator)  # the same augmentation as in training
        return solve(net, x0, steps, solver, disable=disable)

    @torch.no_grad()
    def __call__(self, image: Image.Image, steps: int = 4, solver: str = "euler", method: str = "cfm",
                 seed: int = 0, tile: bool = False, disable=True, tile_size: int | None = None,
                 dtype: torch.dtype | None = None) -> Image.Image:
        """`tile`: run the whole upscale per overlapping tile of `tile_size` input pixels (default: as large as
        the free memory allows) and blend them seamlessly (see pipelines/tiling.py). `dtype`: autocast to fp16 or
        bf16 (the weights stay fp32)."""
        s = self.config["scale"]
        w, h = image.size
        if method in ("bicubic", "lanczos"):
            return resize(image, (w * s, h * s), method)
        if method == "model":  # whatever the folder was trained for: lets one eval compare many objectives
            method = self.config["objective"]
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if method in MODEL_METHODS and method != self.config["objective"]:
            raise ValueError(f"this model was trained with objective {self.config['objective']!r}; use "
                             f"--method {self.config['objective']} (or x0, bicubic, lanczos)")
        x = to_tensor(image)[None]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype not in (None, torch.float32)):
            if not tile:
                return to_pil(self.upscale_tensor(x, method, steps, solver, seed, disable)[0])
            run = lambda part: self.upscale_tensor(part, method, steps, solver, seed, disable=True)
            return to_pil(tiled_upscale(run, x, s, tile_size or self.auto_tile_size(), disable=disable)[0])

    @torch.no_grad()
    def upscale_tensor(self, x: torch.Tensor, method: str = "cfm", steps: int = 4, solver: str = "euler",
                       seed: int = 0, disable=True) -> torch.Tensor:
        """1×3×h×w in [-1, 1] → 1×3×(h·s)×(w·s): encode, upsample the latent, flow (unless x0), decode."""
        s, (h, w) = self.config["scale"], x.shape[-2:]
        x = pad_to_multiple(x.to(self.device), self.pad_multiple)
        x_cond = self.upsample(self.autoencoder.encode(x))
        z = x_cond if method == "x0" else self.flow(x_cond, steps, solver, seed, disable)[0]
        return self.autoencoder.decode(z)[:, :, : h * s, : w * s]

    def auto_tile_size(self) -> int:
        """The largest tile (input pixels) whose upscale fits in half the free memory of the device."""
        return auto_tile_size(self.autoencoder.vae.config.block_out_channels, self.config["scale"],
                              self.pad_multiple, available_memory(self.device))


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pads bottom/right by mirroring, so the border content continues rather than turning black."""
    ph, pw = -x.shape[-2] % m, -x.shape[-1] % m
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
