"""Back-projection (Irani & Peleg, 1991): an upscale made consistent with its low-res input.

An upscale of a photo that was made by shrinking should shrink back to that photo. Each iteration measures how far
the output, shrunk as the input was (bicubic with antialiasing, as PIL's resize), is from the input, and adds that
error back, enlarged (bicubic):  y ← y + up(x_lr − down(y)).  The correction lives below the input's Nyquist
frequency, where the input knows the answer; the detail above it, which only the model can draw, is left alone.
It suits models of clean bicubic downscales (the embedded default); on a degraded input it would copy the noise
and blocks back in, so a model folder turns it on (`back_projection` in fmboost.json) and `real` does not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fmboost.pipelines.colorfix import color_fix


def back_project(output: torch.Tensor, lowres: torch.Tensor, iterations: int = 1) -> torch.Tensor:
    """`output` (B×3×H×W in [-1, 1]) after `iterations` back-projections onto `lowres` (B×3×h×w)."""
    for _ in range(iterations):
        shrunk = F.interpolate(output, size=lowres.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
        error = F.interpolate(lowres - shrunk, size=output.shape[-2:], mode="bicubic", align_corners=False)
        output = (output + error).clamp(-1, 1)
    return output


def match_input(decoded: torch.Tensor, lowres: torch.Tensor, fix: str, back_projections: int) -> torch.Tensor:
    """The decoded upscale made to agree with its low-res input, as an upscale's last stage: the colour `fix`
    (pipelines/colorfix.py), then `back_projections` back-projections. The pipeline and the decoder's training loss
    both finish an output with it."""
    return back_project(color_fix(decoded, lowres, fix), lowres, back_projections)
