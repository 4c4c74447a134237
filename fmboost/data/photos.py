"""Photos for training the autoencoder: held-back splits, random crops, colour augmentation, fixed validation crops.

Crops are uint8 photos turned into [-1, 1] float tensors (C, H, W); every random choice comes from the `rng` passed
in, so a resumed run draws the same crops.
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import numpy as np
import torch

from fmboost.data.images import ImageError, holdout, list_images, load_image, resize
from fmboost.errors import MissingError


def split_photos(folders: list[str], holdout_every: int) -> tuple[list[Path], list[Path]]:
    """(training, held-back) files: every `holdout_every`-th file of each folder, in sorted order, is held back."""
    train, held = [], []
    for folder in folders:
        if not Path(folder).is_dir():
            raise MissingError(f"{folder}: no such folder of photos")
        kept, back = holdout(list_images(folder), holdout_every)
        train, held = train + kept, held + back
    return train, held


def held_back_pairs(folders: list[str], holdout_every: int, crop: int, scale: int = 2) -> list[tuple]:
    """(path, high-res crop, its bicubic ↓scale) of every held-back photo: the centre `crop` px (a multiple of 8,
    smaller photos give what they have), for tuning and learning curves on photos training never saw."""
    _, held = split_photos(folders, holdout_every)
    pairs = []
    for path in held:
        im = load_image(path)
        c = min(crop, im.width, im.height) // 8 * 8
        left, top = (im.width - c) // 2, (im.height - c) // 2
        hr = im.crop((left, top, left + c, top + c))
        pairs.append((path, hr, resize(hr, (c // scale, c // scale))))
    return pairs


def load_photos(paths: list[Path], max_side: int = 1024) -> list[torch.Tensor]:
    """Photos as uint8 CHW tensors; large ones also at half size so crops see several scales of detail."""
    photos = []
    for path in paths:
        try:
            im = load_image(path)
        except ImageError as e:
            print(f"skipped {e}", file=sys.stderr)
            continue
        if max(im.size) > max_side:
            s = max_side / max(im.size)
            im = resize(im, (round(im.width * s), round(im.height * s)))
        photos.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
        if min(im.size) >= 512:
            half = resize(im, (im.width // 2, im.height // 2), "lanczos")
            photos.append(torch.from_numpy(np.asarray(half).copy()).permute(2, 0, 1))
    return photos


def hue_rotation(angle: float) -> torch.Tensor:
    """3×3 rotation about the grey axis (1, 1, 1): turns hues, keeps grey grey."""
    k = torch.ones(3) / math.sqrt(3)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def color_augment(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """A crop in [-1, 1] with its hue rotated, saturation and brightness scaled (clipped back into range)."""
    grey = x.mean(0, keepdim=True)
    chroma = torch.einsum("ij,jhw->ihw", hue_rotation(rng.uniform(-math.pi, math.pi)), x - grey)
    y = grey * rng.uniform(0.8, 1.2) + chroma * rng.uniform(0.6, 1.5)
    return y.clamp(-1, 1)


def sample_crops(photos: list[torch.Tensor], n: int, size: int, rng: random.Random,
                 color_p: float = 0.0) -> torch.Tensor:
    """n random crops in [-1, 1], flipped half the time, colour-augmented with probability `color_p`."""
    out = []
    for _ in range(n):
        p = photos[rng.randrange(len(photos))]
        i, j = rng.randrange(p.shape[1] - size + 1), rng.randrange(p.shape[2] - size + 1)
        c = p[:, i:i + size, j:j + size].float() / 127.5 - 1.0
        if rng.random() < 0.5:
            c = c.flip(2)
        if color_p and rng.random() < color_p:
            c = color_augment(c, rng)
        out.append(c)
    return torch.stack(out)


def center_crops(photos: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    crops = []
    for p in photos:
        s = min(size, *p.shape[1:]) // 8 * 8
        i, j = (p.shape[1] - s) // 2, (p.shape[2] - s) // 2
        crops.append(p[:, i:i + s, j:j + s].float() / 127.5 - 1.0)
    return crops
