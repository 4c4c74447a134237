"""FMBoostPipeline: image → latent → upsampled latent x0 → CFM flow → decoded image at ×scale."""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.files import normal_modes
from fmboost.data.images import grey_rgb, is_grey, resize_by, to_pil, to_rgb, to_tensor
from fmboost.data.model_config import CONFIG_FILE, ModelConfig
from fmboost.data.sources import hub_kwargs, looks_like_hub_id, not_fetched, resolve_model
from fmboost.errors import InputError, MissingError
from fmboost.flow.objectives import DIFFUSION_PREDICTION, get_objective
from fmboost.flow.upsampling import upsample_image, upsample_latent
from fmboost.pipelines.consistency import match_input
from fmboost.models.device import reuse_freed_memory
from fmboost.models.networks import load_network
from fmboost.models.temporal import TemporalLayers, TemporalResNet
from fmboost.models.unet import CFMUNet
from fmboost.pipelines.methods import METHODS, MODEL_METHODS  # noqa: F401  (re-exported)
from fmboost.pipelines.tiling import (CPU_TILE, MAX_TILE, auto_tile_size, available_memory, count_tiles,
                                      tiled_upscale)

CONFIG_NAME = CONFIG_FILE
TEMPORAL_FOLDER = "temporal"  # the video model's temporal layers (models/temporal.py), beside cfm/


def check_prediction(path: Path, config: ModelConfig) -> None:
    """fmboost's diffusion baseline once regressed ε and now regresses v; sampling an ε-network as a v-network
    gives plausible-looking garbage, so a diffusion model folder must say it predicts v (older ones say nothing)."""
    if config.objective == "diffusion" and config.prediction != DIFFUSION_PREDICTION:
        said = config.prediction
        what = (f"predicts {said}" if said else
                "says nothing of what it predicts (made when fmboost's diffusion used ε)")
        raise InputError(f"{path}: this diffusion model {what}; fmboost samples {DIFFUSION_PREDICTION}-prediction "
                         "diffusion models only: train it again")


