"""Colour correction of an upscaled image against its low-resolution input, as diffusion super-resolution does
(StableSR's wavelet and AdaIN colour fixes), and as SR networks since SRCNN treat chroma.

A latent model can shift colours that its autoencoder rarely saw; the low-res input knows them exactly. `wavelet`
keeps the output's fine detail and takes every coarser band from the input's resize; `adain` only matches each
channel's mean and standard deviation to it. `luma` goes one step further: the wavelet-fixed output gives only the
luma (Y of JPEG's YCbCr), and the chroma (Cb, Cr) is the input's, resized. The eye resolves far less colour than
brightness detail, cameras and JPEG store chroma at half size, and an autoencoder that compresses three channels to
two values per pixel spends its precision where the photos it learnt from had detail, in luma; so the input's
chroma, resized, is closer to the original than the chroma the latent path draws. All work on images in [-1, 1],
shape (B, 3, H, W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fmboost.errors import InputError
from fmboost.pipelines.methods import COLOR_FIXES  # noqa: F401  (re-exported)


def wavelet_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The à trous wavelet's low-pass: a 3×3 binomial kernel dilated by `radius`, edges replicated."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(x, kernel, groups=x.shape[1], dilation=radius)


def wavelet_base(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """The low-pass left after `levels` à trous band-pass layers (radii 1, 2, 4, …)."""
    for level in range(levels):
        x = wavelet_blur(x, 2 ** level)
    return x


def wavelet_split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(detail, base): the sum of `levels` band-pass layers, and the low-pass left after them; detail + base = x
    (the band-passes telescope, so their sum is x less the base)."""
    base = wavelet_base(x, levels)
    return x - base, base


# JPEG's YCbCr (ITU-R BT.601, full range) without the offsets: on [-1, 1] images grey has Cb = Cr = 0.
RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                             [-0.168736, -0.331264, 0.5],
                             [0.5, -0.418688, -0.081312]])
YCBCR_TO_RGB = torch.linalg.inv(RGB_TO_YCBCR)


def convert(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(x), x)


def color_fix(output: torch.Tensor, reference: torch.Tensor, method: str = "wavelet") -> torch.Tensor:
    """`output` with its colours taken from `reference` (the low-res input, resized to the output's size)."""
    if method == "none":
        return output
    if reference.shape != output.shape:
        reference = F.interpolate(reference, size=output.shape[-2:], mode="bicubic", align_corners=False)
    if method in ("wavelet", "luma"):
        # detail(output) + base(reference) = output + base(reference - output): the low-pass is linear (replicated
        # edges included), so one chain of blurs does the work of two, on a 1024² output a few percent of an upscale
        fixed = output + wavelet_base(reference - output)
        if method == "luma":  # its luma, the reference's chroma
            ycbcr = torch.cat([convert(fixed, RGB_TO_YCBCR[:1]), convert(reference, RGB_TO_YCBCR[1:])], 1)
            fixed = convert(ycbcr, YCBCR_TO_RGB)
        return fixed.clamp(-1, 1)
    if method == "adain":
        dims = (-2, -1)
        mean, std = output.mean(dims, keepdim=True), output.std(dims, keepdim=True).clamp_min(1e-5)
        ref_mean, ref_std = reference.mean(dims, keepdim=True), reference.std(dims, keepdim=True)
        return ((output - mean) / std * ref_std + ref_mean).clamp(-1, 1)
    raise InputError(f"unknown colour fix {method!r}: expected one of {', '.join(COLOR_FIXES)}")
