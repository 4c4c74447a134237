"""What a run hands over: OUT/model (the EMA weights as a model folder for `--model`) and sample grids."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from fmboost.data.files import WEIGHTS_NAME, sha256, write_atomic
from fmboost.data.stream import first_pairs
from fmboost.training.config import TrainConfig
from fmboost.training.distributed import full_tensors, sharded


def exported_settings(cfg: TrainConfig) -> dict:
    """What the exported model's fmboost.json says of how it samples, from the training settings."""
    return {"sigma_min": cfg.sigma_min, "tau": cfg.tau if cfg.sample_tau is None else cfg.sample_tau,
            "objective": cfg.objective, "color_fix": cfg.color_fix, "back_projection": cfg.back_projection,
            "next_model": cfg.next_model, **({} if cfg.sample_steps is None else {"steps": cfg.sample_steps})}


def check_export_settings(cfg: TrainConfig) -> None:
    """The exported model's settings, validated as its fmboost.json will be: a bad one is refused before the first
    step, not after the run."""
    from fmboost.data.model_config import ModelConfig

    ModelConfig(**exported_settings(cfg))


def export_pipeline(out: Path, ema, manifest: dict, cfg: TrainConfig, step: int):
    """Writes out/model, a folder `FMBoostPipeline.from_pretrained` (and `fmboost upscale --model`) reads."""
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline(Autoencoder.from_pretrained(manifest["vae"]), ema, scale=manifest["scale"],
                           upsampling=manifest["upsampling"], **exported_settings(cfg))
    # How the weights were made travels with them: settings, steps reached, data.
    keys = ("vae", "size", "scale", "upsampling", "degradation", "cascade", "holdout_every", "count", "images_dirs")
    data = {k: manifest[k] for k in keys if k in manifest}
    made = {"steps": step, "config": cfg.to_dict(), "data": data,
            **{k: manifest[k] for k in ("init_sha256", "init_record") if manifest.get(k)}}
    vae = Path(manifest["vae"])
    if cfg.pixel_weight and (vae / WEIGHTS_NAME).is_file():  # trained through this decoder, so it fits (cli/info.py)
        made["autoencoder_sha256"] = sha256(vae / WEIGHTS_NAME)

    def write(tmp: Path) -> None:
        pipe.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps(made, indent=2))
        if (vae / "training.json").is_file():  # how the autoencoder was made (a fine-tuned decoder) travels too
            shutil.copy(vae / "training.json", tmp / "autoencoder" / "training.json")

    write_atomic(out / "model", write, tmp=out / "model.tmp")
    return pipe


def export_ema(accelerator, out: Path, template, ema: dict, manifest: dict, cfg: TrainConfig, step: int,
               grid: Path | None = None) -> None:
    """The EMA weights as OUT/model, and a sample grid if asked: rank 0, in `template`, which waits on the CPU in
    between (under FSDP every process first hands over its shards)."""
    if not (accelerator.is_main_process or sharded(accelerator)):
        return
    weights = full_tensors(ema)
    if not accelerator.is_main_process:
        return
    template.load_state_dict({**template.state_dict(), **weights})
    pipe = export_pipeline(out, template, manifest, cfg, step)
    if grid:  # on the training device, autoencoder and all, then back
        save_sample_grid(grid, pipe.to(accelerator.device), first_pairs(cfg.data, 4))
        pipe.to("cpu")


@torch.no_grad()
def save_sample_grid(path: Path, pipe, data: dict, n: int = 4) -> None:
    """Rows: x0 decoded (the starting point), the CFM result at the model's default steps and solver, the ground
    truth x1."""
    from fmboost.data.images import save_image_atomic, to_pil

    x_cond, x1 = data["x_cond"][:n].to(pipe.device), data["x1"][:n].to(pipe.device)
    pred, _ = pipe.flow(x_cond)
    rows = [pipe.autoencoder.decode(z) for z in (x_cond, pred, x1)]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    save_image_atomic(to_pil(grid), path)
