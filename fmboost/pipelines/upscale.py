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
from fmboost.data.files import normal_modes
from fmboost.data.images import resize_by, to_pil, to_tensor
from fmboost.data.sources import MODEL_CONFIG, hub_kwargs, looks_like_hub_id, not_fetched, resolve_model
from fmboost.flow.objectives import DIFFUSION_PREDICTION, get_objective
from fmboost.flow.upsampling import upsample_image, upsample_latent
from fmboost.pipelines.colorfix import color_fix as fix_colors
from fmboost.models.networks import load_network
from fmboost.models.unet import CFMUNet
from fmboost.pipelines.methods import METHODS, MODEL_METHODS  # noqa: F401  (re-exported)
from fmboost.pipelines.tiling import auto_tile_size, available_memory, tiled_upscale

CONFIG_NAME = MODEL_CONFIG


def check_prediction(path: Path, config: dict) -> None:
    """fmboost's diffusion baseline once regressed ε and now regresses v; sampling an ε-network as a v-network
    gives plausible-looking garbage, so a diffusion model folder must say it predicts v (older ones say nothing)."""
    if config.get("objective") == "diffusion" and config.get("prediction") != DIFFUSION_PREDICTION:
        said = config.get("prediction")
        what = (f"predicts {said}" if said else
                "says nothing of what it predicts (made when fmboost's diffusion used ε)")
        raise ValueError(f"{path}: this diffusion model {what}; fmboost samples {DIFFUSION_PREDICTION}-prediction "
                         "diffusion models only: train it again")


