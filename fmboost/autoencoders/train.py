"""Training fmboost's small `AutoencoderKL` on photos (the embedded default's autoencoder).

L1 reconstruction + a tiny KL term, as in the LDM first stage without the GAN/LPIPS terms (their weights cannot
be downloaded here). Resumable: a checkpoint holds model, optimizer, step and RNG, written atomically.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm import tqdm

from fmboost.autoencoders.vae import Autoencoder, small_autoencoder_config
from fmboost.data.images import ImageError, list_images, load_image, resize


def load_photos(folders: list[str], max_side: int = 1024) -> list[torch.Tensor]:
    """All photos as uint8 tensors; large ones also at half size so crops see several scales of detail."""
    photos = []
    for folder in folders:
        for path in list_images(folder):
            try:
                im = load_image(path)
            except ImageError as e:
                print(f"skipped {e}")
                continue
            if max(im.size) > max_side:
                s = max_side / max(im.size)
                im = resize(im, (round(im.width * s), round(im.height * s)))
            photos.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
            if min(im.size) >= 512:
                half = resize(im, (im.width // 2, im.height // 2), "lanczos")
                photos.append(torch.from_numpy(np.asarray(half).copy()).permute(2, 0, 1))
    if not photos:
        raise SystemExit(f"no readable images in {folders}")
    return photos


def random_crops(photos: list[torch.Tensor], n: int, size: int, rng: random.Random) -> torch.Tensor:
    out = []
    for _ in range(n):
        p = photos[rng.randrange(len(photos))]
        i, j = rng.randrange(p.shape[1] - size + 1), rng.randrange(p.shape[2] - size + 1)
        c = p[:, i:i + size, j:j + size]
        if rng.random() < 0.5:
            c = c.flip(2)
        out.append(c)
    return torch.stack(out).float() / 127.5 - 1.0


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample.float()
    l1 = (recon - x).abs().mean()
    return l1 + kl_weight * posterior.kl().mean() / x[0].numel(), l1


def save_checkpoint(path: Path, vae, opt, step: int, rng: random.Random) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "py_rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, photos, rng: random.Random, size: int = 128, n: int = 64) -> float:
    """1 / std of the latents, the same rule the LDM paper used to set SD's 0.18215."""
    size = min(size, *(min(p.shape[1:]) for p in photos))  # small photos: the largest crop they all allow
    z = vae.encode(random_crops(photos, n, size, rng)).latent_dist.mean
    return float(1.0 / z.std())


def train(cfg: dict) -> Path:
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.get("threads", os.cpu_count()))
    torch.manual_seed(cfg["seed"])
    rng = random.Random(cfg["seed"])
    photos = [p for p in load_photos(cfg["data"]) if min(p.shape[1:]) >= cfg["crop"]]
    if not photos:
        raise SystemExit(f"no photo in {cfg['data']} is at least {cfg['crop']} px a side (the crop size)")
    print(f"{len(photos)} photos (with half-size copies)")
    vae = AutoencoderKL(**small_autoencoder_config(cfg["block_out_channels"], cfg["latent_channels"]))
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    ckpt, step = out / "checkpoint.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)  # our own file, written by save_checkpoint above
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, _ = state["step"], rng.setstate(state["py_rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}")
    elif cfg.get("init"):  # a longer run from a finished one: its weights, a fresh optimizer and schedule
        vae.load_state_dict(torch.load(cfg["init"], weights_only=False)["model"])
        print(f"initialised from {cfg['init']}")
    steps, warmup = cfg["steps"], cfg["warmup"]
    lr_at = lambda s: cfg["lr"] * min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    log = open(out / "log.csv", "a")
    bar = tqdm(total=steps, initial=step, desc="autoencoder")
    t0, deadline = time.time(), time.time() + 60 * cfg.get("max_minutes", 1e9)
    while step < steps and time.time() < deadline:
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = random_crops(photos, cfg["batch_size"], cfg["crop"], rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
            loss, l1 = vae_loss(vae, x, cfg["kl_weight"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(l1=f"{l1.item():.4f}")
        log.write(f"{step},{loss.item():.6f},{l1.item():.6f},{time.time() - t0:.1f}\n")
        if step % cfg["checkpoint_every"] == 0 or step == steps:
            save_checkpoint(ckpt, vae, opt, step, rng)
            log.flush()
    save_checkpoint(ckpt, vae, opt, step, rng)
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, photos, random.Random(0)))
    Autoencoder(vae).save_pretrained(out / "autoencoder")
    (out / "autoencoder" / "training.json").write_text(json.dumps({**cfg, "trained_steps": step}, indent=2))
    print(f"saved {out / 'autoencoder'} at step {step} (scaling_factor {vae.config.scaling_factor:.4f})")
    return out / "autoencoder"


def main(argv=None):
    p = argparse.ArgumentParser(description="Train fmboost's small AutoencoderKL on a folder of photos.")
    p.add_argument("--config", required=True, help="JSON file with the training settings")
    p.add_argument("--data", nargs="+", help="photo folders (override the config)")
    p.add_argument("--out", help="output folder (override the config)")
    p.add_argument("--max-minutes", type=float, help="stop (resumably) after this many minutes")
    args = p.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    cfg.update({k: v for k, v in dict(data=args.data, out=args.out, max_minutes=args.max_minutes).items() if v})
    train(cfg)


if __name__ == "__main__":
    main()
