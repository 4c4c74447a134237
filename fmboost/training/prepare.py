"""`fmboost prepare`: photos → safetensors shards of training pairs (x1, x_cond, z_lr) with a manifest.

For each crop of `size` px: x1 = E(crop), z_lr = E(bicubic↓s(crop)), x_cond = upsample(z_lr); with
`degradation="realesrgan"`, z_lr encodes Real-ESRGAN's degraded ↓s(crop) instead. With `cascade=c` the pairs train
the first ×s pass of a ×(s·c) cascade (`fmboost upscale --scale 4` of a ×2 model): each crop is taken c times
larger, its target is its clean bicubic ↓c and its low-res side ↓(s·c) of it, so the model learns to undo the
degradations that a ×(s·c) input carries and hands a clean image to the next pass. Shards are written atomically
and recorded in manifest.json, so an interrupted run resumes at the first unfinished shard.

Sharded over processes (rank r of w, e.g. under torchrun or srun), rank r makes shards r, r + w, r + 2w, ... and
records them in its own manifest.rank{r}-of-{w}.json; whichever rank finishes last merges them into manifest.json
(or `fmboost prepare --merge OUT`). Shard k is the same whichever rank makes it: its crops and degradations are
seeded by k.

`reupsample` derives shards with another upsampling from finished ones: the same crops and targets, only x_cond
recomputed from the stored z_lr, so an upsampling ablation changes nothing else.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.degradations import degrade_image, image_rng
from fmboost.data.files import write_atomic
from fmboost.data.images import ImageError, holdout, list_images, load_image, resize, to_tensor
from fmboost.data.stream import MANIFEST, read_manifest
from fmboost.errors import InputError, MissingError
from fmboost.flow.upsampling import upsample_image, upsample_latent

DEGRADATIONS = ("none", "realesrgan")


def random_crops(im, size: int, n: int, rng: random.Random):
    """n random size×size crops; images smaller than `size` are first enlarged to fit."""
    if min(im.size) < size:
        s = size / min(im.size)
        im = resize(im, (max(size, round(im.width * s)), max(size, round(im.height * s))))
    for _ in range(n):
        x, y = rng.randrange(im.width - size + 1), rng.randrange(im.height - size + 1)
        yield im.crop((x, y, x + size, y + size))


def cascade_targets(crops, cascade: int) -> list:
    """The first pass's targets: each crop's clean bicubic ↓cascade (the crop itself when cascade is 1)."""
    if cascade == 1:
        return crops
    size = crops[0].width // cascade
    return [resize(c, (size, size)) for c in crops]


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
    x_cond = (upsample_image(lr, scale, autoencoder) if upsampling == "pixel"
              else upsample_latent(z_lr, scale, upsampling, autoencoder))
    return {"x1": autoencoder.encode(hr).cpu(), "z_lr": z_lr.cpu(), "x_cond": x_cond.cpu()}


def write_manifest(path: Path, manifest: dict) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(manifest, indent=2)))


def rank_manifest(rank: int, world_size: int) -> str:
    return MANIFEST if world_size == 1 else f"manifest.rank{rank}-of-{world_size}.json"


def prepare(images_dirs, out, vae, size: int = 256, scale: int = 2, upsampling: str = "psu",
            crops_per_image: int = 4, images_per_shard: int = 64, batch_size: int = 16, seed: int = 0,
            device: str = "cpu", degradation: str = "none", rank: int = 0, world_size: int = 1,
            holdout_every: int = 0, cascade: int = 1) -> dict:
    """`holdout_every` = n leaves every n-th photo of each folder out, for tuning on photos training never saw;
    `cascade` (module docstring): pairs for the first pass of a ×(scale·cascade) cascade."""
    out = Path(out)
    images_dirs = [str(d) for d in (images_dirs if isinstance(images_dirs, (list, tuple)) else [images_dirs])]
    paths = [p for d in images_dirs for p in holdout(list_images(d), holdout_every)[0]]
    if not paths:
        raise MissingError(f"no images (png, jpg, webp, ...) found in {', '.join(images_dirs)}")
    if degradation not in DEGRADATIONS:
        raise InputError(f"degradation {degradation!r}: choose one of {', '.join(DEGRADATIONS)}")
    if cascade < 1:
        raise InputError(f"cascade {cascade}: give 1 (plain ×{scale} pairs) or the factor of the passes after "
                         "the first")
    if not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not one of the {world_size} processes (0..{world_size - 1})")
    autoencoder = Autoencoder.from_pretrained(vae).to(device)
    f = autoencoder.downsample_factor
    if size % (f * scale):
        raise InputError(f"--size must be a multiple of {f * scale} (downsampling factor {f} × scale {scale})")
    vae = str(Path(vae).resolve()) if Path(vae).is_dir() else str(vae)  # hub ids stay as they are
    settings = dict(vae=vae, size=size, scale=scale, upsampling=upsampling, crops_per_image=crops_per_image,
                    images_per_shard=images_per_shard, seed=seed, images_dirs=images_dirs,
                    degradation=degradation, holdout_every=holdout_every, cascade=cascade)
    manifest = {**settings, "latent_channels": autoencoder.latent_channels, "downsample_factor": f,
                "shards": [], "skipped": [], "count": 0}
    name = rank_manifest(rank, world_size)
    if (out / name).exists():
        older = {"degradation": "none", "holdout_every": 0, "cascade": 1}  # settings older manifests lack
        old = {**older, **json.loads((out / name).read_text())}
        if {k: old.get(k) for k in settings} != settings:
            raise InputError(f"{out} holds shards made with other settings; choose another --out")
        manifest = old
    out.mkdir(parents=True, exist_ok=True)
    groups = [paths[i:i + images_per_shard] for i in range(0, len(paths), images_per_shard)]
    mine = range(rank, len(groups), world_size)  # the shards of this rank, by their global number k
    if world_size > 1:
        manifest.update(rank=rank, world_size=world_size, groups=len(groups))
    bar = tqdm(total=sum(len(groups[k]) for k in mine),
               initial=sum(len(groups[k]) for k in mine[:len(manifest["shards"])]), desc="prepare", unit="img")
    save = lambda: write_manifest(out / name, manifest)
    for k in mine[len(manifest["shards"]):]:
        rng = random.Random(seed * 100003 + k)  # per shard, so a resumed run makes the same crops
        crops = []
        for path in groups[k]:
            try:
                crops += list(random_crops(load_image(path), size * cascade, crops_per_image, rng))
            except ImageError as e:
                manifest["skipped"].append(str(e))
                tqdm.write(f"skipped {e}")
            bar.update(1)
        if crops:
            lows = low_res_crops(crops, scale * cascade, degradation, seed, k)
            crops = cascade_targets(crops, cascade)
            parts = [encode_pairs(crops[i:i + batch_size], autoencoder, scale, upsampling, lows[i:i + batch_size])
                     for i in range(0, len(crops), batch_size)]
            tensors = {key: torch.cat([p[key] for p in parts]).contiguous() for key in parts[0]}
            shard = f"shard_{k:05d}.safetensors"
            write_atomic(out / shard, lambda p: save_file(tensors, str(p)))
            manifest["count"] += len(crops)
        manifest["shards"].append(shard if crops else None)
        save()
    bar.close()
    save()  # also when this rank had no shard to make
    if world_size > 1 and not unfinished_ranks(out, world_size):
        merge(out)
    return manifest


def unfinished_ranks(out: Path, world_size: int) -> list[int]:
    """Ranks of a sharded run whose manifest is missing or does not yet list all their shards."""
    def finished(r):
        path = out / rank_manifest(r, world_size)
        m = json.loads(path.read_text()) if path.exists() else None
        return m is not None and len(m["shards"]) == len(range(r, m["groups"], world_size))
    return [r for r in range(world_size) if not finished(r)]


def merge(out) -> dict:
    """manifest.json from the per-rank manifests of a finished sharded run; safe to run more than once."""
    out = Path(out)
    found = sorted(out.glob("manifest.rank*-of-*.json"))
    if not found:
        raise MissingError(f"{out} holds no per-rank manifests (manifest.rankR-of-W.json) to merge")
    world_size = json.loads(found[0].read_text())["world_size"]
    missing = unfinished_ranks(out, world_size)
    if missing:
        raise InputError(f"{out}: rank(s) {', '.join(map(str, missing))} of {world_size} have not finished; "
                         f"run them (again) first")
    ranks = [json.loads((out / rank_manifest(r, world_size)).read_text()) for r in range(world_size)]
    settings = lambda m: {k: v for k, v in m.items() if k not in ("rank", "shards", "skipped", "count")}
    if any(settings(m) != settings(ranks[0]) for m in ranks):
        raise InputError(f"{out}: the ranks' manifests disagree on the settings; rerun prepare with one command")
    merged = {k: v for k, v in settings(ranks[0]).items() if k not in ("world_size", "groups")}
    merged["shards"] = [None] * ranks[0]["groups"]
    for m in ranks:
        merged["shards"][m["rank"]::world_size] = m["shards"]
    merged["skipped"] = [s for m in ranks for s in m["skipped"]]
    merged["count"] = sum(m["count"] for m in ranks)
    write_manifest(out / MANIFEST, merged)
    return merged


def reupsample(src, out, upsampling: str, device: str = "cpu") -> dict:
    """Shards like `src`'s with x_cond = upsample(z_lr) by `upsampling`; x1 and z_lr are copied unchanged."""
    src, out = Path(src), Path(out)
    if upsampling == "pixel":
        raise InputError("pixel upsampling starts from the low-res pixels, which shards do not keep: prepare the "
                         "photos again with it")
    manifest = read_manifest(src)
    shards = [s for s in manifest["shards"] if s]
    if not shards:
        raise InputError(f"{src} holds no training pairs")
    with safe_open(str(src / shards[0]), "pt") as f:  # the header only: the loop below reads the tensors
        if "z_lr" not in f.keys():
            raise InputError(f"{src}: its shards lack z_lr, so their upsampling cannot be changed")
    derived = {**manifest, "upsampling": upsampling, "derived_from": str(src.resolve())}
    if (out / MANIFEST).exists():
        if json.loads((out / MANIFEST).read_text()) == derived:
            return derived  # already made
        raise InputError(f"{out} already holds other shards; choose another --out")
    autoencoder = Autoencoder.from_pretrained(manifest["vae"]).to(device) if upsampling == "psu" else None
    out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(shards, desc=f"re-upsample ({upsampling})", unit="shard"):
        tensors = load_file(str(src / name))
        with torch.no_grad():
            tensors["x_cond"] = torch.cat([upsample_latent(z.to(device), manifest["scale"], upsampling, autoencoder)
                                           for z in tensors["z_lr"].split(64)]).cpu().contiguous()
        write_atomic(out / name, lambda p: save_file(tensors, str(p)))
    write_manifest(out / MANIFEST, derived)  # last: marks it complete
    return derived


def load_shards(folder) -> tuple[dict[str, torch.Tensor], dict]:
    """All shards of a prepared folder concatenated in memory (for small sets and tests; training streams them)."""
    manifest = read_manifest(folder)
    parts = [load_file(str(Path(folder) / s)) for s in manifest["shards"] if s]
    if not parts:
        raise InputError(f"{folder} holds no training pairs")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, manifest
