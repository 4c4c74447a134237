"""`fmboost prepare`: photos → safetensors shards of training pairs (x1, x_cond, z_lr) with a manifest.

For each crop of `size` px: x1 = E(crop), z_lr = E(bicubic↓s(crop)), x_cond = upsample(z_lr); with
`degradation="realesrgan"`, z_lr encodes Real-ESRGAN's degraded ↓s(crop) instead. Shards are written atomically
and recorded in manifest.json, so an interrupted run resumes at the first unfinished shard.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.degradations import degrade_image, image_rng
from fmboost.data.images import ImageError, list_images, load_image, resize, to_tensor
from fmboost.flow.upsampling import upsample_latent

MANIFEST = "manifest.json"
DEGRADATIONS = ("none", "realesrgan")


def random_crops(im, size: int, n: int, rng: random.Random):
    """n random size×size crops; images smaller than `size` are first enlarged to fit."""
    if min(im.size) < size:
        s = size / min(im.size)
        im = resize(im, (max(size, round(im.width * s)), max(size, round(im.height * s))))
    for _ in range(n):
        x, y = rng.randrange(im.width - size + 1), rng.randrange(im.height - size + 1)
        yield im.crop((x, y, x + size, y + size))


def low_res_crops(crops, scale: int, degradation: str, seed: int, shard: int) -> list:
    """Bicubic ↓scale, or Real-ESRGAN's degradations seeded per crop (a resumed run makes the same ones)."""
    if degradation == "realesrgan":
        return [degrade_image(c, scale, image_rng(seed, shard, i)) for i, c in enumerate(crops)]
    size = crops[0].width // scale
    return [resize(c, (size, size)) for c in crops]


@torch.no_grad()
def encode_pairs(crops, autoencoder: Autoencoder, scale: int, upsampling: str,
                 lows=None) -> dict[str, torch.Tensor]:
    hr = torch.stack([to_tensor(c) for c in crops]).to(autoencoder.device)
    lows = lows if lows is not None else low_res_crops(crops, scale, "none", 0, 0)
    lr = torch.stack([to_tensor(c) for c in lows]).to(autoencoder.device)
    z_lr = autoencoder.encode(lr)
    return {"x1": autoencoder.encode(hr).cpu(), "z_lr": z_lr.cpu(),
            "x_cond": upsample_latent(z_lr, scale, upsampling, autoencoder).cpu()}


def write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def prepare(images_dirs, out, vae, size: int = 256, scale: int = 2, upsampling: str = "psu",
            crops_per_image: int = 4, images_per_shard: int = 64, batch_size: int = 16, seed: int = 0,
            device: str = "cpu", degradation: str = "none") -> dict:
    out = Path(out)
    images_dirs = [str(d) for d in (images_dirs if isinstance(images_dirs, (list, tuple)) else [images_dirs])]
    paths = [p for d in images_dirs for p in list_images(d)]
    if not paths:
        raise FileNotFoundError(f"no images (png, jpg, webp, ...) found in {', '.join(images_dirs)}")
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation {degradation!r}: choose one of {', '.join(DEGRADATIONS)}")
    autoencoder = Autoencoder.from_pretrained(vae).to(device)
    f = autoencoder.downsample_factor
    if size % (f * scale):
        raise ValueError(f"--size must be a multiple of {f * scale} (downsampling factor {f} × scale {scale})")
    vae = str(Path(vae).resolve()) if Path(vae).is_dir() else str(vae)  # hub ids stay as they are
    settings = dict(vae=vae, size=size, scale=scale, upsampling=upsampling, crops_per_image=crops_per_image,
                    images_per_shard=images_per_shard, seed=seed, images_dirs=images_dirs,
                    degradation=degradation)
    manifest = {**settings, "latent_channels": autoencoder.latent_channels, "downsample_factor": f,
                "shards": [], "skipped": [], "count": 0}
    if (out / MANIFEST).exists():
        old = {"degradation": "none", **json.loads((out / MANIFEST).read_text())}  # older manifests lack it
        if {k: old.get(k) for k in settings} != settings:
            raise ValueError(f"{out} holds shards made with other settings; choose another --out")
        manifest = old
    out.mkdir(parents=True, exist_ok=True)
    groups = [paths[i:i + images_per_shard] for i in range(0, len(paths), images_per_shard)]
    bar = tqdm(total=len(paths), initial=min(len(paths), len(manifest["shards"]) * images_per_shard),
               desc="prepare", unit="img")
    for k in range(len(manifest["shards"]), len(groups)):
        rng = random.Random(seed * 100003 + k)  # per shard, so a resumed run makes the same crops
        crops = []
        for path in groups[k]:
            try:
                crops += list(random_crops(load_image(path), size, crops_per_image, rng))
            except ImageError as e:
                manifest["skipped"].append(str(e))
                tqdm.write(f"skipped {e}")
            bar.update(1)
        if crops:
            lows = low_res_crops(crops, scale, degradation, seed, k)
            parts = [encode_pairs(crops[i:i + batch_size], autoencoder, scale, upsampling, lows[i:i + batch_size])
                     for i in range(0, len(crops), batch_size)]
            tensors = {key: torch.cat([p[key] for p in parts]).contiguous() for key in parts[0]}
            name = f"shard_{k:05d}.safetensors"
            write_atomic(out / name, lambda p: save_file(tensors, str(p)))
            manifest["count"] += len(crops)
        manifest["shards"].append(name if crops else None)
        write_atomic(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2)))
    bar.close()
    return manifest


def load_shards(folder) -> tuple[dict[str, torch.Tensor], dict]:
    """All shards of a prepared folder concatenated in memory (latents are small: 4×32×32 floats a pair)."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}; make it with `fmboost prepare`")
    manifest = json.loads((folder / MANIFEST).read_text())
    parts = [load_file(str(folder / s)) for s in manifest["shards"] if s]
    if not parts:
        raise ValueError(f"{folder} holds no training pairs")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, manifest
