"""Short clips made from still photos, for training the temporal layers (models/temporal.py) without video data:
a virtual camera pans (sub-pixel), zooms and turns a little over a photo, and each frame is resampled from it.

Video LDM trains its temporal layers on real video; photos moved by a known camera give the kind of motion a
upscaled clip mostly has (camera motion over a static scene), with the default's degradation (bicubic ↓2) applied
per frame afterwards, so the low-res frames alias differently from frame to frame as real footage does.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fmboost.data.images import resize


@dataclass(frozen=True)
class CameraMotion:
    """Per-frame motion of the virtual camera: translation in high-res px, zoom factor, rotation in degrees."""
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0
    turn: float = 0.0


def random_motion(rng: random.Random, max_pan: float = 2.0, max_zoom: float = 0.02,
                  max_turn: float = 0.5) -> CameraMotion:
    """Always a sub-pixel pan; half the clips also zoom, a third also turn."""
    zoom = math.exp(rng.uniform(-max_zoom, max_zoom)) if rng.random() < 0.5 else 1.0
    turn = rng.uniform(-max_turn, max_turn) if rng.random() < 1 / 3 else 0.0
    return CameraMotion(rng.uniform(-max_pan, max_pan), rng.uniform(-max_pan, max_pan), zoom, turn)


def camera_clip(photo: torch.Tensor, size: int, frames: int, motion: CameraMotion,
                rng: random.Random) -> torch.Tensor:
    """F×3×size×size uint8 frames of `photo` (3×H×W uint8) seen by a camera moving by `motion` each frame,
    resampled bicubically (reflected at the photo's border, which the margin below rarely reaches)."""
    _, h, w = photo.shape
    reach = size / 2 * math.sqrt(2) * max(motion.zoom, 1 / motion.zoom) ** frames
    path = (frames - 1) * max(abs(motion.dx), abs(motion.dy))
    margin_x = min(w / 2, reach + path / 2 + 2)
    margin_y = min(h / 2, reach + path / 2 + 2)
    cx = rng.uniform(margin_x, w - margin_x) - (frames - 1) * motion.dx / 2
    cy = rng.uniform(margin_y, h - margin_y) - (frames - 1) * motion.dy / 2
    thetas = []
    for k in range(frames):
        s, a = size * motion.zoom ** k, math.radians(motion.turn * k)
        x, y = cx + k * motion.dx, cy + k * motion.dy
        thetas.append([[s / w * math.cos(a), -s / w * math.sin(a), 2 * x / w - 1],
                       [s / h * math.sin(a), s / h * math.cos(a), 2 * y / h - 1]])
    theta = torch.tensor(thetas, dtype=torch.float32)
    grid = F.affine_grid(theta, (frames, 3, size, size), align_corners=False)
    src = photo.float()[None].expand(frames, -1, -1, -1)
    out = F.grid_sample(src, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def bicubic_down(frames: torch.Tensor, scale: int) -> torch.Tensor:
    """The default's degradation per frame: PIL bicubic ↓scale of the uint8 frame, as `fmboost prepare` makes its
    low-res crops (data/degradations: none)."""
    out = []
    for f in frames:
        im = Image.fromarray(f.permute(1, 2, 0).numpy())
        out.append(torch.from_numpy(np.asarray(resize(im, (im.width // scale, im.height // scale))).copy()))
    return torch.stack(out).permute(0, 3, 1, 2)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 → [-1, 1], the autoencoder's range."""
    return frames.float() / 127.5 - 1.0


def sample_clips(photos: list[torch.Tensor], n: int, size: int, frames: int, scale: int,
                 rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """(high-res, low-res) clips in [-1, 1]: n·F×3×size×size and n·F×3×(size/scale)², clips after one another."""
    hr = []
    for _ in range(n):
        photo = photos[rng.randrange(len(photos))]
        if rng.random() < 0.5:
            photo = photo.flip(2)
        hr.append(camera_clip(photo, size, frames, random_motion(rng), rng))
    hr = torch.cat(hr)
    return to_unit(hr), to_unit(bicubic_down(hr, scale))