class FMBoostPipeline:
    """`config` (a ModelConfig) owns the folder's settings; keyword settings override it (or make one)."""

    def __init__(self, autoencoder: Autoencoder, model: CFMUNet | None, config: ModelConfig | None = None,
                 temporal=None, **settings):
        self.autoencoder, self.model = autoencoder, model
        self.temporal = temporal  # models/temporal.TemporalLayers for clips (upscale_clip), or None
        config = (config or ModelConfig()).replace(**settings) if settings else (config or ModelConfig())
        if config.objective == "diffusion" and config.prediction is None:  # travels with it (check_prediction)
            config = config.replace(prediction=DIFFUSION_PREDICTION)
        self.config = config

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "FMBoostPipeline":
        """A folder written by `save_pretrained` (or a hub id of one): fmboost.json, autoencoder/, cfm/."""
        path = Path(resolve_model(path))  # `default`, `real`: the embedded models
        if not path.is_dir():
            if not looks_like_hub_id(str(path)):
                raise MissingError(f"{path}: no such folder")
            from huggingface_hub import snapshot_download
            try:
                path = Path(snapshot_download(str(path), **hub_kwargs()))
            except Exception as e:  # offline, unknown repo, no access: one line, not a stack of HTTP errors
                raise not_fetched(path, e) from None
        if not (path / CONFIG_NAME).exists():
            raise MissingError(f"{path} is not an fmboost model folder (no {CONFIG_NAME})")
        return cls.load(path, ModelConfig.read(path), device)

    @classmethod
    def load(cls, folder: Path, config: ModelConfig, device: str | torch.device = "cpu") -> "FMBoostPipeline":
        """The weights of a local model folder whose config was read already (the command line reads it first, to
        know the model's defaults before torch is imported)."""
        check_prediction(folder, config)
        local = Path(folder) / config.autoencoder
        autoencoder = Autoencoder.from_pretrained(local if local.is_dir() else config.autoencoder)
        cfm = Path(folder) / "cfm"
        model = load_network(cfm).eval() if cfm.is_dir() else None
        temporal = Path(folder) / TEMPORAL_FOLDER
        layers = TemporalLayers.from_pretrained(temporal).eval() if temporal.is_dir() and model is not None else None
        if torch.device(device).type == "cpu":
            reuse_freed_memory()  # every layer's activations come and go: keep the freed pages (models/device.py)
        # The temporal layers' 5-D (Conv3d) weights have no channels-last format: they stay as they are.
        return cls(autoencoder, model, config, temporal=layers).to(device).channels_last()

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        was = self.is_channels_last
        self.channels_last(False)  # safetensors stores contiguous (NCHW) tensors only
        try:
            self.autoencoder.save_pretrained(path / "autoencoder")
            if self.model is not None:
                self.model.save_pretrained(path / "cfm", safe_serialization=True)
        finally:
            self.channels_last(was)
        if self.temporal is not None:
            self.temporal.save_pretrained(path / TEMPORAL_FOLDER, safe_serialization=True)
        self.config.replace(autoencoder="autoencoder").write(path)  # the weights saved beside it
        normal_modes(path)  # safetensors writes owner-only files; a model folder is shared like an image

    def to(self, device) -> "FMBoostPipeline":
        self.autoencoder.to(device)
        if self.model is not None:
            self.model.to(device)
        if self.temporal is not None:
            self.temporal.to(device)
        return self

    def networks(self) -> list[torch.nn.Module]:
        return [self.autoencoder.vae] + ([self.model] if self.model is not None else [])

    def channels_last(self, on: bool = True) -> "FMBoostPipeline":
        """NHWC weights, so the convolutions (nearly all of the work) run in oneDNN's channels-last kernels: on this
        project's 2-core CPU the `sr` network on a 256² latent took 4.1 s instead of 5.4 s, outputs within 1e-6.
        `from_pretrained` turns it on; the saved weights are NCHW either way."""
        fmt = torch.channels_last if on else torch.contiguous_format
        for net in self.networks():
            net.to(memory_format=fmt)
        return self

    @property
    def is_channels_last(self) -> bool:
        conv = next((m for m in self.autoencoder.vae.modules() if isinstance(m, torch.nn.Conv2d)), None)
        return conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last) \
            and not conv.weight.is_contiguous()

    @property
    def device(self) -> torch.device:
        return self.autoencoder.device

    @property
    def pad_multiple(self) -> int:
        """Low-res pixel sizes must map to whole latents, and the high-res latent must suit the U-Net."""
        f, s = self.autoencoder.downsample_factor, self.config.scale
        unet = self.model.size_multiple if self.model is not None else 1
        return math.lcm(f, f * unet // math.gcd(f * unet, s))

    @torch.no_grad()
    def upsample(self, z_lr: torch.Tensor, tile: bool = False) -> torch.Tensor:
        return upsample_latent(z_lr, self.config.scale, self.config.upsampling, self.autoencoder, tile,
                               self.config.psu_resize)

    @torch.no_grad()
    def condition(self, x_lr: torch.Tensor) -> torch.Tensor:
        """x0 (and the flow's condition) for low-res pixels, made as the model was trained to see it. Large photos
        are tiled a level up (`upscale(tile=True)` runs this per tile), so it never tiles itself."""
        if self.config.upsampling == "pixel":
            return upsample_image(x_lr, self.config.scale, self.autoencoder)
        return self.upsample(self.autoencoder.encode(x_lr))

    @property
    def objective(self):
        """What the network was trained for: it knows its sampler, its solvers and the NFE of a step."""
        return self.objective_at()

    def objective_at(self, tau: float | None = None):
        """The objective sampling from x0 noised to step `tau` (of 1000; default: the model's own, its config).
        A larger τ starts further from the blurry x0: more generated detail, less fidelity."""
        tau = self.config.tau if tau is None else tau
        return get_objective(self.config.objective, self.config.sigma_min, tau, self.config.noise_schedule)

    @torch.no_grad()
    def flow(self, x_cond: torch.Tensor, steps: int | None = None, solver: str | None = None, seed: int = 0,
             disable=True, callback=None, frames: int | None = None, tau: float | None = None):
        """Maps x_cond to the high-res latent with the model's objective; returns (x1, NFE). `callback(nfe)`
        follows every network evaluation. Steps and solver default to the model's own (its config). `frames`: the
        batch is clips of that many frames, run with the temporal layers (which the pipeline must have). `tau`: the
        sampling τ (default: the model's own; see `objective_at`)."""
        if self.model is None:
            raise InputError("this model folder has no network (cfm/); only the methods x0, bicubic and lanczos "
                             "work")
        model = self.model if frames is None else TemporalResNet(self.model, self.temporal)
        net = (lambda x, t: model(x, t, x_cond)) if frames is None else (lambda x, t: model(x, t, x_cond, frames))
        generator = torch.Generator().manual_seed(seed)
        objective = self.objective_at(tau)
        return objective.sample(net, x_cond, steps or self.config.steps, solver or self.config.solver, generator,
                                callback=callback, disable=disable)

    @torch.no_grad()
    def upscale(self, image: Image.Image, steps: int | None = None, solver: str | None = None, method: str = "cfm",
                seed: int = 0, tile: bool = False, disable=True, callback=None, color_fix: str | None = None,
                tile_size: int | None = None, dtype: torch.dtype | None = None,
                tau: float | None = None) -> tuple[Image.Image, int]:
        """(the image ×scale, the network evaluations it took). `method="model"` runs the folder's objective;
        `color_fix` (none | wavelet | adain | luma; default: the model's own setting) takes colours from the input.
        `tile`: run the whole upscale per overlapping tile of `tile_size` input pixels (default: as large as the
        free memory allows) and blend them seamlessly (see pipelines/tiling.py). `dtype`: autocast to fp16 or bf16
        (the weights stay fp32). Steps, solver and the sampling `tau` default to the model's own (its config). A grey
        image (every pixel's channels equal) comes back grey: the output's luma in all three channels, since the
        autoencoder and the flow tint what they were never shown without colour."""
        grey = is_grey(image)
        result, nfe = self.upscale_colour(image, steps, solver, method, seed, tile, disable, callback, color_fix,
                                          tile_size, dtype, tau)
        return (grey_rgb(result) if grey else result), nfe

    def upscale_colour(self, image: Image.Image, steps: int | None = None, solver: str | None = None,
                       method: str = "cfm", seed: int = 0, tile: bool = False, disable=True, callback=None,
                       color_fix: str | None = None, tile_size: int | None = None,
                       dtype: torch.dtype | None = None, tau: float | None = None) -> tuple[Image.Image, int]:
        if method in ("bicubic", "lanczos"):
            return resize_by(image, self.config.scale, method), 0
        if method == "model":  # whatever the folder was trained for: lets one eval compare many objectives
            method = self.config.objective
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if method in MODEL_METHODS and method != self.config.objective:
            raise InputError(f"this model was trained with objective {self.config.objective!r}; choose the "
                             f"method {self.config.objective} (or x0, bicubic, lanczos)")
        x, nfe = to_tensor(to_rgb(image))[None], 0
        bar, per_nfe = contextlib.nullcontext(), False
        if tile:
            tile_size = tile_size or self.auto_tile_size()
            bar, per_nfe = self.tiles_bar(x.shape[-2:], tile_size, method, steps, solver, disable)

        def step(n):  # after each network evaluation of a tile
            bar.update(1)
            if callback is not None:
                callback(n)

        def run(part):
            nonlocal nfe
            out, n = self.upscale_tensor(part, method, steps, solver, seed, disable if not tile else True,
                                         step if per_nfe else callback, color_fix, tau)
            if tile and not per_nfe:
                bar.update(1)
            nfe += n
            return out

        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype not in (None, torch.float32)), bar:
            if not tile:
                return to_pil(run(x)[0]), nfe
            return to_pil(tiled_upscale(run, x, self.config.scale, tile_size, disable=True,
                                        multiple=self.pad_multiple)[0]), nfe

    def tiles_bar(self, size, tile_size: int, method: str, steps: int | None, solver: str | None, disable):
        """(a bar, whether it counts network evaluations): one bar over a tiled upscale's evaluations, all tiles
        together, so that it moves (and has an ETA) within the first tile; over tiles where the count of evaluations
        is not known beforehand (dopri5) or there are none (x0)."""
        tiles = count_tiles(*size, tile_size)
        per_tile = 0 if method == "x0" else self.objective.nfe(steps or self.config.steps,
                                                               solver or self.config.solver)
        if per_tile:
            return tqdm(total=tiles * per_tile, desc=f"{tiles} tiles", unit="NFE", disable=disable, leave=False), True
        return tqdm(total=tiles, desc="tiles", unit="tile", disable=disable, leave=False), False

    def __call__(self, image: Image.Image, steps: int | None = None, solver: str | None = None, method: str = "cfm",
                 seed: int = 0, tile: bool = False, disable=True, callback=None, color_fix: str | None = None,
                 tile_size: int | None = None, dtype: torch.dtype | None = None,
                 tau: float | None = None) -> Image.Image:
        return self.upscale(image, steps, solver, method, seed, tile, disable, callback, color_fix, tile_size,
                            dtype, tau)[0]

    @torch.no_grad()
    def upscale_tensor(self, x: torch.Tensor, method: str = "cfm", steps: int | None = None,
                       solver: str | None = None, seed: int = 0, disable=True, callback=None,
                       color_fix: str | None = None, tau: float | None = None) -> tuple[torch.Tensor, int]:
        """1×3×h×w in [-1, 1] → (1×3×(h·s)×(w·s), NFE): x0 from the pixels, the flow (unless x0), then `finish`."""
        s, (h, w) = self.config.scale, x.shape[-2:]
        x = pad_to_multiple(x.to(self.device), self.pad_multiple)
        x_cond = self.condition(x)
        z, nfe = (x_cond, 0) if method == "x0" else self.flow(x_cond, steps, solver, seed, disable, callback,
                                                              tau=tau)
        return self.finish(z, x, color_fix)[:, :, : h * s, : w * s], nfe

    def finish(self, z: torch.Tensor, x: torch.Tensor, color_fix: str | None = None) -> torch.Tensor:
        """The high-res latent → pixels: decoded, colours taken from the low-res input `x` (`color_fix`, default the
        model's), then back-projected onto it as many times as the model's `back_projection` says. Always in
        fp32, outside any autocast: the resizes have no bf16 kernels, and 8-bit output needs more than bf16's 8 bits."""
        decoded = self.autoencoder.decode(z).float()
        with torch.autocast(self.device.type, enabled=False):
            return match_input(decoded, x.float(), color_fix or self.config.color_fix, self.config.back_projection)

    @property
    def aligned(self) -> bool:
        """Whether clips get temporal alignment: the folder has temporal layers (temporal/)."""
        return self.temporal is not None

    @torch.no_grad()
    def upscale_clip(self, x: torch.Tensor, aligned: bool = True, steps: int | None = None, solver: str | None = None,
                     seed: int = 0, color_fix: str | None = None, tile: bool = False, tile_size: int | None = None,
                     method: str = "cfm", tau: float | None = None) -> torch.Tensor:
        """F×3×h×w consecutive frames in [-1, 1] → F×3×(h·s)×(w·s): one window of a clip at once, through the
        temporal layers when `aligned` (and the folder has them), else each frame as `upscale` would (the same
        result as upscaling the frames as images). With `tile`, every frame's same tile goes through together."""
        temporal = aligned and self.aligned and method == "cfm"

        def run(part):
            if temporal:
                s, (h, w) = self.config.scale, part.shape[-2:]
                padded = pad_to_multiple(part.to(self.device), self.pad_multiple)
                x_cond = self.condition(padded)
                z, _ = self.flow(x_cond, steps, solver, seed, frames=padded.shape[0], tau=tau)
                return self.finish(z, padded, color_fix)[:, :, : h * s, : w * s]
            return torch.cat([self.upscale_tensor(f[None], method, steps, solver, seed, color_fix=color_fix,
                                                  tau=tau)[0] for f in part])

        if not tile:
            return run(x).cpu()
        return tiled_upscale(run, x, self.config.scale, tile_size or self.auto_tile_size(), disable=True,
                             multiple=self.pad_multiple)

    def auto_tile_size(self) -> int:
        """The largest tile (input pixels) whose upscale fits in half the free memory of the device; on the CPU at
        most CPU_TILE, the fastest side there."""
        largest = CPU_TILE if self.device.type == "cpu" else MAX_TILE
        return auto_tile_size(self.autoencoder.vae.config.block_out_channels, self.config.scale,
                              self.pad_multiple, available_memory(self.device), largest=largest)


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pads bottom/right by mirroring, so the border content continues rather than turning black."""
    ph, pw = -x.shape[-2] % m, -x.shape[-1] % m
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