class FMBoostPipeline:
    def __init__(self, autoencoder: Autoencoder, model: CFMUNet | None, scale: int = 2, upsampling: str = "psu",
                 tau: float = 400, sigma_min: float = 0.0, objective: str = "cfm", **extra):
        self.autoencoder, self.model = autoencoder, model
        self.config = dict(scale=scale, upsampling=upsampling, tau=tau, sigma_min=sigma_min, objective=objective,
                           **extra)
        if objective == "diffusion":  # what the network predicts travels with it (see check_prediction)
            self.config.setdefault("prediction", DIFFUSION_PREDICTION)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "FMBoostPipeline":
        """A folder written by `save_pretrained` (or a hub id of one): fmboost.json, autoencoder/, cfm/."""
        path = Path(resolve_model(path))  # `default`, `real`: the embedded models
        if not path.is_dir():
            if not looks_like_hub_id(str(path)):
                raise FileNotFoundError(f"{path}: no such folder")
            from huggingface_hub import snapshot_download
            try:
                path = Path(snapshot_download(str(path), **hub_kwargs()))
            except Exception as e:  # offline, unknown repo, no access: one line, not a stack of HTTP errors
                raise not_fetched(path, e) from None
        if not (path / CONFIG_NAME).exists():
            raise FileNotFoundError(f"{path} is not an fmboost model folder (no {CONFIG_NAME})")
        config = json.loads((path / CONFIG_NAME).read_text())
        config.pop("format", None)
        check_prediction(path, config)
        autoencoder = config.pop("autoencoder", "autoencoder")
        local = path / autoencoder
        autoencoder = Autoencoder.from_pretrained(local if local.is_dir() else autoencoder)
        model = load_network(path / "cfm").eval() if (path / "cfm").is_dir() else None
        return cls(autoencoder, model, **config).to(device)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.autoencoder.save_pretrained(path / "autoencoder")
        if self.model is not None:
            self.model.save_pretrained(path / "cfm", safe_serialization=True)
        (path / CONFIG_NAME).write_text(json.dumps({"format": "fmboost", **self.config}, indent=2) + "\n")
        normal_modes(path)  # safetensors writes owner-only files; a model folder is shared like an image

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
        return upsample_latent(z_lr, self.config["scale"], self.config["upsampling"], self.autoencoder, tile,
                               self.config.get("psu_resize", "bicubic"))

    @torch.no_grad()
    def condition(self, x_lr: torch.Tensor) -> torch.Tensor:
        """x0 (and the flow's condition) for low-res pixels, made as the model was trained to see it. Large photos
        are tiled a level up (`upscale(tile=True)` runs this per tile), so it never tiles itself."""
        if self.config["upsampling"] == "pixel":
            return upsample_image(x_lr, self.config["scale"], self.autoencoder)
        return self.upsample(self.autoencoder.encode(x_lr))

    @property
    def objective(self):
        """What the network was trained for: it knows its sampler, its solvers and the NFE of a step."""
        return get_objective(self.config["objective"], self.config["sigma_min"], self.config["tau"],
                             self.config.get("noise_schedule", "cosine"))

    @torch.no_grad()
    def flow(self, x_cond: torch.Tensor, steps: int = 4, solver: str = "euler", seed: int = 0, disable=True,
             callback=None):
        """Maps x_cond to the high-res latent with the model's objective; returns (x1, NFE). `callback(nfe)`
        follows every network evaluation."""
        if self.model is None:
            raise ValueError("this model folder has no network (cfm/); only the methods x0, bicubic and lanczos "
                             "work")
        net = lambda x, t: self.model(x, t, x_cond)
        generator = torch.Generator().manual_seed(seed)
        return self.objective.sample(net, x_cond, steps, solver, generator, callback=callback, disable=disable)

    @torch.no_grad()
    def upscale(self, image: Image.Image, steps: int = 4, solver: str = "euler", method: str = "cfm",
                seed: int = 0, tile: bool = False, disable=True, callback=None, color_fix: str | None = None,
                tile_size: int | None = None, dtype: torch.dtype | None = None) -> tuple[Image.Image, int]:
        """(the image ×scale, the network evaluations it took). `method="model"` runs the folder's objective;
        `color_fix` (none | wavelet | adain; default: the model's own setting) takes colours from the input.
        `tile`: run the whole upscale per overlapping tile of `tile_size` input pixels (default: as large as the
        free memory allows) and blend them seamlessly (see pipelines/tiling.py). `dtype`: autocast to fp16 or bf16
        (the weights stay fp32)."""
        if method in ("bicubic", "lanczos"):
            return resize_by(image, self.config["scale"], method), 0
        if method == "model":  # whatever the folder was trained for: lets one eval compare many objectives
            method = self.config["objective"]
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if method in MODEL_METHODS and method != self.config["objective"]:
            raise ValueError(f"this model was trained with objective {self.config['objective']!r}; choose the "
                             f"method {self.config['objective']} (or x0, bicubic, lanczos)")
        x, nfe = to_tensor(image)[None], 0

        def run(part):
            nonlocal nfe
            out, n = self.upscale_tensor(part, method, steps, solver, seed, disable if not tile else True, callback,
                                         color_fix)
            nfe += n
            return out

        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype not in (None, torch.float32)):
            if not tile:
                return to_pil(run(x)[0]), nfe
            s = self.config["scale"]
            out = tiled_upscale(run, x, s, tile_size or self.auto_tile_size(), disable=disable)
            return to_pil(out[0]), nfe

    def __call__(self, image: Image.Image, steps: int = 4, solver: str = "euler", method: str = "cfm",
                 seed: int = 0, tile: bool = False, disable=True, callback=None, color_fix: str | None = None,
                 tile_size: int | None = None, dtype: torch.dtype | None = None) -> Image.Image:
        return self.upscale(image, steps, solver, method, seed, tile, disable, callback, color_fix, tile_size,
                            dtype)[0]

    @torch.no_grad()
    def upscale_tensor(self, x: torch.Tensor, method: str = "cfm", steps: int = 4, solver: str = "euler",
                       seed: int = 0, disable=True, callback=None,
                       color_fix: str | None = None) -> tuple[torch.Tensor, int]:
        """1×3×h×w in [-1, 1] → (1×3×(h·s)×(w·s), NFE): x0 from the pixels, the flow (unless x0), decode, and the
        colour fix against the input."""
        s, (h, w) = self.config["scale"], x.shape[-2:]
        x = pad_to_multiple(x.to(self.device), self.pad_multiple)
        x_cond = self.condition(x)
        z, nfe = (x_cond, 0) if method == "x0" else self.flow(x_cond, steps, solver, seed, disable, callback)
        out = fix_colors(self.autoencoder.decode(z).float(), x.float(),
                         color_fix or self.config.get("color_fix", "none"))
        return out[:, :, : h * s, : w * s], nfe

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
