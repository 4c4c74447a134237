"""Upsampling a low-res latent to the high-res latent grid: the flow's starting point x0 and its condition."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fmboost.flow.names import UPSAMPLING  # noqa: F401  (re-exported)


def upsample_image(x_lr: torch.Tensor, scale: int, autoencoder, tile: bool = False) -> torch.Tensor:
    """`pixel` conditioning, for photos: x0 = E(bicubic×s(x_lr)) from the real low-res pixels, which spares the
    lossy D(E(·)) round trip that PSU of z_lr pays."""
    image = F.interpolate(x_lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)
    return autoencoder.encode(image, tile=tile)


PSU_RESIZES = ("bicubic", "bilinear")


def upsample_latent(z_lr: torch.Tensor, scale: int, method: str = "psu", autoencoder=None,
                    tile: bool = False, resize: str = "bicubic") -> torch.Tensor:
    """`psu` (pixel-space upsampling): E(bicubic×s(D(z_lr))), which the paper found best; or latent-space
    `bilinear` / `nearest` interpolation. A `pixel` model given only a latent (text to image) gets PSU: the same
    map, with D(z_lr) standing in for the low-res pixels. `resize="bilinear"` is the PSU of the paper's code
    (a model folder's `psu_resize`): bilinear, and neither D's output nor the resized image clamped to [-1, 1];
    fmboost's bicubic clamps both, as a saved image would be."""
    if method in ("psu", "pixel"):
        if autoencoder is None:
            raise ValueError("psu upsampling needs the autoencoder")
        if resize not in PSU_RESIZES:
            raise ValueError(f"unknown psu resize {resize!r}; choose one of {', '.join(PSU_RESIZES)}")
        clamp = resize == "bicubic"
        image = autoencoder.decode(z_lr, tile=tile, clamp=clamp)
        image = F.interpolate(image, scale_factor=scale, mode=resize, align_corners=False)
        return autoencoder.encode(image.clamp(-1, 1) if clamp else image, tile=tile)  # the ×s image: tile it too
    if method == "bilinear":
        return F.interpolate(z_lr, scale_factor=scale, mode="bilinear", align_corners=False)
    if method == "nearest":
        return F.interpolate(z_lr, scale_factor=scale, mode="nearest")
    raise ValueError(f"unknown upsampling {method!r}; choose one of {', '.join(UPSAMPLING)}")
